"""Streamable HTTP: POST, GET and DELETE on the MCP endpoint, for every revision.

Framing only: which status, JSON or SSE, which stream, what resumes where. It
reads the edge context from the scope and never re-parses what the edge
decided; every MCP decision (sessions, requests, cancellation, shutdown) is the
session engine's (server/engine.py).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..asgi import Receive, Scope, Send, send_empty
from ..edge.contract import RequestContext
from ..edge.middleware import SCOPE_KEY
from ..protocol import ALL_REVISIONS, BATCH_REVISIONS, PRIMING_REVISIONS, STATELESS_REVISION
from ..server import jsonrpc
from ..server.dispatcher import Dispatcher
from ..server.engine import (
    LIMIT_EXCEEDED,
    SHUTDOWN_MESSAGE,
    STATE_UNAVAILABLE,
    LimitExceeded,
    Refused,
    SessionEngine,
)
from ..state.budget import EVENT_OVERHEAD, EventBudget
from ..state.events import EventStream, parse_event_id
from ..state.principal import SCOPE_KEY as PRINCIPAL_KEY
from ..state.principal import Principal
from ..state.registry import StateUnavailable
from ..state.session import Session, request_key
from ..state.streams import GET_STREAM_ID, SessionStreams
from .headers import Rejection, check_stateless_request
from .http import RETRY_LATER, SESSION_NOT_FOUND, HttpError, check_json_type, parse_json, read_body
from .sse_writer import (
    SSE_HEADERS,
    SSE_KEEPALIVE,
    Abort,
    PumpOptions,
    StreamWriters,
    abort_of,
    pump,
    wait_disconnect,
    wake_or_disconnect,
)

if TYPE_CHECKING:
    from ..state.shared_streams import SharedEvents

TRANSPORT = "streamable-http"
JSON_CONTENT = (b"content-type", b"application/json")
REQUEST_CANCELLED = -32800  # a JSON response had to be sent for a request the client cancelled
# 2026-07-28 answers errors with HTTP statuses (as the MCP SDK maps them); other revisions with 200.
STATELESS_ERROR_STATUS = {
    jsonrpc.PARSE_ERROR: 400,
    jsonrpc.INVALID_REQUEST: 400,
    jsonrpc.INVALID_PARAMS: 400,
    jsonrpc.HEADER_MISMATCH: 400,
    jsonrpc.UNSUPPORTED_PROTOCOL_VERSION: 400,
    jsonrpc.METHOD_NOT_FOUND: 404,
}


@dataclass(frozen=True)
class HttpOptions:
    max_body_bytes: int
    response_mode: str  # json: JSON unless the request emits something first; sse: always SSE
    keepalive_s: float
    retry_ms: int
    event_max: int
    event_ttl_s: float
    budget: EventBudget  # the process's event bytes, shared with every stream


def client_address(scope: Scope) -> str | None:
    """The client's address as the HTTP server layer reports it (None: unknown)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def too_many(refused: LimitExceeded) -> HttpError:
    """A cap was hit: 429 with Retry-After and the LIMIT_EXCEEDED JSON-RPC error."""
    return HttpError(429, LIMIT_EXCEEDED, refused.message, [(b"retry-after", str(refused.retry_after_s).encode())])


class Exchange:
    """The requests of one POST and the stream their messages go to."""

    def __init__(self, stream: EventStream, ids: list[Any], can_stream: bool) -> None:
        self.stream = stream
        self.ids = ids  # of its requests
        self.pending = len(ids)
        self.can_stream = can_stream  # the client accepts SSE
        self.upgraded = False  # something other than a response was sent: this must be SSE
        self.responses: list[bytes] = []
        # A batch's JSON answer lists its responses in the order of its requests, whichever
        # finished first (JSON-RPC allows any order; one order on every process is kinder).
        self._order: dict[tuple[type, Any], list[int]] = {}
        for position, id_ in enumerate(ids):
            self._order.setdefault(request_key(id_), []).append(position)
        self._positions: list[int] = []
        self.cancelled: list[Any] = []  # ids of requests cancelled without a response
        self.error_code: int | None = None  # of the last error response
        self.state_unavailable = False  # the last error response: session state (Redis) unreachable
        self.tasks: list[asyncio.Task[Any]] = []

    def in_request_order(self) -> list[bytes]:
        return [data for _, data in sorted(zip(self._positions, self.responses, strict=True), key=lambda p: p[0])]

    async def emit(self, message: dict[str, Any]) -> bool:
        if self.can_stream and not self.stream.done:
            self.upgraded = True
            data = orjson.dumps(message)
            # Backpressure: wait (bounded) for the reader to make room rather than cut it off.
            await self.stream.room(len(data) + EVENT_OVERHEAD, self.stream.budget.slow_reader_wait_s)
            self.stream.publish(data)
            return True
        return False  # a JSON-only client cannot receive messages before the result

    def respond(self, id_: Any, response: dict[str, Any] | None) -> None:
        if response is None:
            self.cancelled.append(id_)
        else:
            data = orjson.dumps(response)
            if "error" in response:
                self.error_code = response["error"]["code"]
                self.state_unavailable = response["error"].get("data") == STATE_UNAVAILABLE
            positions = self._order.get(request_key(id_))
            self._positions.append(positions.pop(0) if positions else len(self.ids) + len(self._positions))
            self.responses.append(data)
            self.stream.publish(data)
        self.pending -= 1
        if self.pending == 0:
            self.stream.finish()


