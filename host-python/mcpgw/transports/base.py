"""The one Transport API every client transport implements, and the session engine they share.

A transport is one client connection that can carry server-to-client messages:

    class Transport(Protocol):
        name: str                                         # "sse", "websocket", "stdio", ...
        def connected(self) -> bool: ...
        async def send(self, message: dict) -> bool: ...  # False: it could not be delivered
        def close(self, reason: str) -> None: ...         # the server ends the connection

Inbound, a message-oriented transport (legacy HTTP+SSE, WebSocket, stdio) hands
every message it receives, as the client's bytes, to its `Channel`, and calls
`Channel.disconnected()` once the client is gone. The channel parses and
classifies the message, creates the session on `initialize`, dispatches
requests to the same `Dispatcher` and `SessionStore` Streamable HTTP uses (so
the catalog, federation and relay are the same on every transport), sends each
response through `Transport.send`, applies `notifications/cancelled`, and
resolves the client's answers to server-to-client requests. The transport is
the session's attachment, so notifications, logs and server-to-client requests
reach the client over whatever carries it.

Streamable HTTP keeps its own inbound half (one HTTP exchange per POST, batches,
JSON-or-SSE answers, resumable streams; streamable_http.py), and its outbound
half, `SessionStreams`, is the same `send`/`close` shape.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson

from ..server import jsonrpc
from ..server.context import CallContext
from ..server.dispatcher import Dispatcher, negotiate
from ..server.sessions import Session, SessionLimitReached, SessionStore
from ..server.stateless import envelope

log = logging.getLogger("mcpgw.transports")


class Transport(Protocol):
    name: str

    def connected(self) -> bool: ...
    async def send(self, message: dict[str, Any]) -> bool: ...
    def close(self, reason: str) -> None: ...


class SessionAttachment:
    """Makes a transport the session's attachment (sessions.Attachment)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def busy(self) -> bool:
        return self.transport.connected()

    def close(self, reason: str) -> None:
        self.transport.close(reason)

    async def send(self, message: dict[str, Any]) -> bool:
        return await self.transport.send(message)


class Channel:
    """The MCP session of one message-oriented connection."""

    def __init__(self, transport: Transport, dispatcher: Dispatcher, sessions: SessionStore,
                 server_id: str | None = None) -> None:
        self.transport = transport
        self.dispatcher = dispatcher
        self.sessions = sessions
        self.server_id = server_id
        self.session: Session | None = None
        self.ready = False  # initialize answered
        self.tasks: set[asyncio.Task] = set()

    def open_session(self) -> Session:
        """Create the session before `initialize` (legacy SSE names it in the endpoint URL)."""
        if self.session is None:
            self.session = self.sessions.create(negotiate(None), server=self.server_id)
            self.session.attachment = SessionAttachment(self.transport)
        return self.session

    async def receive(self, data: bytes | str) -> None:
        """One message from the client, as it arrived."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            await self._error(None, jsonrpc.PARSE_ERROR, "Parse error: not valid JSON")
            return
        await self.handle(message)

    async def handle(self, message: Any) -> None:
        """One decoded message from the client."""
        kind = jsonrpc.classify(message)
        if kind == "invalid":
            await self._error(None, jsonrpc.INVALID_REQUEST,
                              "Invalid Request: not a JSON-RPC 2.0 message (batches are not supported here)")
        elif kind == "response":
            if self.session is not None:
                self.session.resolve(message)
        elif kind == "notification":
            self._notification(message)
        elif message["method"] == "initialize":
            await self._initialize(message)  # in order: what follows it may rely on the session
        else:
            self._request(message)

    def _notification(self, message: dict[str, Any]) -> None:
        session = self.session
        if session is None:
            return
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        method = message["method"]
        if method == "notifications/initialized":
            session.initialized = True
        elif method == "notifications/cancelled":
            session.cancel(params.get("requestId"))
        else:
            self.dispatcher.notified(method, params, session)

    def _request(self, message: dict[str, Any]) -> None:
        id_ = message["id"]
        if message["method"] == "ping" and not self.ready:  # the one request allowed before initialize
            task = asyncio.ensure_future(self.transport.send(jsonrpc.result_response(id_, {})))
        elif self.session is None or not self.ready:
            task = asyncio.ensure_future(self._error(id_, jsonrpc.INVALID_REQUEST,
                                                     "Invalid Request: send initialize first"))
        elif self.session.running(id_):
            task = asyncio.ensure_future(self._error(id_, jsonrpc.INVALID_REQUEST,
                                                     f"Invalid Request: request id {id_!r} is already in use"))
        else:
            task = asyncio.ensure_future(self._answer(message, self.session))
            self.session.track(id_, task)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _initialize(self, message: dict[str, Any]) -> None:
        id_ = message["id"]
        if self.ready:
            await self._error(id_, jsonrpc.INVALID_REQUEST, "Invalid Request: the session is already initialized")
            return
        reason = self.dispatcher.unavailable()
        if reason is not None:
            await self._error(id_, jsonrpc.INTERNAL_ERROR, reason)
            return
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        try:
            session = self.open_session()
        except SessionLimitReached:
            await self._error(id_, jsonrpc.INTERNAL_ERROR, "Too many live sessions; try again later")
            return
        session.identify(negotiate(params.get("protocolVersion")), params.get("clientInfo"), params.get("capabilities"))
        self.ready = True
        await self.transport.send(jsonrpc.result_response(id_, self.dispatcher.initialize_result(session.revision)))

    async def _answer(self, message: dict[str, Any], session: Session) -> None:
        id_ = message["id"]
        try:
            ctx = CallContext(id_, session.revision, self.transport.send,
                              envelope(message.get("params")).get("progressToken"), session.log_level)
            response = await self.dispatcher.handle(message, ctx, session)
        except asyncio.CancelledError:
            return  # cancelled by the client or with its session: no response (the spec's rule)
        except Exception:
            log.exception("request %r (%s) failed", id_, message.get("method"))
            response = jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, "Internal error")
        await self.transport.send(response)

    async def _error(self, id_: Any, code: int, message: str) -> None:
        await self.transport.send(jsonrpc.error_response(id_, code, message))

    def disconnected(self) -> None:
        """The client is gone: its session ends with it (running requests cancelled, links closed)."""
        if self.session is not None:
            self.sessions.delete(self.session.id, "disconnected")
            self.session = None
        for task in list(self.tasks):
            task.cancel("disconnected")

    async def drain(self, grace_s: float) -> None:
        """Let running requests finish for `grace_s` (stdio at EOF), then cancel the rest."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace_s)
        for task in list(self.tasks):
            task.cancel("shutting down")
