"""The observability middleware: outermost on the request path, the one send wrapper per request
(the edge adds its response headers to the observer's list, `RESPONSE_HEADERS_KEY`).

    RequestObserver -> (console traffic) -> EdgeMiddleware -> Router (its RouteNote)

`RequestObserver`, for every HTTP request and WebSocket handshake:
- takes the client's well-formed `X-Request-Id` or makes one (request_id.py), returns it in the
  `X-Request-Id` response header (errors, SSE streams and WebSocket handshakes included) and
  sets it as the context's request id, so every log line written meanwhile carries it;
- counts the request in /metrics (route, method, status, transport, edge backend; latency);
- writes the access-log line (MCPGW_ACCESS_LOG).

It runs before the edge, so the edge's own answers (preflights, 403/421/431) are seen too, with
route `edge`. The route the edge decided and the caller authentication found are noted on a
`Note` put in the scope: the edge copies the scope, but the note is the same object, and
`RouteNote`, which the Router just behind the edge calls, fills it in.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..access_log import write as write_access_line
from ..asgi import ASGIApp, Receive, Scope, Send
from ..edge.middleware import RESPONSE_HEADERS_KEY
from ..state.principal import SCOPE_KEY as PRINCIPAL_KEY
from . import request_id
from .metrics import HTTP_METHODS

if TYPE_CHECKING:
    from ..edge.backend import Edge
    from .metrics import Metrics

NOTE_KEY = "mcpgw.note"


class Note:
    """What the observer learns from behind the edge: the route and the scope the Router saw
    (where authentication puts the principal)."""

    __slots__ = ("inner", "route")

    def __init__(self) -> None:
        self.route = "edge"  # unchanged when the edge answered by itself
        self.inner: Scope | None = None

    def subject(self) -> str | None:
        principal = self.inner.get(PRINCIPAL_KEY) if self.inner is not None else None
        return principal.subject if principal is not None else None


class RouteNote:
    """Behind the edge, called by the Router as it routes (a call, not one more ASGI layer): notes
    the route the edge decided (`metrics` and `admin` named for what the Router serves under route
    `other`) and the scope the Router sees."""

    def __init__(self, path_prefix: str) -> None:
        self.metrics_path = path_prefix + "/metrics"
        self.admin_prefix = path_prefix + "/admin/"

    def __call__(self, scope: Scope, route: str) -> None:
        note = scope.get(NOTE_KEY)
        if note is not None:
            if route == "other":
                path = scope["path"]
                if path == self.metrics_path:
                    route = "metrics"
                elif path.startswith(self.admin_prefix):
                    route = "admin"
            note.route = route
            note.inner = scope


class RequestObserver:
    def __init__(self, app: ASGIApp, edge: Edge, metrics: Metrics | None, access_log: bool) -> None:
        self.app = app
        self.edge = edge
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":  # (HTTP inline here: one coroutine less per request)
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        rid = request_id.from_headers(scope["headers"])
        token = request_id.current.set(request_id.Tag(rid))
        note = scope[NOTE_KEY] = Note()
        # The response's added headers: the layers behind (the edge's CORS headers and tag) put
        # theirs in this list rather than wrapping `send` again; the request id goes last.
        extra: list[tuple[bytes, bytes]] = []
        scope[RESPONSE_HEADERS_KEY] = extra
        header = (request_id.HEADER, rid.encode())
        status = 0

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra, header]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - start
            if self.metrics is not None:
                method = scope["method"]
                if method not in HTTP_METHODS:
                    method = "other"
                # (Metrics.observe_http's own body: one call less per request)
                self.metrics.http.observe((note.route, method, status, type(self.edge.backend)), seconds)
            if self.access_log:
                write_access_line(rid, scope, note.route, status, seconds, note.subject())
            note.inner = None  # (the Router's scope holds the note: a cycle the collector would have to free)
            request_id.current.reset(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counted and logged once, when the handshake is answered (a connection's lifetime is
        not a latency); `status` 101 accepted, else the refusal's."""
        rid = request_id.from_headers(scope["headers"])
        header = (request_id.HEADER, rid.encode())
        token = request_id.current.set(request_id.Tag(rid))
        note = scope[NOTE_KEY] = Note()
        start = time.perf_counter()
        answered = False

        def handshake(status: int) -> None:
            nonlocal answered
            answered = True
            if self.metrics is not None:
                self.metrics.observe_http(note.route, "GET", status, type(self.edge.backend), None)
            if self.access_log:
                write_access_line(rid, scope, note.route, status, time.perf_counter() - start, note.subject())

        async def sending(message: dict[str, Any]) -> None:
            if not answered:
                kind = message["type"]
                if kind == "websocket.accept":
                    message["headers"] = [*message.get("headers", ()), header]
                    handshake(101)
                elif kind == "websocket.http.response.start":
                    message["headers"] = [*message.get("headers", ()), header]
                    handshake(message["status"])
                elif kind == "websocket.close":
                    handshake(403)  # a refused handshake (the server answers 403)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not answered:
                handshake(0)
            request_id.current.reset(token)