def _unknown_event_id(last_event_id: str | None) -> HttpError:
    return HttpError(
        400, jsonrpc.INVALID_REQUEST, f"Bad Request: Last-Event-ID {last_event_id!r} is unknown or no longer retained"
    )


def _session_id(ctx: RequestContext) -> str:
    """The request's session id: 400 when it sent none or a malformed one."""
    state = ctx["session_state"]
    if state == "absent":
        raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
    session_id = ctx["session_id"]
    if state == "invalid" or session_id is None:
        raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: malformed Mcp-Session-Id")
    return session_id


def _session_not_found() -> HttpError:
    return HttpError(404, SESSION_NOT_FOUND, "Session not found")


def _get_stream_conflict() -> HttpError:
    return HttpError(409, jsonrpc.INVALID_REQUEST, "Conflict: only one GET stream per session is allowed")


class StreamableHTTP:
    """ASGI app for the `mcp` route (`/mcp` and `/servers/{id}/mcp`)."""

    def __init__(
        self,
        engine: SessionEngine,
        servers: Callable[[str | None], Dispatcher | None],
        options: HttpOptions,
        writers: StreamWriters,
    ) -> None:
        self.engine = engine
        self.servers = servers  # the dispatcher of an endpoint: None for /mcp, else the virtual server id
        self.options = options
        self.writers = writers
        keepalive_s = options.keepalive_s or None
        self._session_stream = PumpOptions(True, keepalive_s, SSE_KEEPALIVE, options.retry_ms)
        self._response_stream = PumpOptions(True, None, SSE_KEEPALIVE, options.retry_ms)
        # Keepalives too: a 2026-07-28 subscriptions/listen stream is as long-lived as a GET stream.
        self._stateless_stream = PumpOptions(False, keepalive_s, SSE_KEEPALIVE, options.retry_ms)
        self._stateless_ids = itertools.count(1)
        self._stateless_prefix = "s" + secrets.token_hex(4)
        self._events: SharedEvents | None = None  # shared sessions' event store (Redis), made on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        try:
            server_id = ctx["server_id"]
            dispatcher = self.servers(server_id)
            if dispatcher is None:
                raise HttpError(404, jsonrpc.INVALID_REQUEST, f"Unknown server: {server_id}")
            if ctx["protocol_state"] == "unsupported":
                raise HttpError(
                    400,
                    jsonrpc.UNSUPPORTED_PROTOCOL_VERSION,
                    f"Bad Request: Unsupported protocol version: {ctx['protocol_version']}",
                    data={"supported": list(ALL_REVISIONS), "requested": ctx["protocol_version"]},
                )
            method = ctx["method"]
            stateless = ctx["revision"] == STATELESS_REVISION
            if stateless and method != "POST":
                raise HttpError(
                    405,
                    jsonrpc.INVALID_REQUEST,
                    f"Method {method} not allowed under {STATELESS_REVISION}",
                    [(b"allow", b"POST")],
                )
            if self.engine.draining:
                raise HttpError(503, jsonrpc.INTERNAL_ERROR, SHUTDOWN_MESSAGE, [(b"retry-after", b"1")])
            if method == "POST":
                await self._post(ctx, dispatcher, scope, receive, send)
            elif method == "GET":
                await self._get(ctx, receive, send, scope.get(PRINCIPAL_KEY), abort_of(scope))
            elif method == "DELETE":
                await self.engine.terminate(await self._session(ctx, scope.get(PRINCIPAL_KEY)))
                await send_empty(send, 204)
            else:
                raise HttpError(
                    405, jsonrpc.INVALID_REQUEST, f"Method {method} not allowed", [(b"allow", b"GET, POST, DELETE")]
                )
        except HttpError as err:
            await err.send(send)
        except StateUnavailable as exc:
            await HttpError(503, jsonrpc.INTERNAL_ERROR, f"Session state unavailable ({exc})", RETRY_LATER).send(send)
        except ConnectionAbortedError:
            return  # nobody to answer; nothing was started

    # -- sessions ------------------------------------------------------------
    async def _session(self, ctx: RequestContext, principal: Principal | None) -> Session:
        session = await self.engine.find(_session_id(ctx), TRANSPORT, ctx["server_id"], principal=principal)
        if session is None:
            raise _session_not_found()
        return session

    def _streams(self, session: Session) -> SessionStreams:
        if not isinstance(session.attachment, SessionStreams):
            if session.shared:  # MCPGW_REDIS_URL: the event store in Redis (state/shared_streams.py)
                from ..state.shared_streams import SharedStreams

                session.attachment = SharedStreams(
                    session.id,
                    self._shared_events(),
                    self.options.event_max,
                    self.options.event_ttl_s,
                    self.options.budget,
                )
            else:
                session.attachment = SessionStreams(
                    self.options.event_max, self.options.event_ttl_s, self.options.budget
                )
        return session.attachment

    def _shared_events(self) -> SharedEvents:
        if self._events is None:
            from ..state.shared import RedisSessions
            from ..state.shared_streams import SharedEvents

            assert isinstance(self.engine.sessions, RedisSessions)
            budget = self.options.budget
            self._events = SharedEvents(
                self.engine.sessions, self.options.event_max, self.options.event_ttl_s, budget.max_stream_bytes
            )
        return self._events

    # -- POST ----------------------------------------------------------------
    async def _post(
        self, ctx: RequestContext, dispatcher: Dispatcher, scope: Scope, receive: Receive, send: Send
    ) -> None:
        json_mode = self.options.response_mode == "json"
        if not ctx["accept_json"] or not (ctx["accept_sse"] or json_mode):
            wanted = "application/json" if json_mode else "application/json and text/event-stream"
            raise HttpError(406, jsonrpc.INVALID_REQUEST, f"Not Acceptable: Accept must list {wanted}")
        check_json_type(ctx)  # (read_json_body's two steps, one coroutine less)
        payload = parse_json(await read_body(scope, receive, self.options.max_body_bytes))
        batch = isinstance(payload, list)
        messages: list[Any] = payload if batch else [payload]
        kinds = [jsonrpc.classify(m) for m in payload] if batch else [jsonrpc.classify(payload)]
        if not messages or "invalid" in kinds:
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        revision = ctx["revision"] or STATELESS_REVISION  # (the edge sets it for every supported request)
        stateless = revision == STATELESS_REVISION
        if stateless:
            if batch:
                raise HttpError(
                    400,
                    jsonrpc.INVALID_REQUEST,
                    f"Invalid Request: JSON-RPC batches are not supported in protocol revision {revision}",
                )
            if kinds[0] == "response":
                raise HttpError(
                    400,
                    jsonrpc.INVALID_REQUEST,
                    f"Invalid Request: {STATELESS_REVISION} has no server-to-client requests to respond to",
                )
            try:
                check_stateless_request(ctx, payload, (STATELESS_REVISION,))
            except Rejection as err:
                raise HttpError(400, err.code, err.message, data=err.data) from None

        if batch:
            initialize = [
                m for m, k in zip(messages, kinds, strict=True) if k == "request" and m["method"] == "initialize"
            ]
        else:  # (one message: no comprehension to run)
            initialize = messages if kinds[0] == "request" and payload["method"] == "initialize" else []
        session: Session | None = None
        extra_headers: list[tuple[bytes, bytes]] = []
        if initialize and not stateless:
            if batch:
                raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: initialize must not be batched")
            try:
                session = self.engine.open_session(
                    TRANSPORT,
                    ctx["server_id"],
                    dispatcher,
                    initialize[0],
                    client=client_address(scope),
                    principal=scope.get(PRINCIPAL_KEY),
                )
                await self.engine.share(session)
            except LimitExceeded as refused:
                raise too_many(refused) from None
            except Refused as refused:
                raise HttpError(503, jsonrpc.INTERNAL_ERROR, refused.message, RETRY_LATER) from None
            extra_headers.append((b"mcp-session-id", session.id.encode()))
        elif not stateless:
            # (`_session` inline, and no coroutine at all for a session held in memory)
            principal = scope.get(PRINCIPAL_KEY)
            session_id = _session_id(ctx)
            session = self.engine.find_held(session_id, TRANSPORT, ctx["server_id"], principal=principal)
            if session is None:
                session = await self.engine.find(session_id, TRANSPORT, ctx["server_id"], principal=principal)
                if session is None:
                    raise _session_not_found()
            revision = session.revision
        if batch and revision not in BATCH_REVISIONS:
            raise HttpError(
                400,
                jsonrpc.INVALID_REQUEST,
                f"Invalid Request: JSON-RPC batches are not supported in protocol revision {revision}",
            )

        try:
            self.engine.admit(session, kinds.count("request"))
        except LimitExceeded as refused:
            raise too_many(refused) from None
        requests = []
        for message, kind in zip(messages, kinds, strict=True):
            if kind == "request":
                requests.append(message)
            elif kind == "response":
                self.engine.resolve(session, message)
            else:
                self.engine.notify(session, message, dispatcher)
        if not requests:
            await send_empty(send, 202)
            return
        if (
            not batch
            and not initialize
            and (json_mode or not ctx["accept_sse"])
            and self.engine.can_answer_now(requests[0], dispatcher)
        ):
            # Nothing will stream: answered in this connection's own task, no stream, no task.
            response = await self.engine.answer_now(
                requests[0],
                session,
                revision,
                dispatcher,
                principal=scope.get(PRINCIPAL_KEY),
                client=client_address(scope),
            )
            start, body = self._json_answer(requests[0]["id"], response, revision)
            await send(start)
            await send(body)
            return

        if session is not None:
            stream = self._streams(session).new_stream()
        else:
            stream = EventStream(
                f"{self._stateless_prefix}-{next(self._stateless_ids)}",
                self.options.event_max,
                self.options.event_ttl_s,
                self.options.budget,
                None,
            )
        exchange = Exchange(stream, [m["id"] for m in requests], ctx["accept_sse"])
        for message in requests:
            if initialize and message is initialize[0] and session is not None:
                exchange.respond(
                    message["id"],
                    jsonrpc.result_response(message["id"], dispatcher.initialize_result(session.revision)),
                )
                continue
            task = self.engine.submit(
                message,
                session,
                revision,
                dispatcher,
                exchange.emit,
                functools.partial(exchange.respond, message["id"]),
                principal=scope.get(PRINCIPAL_KEY),
                client=client_address(scope),
            )
            if task is not None:
                exchange.tasks.append(task)

        if stateless:
            # 2026-07-28: the client closing the response stream cancels its requests.
            watcher = asyncio.ensure_future(wait_disconnect(receive))
            try:
                await self._respond(
                    exchange, revision, session, receive, send, extra_headers, batch, watcher, abort_of(scope)
                )
            finally:
                watcher.cancel()
            if watcher.done() and not watcher.cancelled():
                for task in exchange.tasks:
                    task.cancel("the client closed the stream")
        else:
            await self._respond(exchange, revision, session, receive, send, extra_headers, batch, None, abort_of(scope))

    async def _respond(
        self,
        exchange: Exchange,
        revision: str,
        session: Session | None,
        receive: Receive,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]],
        batch: bool,
        watcher: asyncio.Future[Any] | None,
        abort: Abort | None,
    ) -> None:
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
            self._streams(session).register(stream, exchange.ids)
        own_watcher = watcher is None
        if watcher is None:
            # Sessionful: a vanished client does not cancel anything (its events wait for a
            # resume), but this connection must stop writing.
            watcher = asyncio.ensure_future(wait_disconnect(receive))
        options = self._stateless_stream if revision == STATELESS_REVISION else self._response_stream
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *extra_headers]})
            await pump(stream, 0, send, watcher, self.writers, options, abort, prime=revision in PRIMING_REVISIONS)
        finally:
            if own_watcher:
                watcher.cancel()

    async def _send_json_result(
        self, exchange: Exchange, send: Send, extra_headers: list[tuple[bytes, bytes]], batch: bool, revision: str
    ) -> None:
        responses = exchange.responses
        if not responses:
            # Every request was cancelled by the client; HTTP still needs an answer.
            body = orjson.dumps(jsonrpc.error_response(exchange.cancelled[0], REQUEST_CANCELLED, "Request cancelled"))
            data = b"[" + body + b"]" if batch else body
        else:
            data = b"[" + b",".join(exchange.in_request_order()) + b"]" if batch else responses[0]
        status = 200
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        if revision == STATELESS_REVISION and exchange.error_code is not None:
            status = STATELESS_ERROR_STATUS.get(exchange.error_code, 200)
        elif not batch and responses and exchange.state_unavailable:
            status = 503  # the session's shared state could not be reached: a clear "try again"
            headers += RETRY_LATER
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, *extra_headers],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _json_answer(
        self, id_: Any, response: dict[str, Any] | None, revision: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JSON answer to a single request answered at once (`_send_json_result`'s rules): its
        response start and body messages (sent by the caller: no coroutine of its own)."""
        if response is None:  # cancelled by the client; HTTP still needs an answer
            response = jsonrpc.error_response(id_, REQUEST_CANCELLED, "Request cancelled")
            error = None
        else:
            error = response.get("error")
        data = orjson.dumps(response)
        headers = [JSON_CONTENT, (b"content-length", b"%d" % len(data))]
        if error is None:  # (the common case, in one step)
            return {"type": "http.response.start", "status": 200, "headers": headers}, {
                "type": "http.response.body",
                "body": data,
            }
        status = 200
        if revision == STATELESS_REVISION:
            status = STATELESS_ERROR_STATUS.get(error["code"], 200)
        elif error.get("data") == STATE_UNAVAILABLE:
            status = 503  # the session's shared state could not be reached: a clear "try again"
            headers += RETRY_LATER
        start = {"type": "http.response.start", "status": status, "headers": headers}
        return start, {"type": "http.response.body", "body": data}

    # -- GET -----------------------------------------------------------------
    async def _get(
        self, ctx: RequestContext, receive: Receive, send: Send, principal: Principal | None, abort: Abort | None
    ) -> None:
        if not ctx["accept_sse"]:
            raise HttpError(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
        session = await self._session(ctx, principal)
        streams = self._streams(session)
        last_event_id = ctx["last_event_id"]
        if session.shared:
            await self._get_shared(session, last_event_id, receive, send, abort)
            return
        if last_event_id is not None:
            parsed = parse_event_id(last_event_id)
            stream = streams.streams.get(parsed[0]) if parsed else None
            if parsed is None or stream is None or stream.after(parsed[1]) is None:
                raise _unknown_event_id(last_event_id)
            cursor, prime = parsed[1], False
        else:
            stream = streams.get_stream()
            cursor, prime = stream.last_seq, True
        if stream.id == GET_STREAM_ID and stream.listener is not None:
            raise _get_stream_conflict()
        await self._serve_stream(stream, cursor, prime and session.revision in PRIMING_REVISIONS, receive, send, abort)

    async def _serve_stream(
        self, stream: EventStream, cursor: int, prime: bool, receive: Receive, send: Send, abort: Abort | None
    ) -> None:
        """A GET's SSE response: `stream`'s events after `cursor`, until it ends or the client leaves."""
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        options = self._session_stream if stream.id == GET_STREAM_ID else self._response_stream
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await pump(stream, cursor, send, watcher, self.writers, options, abort, prime=prime)
        finally:
            watcher.cancel()

    async def _get_shared(
        self, session: Session, last_event_id: str | None, receive: Receive, send: Send, abort: Abort | None
    ) -> None:
        """GET of a shared session: the stream comes from Redis, wherever it was written."""
        from ..state.shared_streams import ConflictError, SharedStreams

        streams = self._streams(session)
        assert isinstance(streams, SharedStreams)
        try:
            stream, cursor = await streams.reader(last_event_id)
        except LookupError:
            raise _unknown_event_id(last_event_id) from None
        except ConflictError:
            raise _get_stream_conflict() from None
        prime = last_event_id is None and session.revision in PRIMING_REVISIONS
        try:
            await self._serve_stream(stream, cursor, prime, receive, send, abort)
        finally:
            streams.stop_following(stream.id)
