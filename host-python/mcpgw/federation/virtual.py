"""`/servers/{id}/mcp`: one upstream, names and results unchanged.

The gateway answers `initialize` itself (the session is the gateway's) with the
upstream's capabilities and instructions and its own identity in `_meta`;
everything else goes to the upstream as the client sent it, MCP tasks included (the
session's own upstream connection creates them, so their ids pass unchanged; tasks.py).
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..server.catalog import Catalog
from ..server.context import LOG_LEVELS, CallContext
from ..server.jsonrpc import INVALID_PARAMS, JsonRpcError
from ..state.session import Session
from .hub import FederatedDispatcher, Federation
from .upstream import Upstream

GATEWAY_META_KEY = "io.mcpgw/gateway"


class VirtualDispatcher(FederatedDispatcher):
    def __init__(self, upstream: Upstream, federation: Federation) -> None:
        super().__init__(Catalog())
        self.upstream = upstream
        self.federation = federation

    def unavailable(self) -> str | None:
        if self.upstream.ready:
            return None
        return f"Upstream {self.upstream.id!r} is unavailable: {self.upstream.error or self.upstream.state}"

    def endpoint(self) -> str:
        return f"/servers/{self.upstream.id}/mcp"

    def answers_at_once(self, method: str, params: dict[str, Any]) -> bool:
        return method == "ping"  # everything else is the upstream's

    def owner(self, method: str, params: dict[str, Any]) -> str | None:
        return self.upstream.id

    def listen_scope(self) -> str | None:
        return self.upstream.id

    def server_info(self) -> dict[str, Any]:
        return self.upstream.init_result.get("serverInfo") or {"name": self.upstream.id, "version": "unknown"}

    def capabilities(self) -> dict[str, Any]:
        return self.upstream.capabilities

    def instructions(self) -> str | None:
        return self.upstream.init_result.get("instructions")

    def initialize_result(self, revision: str) -> dict[str, Any]:
        return {
            **super().initialize_result(revision),
            "_meta": {GATEWAY_META_KEY: {"name": "mcpgw", "version": __version__, "upstream": self.upstream.id}},
        }

    async def _result(
        self, method: str, params: dict[str, Any], ctx: CallContext, session: Session | None
    ) -> dict[str, Any]:
        if method == "ping":
            return {}
        if session is None and (method.startswith("tasks/") or params.get("task") is not None):
            # Without a session the request would share the catalog connection, and its tasks
            # with every other stateless client: tasks are per session.
            raise JsonRpcError(INVALID_PARAMS, f"{method} with tasks needs a session (tasks are per session)")
        if method.endswith("/list") and session is not None:
            self.federation.watch(session)  # told of list_changed when its view changes
        if method == "logging/setLevel" and session is not None and params.get("level") in LOG_LEVELS:
            # Remembered, so a connection reopened after the upstream restarts gets it again.
            session.log_level, session.log_level_set = params["level"], True
        return await self.federation.call(self.upstream, method, params, ctx, session)
