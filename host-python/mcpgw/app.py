"""The ASGI application: edge middleware in front of a Starlette router."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import __version__
from .edge.backend import Edge, load_edge
from .asgi import Receive, Scope, Send
from .edge.middleware import SCOPE_KEY, EdgeMiddleware
from .gateway import build_gateway
from .settings import Settings
from .transports.sse import LegacySSE, SseOptions
from .transports.streamable_http import HttpOptions, StreamableHTTP
from .transports.websocket import WebSocketEndpoint

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
    gateway = build_gateway(settings)
    sessions, federation = gateway.sessions, gateway.federation
    mcp = StreamableHTTP(gateway.dispatcher, sessions, HttpOptions(
        max_body_bytes=settings.max_body_bytes,
        response_mode=settings.response_mode,
        keepalive_s=settings.sse_keepalive_s,
        retry_ms=settings.sse_retry_ms,
        event_max=settings.event_store_max_events,
        event_ttl_s=settings.event_store_ttl_s,
    ), servers=gateway.servers.get)
    legacy_sse = LegacySSE(gateway, SseOptions(keepalive_s=settings.sse_keepalive_s,
                                               keepalive_event=settings.sse_keepalive_event,
                                               max_body_bytes=settings.max_body_bytes,
                                               path_prefix=settings.path_prefix))
    websocket = WebSocketEndpoint(gateway)

    def live() -> dict[str, int]:
        counts = mcp.live()
        for other in (legacy_sse.live(), websocket.live()):  # every stream and request, whatever the transport
            counts["streams"] += other["streams"]
            counts["requests"] += other["requests"]
        return {**counts, "upstream_links": federation.live_links()}

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            # Admin events (who swapped what) stay behind the admin API.
            "edge": {**edge.health(), **({"previous": registry.status()["previous"]} if registry else {}),
                     "cache": app.state.edge_cache.stats()},
            "live": live(),
            "upstreams": federation.health(),
        })

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        expiry = asyncio.ensure_future(sessions.expire_forever())
        federation.start()
        try:
            yield
        finally:
            expiry.cancel()
            # Normally done already by the server before connections close (serving.py);
            # here for hosts that only send the lifespan event.
            await mcp.shutdown(settings.shutdown_grace_s)
            await federation.stop()

    prefix = settings.path_prefix
    routes = [
        Route(prefix + "/health", health, methods=["GET"]),
        Route(prefix + "/mcp", mcp),
        Route(prefix + "/servers/{server_id}/mcp", mcp),
    ]
    if registry is not None:
        from .admin import AdminAPI

        routes += AdminAPI(registry, settings.admin_token, settings.admin_allow_remote).routes(prefix)
    app = Starlette(routes=routes, lifespan=lifespan)
    # Never redirect (e.g. `/mcp%2F` -> `/mcp`): a client's POST would be replayed elsewhere or lost.
    app.router.redirect_slashes = False
    app.state.edge = edge
    app.state.registry = registry
    app.state.sessions = sessions
    app.state.mcp = mcp
    app.state.federation = federation
    app.state.gateway = gateway
    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        # The edge has already routed and canonicalised MCP requests: they skip Starlette's
        # router and middleware stack (a measured share of every request). Everything else,
        # including paths the edge did not accept as MCP paths, goes through Starlette.
        ctx = scope.get(SCOPE_KEY)
        if ctx is not None and scope["type"] == "http" and ctx["route"] in ("mcp", "sse", "message"):
            await (mcp if ctx["route"] == "mcp" else legacy_sse)(scope, receive, send)
        elif ctx is not None and scope["type"] == "websocket" and ctx["route"] == "ws":
            await websocket(scope, receive, send)
        else:
            await app(scope, receive, send)

    middleware = EdgeMiddleware(route, edge, max_head_bytes=settings.max_head_bytes,
                                tag_responses=settings.edge_tag_responses, cache_entries=settings.edge_cache_entries)
    app.state.edge_cache = middleware.cache
    middleware.state = app.state  # what callers (serving, tests) reach the gateway's parts through
    return middleware
