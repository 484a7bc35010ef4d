"""Admin API for the edge (status, verify, swap, rollback under /admin/edge/) and for
plugins (list, verify, load, reload, enable, disable, unload under /admin/plugins/).

Loading code is the most dangerous thing the gateway does, so: off unless
MCPGW_ADMIN_TOKEN is set; a bearer token compared in constant time; loopback
callers only unless MCPGW_ADMIN_ALLOW_REMOTE; every call logged with who,
what, sha256 and outcome. Components are uploaded as the request body
(`application/wasm`), so the CLI works against a gateway on another host.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .asgi import is_loopback
from .edge.registry import EdgeRegistry, SwapRefused
from .edge.signing import decode_signature
from .logsafe import escape

if TYPE_CHECKING:
    from .plugins.registry import PluginRegistry

log = logging.getLogger("mcpgw.admin")

MAX_COMPONENT_BYTES = 32 * 1024 * 1024


def _signature(request: Request) -> bytes | None:
    """The detached Ed25519 signature sent with an upload: `?signature=` or the
    `Mcpgw-Signature` header, base64 (docs/operations.md)."""
    text = request.query_params.get("signature") or request.headers.get("mcpgw-signature")
    if not text:
        return None
    try:
        return decode_signature(text)
    except ValueError as exc:
        raise SwapRefused("signature", str(exc)) from None


class AdminAPI:
    def __init__(
        self,
        registry: EdgeRegistry,
        token: str,
        allow_remote: bool,
        plugins: PluginRegistry | None,
        scope_check: Callable[[str], Awaitable[bool]] | None,
    ):
        self.registry = registry
        self.plugins = plugins
        self._token = token.encode()
        self.allow_remote = allow_remote
        # With authentication on: whether a bearer token is a valid JWT carrying the admin scope.
        self._scope_check = scope_check

    def routes(self, prefix: str = "") -> list[Route]:
        base = prefix + "/admin/edge"
        return [
            Route(base + "/status", self.status, methods=["GET"]),
            Route(base + "/verify", self.verify, methods=["POST"]),
            Route(base + "/swap", self.swap, methods=["POST"]),
            Route(base + "/rollback", self.rollback, methods=["POST"]),
            *self._plugin_routes(prefix + "/admin/plugins"),
        ]

    def _plugin_routes(self, base: str) -> list[Route]:
        if self.plugins is None:
            return []
        return [
            Route(base, self.plugin_list, methods=["GET"]),
            Route(base + "/verify", self.plugin_verify, methods=["POST"]),
            *(
                Route(base + "/{name}/" + action, self.plugin_action, methods=["POST"])
                for action in ("load", "reload", "enable", "disable", "unload")
            ),
        ]

    def remote_refusal(self, request: Request, action: str) -> JSONResponse | None:
        """403 for a caller that is not on loopback, unless MCPGW_ADMIN_ALLOW_REMOTE."""
        who = request.client.host if request.client else None
        if not self.allow_remote and not is_loopback(who):
            log.warning("admin %s refused: caller %s is not loopback", action, who)
            return JSONResponse({"error": "admin API is loopback-only (MCPGW_ADMIN_ALLOW_REMOTE)"}, 403)
        return None

    async def refusal(self, request: Request, action: str) -> JSONResponse | None:
        """The answer refusing this call (403 remote, 401 without a valid token), or None to go on."""
        if (remote := self.remote_refusal(request, action)) is not None:
            return remote
        who = request.client.host if request.client else None
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        valid = scheme.lower() == "bearer" and (
            hmac.compare_digest(token.encode(), self._token)
            or (self._scope_check is not None and bool(token) and await self._scope_check(token))
        )
        if not valid:
            log.warning("admin %s refused: caller %s sent no valid token", action, who)
            return JSONResponse({"error": "admin token required"}, 401, headers={"www-authenticate": "Bearer"})
        return None

    def _who(self, request: Request) -> str:
        return f"{request.client.host}:{request.client.port}" if request.client else "unknown"

    async def _component(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_COMPONENT_BYTES:
                raise SwapRefused("read", f"component larger than {MAX_COMPONENT_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def status(self, request: Request) -> JSONResponse:
        if (refused := await self.refusal(request, "status")) is not None:
            return refused
        return JSONResponse(self.registry.status())

    async def verify(self, request: Request) -> JSONResponse:
        return await self._load(request, "verify", activate=False)

    async def swap(self, request: Request) -> JSONResponse:
        return await self._load(request, "swap", activate=True)

    async def _load(self, request: Request, action: str, activate: bool) -> JSONResponse:
        if (refused := await self.refusal(request, action)) is not None:
            return refused
        who = self._who(request)
        # The caller's text is escaped before it is logged or kept: no forged log lines.
        name = escape(request.query_params.get("name", "upload"), 80)
        sha = "-"
        try:
            wasm = await self._component(request)
            sha = hashlib.sha256(wasm).hexdigest()
            signature = _signature(request)
            # Compiling and the self-test take tens of milliseconds: keep them off the event loop.
            candidate = await anyio.to_thread.run_sync(self.registry.verify, wasm, f"admin upload {name}", signature)
            result: dict[str, Any] = {
                "verified": True,
                "sha256": sha,
                "version": candidate.component.version,
                "self_test": candidate.self_test,
            }
            if activate:
                result["event"] = self.registry.activate(candidate, who)  # fast: on the serving thread
        except SwapRefused as exc:
            step, detail = escape(exc.step, 40), escape(exc.detail, 400)
            log.warning("admin %s by %s: sha256 %s refused at step %s: %s (%s)", action, who, sha, step, detail, name)
            return JSONResponse({"verified": False, "step": step, "detail": detail, "sha256": sha}, 422)
        outcome = "now active" if activate else "verified"
        log.warning("admin %s by %s: sha256 %s %s (%s)", action, who, sha, outcome, name)
        return JSONResponse(result)

    async def rollback(self, request: Request) -> JSONResponse:
        if (refused := await self.refusal(request, "rollback")) is not None:
            return refused
        who = self._who(request)
        try:
            event = self.registry.rollback(who)
        except SwapRefused as exc:
            log.warning("admin rollback by %s refused: %s", who, exc.detail)
            return JSONResponse({"rolled_back": False, "detail": exc.detail}, 409)
        log.warning("admin rollback by %s: now %s", who, event["to"])
        return JSONResponse({"rolled_back": True, "event": event})

    # --- plugins: the same token, loopback and audit rules -----------------------

    async def plugin_list(self, request: Request) -> JSONResponse:
        if (refused := await self.refusal(request, "plugin list")) is not None:
            return refused
        assert self.plugins is not None  # routes exist only with a plugin registry
        return JSONResponse(self.plugins.status())

    async def plugin_verify(self, request: Request) -> JSONResponse:
        return await self._plugin(request, "verify", request.query_params.get("name", "upload"))

    async def plugin_action(self, request: Request) -> JSONResponse:
        action = request.url.path.rsplit("/", 1)[-1]
        return await self._plugin(request, action, request.path_params["name"])

    async def _plugin(self, request: Request, action: str, name: str) -> JSONResponse:
        if (refused := await self.refusal(request, f"plugin {action}")) is not None:
            return refused
        plugins = self.plugins
        assert plugins is not None  # routes exist only with a plugin registry
        who = self._who(request)
        sha = "-"
        try:
            if action in ("enable", "disable", "unload"):
                if action == "unload":
                    event = plugins.unload(name, who)
                else:
                    event = plugins.set_enabled(name, action == "enable", who)
                log.warning("admin plugin %s by %s: %s", action, who, name)
                return JSONResponse({"ok": True, "event": event})
            wasm = await self._component(request)
            sha = hashlib.sha256(wasm).hexdigest()
            overrides = _manifest_overrides(request.query_params.get("manifest"))
            manifest = plugins.manifest_for(name, overrides, f"admin upload {name}")
            # Compiling, describe and configure take milliseconds: keep them off the event loop.
            plugin = await anyio.to_thread.run_sync(plugins.verify, wasm, manifest, manifest.source)
            result: dict[str, Any] = {
                "verified": True,
                "sha256": sha,
                "name": plugin.name,
                "version": plugin.version,
                "hooks": sorted(plugin.hooks),
            }
            if action in ("load", "reload"):
                result["event"] = plugins.activate(plugin, who, replace_existing=action == "reload")
        except SwapRefused as exc:
            log.warning(
                "admin plugin %s by %s: %s sha256 %s refused at step %s: %s",
                action,
                who,
                name,
                sha,
                exc.step,
                exc.detail,
            )
            status = 404 if exc.step == "name" and action not in ("load", "reload") else 422
            return JSONResponse({"ok": False, "step": exc.step, "detail": exc.detail, "sha256": sha}, status)
        log.warning(
            "admin plugin %s by %s: %s sha256 %s %s",
            action,
            who,
            name,
            sha,
            "active" if action != "verify" else "verified",
        )
        return JSONResponse({"ok": True, **result})


def _manifest_overrides(raw: str | None) -> dict[str, Any] | None:
    """Manifest keys for a run-time load, as a JSON object (`?manifest={"grants": ["log"]}`)."""
    if not raw:
        return None
    import orjson

    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SwapRefused("manifest", "the manifest query parameter is not JSON") from None
    if not isinstance(value, dict):
        raise SwapRefused("manifest", "the manifest query parameter must be a JSON object")
    return value
