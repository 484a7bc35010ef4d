"""Admin API for the edge: status, verify, swap, rollback under /admin/edge/.

Loading code is the most dangerous thing the gateway does, so: off unless
MCPGW_ADMIN_TOKEN is set; a bearer token compared in constant time; loopback
callers only unless MCPGW_ADMIN_ALLOW_REMOTE; every call logged with who,
what, sha256 and outcome. Components are uploaded as the request body
(`application/wasm`), so the CLI works against a gateway on another host.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .edge.registry import EdgeRegistry, SwapRefused

log = logging.getLogger("mcpgw.admin")

MAX_COMPONENT_BYTES = 32 * 1024 * 1024


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class AdminAPI:
    def __init__(self, registry: EdgeRegistry, token: str, allow_remote: bool = False):
        self.registry = registry
        self._token = token.encode()
        self.allow_remote = allow_remote

    def routes(self, prefix: str = "") -> list[Route]:
        base = prefix + "/admin/edge"
        return [
            Route(base + "/status", self.status, methods=["GET"]),
            Route(base + "/verify", self.verify, methods=["POST"]),
            Route(base + "/swap", self.swap, methods=["POST"]),
            Route(base + "/rollback", self.rollback, methods=["POST"]),
        ]

    def _refusal(self, request: Request, action: str) -> JSONResponse | None:
        who = request.client.host if request.client else None
        if not self.allow_remote and not _is_loopback(who):
            log.warning("admin %s refused: caller %s is not loopback", action, who)
            return JSONResponse({"error": "admin API is loopback-only (MCPGW_ADMIN_ALLOW_REMOTE)"}, 403)
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
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
        if (refused := self._refusal(request, "status")) is not None:
            return refused
        return JSONResponse(self.registry.status())

    async def verify(self, request: Request) -> JSONResponse:
        return await self._load(request, "verify", activate=False)

    async def swap(self, request: Request) -> JSONResponse:
        return await self._load(request, "swap", activate=True)

    async def _load(self, request: Request, action: str, activate: bool) -> JSONResponse:
        if (refused := self._refusal(request, action)) is not None:
            return refused
        who = self._who(request)
        name = request.query_params.get("name", "upload")
        sha = "-"
        try:
            wasm = await self._component(request)
            sha = hashlib.sha256(wasm).hexdigest()
            # Compiling and the self-test take tens of milliseconds: keep them off the event loop.
            candidate = await anyio.to_thread.run_sync(self.registry.verify, wasm, f"admin upload {name}")
            result: dict[str, Any] = {
                "verified": True,
                "sha256": sha,
                "version": candidate.component.version,
                "self_test": candidate.self_test,
            }
            if activate:
                result["event"] = self.registry.activate(candidate, who)  # fast: on the serving thread
        except SwapRefused as exc:
            log.warning("admin %s by %s: sha256 %s refused at step %s: %s", action, who, sha, exc.step, exc.detail)
            return JSONResponse({"verified": False, "step": exc.step, "detail": exc.detail, "sha256": sha}, 422)
        log.warning("admin %s by %s: sha256 %s %s", action, who, sha, "now active" if activate else "verified")
        return JSONResponse(result)

    async def rollback(self, request: Request) -> JSONResponse:
        if (refused := self._refusal(request, "rollback")) is not None:
            return refused
        who = self._who(request)
        try:
            event = self.registry.rollback(who)
        except SwapRefused as exc:
            log.warning("admin rollback by %s refused: %s", who, exc.detail)
            return JSONResponse({"rolled_back": False, "detail": exc.detail}, 409)
        log.warning("admin rollback by %s: now %s", who, event["to"])
        return JSONResponse({"rolled_back": True, "event": event})
