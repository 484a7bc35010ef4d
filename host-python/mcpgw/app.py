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
    if edge is None:
        edge = load_edge(
            settings.edge,
            settings.edge_config(),
            settings.component_path(),
            fuel=settings.edge_fuel,
            memory_bytes=settings.edge_memory_mb * 1024 * 1024,
        )
    sessions = SessionStore(max_sessions=settings.max_sessions)
    mcp = StreamableHTTP(Dispatcher(), sessions, settings.max_body_bytes)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            "edge": edge.health(),
            "sessions": len(sessions),
        })

    prefix = settings.path_prefix
    app = Starlette(routes=[
        Route(prefix + "/health", health, methods=["GET"]),
        Route(prefix + "/mcp", mcp),
        Route(prefix + "/servers/{server_id}/mcp", mcp),
    ])
    app.state.edge = edge
    app.state.sessions = sessions
    return EdgeMiddleware(app, edge, max_head_bytes=settings.max_head_bytes)
