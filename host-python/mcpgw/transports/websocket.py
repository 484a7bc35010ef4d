"""WebSocket at /ws and /servers/{id}/ws: one JSON-RPC message per text frame, subprotocol `mcp`.

The upgrade request went through the edge like any other: a denied Origin or
Host is refused before the handshake completes (cross-site WebSocket
hijacking). A handshake that does not offer the `mcp` subprotocol is refused. A
binary frame closes the connection with 1003; a frame over the body limit is
refused by the WebSocket layer with 1009; ping/pong keepalive and its timeout
are the server's (`MCPGW_WS_PING_INTERVAL_S`, `MCPGW_WS_PING_TIMEOUT_S`). The
session lives as long as the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from ..asgi import Receive, Scope, Send
from ..edge.contract import RequestContext
from ..edge.middleware import SCOPE_KEY
from ..server.dispatcher import Dispatcher
from ..server.engine import LimitExceeded, Refused, SessionEngine
from ..state.principal import SCOPE_KEY as PRINCIPAL_KEY
from .connection import Connection
from .http import HttpError
from .streamable_http import client_address, too_many

log = logging.getLogger("mcpgw.websocket")
SUBPROTOCOL = "mcp"
UNSUPPORTED_DATA = 1003  # RFC 6455: a binary frame where only text is accepted
TRY_AGAIN_LATER = 1013
GOING_AWAY = 1001


class WebSocketConnection:
    """One accepted WebSocket: the Peer of its session."""

    name = "websocket"

    def __init__(self, send: Send) -> None:
        self._send = send
        self.open = True
        self._closing: asyncio.Task[None] | None = None

    def connected(self) -> bool:
        return self.open

    async def send(self, message: dict[str, Any]) -> bool:
        if not self.open:
            return False
        try:
            await self._send({"type": "websocket.send", "text": orjson.dumps(message).decode()})
        except Exception:  # noqa: BLE001 - the connection is gone (uvicorn raises several kinds on a closed socket)
            self.open = False
            return False
        return True

    def close(self, reason: str) -> None:
        if self.open:
            self.open = False
            self._closing = asyncio.ensure_future(self._close(GOING_AWAY, reason))

    async def _close(self, code: int, reason: str) -> None:
        # Already gone: uvicorn raises several kinds on a closed socket.
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})


async def refuse_handshake(scope: Scope, send: Send, err: HttpError) -> None:
    """Refuse an upgrade with `err` as an HTTP response when the server can send one, else
    with a refused handshake (403)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})
        return
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": err.code, "message": err.message}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *err.headers]
    await send({"type": "websocket.http.response.start", "status": err.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


class WebSocketEndpoint:
    def __init__(self, engine: SessionEngine, servers: Callable[[str | None], Dispatcher | None]) -> None:
        self.engine = engine
        self.servers = servers
        self.connections: set[Connection] = set()

    def streams(self) -> int:
        return len(self.connections)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        if (await receive())["type"] != "websocket.connect":
            return
        dispatcher = self.servers(ctx["server_id"])
        if dispatcher is None or SUBPROTOCOL not in scope.get("subprotocols", ()):
            await send({"type": "websocket.close", "code": 1008})  # before accept: the handshake gets 403
            return
        peer = WebSocketConnection(send)
        connection = Connection(peer, self.engine, dispatcher, ctx["server_id"])
        try:
            connection.open(client_address(scope), scope.get(PRINCIPAL_KEY))
        except LimitExceeded as refused:
            await refuse_handshake(scope, send, too_many(refused))
            return
        except Refused:
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})
            return
        await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
        self.connections.add(connection)
        try:
            while peer.open:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is None:
                    await peer._close(UNSUPPORTED_DATA, "binary frames are not accepted: send JSON-RPC as text")
                    break
                await connection.receive(message["text"])
        finally:
            peer.open = False
            self.connections.discard(connection)
            connection.disconnected()
