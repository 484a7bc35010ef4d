"""The HTTP side: every request to an MCP route (mcp, sse, message, ws) is authenticated before
its transport sees it; RFC 9728 protected-resource metadata; 401/403 with RFC 6750 challenges.

Resources (RFC 8707): the gateway's canonical URI is `base` = MCPGW_PUBLIC_URL + MCPGW_PATH_PREFIX.
`<base>/mcp` and each `<base>/servers/<id>/mcp` are the MCP servers clients connect to; each has
its metadata at `<origin>/.well-known/oauth-protected-resource<path>` naming it as `resource`.
A token is accepted when its `aud` names the resource being called or `base` (a token for the
whole gateway), or, when MCPGW_AUTH_AUDIENCE is set, one of those audiences instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..asgi import Scope, Send, send_json
from ..edge.contract import RequestContext
from ..server import jsonrpc
from ..state.principal import Principal
from .errors import AuthFailure, Forbidden
from .policy import Policy
from .tokens import Authenticator, bearer_token

log = logging.getLogger("mcpgw.auth")

WELL_KNOWN = "/.well-known/oauth-protected-resource"
ROUTES = frozenset({"mcp", "sse", "message", "ws"})
UNAUTHORIZED = -32001  # JSON-RPC code of a 401/403 body (id null), next to the HTTP status that matters


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ResourceServer:
    def __init__(
        self,
        public_url: str,
        path_prefix: str,
        authorization_servers: tuple[str, ...],
        scopes_supported: list[str],
        known_server: Callable[[str], bool],
    ) -> None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"MCPGW_PUBLIC_URL must be an absolute http(s) URL without query: {public_url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path.rstrip("/") + path_prefix
        self.base = self.origin + self.base_path
        self.path_prefix = path_prefix
        self.authorization_servers = authorization_servers
        self.scopes_supported = scopes_supported
        self.known_server = known_server
        self._server = re.compile(re.escape(self.base_path) + r"/servers/([A-Za-z0-9-]{1,48})/mcp")

    def resource(self, route: str, server_id: str | None) -> str:
        if route == "mcp":
            return self.base + (f"/servers/{server_id}/mcp" if server_id else "/mcp")
        return self.base

    def metadata_url(self, resource: str) -> str:
        return self.origin + WELL_KNOWN + resource[len(self.origin) :]

    def lookup(self, path: str) -> str | None:
        """The resource whose metadata `path` asks for, or None (404). Also answered under the
        path prefix (`<prefix>/.well-known/...`), where a proxy that only forwards the prefix sends it."""
        if path.startswith(self.path_prefix + WELL_KNOWN) and self.path_prefix:
            path = (
                WELL_KNOWN
                + self.base_path[: len(self.base_path) - len(self.path_prefix)]
                + path[len(self.path_prefix + WELL_KNOWN) :]
            )
        if not path.startswith(WELL_KNOWN):
            return None
        rest = path[len(WELL_KNOWN) :].rstrip("/") if path != WELL_KNOWN + "/" else ""
        if rest == self.base_path:
            return self.base
        if rest == self.base_path + "/mcp":
            return self.base + "/mcp"
        found = self._server.fullmatch(rest)
        if found and self.known_server(found.group(1)):
            return self.origin + rest
        return None

    def metadata(self, resource: str) -> dict[str, Any]:
        return {
            "resource": resource,
            "authorization_servers": list(self.authorization_servers),
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": "mcpgw",
        }


class Gate:
    def __init__(
        self, authenticator: Authenticator, resources: ResourceServer, policy: Policy, audiences: tuple[str, ...]
    ) -> None:
        self.authenticator = authenticator
        self.resources = resources
        self.policy = policy
        self.audiences = audiences
        self.refusals: dict[str, int] = {"401": 0, "403": 0}
        # What `admitted` checks per request, computed once: /mcp's audiences, and whether any
        # rule names an endpoint at all.
        self._mcp_audiences = audiences or (resources.resource("mcp", None), resources.base)
        self._endpoint_rules = policy.endpoint_rules

    def endpoint(self, ctx: RequestContext) -> str:
        """The endpoint a policy names: the path without the prefix; /message is its /sse."""
        path = ctx["path"][len(self.resources.path_prefix) :]
        if ctx["route"] == "message":
            path = path[: -len("message")] + "sse"
        return path

    def _audiences(self, ctx: RequestContext) -> tuple[str, ...]:
        """The audiences a token for this request may carry: MCPGW_AUTH_AUDIENCE's, else the
        resource called and the gateway's base (/mcp's computed once)."""
        route, server_id = ctx["route"], ctx["server_id"]
        if route == "mcp" and server_id is None:
            return self._mcp_audiences
        return self.audiences or (self.resources.resource(route, server_id), self.resources.base)

    def admitted(self, scope: Scope, ctx: RequestContext) -> Principal | None:
        """`admit` without a coroutine for a token verified before (the token cache): its one
        `Authorization: Bearer <token>` header, the token still valid (`Authenticator.held`),
        its audience this resource's, its scopes the endpoint's. None when any of that is not
        so: the caller then awaits `admit`, which goes the whole way and answers (401/403)."""
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if header is not None:
                    return None  # more than one: `admit` refuses it
                header = value
        if header is None or header[:7] != b"Bearer ":
            return None  # (any other spelling of the scheme goes the whole way)
        entry = self.authenticator.held(header[7:])
        if entry is None:
            return None
        if entry.audiences.isdisjoint(self._audiences(ctx)):
            return None
        principal = entry.principal
        if self._endpoint_rules and not self.policy.allows("endpoint", self.endpoint(ctx), principal):
            return None
        self.authenticator.counts["cached"] += 1
        return principal

    async def admit(self, scope: Scope, ctx: RequestContext) -> Principal:
        """The caller of a request to an MCP route; AuthFailure (401) or Forbidden (403)."""
        token = bearer_token(scope["headers"])
        principal = await self.authenticator.authenticate(token, self._audiences(ctx))
        endpoint = self.endpoint(ctx)
        if not self.policy.allows("endpoint", endpoint, principal):
            raise Forbidden(self.policy.endpoint_scopes(endpoint), f"{endpoint} needs more scopes")
        return principal

    def challenge(self, ctx: RequestContext, exc: AuthFailure | Forbidden) -> str:
        parts = []
        if self.authenticator.mode == "jwt":
            resource = self.resources.resource(ctx["route"], ctx["server_id"])
            parts.append(f"resource_metadata={_quote(self.resources.metadata_url(resource))}")
        else:
            parts.append('realm="mcpgw"')
        scopes = self.policy.endpoint_scopes(self.endpoint(ctx))
        if isinstance(exc, Forbidden):
            parts.append('error="insufficient_scope"')
            scopes = exc.scopes or scopes
        elif exc.presented:
            parts.append('error="invalid_token"')
            parts.append(f"error_description={_quote(exc.reason)}")
        if scopes:
            parts.append(f"scope={_quote(' '.join(scopes))}")
        return "Bearer " + ", ".join(parts)

    async def refuse(self, scope: Scope, send: Send, ctx: RequestContext, exc: AuthFailure | Forbidden) -> None:
        status = 403 if isinstance(exc, Forbidden) else 401
        self.refusals[str(status)] += 1
        log.debug("%s %s refused (%d): %s", ctx["method"], ctx["path"], status, exc.reason)
        message = ("Forbidden: " if status == 403 else "Unauthorized: ") + exc.reason
        body = jsonrpc.error_response(None, UNAUTHORIZED, message)
        headers = [(b"www-authenticate", self.challenge(ctx, exc).encode())]
        if scope["type"] == "websocket":
            if "websocket.http.response" in scope.get("extensions", {}):
                data = orjson.dumps(body)
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()),
                            *headers,
                        ],
                    }
                )
                await send({"type": "websocket.http.response.body", "body": data})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send_json(send, status, body, headers)

    def health(self) -> dict[str, Any]:
        return {
            "resource": self.resources.base,
            "audiences": list(self.audiences) or ["<the resource called>", self.resources.base],
            "authorization_servers": list(self.resources.authorization_servers),
            "policy_rules": len(self.policy.rules),
            "refused": dict(self.refusals),
            **self.authenticator.health(),
        }
