"""The composition root: the ASGI application, built in small named steps.

    ASGI scope -> EdgeMiddleware (one boundary crossing: verdicts, canonical path, route)
               -> Router (the edge's route decision, the only router)
               -> a transport (framing) -> the session engine -> dispatchers -> catalog/federation

`create_app` returns an `App`: the ASGI callable uvicorn serves, holding its
parts (edge, gateway, transports) as plain attributes for the CLI and tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from . import __version__, workers
from .asgi import ASGIApp, Receive, Scope, Send, send_json
from .auth.access import Access
from .auth.errors import AuthFailure, Forbidden
from .auth.gate import Gate
from .auth.policy import EMPTY
from .auth.setup import build_authenticator, build_gate, unauthenticated_exposure
from .edge.backend import Edge, load_verified_edge, public_version
from .edge.middleware import SCOPE_KEY, EdgeMiddleware
from .federation.config import load_policy
from .gateway import Gateway, build_gateway
from .http_server import HttpLimits, parse_networks
from .observability import request_id
from .observability.observer import RequestObserver, RouteNote
from .observability.tracing_switch import off_reason, tracing_mode
from .server import jsonrpc
from .server.engine import SessionEngine
from .settings import Settings
from .state.budget import EventBudget, return_large_frees
from .state.principal import SCOPE_KEY as PRINCIPAL_KEY
from .transports.http import not_found
from .transports.sse import LegacySSE, SseOptions
from .transports.sse_writer import StreamWriters
from .transports.streamable_http import HttpOptions, StreamableHTTP
from .transports.websocket import WebSocketEndpoint

if TYPE_CHECKING:
    from .console.traffic import Traffic
    from .edge.registry import EdgeRegistry
    from .observability.metrics import Metrics, MetricsEndpoint
    from .observability.tracing import Tracing
    from .plugins.registry import PluginRegistry

log = logging.getLogger("mcpgw")
AUTH_ROUTES = frozenset({"mcp", "sse", "message", "ws"})  # every MCP route needs a caller when auth is on
# After the engine's drain, how long stream writers get to see their close (they wake at once).
WRITERS_CLOSE_S = 1.0


def load_edge_from(settings: Settings) -> Edge:
    return load_verified_edge(
        settings.edge,
        settings.edge_config(),
        settings.component_path(),
        allowed_sha256=frozenset(h.lower() for h in settings.edge_allowed_sha256),
        fuel=settings.edge_fuel,
        memory_bytes=settings.edge_memory_mb * 1024 * 1024,
        signing_keys=settings.edge_signing_public_keys(),
    )


def edge_registry_for(settings: Settings, edge: Edge) -> EdgeRegistry | None:
    """The hot-swap registry, only when the admin API is on (without it nothing can be swapped in)."""
    if not settings.admin_token:
        return None
    try:
        from .edge.registry import EdgeRegistry
    except ImportError as exc:
        log.error("admin API disabled: hot swap needs wasmtime (%s)", exc)
        return None
    return EdgeRegistry(
        edge,
        settings.edge_config(),
        allowed_sha256=frozenset(h.lower() for h in settings.edge_allowed_sha256),
        rollback_traps=settings.edge_rollback_traps,
        rollback_window_s=settings.edge_rollback_window_s,
        fuel=settings.edge_fuel,
        memory_bytes=settings.edge_memory_mb * 1024 * 1024,
    )


@dataclass
class Transports:
    mcp: StreamableHTTP
    sse: LegacySSE
    websocket: WebSocketEndpoint
    writers: StreamWriters  # event streams being written, both HTTP transports
    events: EventBudget  # the event bytes of every stream (retention and slow readers)

    def streams(self) -> int:
        return self.writers.count + self.websocket.streams()


def build_transports(gateway: Gateway, settings: Settings) -> Transports:
    writers = StreamWriters()
    engine = gateway.engine
    if not return_large_frees():
        log.debug("mallopt unavailable: large freed buffers may stay in the process (not glibc)")
    events = EventBudget(
        max_bytes=settings.event_store_max_bytes,
        max_session_bytes=settings.event_store_max_session_bytes,
        max_stream_bytes=settings.event_store_max_stream_bytes,
        slow_reader_max_bytes=settings.slow_reader_max_bytes,
        slow_reader_wait_s=settings.slow_reader_wait_s,
    )
    mcp = StreamableHTTP(
        engine,
        gateway.server,
        HttpOptions(
            max_body_bytes=settings.max_body_bytes,
            response_mode=settings.response_mode,
            keepalive_s=settings.sse_keepalive_s,
            retry_ms=settings.sse_retry_ms,
            event_max=settings.event_store_max_events,
            event_ttl_s=settings.event_store_ttl_s,
            budget=events,
        ),
        writers,
    )
    sse = LegacySSE(
        engine,
        gateway.server,
        SseOptions(
            keepalive_s=settings.sse_keepalive_s,
            keepalive_event=settings.sse_keepalive_event,
            max_body_bytes=settings.max_body_bytes,
            retry_ms=settings.sse_retry_ms,
            event_ttl_s=settings.event_store_ttl_s,
            path_prefix=settings.path_prefix,
            budget=events,
        ),
        writers,
    )
    return Transports(mcp, sse, WebSocketEndpoint(engine, gateway.server), writers, events)


def admin_scope_check(settings: Settings, gate: Gate | None) -> Callable[[str], Awaitable[bool]] | None:
    """With authentication on, the admin API also accepts a credential carrying MCPGW_ADMIN_SCOPE
    (a JWT for this gateway, or an API key with that scope)."""
    if gate is None:
        return None
    audiences = gate.audiences or (gate.resources.base,)

    async def check(token: str) -> bool:
        try:
            principal = await gate.authenticator.authenticate(token, audiences)
        except AuthFailure:
            return False
        return settings.admin_scope in principal.scopes

    return check


def admin_app(
    settings: Settings,
    registry: EdgeRegistry | None,
    plugins: PluginRegistry | None,
    scope_check: Callable[[str], Awaitable[bool]] | None,
    overview: Callable[[], dict[str, Any]] | None = None,
) -> ASGIApp | None:
    """The admin API, and with `overview` (what the console shows) the operator console at /admin/."""
    if registry is None:
        return None
    from starlette.applications import Starlette

    from .admin import AdminAPI

    api = AdminAPI(registry, settings.admin_token, settings.admin_allow_remote, plugins, scope_check)
    routes = api.routes(settings.path_prefix)
    if overview is not None:
        from .console import Console

        routes += Console(api, overview).routes(settings.path_prefix)
    app = Starlette(routes=routes)
    # Never redirect (e.g. `/admin/edge/status/`): a POST would be replayed elsewhere or lost.
    app.router.redirect_slashes = False

    async def admin(scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette types messages as MutableMapping, ours as dict: the same objects.
        await app(scope, receive, cast("Any", send))

    return admin


class Router:
    """Routes on the edge's decision (`ctx["route"]`); nothing else routes. Every unknown or
    invalid path, on every transport, gets the same JSON-RPC 404 (so does a plain HTTP request
    to a WebSocket endpoint: it is not a route without the upgrade)."""

    def __init__(self, app: App) -> None:
        self.app = app
        t = app.transports
        self.http: dict[str, ASGIApp] = {"mcp": t.mcp, "sse": t.sse, "message": t.sse}
        self.admin_prefix = app.settings.path_prefix + "/admin/"
        self.metrics_path = app.settings.path_prefix + "/metrics"
        self.note = RouteNote(app.settings.path_prefix)  # tells the request observer the route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app.lifespan(receive, send)
            return
        ctx = scope[SCOPE_KEY]
        route = ctx["route"]
        self.note(scope, route)
        gate = self.app.gate
        if gate is not None and route in AUTH_ROUTES:  # authenticated before any transport sees it
            try:
                # (a token verified before: no coroutine; else the whole way, which may refuse)
                scope[PRINCIPAL_KEY] = principal = gate.admitted(scope, ctx) or await gate.admit(scope, ctx)
                if (tag := request_id.current.get()) is not None:  # on the request's log lines from here
                    tag.principal = principal.subject
            except (AuthFailure, Forbidden) as refused:
                await gate.refuse(scope, send, ctx, refused)
                return
        if kind == "websocket":
            if route == "ws":
                await self.app.transports.websocket(scope, receive, send)
            else:
                await _refuse_websocket(scope, send)
            return
        handler = self.http.get(route)
        if handler is not None:
            await handler(scope, receive, send)
        elif route == "health":
            if ctx["method"] == "GET":
                await send_json(send, 200, self.app.health())
            else:
                await send_json(
                    send,
                    405,
                    jsonrpc.error_response(None, jsonrpc.INVALID_REQUEST, "Method not allowed"),
                    [(b"allow", b"GET")],
                )
        elif self.app.metrics_endpoint is not None and scope["path"] == self.metrics_path:
            await self.app.metrics_endpoint(scope, receive, send)
        elif self.app.admin is not None and scope["path"].startswith(self.admin_prefix):
            await self.app.admin(scope, receive, send)
        elif gate is not None and ctx["method"] in ("GET", "HEAD") and (found := gate.resources.lookup(scope["path"])):
            await send_json(send, 200, gate.resources.metadata(found))  # RFC 9728
        else:
            await not_found().send(send)


async def _refuse_websocket(scope: Scope, send: Send) -> None:
    """An upgrade on a path that is not a WebSocket endpoint: the same JSON-RPC 404 as HTTP when
    the server can send an HTTP response to a handshake, else a refused handshake (403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        err = not_found()
        data = orjson.dumps(jsonrpc.error_response(None, err.code, err.message))
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": data})
    else:
        await send({"type": "websocket.close", "code": 1008})


class App:
    """The gateway as one ASGI application."""

    def __init__(self, settings: Settings, edge: Edge | None = None) -> None:
        self.settings = settings
        self.edge = edge if edge is not None else load_edge_from(settings)
        self.registry = edge_registry_for(settings, self.edge)
        self.gateway = build_gateway(settings)
        # Identity and authorization (auth/): the Router's gate (None: MCPGW_AUTH=none) and the
        # engine's policy filter at the dispatch point.
        self.authenticator = build_authenticator(settings)
        policy = load_policy(settings.config) if settings.config else EMPTY
        self.gate = build_gate(settings, self.authenticator, policy, lambda sid: sid in self.gateway.servers)
        self.gateway.engine.access = Access(policy) if policy.names else None
        self.transports = build_transports(self.gateway, settings)
        self.admin = admin_app(
            settings, self.registry, self.gateway.plugins, admin_scope_check(settings, self.gate), self.console_overview
        )
        # The HTTP protocol layer's limits and refusal counters (http_server.py; cli.py installs it).
        self.limits = HttpLimits(
            head_timeout_s=settings.head_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            body_min_rate_bytes_s=settings.body_min_rate_bytes_s,
            max_head_bytes=settings.max_head_bytes,
            max_connections_per_client=settings.max_connections_per_client,
            trusted_proxies=parse_networks(settings.trusted_proxies),
        )
        # Prometheus /metrics (observability/metrics.py; MCPGW_METRICS=off: none, nothing counted).
        self.metrics: Metrics | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None
        if settings.metrics != "off":
            self.install_metrics()
        router = Router(self)
        self.middleware = EdgeMiddleware(
            router,
            self.edge,
            max_head_bytes=settings.max_head_bytes,
            tag_responses=settings.edge_tag_responses,
            cache_entries=settings.edge_cache_entries,
        )
        # The console's request counters (console/traffic.py): only with the console (admin API) on.
        self.traffic: Traffic | None = None
        self.asgi: ASGIApp = self.middleware
        if self.admin is not None:
            from .console.traffic import Traffic

            self.traffic = Traffic(self.middleware)
            self.asgi = self.traffic
        if self.metrics is not None:
            self.middleware.cache.on_crossing = self.metrics.observe_crossing
        # OpenTelemetry traces (observability/tracing.py, the mcpgw[otel] extra): imported only when on;
        # after the metrics' crossing hook, which the edge-crossing span chains to.
        self.tracing: Tracing | None = None
        if (mode := tracing_mode(settings.tracing)) is not None:
            from .observability.tracing import Tracing

            self.tracing = Tracing(mode)
            self.asgi = self.tracing.install(self, self.asgi)
        # Outermost: request ids, the request counters and the access log (observability/observer.py).
        self.asgi = RequestObserver(self.asgi, self.edge, self.metrics, settings.access_log)

    @property
    def engine(self) -> SessionEngine:
        return self.gateway.engine

    def install_metrics(self) -> None:
        from .observability.metrics import Metrics, MetricsEndpoint

        self.metrics = Metrics(self)
        self.metrics_endpoint = MetricsEndpoint(
            self.metrics, self.settings.metrics, self.settings.admin_token, admin_scope_check(self.settings, self.gate)
        )
        self.gateway.engine.observe = self.metrics.observe_mcp
        self.gateway.federation.observe = self.metrics.observe_upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)

    def console_overview(self) -> dict[str, Any]:
        """What the operator console polls (behind the admin credential): /health and the traffic counters."""
        return {"health": self.health(), "traffic": self.traffic.snapshot() if self.traffic is not None else None}

    def live(self) -> dict[str, int]:
        """What is running now, every transport; each count returns to zero when clients are gone."""
        live = self.gateway.live()
        return {
            "sessions": live["sessions"],
            "requests": live["requests"],
            "streams": self.transports.streams(),
            "upstream_links": live["upstream_links"],
        }

    def health(self) -> dict[str, Any]:
        edge: dict[str, Any] = {**self.edge.health(), "cache": self.middleware.cache.stats()}
        if self.registry is not None:  # admin events (who swapped what) stay behind the admin API
            edge["previous"] = public_version(self.registry.status()["previous"])
        return {
            "status": "ok",
            "version": __version__,
            "edge": edge,
            "live": self.live(),
            "limits": {
                **self.limits.health(),
                "sessions": {
                    "max_sessions_per_client": self.engine.max_sessions_per_client,
                    "max_requests_per_session": self.engine.max_requests_per_session,
                    "refused": dict(self.engine.refusals),
                },
                "events": self.transports.events.stats(),
                "listen": self.gateway.federation.listens.health() if self.gateway.federation.listens else {},
                "input_required": self.gateway.federation.interactive.health(),
            },
            "state": self.engine.sessions.health(),
            "process": workers.identity(),  # which process answered, of how many (--workers)
            "auth": self.auth_health(),
            "upstreams": self.gateway.federation.health(),
            "plugins": self.gateway.plugins.health() if self.gateway.plugins is not None else [],
            "tracing": self.tracing.health()
            if self.tracing is not None
            else {"enabled": False, "reason": off_reason(self.settings.tracing)},
            "console": self.console_health(),
            "metrics": self.metrics.health() if self.metrics is not None else {"enabled": False, "access": "off"},
        }

    def console_health(self) -> dict[str, Any]:
        """Whether the operator console is served (it is whenever the admin API is)."""
        if self.admin is not None:
            return {"enabled": True, "path": self.settings.path_prefix + "/admin/"}
        why = "the admin API is off: MCPGW_ADMIN_TOKEN is unset"
        if self.settings.admin_token:
            why = "the admin API is off: it needs wasmtime (see the start-up log)"
        return {"enabled": False, "reason": why}

    def auth_health(self) -> dict[str, Any]:
        found: dict[str, Any] = {"mode": self.settings.auth}
        if self.gate is not None:
            found.update(self.gate.health())
        if unauthenticated_exposure(self.settings):
            found["warning"] = (
                f"no authentication on a non-loopback bind ({self.settings.host}): anyone who can reach it may call "
                "every tool (--allow-unauthenticated)"
            )
        return found

    async def drain(self) -> None:
        """Shutdown, before connections close: every transport's running requests get the grace
        period, then -32603; sessions end and their streams close with `retry`."""
        await self.engine.shutdown(self.settings.shutdown_grace_s)
        for _ in range(int(WRITERS_CLOSE_S / 0.01)):  # writers see the close at their next wake-up
            if not self.transports.streams():
                break
            await asyncio.sleep(0.01)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.engine.start()
                    log.info("limits: %s", self.transports.events.describe() + "; " + self.engine.describe_caps())
                    log.info(
                        "tracing: %s",
                        self.tracing.describe() if self.tracing else f"off ({off_reason(self.settings.tracing)})",
                    )
                    if self.authenticator is not None:
                        await self.authenticator.start()  # a JWKS outage is logged, never fatal
                    self.gateway.federation.start()
                    if self.metrics is not None:
                        await self.metrics.start()
                    log.info("metrics: %s", self.metrics.describe() if self.metrics else "off (MCPGW_METRICS=off)")
                    if self.admin is not None:
                        log.info("admin API on %s", self.settings.path_prefix + "/admin/edge/")
                        log.info("operator console on %s", self.settings.path_prefix + "/admin/")
                    else:
                        log.info("operator console: off (%s)", self.console_health()["reason"])
                except Exception as exc:  # the server must hear why start-up failed
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Normally done already by the server before connections close (serving.py);
                # here for hosts that only send the lifespan event.
                await self.drain()
                await self.gateway.federation.stop()
                if self.tracing is not None:  # export what is queued (bounded by the exporter's timeout)
                    await asyncio.to_thread(self.tracing.shutdown)
                if self.authenticator is not None:
                    await self.authenticator.stop()
                if self.metrics is not None:
                    await self.metrics.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings | None = None, edge: Edge | None = None) -> App:
    return App(settings or Settings.from_env(), edge)
