"""Legacy HTTP+SSE (MCP 2024-11-05), still spoken by clients in the field.

`GET /sse` opens the stream: first an `endpoint` event whose data is the URL to
POST to (`/message?session_id=<id>`), then each server message as a `message`
event, with keepalives while idle (SSE comments by default, which strict clients
ignore; `MCPGW_SSE_KEEPALIVE_EVENT=true` sends a named `keepalive` event
instead). `POST /message?session_id=...` answers 202 and the response travels on
the stream. The session lives exactly as long as the stream: when the client
goes away it is reaped with its running requests. A client that stops reading
is cut off once `QUEUE_LIMIT` messages wait for it: the stream is dropped, not
the gateway.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..asgi import Receive, Scope, Send, send_empty, send_json
from ..edge.contract import RequestContext
from ..edge.middleware import SCOPE_KEY
from ..gateway import Gateway
from ..server import jsonrpc
from ..server.sessions import SessionLimitReached
from .base import Channel
from .event_stream import SSE_KEEPALIVE
from .streamable_http import SESSION_NOT_FOUND, SSE_HEADERS, HttpError, read_json_body, wait_disconnect

QUEUE_LIMIT = 10_000
KEEPALIVE_EVENT = b"event: keepalive\ndata: \n\n"


@dataclass(frozen=True)
class SseOptions:
    keepalive_s: float = 15.0
    keepalive_event: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    path_prefix: str = ""


class SseStream:
    """One GET /sse connection: the Transport of its session."""

    name = "sse"

    def __init__(self) -> None:
        self.pending: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.open = True
        self.overflowed = False

    def connected(self) -> bool:
        return self.open

    async def send(self, message: dict[str, Any]) -> bool:
        if not self.open:
            return False
        if len(self.pending) >= QUEUE_LIMIT:
            self.overflowed = True
            self.close("the client stopped reading")
            return False
        self.pending.append(b"event: message\ndata: " + orjson.dumps(message) + b"\n\n")
        self.wake.set()
        return True

    def close(self, reason: str) -> None:
        self.open = False
        self.wake.set()


class LegacySSE:
    def __init__(self, gateway: Gateway, options: SseOptions) -> None:
        self.gateway = gateway
        self.options = options
        self.channels: dict[str, Channel] = {}

    def live(self) -> dict[str, int]:
        return {"streams": len(self.channels), "requests": sum(len(c.tasks) for c in self.channels.values())}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        try:
            if ctx["route"] == "sse":
                await self._stream(ctx, receive, send)
            else:
                await self._message(ctx, scope, receive, send)
        except HttpError as err:
            await send_json(send, err.status, jsonrpc.error_response(None, err.code, err.message, err.data),
                            err.headers)
        except ConnectionAbortedError:
            return

    async def _stream(self, ctx: RequestContext, receive: Receive, send: Send) -> None:
        if ctx["method"] != "GET":
            raise HttpError(405, jsonrpc.INVALID_REQUEST, "Method not allowed: open the stream with GET",
                            [(b"allow", b"GET")])
        if not ctx["accept_sse"]:
            raise HttpError(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
        server_id = ctx["server_id"]
        dispatcher = self.gateway.server(server_id)
        if dispatcher is None:
            raise HttpError(404, jsonrpc.INVALID_REQUEST, f"Unknown server: {server_id}")
        stream = SseStream()
        channel = Channel(stream, dispatcher, self.gateway.sessions, server_id)
        try:
            session = channel.open_session()
        except SessionLimitReached:
            raise HttpError(503, jsonrpc.INTERNAL_ERROR, "Too many live sessions; try again later",
                            [(b"retry-after", b"5")]) from None
        self.channels[session.id] = channel
        base = self.options.path_prefix + (f"/servers/{server_id}" if server_id else "")
        endpoint = f"{base}/message?session_id={session.id}".encode()
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        keepalive = KEEPALIVE_EVENT if self.options.keepalive_event else SSE_KEEPALIVE
        body = "http.response.body"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send({"type": body, "body": b"event: endpoint\ndata: " + endpoint + b"\n\n", "more_body": True})
            while stream.open:
                if stream.pending:
                    chunk = b"".join(stream.pending)
                    stream.pending.clear()
                    await send({"type": body, "body": chunk, "more_body": True})
                    continue
                stream.wake.clear()
                waiter = asyncio.ensure_future(stream.wake.wait())
                await asyncio.wait({waiter, watcher}, timeout=self.options.keepalive_s or None,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if watcher.done():
                    return
                if not stream.wake.is_set():
                    await send({"type": body, "body": keepalive, "more_body": True})
            await send({"type": body, "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            stream.close("disconnected")
            self.channels.pop(session.id, None)
            channel.disconnected()

    async def _message(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        if ctx["method"] != "POST":
            raise HttpError(405, jsonrpc.INVALID_REQUEST, "Method not allowed: POST messages here",
                            [(b"allow", b"POST")])
        ids = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id")
        if not ids or not ids[0]:
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: the session_id query parameter is required")
        channel = self.channels.get(ids[0])
        if channel is None or channel.server_id != ctx["server_id"]:
            raise HttpError(404, SESSION_NOT_FOUND, "Session not found")
        message = await read_json_body(ctx, scope, receive, self.options.max_body_bytes)
        if jsonrpc.classify(message) == "invalid":
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        await channel.handle(message)
        await send_empty(send, 202)
