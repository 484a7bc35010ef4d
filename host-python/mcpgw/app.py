"""The ASGI application: edge middleware in front of a Starlette router."""
from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import __version__
from .edge.backend import Edge, load_edge
from .edge.middleware import EdgeMiddleware
from .server.dispatcher import Dispatcher
from .server.sessions import SessionStore
from .settings import Settings
from .transports.streamable_http import StreamableHTTP

log = logging.getLogger("mcpgw")


def create_app(settings: Settings | None = None, edge: Edge | None = None) -> EdgeMiddleware:
    settings = settings or Settings.from_env()
    limits = {"fuel": settings.edge_fuel, "memory_bytes": settings.edge_memory_mb * 1024 * 1024}
    allowed = frozenset(h.lower() for h in settings.edge_allowed_sha256)
    if edge is None:
        edge = load_edge(
            settings.edge, settings.edge_config(), settings.component_path(), allowed_sha256=allowed, **limits
        )
    registry = None
    if settings.admin_token:  # without the admin API nothing can be swapped in
        try:
            from .edge.registry import EdgeRegistry
        except ImportError as exc:
            log.error("admin API disabled: hot swap needs wasmtime (%s)", exc)
        else:
            registry = EdgeRegistry(edge, settings.edge_config(), allowed_sha256=allowed,
                                    rollback_traps=settings.edge_rollback_traps,
                                    rollback_window_s=settings.edge_rollback_window_s, **limits)
    sessions = SessionStore(max_sessions=settings.max_sessions)
    mcp = StreamableHTTP(Dispatcher(), sessions, settings.max_body_bytes)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            # Admin events (who swapped what) stay behind the admin API.
            "edge": {**edge.health(), **({"previous": registry.status()["previous"]} if registry else {})},
            "sessions": len(sessions),
        })

    prefix = settings.path_prefix
    routes = [
        Route(prefix + "/health", health, methods=["GET"]),
        Route(prefix + "/mcp", mcp),
        Route(prefix + "/servers/{server_id}/mcp", mcp),
    ]
    if registry is not None:
        from .admin import AdminAPI

        routes += AdminAPI(registry, settings.admin_token, settings.admin_allow_remote).routes(prefix)
    app = Starlette(routes=routes)
    app.state.edge = edge
    app.state.registry = registry
    app.state.sessions = sessions
    return EdgeMiddleware(app, edge, max_head_bytes=settings.max_head_bytes,
                          tag_responses=settings.edge_tag_responses)
