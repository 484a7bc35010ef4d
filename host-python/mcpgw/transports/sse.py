"""Legacy HTTP+SSE (MCP 2024-11-05), still spoken by clients in the field.

`GET /sse` opens the stream: first an `endpoint` event whose data is the URL to
POST to (`/message?session_id=<id>`), then each server message as a `message`
event, with keepalives while idle (SSE comments by default, which strict clients
ignore; `MCPGW_SSE_KEEPALIVE_EVENT=true` sends a named `keepalive` event
instead). `POST /message?session_id=...` answers 202 and the response travels on
the stream. The session lives exactly as long as the stream: when the client
goes away it is reaped with its running requests. A client that falls
`MCPGW_SLOW_READER_MAX_BYTES` (or `state.events.LIVE_BACKLOG` messages) behind,
after its requests waited `MCPGW_SLOW_READER_WAIT_S` for room, is cut off: the
stream is dropped, not the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..asgi import Receive, Scope, Send, send_empty
from ..edge.contract import RequestContext
from ..edge.middleware import SCOPE_KEY
from ..server import jsonrpc
from ..server.dispatcher import Dispatcher
from ..server.engine import LimitExceeded, Refused, SessionEngine
from ..state.budget import EVENT_OVERHEAD, EventBudget
from ..state.events import EventStream
from ..state.principal import SCOPE_KEY as PRINCIPAL_KEY
from ..state.principal import same_caller
from .connection import Connection
from .http import RETRY_LATER, SESSION_NOT_FOUND, HttpError, read_json_body
from .sse_writer import SSE_HEADERS, SSE_KEEPALIVE, PumpOptions, StreamWriters, abort_of, pump, wait_disconnect
from .streamable_http import client_address, too_many

KEEPALIVE_EVENT = b"event: keepalive\ndata: \n\n"


@dataclass(frozen=True)
class SseOptions:
    keepalive_s: float
    keepalive_event: bool
    max_body_bytes: int
    retry_ms: int
    event_ttl_s: float
    path_prefix: str
    budget: EventBudget  # the process's event bytes, shared with every stream


class SseStream:
    """One GET /sse connection: the Peer of its session. Messages wait in an event stream
    that keeps nothing once written (a legacy stream cannot be resumed)."""

    name = "sse"

    def __init__(self, ttl_s: float, budget: EventBudget) -> None:
        self.events = EventStream("sse", 0, ttl_s, budget, None)
        self.open = True

    def connected(self) -> bool:
        return self.open

    async def send(self, message: dict[str, Any]) -> bool:
        if not self.open:
            return False
        data = orjson.dumps(message)
        # Backpressure: wait (bounded) for the reader to make room rather than cut it off.
        await self.events.room(len(data) + EVENT_OVERHEAD, self.events.budget.slow_reader_wait_s)
        return self.events.publish(data) is not None  # None: the stream closed meanwhile

    def close(self, reason: str) -> None:
        if self.open:
            self.open = False
            self.events.kick(retry=reason != "disconnected")
            self.events.finish()


class LegacySSE:
    def __init__(
        self,
        engine: SessionEngine,
        servers: Callable[[str | None], Dispatcher | None],
        options: SseOptions,
        writers: StreamWriters,
    ) -> None:
        self.engine = engine
        self.servers = servers
        self.options = options
        self.writers = writers
        self.connections: dict[str, Connection] = {}
        self._pump = PumpOptions(
            False,
            options.keepalive_s or None,
            KEEPALIVE_EVENT if options.keepalive_event else SSE_KEEPALIVE,
            options.retry_ms,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        try:
            if ctx["route"] == "sse":
                await self._stream(ctx, scope, receive, send)
            else:
                await self._message(ctx, scope, receive, send)
        except HttpError as err:
            await err.send(send)
        except ConnectionAbortedError:
            return

    async def _stream(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        if ctx["method"] != "GET":
            raise HttpError(
                405, jsonrpc.INVALID_REQUEST, "Method not allowed: open the stream with GET", [(b"allow", b"GET")]
            )
        if not ctx["accept_sse"]:
            raise HttpError(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
        server_id = ctx["server_id"]
        dispatcher = self.servers(server_id)
        if dispatcher is None:
            raise HttpError(404, jsonrpc.INVALID_REQUEST, f"Unknown server: {server_id}")
        peer = SseStream(self.options.event_ttl_s, self.options.budget)
        connection = Connection(peer, self.engine, dispatcher, server_id)
        try:
            session = connection.open(client_address(scope), scope.get(PRINCIPAL_KEY))
        except LimitExceeded as refused:
            raise too_many(refused) from None
        except Refused as refused:
            raise HttpError(503, jsonrpc.INTERNAL_ERROR, refused.message, RETRY_LATER) from None
        self.connections[session.id] = connection
        base = self.options.path_prefix + (f"/servers/{server_id}" if server_id else "")
        endpoint = f"{base}/message?session_id={session.id}".encode()
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send(
                {
                    "type": "http.response.body",
                    "body": b"event: endpoint\ndata: " + endpoint + b"\n\n",
                    "more_body": True,
                }
            )
            await pump(peer.events, 0, send, watcher, self.writers, self._pump, abort_of(scope))
        finally:
            watcher.cancel()
            peer.close("disconnected")
            self.connections.pop(session.id, None)
            connection.disconnected()

    async def _message(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        if ctx["method"] != "POST":
            raise HttpError(
                405, jsonrpc.INVALID_REQUEST, "Method not allowed: POST messages here", [(b"allow", b"POST")]
            )
        ids = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id")
        if not ids or not ids[0]:
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: the session_id query parameter is required")
        connection = self.connections.get(ids[0])
        if (
            connection is None
            or connection.server_id != ctx["server_id"]
            or connection.session is None
            or not same_caller(connection.session.principal, scope.get(PRINCIPAL_KEY))
        ):
            raise HttpError(404, SESSION_NOT_FOUND, "Session not found")
        message = await read_json_body(ctx, scope, receive, self.options.max_body_bytes)
        if jsonrpc.classify(message) == "invalid":
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        await connection.handle(message)
        await send_empty(send, 202)
