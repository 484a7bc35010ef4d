"""A message-oriented client connection (legacy HTTP+SSE, WebSocket, stdio) feeding the engine.

Such a transport implements `Peer` (how messages reach the client) and hands
every message the client sends, as it arrived, to its `Connection`, then calls
`Connection.disconnected()` once the client is gone. The connection parses and
classifies each message and passes it to the session engine; the session lives
as long as the connection. Everything MCP means happens in `server/engine.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import orjson

from ..server import jsonrpc
from ..server.dispatcher import Dispatcher
from ..server.engine import SessionEngine
from ..state.principal import Principal
from ..state.session import Session


class Peer(Protocol):
    """The outbound half of one client connection."""

    name: str  # "sse", "websocket", "stdio"

    def connected(self) -> bool: ...
    async def send(self, message: dict[str, Any]) -> bool: ...  # False: it could not be delivered
    def close(self, reason: str) -> None: ...  # the server ends the connection


class PeerAttachment:
    """Makes a peer its session's attachment (`state.session.Attachment`)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def busy(self) -> bool:
        return self.peer.connected()

    def close(self, reason: str) -> None:
        self.peer.close(reason)

    async def send(self, message: dict[str, Any]) -> bool:
        return await self.peer.send(message)


class Connection:
    """The MCP session of one message-oriented connection."""

    def __init__(self, peer: Peer, engine: SessionEngine, dispatcher: Dispatcher, server_id: str | None) -> None:
        self.peer = peer
        self.engine = engine
        self.dispatcher = dispatcher
        self.server_id = server_id
        self.session: Session | None = None

    def open(self, client: str | None = None, principal: Principal | None = None) -> Session:
        """Create the session, for the client at address `client` (None: stdio) authenticated as
        `principal` (None: auth off), before `initialize` (legacy SSE names it in the endpoint
        URL). Raises engine.Refused."""
        if self.session is None:
            self.session = self.engine.open_session(
                self.peer.name, self.server_id, self.dispatcher, client=client, principal=principal
            )
            self.session.attachment = PeerAttachment(self.peer)
        return self.session

    async def receive(self, data: bytes | str) -> None:
        """One message from the client, as it arrived."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            await self._send(jsonrpc.error_response(None, jsonrpc.PARSE_ERROR, "Parse error: not valid JSON"))
            return
        await self.handle(message)

    async def handle(self, message: Any) -> None:
        """One decoded message from the client."""
        session = self.session
        kind = jsonrpc.classify(message)
        if kind == "invalid" or session is None:
            await self._send(
                jsonrpc.error_response(
                    None,
                    jsonrpc.INVALID_REQUEST,
                    "Invalid Request: not a JSON-RPC 2.0 message (batches are not supported here)",
                )
            )
        elif kind == "response":
            self.engine.resolve(session, message)
        elif kind == "notification":
            self.engine.notify(session, message, self.dispatcher)
        elif message["method"] == "initialize" and not session.ready:
            # In order: what follows it may rely on the session being initialized.
            await self._send(self.engine.initialize(session, message, self.dispatcher))
        else:
            self.engine.submit(
                message,
                session,
                session.revision,
                self.dispatcher,
                self.peer.send,
                self._reply,
                principal=session.principal,
            )

    def _reply(self, response: dict[str, Any] | None) -> Any:
        return None if response is None else self.peer.send(response)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.peer.send(message)

    def running(self) -> int:
        return len(self.session.tasks) if self.session is not None else 0

    async def finish(self, grace_s: float) -> None:
        """The client will send nothing more (stdio at EOF): running requests get `grace_s`
        to finish and be answered; what outlives it is cancelled with the session."""
        if self.session is not None and self.session.tasks:
            await asyncio.wait(set(self.session.tasks.values()), timeout=grace_s)
        await self.engine.flush()
        self.disconnected()

    def disconnected(self) -> None:
        """The client is gone: its session ends with it (running requests cancelled, links closed)."""
        if self.session is not None:
            self.engine.end(self.session, "disconnected")
            self.session = None
