"""Streamable HTTP: POST, GET and DELETE on the MCP endpoint, for every revision.

Reads the edge context from the scope and never re-parses what the edge
decided. MCP semantics live in `server/`; this module only frames them:
which status, JSON or SSE, which stream, what resumes where.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from ..asgi import Receive, Scope, Send, send_empty, send_json
from ..edge.contract import RequestContext
from ..edge.middleware import SCOPE_KEY
from ..server import jsonrpc
from ..server.context import LOG_LEVELS, CallContext
from ..server.dispatcher import (
    ALL_REVISIONS,
    BATCH_REVISIONS,
    STATELESS_REVISION,
    Dispatcher,
    negotiate,
)
from ..server.sessions import Session, SessionLimitReached, SessionStore
from ..server.stateless import LOG_LEVEL_KEY, envelope
from .event_stream import (
    SSE_KEEPALIVE,
    EventStream,
    Listener,
    parse_event_id,
    sse_event,
    sse_priming,
    sse_retry,
)
from .headers import Rejection, check_stateless_request
from .session_streams import GET_STREAM_ID, SessionStreams

log = logging.getLogger("mcpgw.http")

SESSION_NOT_FOUND = -32001  # as the MCP SDK reports an unknown session
REQUEST_CANCELLED = -32800  # a JSON response had to be sent for a request the client cancelled
# The priming event arrived with 2025-11-25. 2026-07-28 streams cannot be resumed (no GET), so
# their events carry no ids at all: a client seeing an id would try to resume and fail.
PRIMING_REVISIONS = frozenset(("2025-11-25",))
# 2026-07-28 answers errors with HTTP statuses (as the MCP SDK maps them); other revisions with 200.
STATELESS_ERROR_STATUS = {jsonrpc.PARSE_ERROR: 400, jsonrpc.INVALID_REQUEST: 400, jsonrpc.INVALID_PARAMS: 400,
                          jsonrpc.HEADER_MISMATCH: 400, jsonrpc.UNSUPPORTED_PROTOCOL_VERSION: 400,
                          jsonrpc.METHOD_NOT_FOUND: 404}
SHUTDOWN = "shutdown"

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class HttpError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: list[tuple[bytes, bytes]] | None = None,
                 data: Any = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        self.data = data


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit`."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise HttpError(413, jsonrpc.INVALID_REQUEST, f"Request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away during the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, jsonrpc.INVALID_REQUEST, f"Request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json_body(ctx: RequestContext, scope: Scope, receive: Receive, limit: int) -> Any:
    """The decoded JSON body of a POST: 415 unless it says JSON, 413 past `limit`, 400 if not JSON."""
    if ctx["content_type"] != "json":
        raise HttpError(415, jsonrpc.INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json")
    body = await read_body(scope, receive, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, jsonrpc.PARSE_ERROR, "Parse error: body is not valid JSON") from None


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def wake_or_disconnect(stream: EventStream, timeout: float | None,
                             watcher: asyncio.Future | None) -> bool | None:
    """True when the stream woke, False on timeout, None when the client went away
    (`watcher` is a `wait_disconnect` task, or None when nobody watches)."""
    if watcher is None:
        return await stream.wait(timeout)
    waiter = asyncio.ensure_future(stream.wait(timeout))
    await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if watcher.done():
        waiter.cancel()
        return None
    return waiter.result()


@dataclass(frozen=True)
class HttpOptions:
    max_body_bytes: int = 4 * 1024 * 1024
    response_mode: str = "json"  # json: JSON unless the request emits something first; sse: always SSE
    keepalive_s: float = 15.0
    retry_ms: int = 1000
    event_max: int = 1000
    event_ttl_s: float = 300.0


class Exchange:
    """The requests of one POST and the stream their messages go to."""

    def __init__(self, stream: EventStream, count: int, can_stream: bool) -> None:
        self.stream = stream
        self.pending = count
        self.can_stream = can_stream  # the client accepts SSE
        self.upgraded = False  # something other than a response was sent: this must be SSE
        self.responses: list[bytes] = []
        self.cancelled: list[Any] = []  # ids of requests cancelled without a response
        self.error_code: int | None = None  # of the last error response
        self.tasks: list[asyncio.Task] = []

    async def emit(self, message: dict[str, Any]) -> bool:
        if self.can_stream and not self.stream.done:
            self.upgraded = True
            self.stream.publish(message)
            return True
        return False  # a JSON-only client cannot receive messages before the result

    def respond(self, response: dict[str, Any] | None, id_: Any) -> None:
        if response is None:
            self.cancelled.append(id_)
        else:
            data = orjson.dumps(response)
            if "error" in response:
                self.error_code = response["error"]["code"]
            self.responses.append(data)
            self.stream.publish(data)
        self.pending -= 1
        if self.pending == 0:
            self.stream.finish()


class StreamableHTTP:
    """ASGI app for the `mcp` route."""

    def __init__(self, dispatcher: Dispatcher, sessions: SessionStore, options: HttpOptions,
                 servers: Callable[[str], Dispatcher | None] = lambda _id: None):
        self.dispatcher = dispatcher  # /mcp
        self.servers = servers  # /servers/{id}/mcp
        self.sessions = sessions
        self.options = options
        self.running: set[asyncio.Task] = set()  # every request being answered, all sessions
        self.connections = 0  # SSE responses and GET streams being written
        self.draining = False
        self._stateless_ids = itertools.count(1)
        self._stateless_prefix = "s" + secrets.token_hex(4)

    def live(self) -> dict[str, int]:
        """What is running now; every count returns to zero when clients are gone (tests read it)."""
        return {"sessions": len(self.sessions), "requests": len(self.running), "streams": self.connections}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        try:
            if ctx["route"] != "mcp":
                # The router matched a pattern the edge did not accept as an MCP
                # path (e.g. an invalid server id such as `a%2Fb`).
                raise HttpError(404, jsonrpc.INVALID_REQUEST, "Not Found")
            server_id = ctx["server_id"]
            dispatcher = self.dispatcher if server_id is None else self.servers(server_id)
            if dispatcher is None:
                raise HttpError(404, jsonrpc.INVALID_REQUEST, f"Unknown server: {server_id}")
            if ctx["protocol_state"] == "unsupported":
                raise HttpError(400, jsonrpc.UNSUPPORTED_PROTOCOL_VERSION,
                                f"Bad Request: Unsupported protocol version: {ctx['protocol_version']}",
                                data={"supported": list(ALL_REVISIONS), "requested": ctx["protocol_version"]})
            method = ctx["method"]
            stateless = ctx["revision"] == STATELESS_REVISION
            if stateless and method != "POST":
                raise HttpError(405, jsonrpc.INVALID_REQUEST,
                                f"Method {method} not allowed under {STATELESS_REVISION}", [(b"allow", b"POST")])
            if self.draining:
                raise HttpError(503, jsonrpc.INTERNAL_ERROR, "Server shutting down", [(b"retry-after", b"1")])
            if method == "POST":
                await self._post(ctx, dispatcher, scope, receive, send)
            elif method == "GET":
                await self._get(ctx, receive, send)
            elif method == "DELETE":
                session = self._session(ctx)
                self.sessions.delete(session.id)
                await send_empty(send, 204)
            else:
                raise HttpError(405, jsonrpc.INVALID_REQUEST, f"Method {method} not allowed",
                                [(b"allow", b"GET, POST, DELETE")])
        except HttpError as err:
            await send_json(send, err.status, jsonrpc.error_response(None, err.code, err.message, err.data),
                            err.headers)
        except ConnectionAbortedError:
            return  # nobody to answer; nothing was started

    # -- sessions ------------------------------------------------------------
    def _session(self, ctx: RequestContext) -> Session:
        state = ctx["session_state"]
        if state == "absent":
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
        if state == "invalid":
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: malformed Mcp-Session-Id")
        session = self.sessions.get(ctx["session_id"])  # type: ignore[arg-type]
        if session is None or session.server != ctx["server_id"]:  # a session lives on one endpoint
            raise HttpError(404, SESSION_NOT_FOUND, "Session not found")
        session.touch()
        return session

    def _streams(self, session: Session) -> SessionStreams:
        if session.attachment is None:
            session.attachment = SessionStreams(self.options.event_max, self.options.event_ttl_s)
        return session.attachment  # type: ignore[return-value]

    # -- POST ----------------------------------------------------------------
    async def _post(self, ctx: RequestContext, dispatcher: Dispatcher, scope: Scope, receive: Receive,
                    send: Send) -> None:
        json_mode = self.options.response_mode == "json"
        if not ctx["accept_json"] or not (ctx["accept_sse"] or json_mode):
            wanted = "application/json" if json_mode else "application/json and text/event-stream"
            raise HttpError(406, jsonrpc.INVALID_REQUEST, f"Not Acceptable: Accept must list {wanted}")
        payload = await read_json_body(ctx, scope, receive, self.options.max_body_bytes)
        batch = isinstance(payload, list)
        messages = payload if batch else [payload]
        kinds = [jsonrpc.classify(m) for m in messages]
        if not messages or "invalid" in kinds:
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        revision: str = ctx["revision"]  # type: ignore[assignment]
        stateless = revision == STATELESS_REVISION
        if stateless:
            if batch:
                raise HttpError(400, jsonrpc.INVALID_REQUEST,
                                f"Invalid Request: JSON-RPC batches are not supported in protocol revision {revision}")
            if kinds[0] == "response":
                raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: "
                                f"{STATELESS_REVISION} has no server-to-client requests to respond to")
            try:
                check_stateless_request(ctx, payload, (STATELESS_REVISION,))
            except Rejection as err:
                raise HttpError(400, err.code, err.message, data=err.data) from None

        initialize = [m for m, k in zip(messages, kinds) if k == "request" and m["method"] == "initialize"]
        session: Session | None = None
        extra_headers: list[tuple[bytes, bytes]] = []
        if initialize and not stateless:
            if batch:
                raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: initialize must not be batched")
            session = self._initialize(initialize[0], dispatcher, ctx["server_id"])
            extra_headers.append((b"mcp-session-id", session.id.encode()))
        elif not stateless:
            session = self._session(ctx)
            revision = session.revision
        if batch and revision not in BATCH_REVISIONS:
            raise HttpError(400, jsonrpc.INVALID_REQUEST,
                            f"Invalid Request: JSON-RPC batches are not supported in protocol revision {revision}")

        requests = []
        for message, kind in zip(messages, kinds):
            if kind == "request":
                requests.append(message)
            elif kind == "response":
                if session is not None:
                    session.resolve(message)
            else:
                self._notification(message, session, dispatcher)
        if not requests:
            await send_empty(send, 202)
            return

        if session is not None:
            streams = self._streams(session)
            stream = streams.new_stream()
        else:
            stream = EventStream(f"{self._stateless_prefix}-{next(self._stateless_ids)}",
                                 self.options.event_max, self.options.event_ttl_s)
        exchange = Exchange(stream, len(requests), ctx["accept_sse"])
        for message in requests:
            self._start(message, exchange, revision, session, dispatcher)

        if stateless:
            # 2026-07-28: the client closing the response stream cancels its requests.
            watcher = asyncio.ensure_future(wait_disconnect(receive))
            try:
                await self._respond(exchange, revision, session, receive, send, extra_headers, batch, watcher)
            finally:
                watcher.cancel()
            if watcher.done() and not watcher.cancelled():
                for task in exchange.tasks:
                    task.cancel("the client closed the stream")
        else:
            await self._respond(exchange, revision, session, receive, send, extra_headers, batch, None)

    def _initialize(self, message: dict[str, Any], dispatcher: Dispatcher, server_id: str | None) -> Session:
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        revision = negotiate(params.get("protocolVersion"))
        reason = dispatcher.unavailable()
        if reason is not None:
            raise HttpError(503, jsonrpc.INTERNAL_ERROR, reason, [(b"retry-after", b"5")])
        try:
            return self.sessions.create(revision, params.get("clientInfo"), params.get("capabilities"), server_id)
        except SessionLimitReached:
            raise HttpError(503, jsonrpc.INTERNAL_ERROR, "Too many live sessions; try again later",
                            [(b"retry-after", b"5")]) from None

    def _notification(self, message: dict[str, Any], session: Session | None, dispatcher: Dispatcher) -> None:
        method = message["method"]
        if session is None:
            return  # stateless: nothing to cancel or mark
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if method == "notifications/initialized":
            session.initialized = True
        elif method == "notifications/cancelled":
            session.cancel(params.get("requestId"))
        else:
            dispatcher.notified(method, params, session)

    def _start(self, message: dict[str, Any], exchange: Exchange, revision: str, session: Session | None,
               dispatcher: Dispatcher) -> None:
        id_ = message["id"]
        if session is not None and session.running(id_):
            exchange.respond(jsonrpc.error_response(id_, jsonrpc.INVALID_REQUEST,
                                                    f"Invalid Request: request id {id_!r} is already in use"), id_)
            return
        task = asyncio.ensure_future(self._answer(message, exchange, revision, session, dispatcher))
        exchange.tasks.append(task)
        self.running.add(task)
        if session is not None:
            session.track(id_, task)

        def finished(done: asyncio.Task) -> None:
            self.running.discard(done)
            # A task cancelled before its first step never ran its own handler: answer for it here.
            response = (self._cancelled_answer(id_, "") if done.cancelled() else done.result())
            exchange.respond(response, id_)

        task.add_done_callback(finished)

    def _cancelled_answer(self, id_: Any, reason: str) -> dict[str, Any] | None:
        if reason == SHUTDOWN or self.draining:
            return jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, "Server shutting down")
        return None  # cancelled by the client or with its session: no response (the spec's rule)

    async def _answer(self, message: dict[str, Any], exchange: Exchange, revision: str,
                      session: Session | None, dispatcher: Dispatcher) -> dict[str, Any] | None:
        id_ = message["id"]
        try:
            if message["method"] == "initialize" and session is not None:
                # (2026-07-28 has no initialize: without a session it is dispatched, and refused, like any method.)
                return jsonrpc.result_response(id_, dispatcher.initialize_result(session.revision))
            meta = envelope(message.get("params"))
            if session is not None:
                log_level = session.log_level
            else:  # 2026-07-28: logs only when this request asks for them
                requested = meta.get(LOG_LEVEL_KEY)
                log_level = requested if requested in LOG_LEVELS else None
            ctx = CallContext(id_, revision, exchange.emit, meta.get("progressToken"), log_level)
            return await dispatcher.handle(message, ctx, session)
        except asyncio.CancelledError as exc:
            return self._cancelled_answer(id_, exc.args[0] if exc.args else "")
        except Exception:
            log.exception("request %r (%s) failed", id_, message.get("method"))
            return jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, "Internal error")

    async def _respond(self, exchange: Exchange, revision: str, session: Session | None,
                       receive: Receive, send: Send,
                       extra_headers: list[tuple[bytes, bytes]], batch: bool,
                       watcher: asyncio.Future | None) -> None:
        stream = exchange.stream
        if self.options.response_mode == "json" or not exchange.can_stream:
            # Hold the decision until the first message: a lone result goes out as JSON.
            while not (exchange.upgraded or stream.done):
                stream.clear_wake()
                if await wake_or_disconnect(stream, None, watcher) is None:
                    return
            if not exchange.upgraded:
                await self._send_json_result(exchange, send, extra_headers, batch, revision)
                return
        if session is not None:
            self._streams(session).register(stream)
        own_watcher = watcher is None
        if own_watcher:
            # Sessionful: a vanished client does not cancel anything (its events wait for a
            # resume), but this connection must stop writing.
            watcher = asyncio.ensure_future(wait_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *extra_headers]})
            await self._pump(stream, 0, revision, send, watcher, prime=True, keepalive=False)
        finally:
            if own_watcher:
                watcher.cancel()

    async def _send_json_result(self, exchange: Exchange, send: Send,
                                extra_headers: list[tuple[bytes, bytes]], batch: bool, revision: str) -> None:
        responses = exchange.responses
        if not responses:
            # Every request was cancelled by the client; HTTP still needs an answer.
            first = exchange.cancelled[0]
            body = jsonrpc.error_response(first, REQUEST_CANCELLED, "Request cancelled")
            await send_json(send, 200, [body] if batch else body, extra_headers)
            return
        data = b"[" + b",".join(responses) + b"]" if batch else responses[0]
        status = 200
        if revision == STATELESS_REVISION and exchange.error_code is not None:
            status = STATELESS_ERROR_STATUS.get(exchange.error_code, 200)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode()), *extra_headers]})
        await send({"type": "http.response.body", "body": data})

    # -- GET -----------------------------------------------------------------
    async def _get(self, ctx: RequestContext, receive: Receive, send: Send) -> None:
        if not ctx["accept_sse"]:
            raise HttpError(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
        session = self._session(ctx)
        streams = self._streams(session)
        last_event_id = ctx["last_event_id"]
        if last_event_id is not None:
            parsed = parse_event_id(last_event_id)
            stream = streams.streams.get(parsed[0]) if parsed else None
            if parsed is None or stream is None or stream.after(parsed[1]) is None:
                raise HttpError(400, jsonrpc.INVALID_REQUEST,
                                f"Bad Request: Last-Event-ID {last_event_id!r} is unknown or no longer retained")
            cursor, prime = parsed[1], False
        else:
            stream = streams.get_stream()
            cursor, prime = stream.last_seq, True
        if stream.id == GET_STREAM_ID and stream.listener is not None:
            raise HttpError(409, jsonrpc.INVALID_REQUEST, "Conflict: only one GET stream per session is allowed")
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await self._pump(stream, cursor, session.revision, send, watcher, prime=prime,
                             keepalive=stream.id == GET_STREAM_ID)
        finally:
            watcher.cancel()

    # -- writing a stream ----------------------------------------------------
    async def _pump(self, stream: EventStream, cursor: int, revision: str, send: Send,
                    watcher: asyncio.Future | None, prime: bool, keepalive: bool) -> None:
        """Write `stream` from after `cursor` to this connection until it finishes, the client
        goes away, or the server ends the connection (then with `retry` first)."""
        listener = Listener()
        stream.attach(listener)
        stream.delivered(cursor)
        self.connections += 1
        body = "http.response.body"
        try:
            if prime and revision in PRIMING_REVISIONS:
                await send({"type": body, "body": sse_priming(stream.event_id(cursor)), "more_body": True})
            while True:
                stream.clear_wake()
                events = [] if listener.kicked and not listener.retry else stream.after(cursor)
                if events is None:
                    # This client fell behind the retained window: end it; on reconnect it is told.
                    await send({"type": body, "body": sse_retry(self.options.retry_ms), "more_body": False})
                    return
                if events:
                    if revision == STATELESS_REVISION:
                        chunk = b"".join(sse_event(None, data) for _, data in events)
                    else:
                        chunk = b"".join(sse_event(stream.event_id(seq), data) for seq, data in events)
                    cursor = events[-1][0]
                    await send({"type": body, "body": chunk, "more_body": True})
                    stream.delivered(cursor)
                    continue
                if listener.kicked:
                    # Replaced by a newer connection, or closed by us (then `retry` tells the client to return).
                    tail = sse_retry(self.options.retry_ms) if listener.retry else b""
                    await send({"type": body, "body": tail, "more_body": False})
                    return
                if stream.done:
                    await send({"type": body, "body": b"", "more_body": False})
                    return
                woke = await wake_or_disconnect(stream, self.options.keepalive_s if keepalive else None, watcher)
                if woke is None:
                    return  # the client went away; the stream keeps its events for a resume
                if not woke:
                    await send({"type": body, "body": SSE_KEEPALIVE, "more_body": True})
        finally:
            stream.detach(listener)
            self.connections -= 1

    # -- shutdown ------------------------------------------------------------
    async def shutdown(self, grace_s: float) -> None:
        """Refuse new work, let running requests finish for `grace_s`, then answer the rest with
        an error; close every stream with `retry` so clients know to come back."""
        if self.draining:
            return
        self.draining = True
        if self.running:
            await asyncio.wait(set(self.running), timeout=grace_s)
        for task in list(self.running):
            task.cancel(SHUTDOWN)
        if self.running:
            await asyncio.wait(set(self.running), timeout=5.0)
        self.sessions.close_all(SHUTDOWN)
        for _ in range(100):  # the streams' writers see the kick at their next wake-up
            if not self.connections:
                break
            await asyncio.sleep(0.01)
