"""The session engine: MCP semantics for every transport, in one place.

Transports only frame. Each hands the engine what a client sent, already split
into JSON-RPC messages, and says how an answer reaches the client:

    engine.open_session(transport, server_id, dispatcher, initialize=None, client=addr) -> Session
    engine.admit(session, count)                                      (HTTP: refuse a POST past the request cap)
    engine.initialize(session, message, dispatcher) -> response     (in order, message transports)
    engine.notify(session, message, dispatcher)                       (initialized, cancelled, others)
    engine.resolve(session, message)                                  (the client's answer to our request)
    engine.submit(message, session, revision, dispatcher, emit, reply, principal=p)
    await engine.answer_now(message, session, revision, dispatcher, principal=p) -> response
                                                                      (no task: when can_answer_now says so)
    await engine.share(session)                                       (Streamable HTTP: visible to every process)
    await engine.find(session_id, transport, server_id, principal=p) -> Session | None   (bound to its principal)
    await engine.terminate(session)                                   (DELETE: ended everywhere)
    await engine.shutdown(grace_s)                                    (every transport's requests)

`emit` carries what a running request sends before its result (progress, logs,
server-to-client requests) on that request's own stream; `reply` receives the
request's response exactly once (None: cancelled by the client, which gets no
answer, as the spec says) and may return an awaitable that writes it. Which
stream, which status code, JSON or SSE: that is the transport's business.

Sessions live behind `state.registry.SessionRegistry`; the engine holds only the
running requests of this process. A shared session (`session.shared`, MCPGW_REDIS_URL) is
served by several processes: its request ids are claimed across them, and a cancellation
or an answer to a server-to-client request that is not for this process is forwarded to
the one it is for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..protocol import LATEST_SESSIONFUL, SESSIONFUL_REVISIONS
from ..state.principal import Principal, same_caller
from ..state.registry import SessionLimitReached, SessionRegistry, StateUnavailable, expire_forever
from ..state.session import Session
from . import jsonrpc
from .context import LOG_LEVELS, CallContext, Emit
from .dispatcher import Dispatcher
from .hooks import Guard, Hooks
from .stateless import CLIENT_CAPABILITIES_KEY, LOG_LEVEL_KEY, envelope

log = logging.getLogger("mcpgw.engine")

SHUTDOWN = "shutdown"  # the cancellation reason of requests the shutdown drain ends
SHUTDOWN_MESSAGE = "Server shutting down"
# After the grace period, how long cancelled requests get to write their error answers.
ANSWER_AFTER_CANCEL_S = 5.0
# Requests that change nothing: in a shared session their ids are not claimed across processes
# (the claim's round trips cost about as much again as answering a list; two lists under one id
# at once harm nothing, and a duplicate within one process is still refused).
UNCLAIMED = frozenset(
    {"ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "completion/complete"}
)
# The `data` of the error answering a request whose session state could not be reached (Redis):
# a transport that has not started its response answers it with 503 and Retry-After instead.
STATE_UNAVAILABLE = {"stateUnavailable": True, "retryAfter": 5}


async def _silent(message: dict[str, Any]) -> bool:
    return False


# The emit of a request answered at once (`answer_now`): nothing goes out before its result.
SILENT: Emit = _silent


def unavailable_answer(id_: Any, exc: Exception) -> dict[str, Any]:
    return jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, f"Session state unavailable ({exc})", STATE_UNAVAILABLE)


# The JSON-RPC error of a request or session refused by a cap (MCPGW_MAX_SESSIONS_PER_CLIENT,
# MCPGW_MAX_REQUESTS_PER_SESSION); HTTP answers it with 429 and Retry-After.
LIMIT_EXCEEDED = -32029

Response = dict[str, Any]
Reply = Callable[[Response | None], Awaitable[Any] | None]


class Refused(Exception):
    """The engine will not take a new session now (HTTP answers these with 503 and Retry-After)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LimitExceeded(Refused):
    """A client is over one of its caps (HTTP answers these with 429, `retry_after_s` and
    LIMIT_EXCEEDED)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def negotiate(requested: Any) -> str:
    """The spec's rule: the client's version if we speak it, else our latest."""
    return requested if requested in SESSIONFUL_REVISIONS else LATEST_SESSIONFUL


def _params(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params")
    return params if isinstance(params, dict) else {}


class SessionEngine:
    def __init__(
        self,
        sessions: SessionRegistry,
        idle_timeout_s: float,
        hooks: Hooks | None,
        *,
        max_sessions_per_client: int,
        max_requests_per_session: int,
    ) -> None:
        self.sessions = sessions
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions_per_client = max_sessions_per_client  # 0: no cap
        self.max_requests_per_session = max_requests_per_session  # 0: no cap
        # Sessions and requests refused by those caps (/health -> limits.refused).
        self.refusals = {"sessions_per_client": 0, "requests_per_session": 0}
        self.hooks = hooks  # the plugin chain around dispatch (None: no plugins, nothing extra on the path)
        # The auth policy at the dispatch point; set by the composition root (app.py, cli.py stdio)
        # when the config file has [auth.policy] rules naming tools, prompts or resources.
        self.access: Guard | None = None
        # OpenTelemetry (observability/tracing.py, only when tracing is on): wraps each request's answer in its span.
        self.trace: (
            Callable[[dict[str, Any], Session | None, Coroutine[Any, Any, Response | None]], Awaitable[Response | None]]
            | None
        ) = None
        # Told of every answered request (the response; None: cancelled): /metrics (observability/).
        self.observe: Callable[[dict[str, Any], Response | None], None] | None = None
        self.requests: set[asyncio.Task[Response | None]] = set()  # running, every session and transport
        self._writes: set[asyncio.Future[Any]] = set()  # answers being written by a transport
        self.draining = False
        # Called when the shutdown drain begins: long-lived requests that end gracefully on their
        # own (2026-07-28 subscriptions/listen streams) are told to, instead of waiting out the grace.
        self.on_drain: list[Callable[[], None]] = []
        self._expiry: asyncio.Task[None] | None = None

    def live(self) -> dict[str, int]:
        return {"sessions": len(self.sessions), "requests": len(self.requests)}

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        if self._expiry is None:
            self._expiry = asyncio.ensure_future(expire_forever(self.sessions, self.idle_timeout_s))
            self.sessions.start()

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new work; running requests, whatever their transport, get `grace_s` to finish,
        then are answered with -32603 "Server shutting down"; then every session ends (its
        streams close with `retry`, its connections close)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.draining:
            return
        self.draining = True
        for drain in self.on_drain:
            drain()
        if self.requests:
            await asyncio.wait(set(self.requests), timeout=grace_s)
        for task in list(self.requests):
            task.cancel(SHUTDOWN)
        deadline = time.monotonic() + ANSWER_AFTER_CANCEL_S
        while (pending := self.requests | self._writes) and time.monotonic() < deadline:
            await asyncio.wait(pending, timeout=deadline - time.monotonic())
        self.sessions.close_all(SHUTDOWN)  # here; shared sessions continue on other processes
        await self.sessions.stop()

    async def flush(self) -> None:
        """Until the answers being written now are written (bounded)."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=ANSWER_AFTER_CANCEL_S)

    # -- sessions ------------------------------------------------------------
    def open_session(
        self,
        transport: str,
        server_id: str | None,
        dispatcher: Dispatcher,
        initialize: dict[str, Any] | None = None,
        *,
        client: str | None,
        principal: Principal | None,
    ) -> Session:
        """A new session of `transport` on endpoint `server_id` for the client at address `client`
        (None: no address, stdio). With the `initialize` request it is initialized at once
        (Streamable HTTP); without, it waits for one (message transports, which name the session
        before the client speaks). Refused when draining, when the endpoint is unavailable, at
        the session cap, or (LimitExceeded) at the cap of sessions per client address."""
        if self.draining:
            raise Refused(SHUTDOWN_MESSAGE)
        if initialize is not None:
            reason = dispatcher.unavailable()
            if reason is not None:
                raise Refused(reason)
        cap = self.max_sessions_per_client
        if client is not None and cap and self.sessions.count_client(client) >= cap:
            self.sessions.make_room()  # idle ones make room before anyone is refused
            if self.sessions.count_client(client) >= cap:
                self.refusals["sessions_per_client"] += 1
                raise LimitExceeded(f"Too many live sessions from this client (limit {cap}); try again later", 5)
        params = _params(initialize) if initialize is not None else {}
        try:
            session = self.sessions.create(
                negotiate(params.get("protocolVersion")),
                transport,
                server_id,
                params.get("clientInfo"),
                params.get("capabilities"),
                client=client,
            )
        except SessionLimitReached:
            raise Refused("Too many live sessions; try again later") from None
        session.principal = principal  # bound for its life: another caller's requests never find it
        session.ready = initialize is not None
        return session

    async def share(self, session: Session) -> None:
        """Make a new session visible to every process (shared state; no-op in memory). Refused
        (the session is dropped) when shared state cannot be reached."""
        try:
            await self.sessions.persist(session)
        except StateUnavailable as exc:
            self.sessions.delete(session.id, "unavailable")
            raise Refused(f"Session state unavailable ({exc}); try again later") from None

    async def find(
        self, session_id: str, transport: str, server_id: str | None, *, principal: Principal | None
    ) -> Session | None:
        """The live session with this id, if it belongs to this transport, endpoint and caller
        (another principal's session is as unknown as a session that never existed). Raises
        StateUnavailable when shared state cannot be reached."""
        session = await self.sessions.lookup(session_id)
        if session is None or session.transport != transport or session.server != server_id:
            return None
        if not same_caller(session.principal, principal):
            return None
        session.touch()
        return session

    def find_held(
        self, session_id: str, transport: str, server_id: str | None, *, principal: Principal | None
    ) -> Session | None:
        """`find` without a coroutine for a session this process holds and shared state does not
        (in memory): the same checks. None means `find` decides (unknown here, shared, or not this
        caller's), so a caller awaits `find` only then."""
        session = self.sessions.get(session_id)
        if (
            session is None
            or session.shared
            or session.transport != transport
            or session.server != server_id
            or not same_caller(session.principal, principal)
        ):
            return None
        session.touch()
        return session

    def end(self, session: Session, reason: str) -> None:
        self.sessions.delete(session.id, reason)

    async def terminate(self, session: Session) -> None:
        """The client ended the session (DELETE): gone for every process when this returns."""
        await self.sessions.terminate(session.id, "terminated")

    def initialize(self, session: Session, message: dict[str, Any], dispatcher: Dispatcher) -> Response:
        """The answer to `initialize` on a session opened without one."""
        id_ = message["id"]
        if session.ready:
            return jsonrpc.error_response(
                id_, jsonrpc.INVALID_REQUEST, "Invalid Request: the session is already initialized"
            )
        reason = dispatcher.unavailable()
        if reason is not None:
            return jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, reason)
        params = _params(message)
        session.identify(negotiate(params.get("protocolVersion")), params.get("clientInfo"), params.get("capabilities"))
        session.ready = True
        return jsonrpc.result_response(id_, dispatcher.initialize_result(session.revision))

    def describe_caps(self) -> str:
        """The caps, for the start-up log."""
        per_client = self.max_sessions_per_client or "unlimited"
        per_session = self.max_requests_per_session or "unlimited"
        return f"{per_client} sessions per client address, {per_session} running requests per session"

    def admit(self, session: Session | None, count: int) -> None:
        """Raise LimitExceeded when `count` more requests would put `session` past the cap of
        running requests (HTTP checks a POST as a whole before any of it runs)."""
        if session is not None and self._over_request_cap(session, count):
            self.refusals["requests_per_session"] += 1
            raise LimitExceeded(self._request_cap_message(), 1)

    def _over_request_cap(self, session: Session, count: int) -> bool:
        cap = self.max_requests_per_session
        return bool(cap) and len(session.tasks) + count > cap

    def _request_cap_message(self) -> str:
        return (
            f"Too many requests running in this session (limit {self.max_requests_per_session}); "
            "retry when one has finished"
        )

    # -- messages ------------------------------------------------------------
    def notify(self, session: Session | None, message: dict[str, Any], dispatcher: Dispatcher) -> None:
        if session is None:
            return  # stateless: nothing to mark or cancel
        method = message["method"]
        params = _params(message)
        if method == "notifications/initialized":
            session.initialized = True
        elif method == "notifications/cancelled":
            request_id = params.get("requestId")
            if jsonrpc.valid_id(request_id):
                if not session.cancel(request_id) and session.shared:
                    self._background(self.sessions.forward(session, message))  # it may run elsewhere
            else:
                log.debug("notifications/cancelled without a valid requestId ignored")
        else:
            dispatcher.notified(method, params, session)

    def resolve(self, session: Session | None, message: dict[str, Any]) -> None:
        if session is not None and not session.resolve(message) and session.shared:
            self._background(self.sessions.forward(session, message))  # another process may have asked

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def submit(
        self,
        message: dict[str, Any],
        session: Session | None,
        revision: str,
        dispatcher: Dispatcher,
        emit: Emit,
        reply: Reply,
        *,
        principal: Principal | None,
        client: str | None = None,
    ) -> asyncio.Task[Response | None] | None:
        """Answer one request (never `initialize` of a session-opening POST: see open_session).
        `principal` is the caller of a request without a session (a session's is its own);
        `client` its address (a 2026-07-28 listen stream counts against that address's cap).
        Returns the running request, or None when it was answered at once."""
        id_ = message["id"]
        settled = self._settled(message, session)
        if settled is not None:
            self._reply(reply, settled)
            return None
        caller = session.principal if session is not None else principal
        answer = self._answer(message, revision, session, dispatcher, emit, caller, client)
        task = asyncio.ensure_future(answer if self.trace is None else self.trace(message, session, answer))
        self.requests.add(task)
        if session is not None:
            session.track(id_, task)

        def finished(done: asyncio.Task[Response | None]) -> None:
            self.requests.discard(done)
            # A task cancelled before its first step never ran its own handler: answer for it here.
            response = self._cancelled_answer(id_, "") if done.cancelled() else done.result()
            if self.observe is not None:
                self.observe(message, response)
            self._reply(reply, response)

        task.add_done_callback(finished)
        return task

    def _settled(self, message: dict[str, Any], session: Session | None) -> Response | None:
        """The answer to a request that is answered without running it (ping before initialize, a
        refusal: not initialized, a repeated id, the request cap, the drain), else None."""
        id_ = message["id"]
        refusal: str | None = None
        if session is not None:
            if not session.ready:
                if message["method"] == "ping":  # the one request allowed before initialize
                    return jsonrpc.result_response(id_, {})
                refusal = "Invalid Request: send initialize first"
            elif message["method"] == "initialize":
                refusal = "Invalid Request: the session is already initialized"
            elif session.running(id_):
                refusal = f"Invalid Request: request id {id_!r} is already in use"
            elif self._over_request_cap(session, 1):
                self.refusals["requests_per_session"] += 1
                return jsonrpc.error_response(id_, LIMIT_EXCEEDED, self._request_cap_message())
        if refusal is not None:
            return jsonrpc.error_response(id_, jsonrpc.INVALID_REQUEST, refusal)
        if self.draining:
            return jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, SHUTDOWN_MESSAGE)
        return None

    def can_answer_now(self, message: dict[str, Any], dispatcher: Dispatcher) -> bool:
        """Whether `answer_now` may answer this request: nothing can go to the client before its
        result (no progress token; the dispatcher says the method sends no log, notification or
        server-to-client request and waits on nothing outside this process)."""
        params = message.get("params")
        if not isinstance(params, dict):
            return dispatcher.answers_at_once(message["method"], {})
        meta = params.get("_meta")  # (`envelope` inline: a call less per request)
        if isinstance(meta, dict) and meta.get("progressToken") is not None:
            return False
        return dispatcher.answers_at_once(message["method"], params)

    async def answer_now(
        self,
        message: dict[str, Any],
        session: Session | None,
        revision: str,
        dispatcher: Dispatcher,
        *,
        principal: Principal | None,
        client: str | None = None,
    ) -> Response | None:
        """`submit` without a task, for a request `can_answer_now` accepted: it runs in the
        caller's own task (a transport's connection), which returns its response (None: cancelled
        by the client). The same refusals, observers and cancellation: while the answer runs, the
        caller's task is the request a notifications/cancelled or the shutdown drain cancels, and
        the cancellation ends with the answer (the task goes on to write it)."""
        settled = self._settled(message, session)
        if settled is not None:
            return settled
        id_ = message["id"]
        task = asyncio.current_task()
        assert task is not None
        caller = session.principal if session is not None else principal
        answer = self._answer(message, revision, session, dispatcher, SILENT, caller, client)
        cancels = task.cancelling()
        running: asyncio.Task[Response | None] = task  # (annotated, not cast(): a call per request)
        self.requests.add(running)
        if session is not None:
            session.hold(id_, task)
        try:
            response = await (answer if self.trace is None else self.trace(message, session, answer))
        except asyncio.CancelledError as exc:  # landed before the dispatch's own handler
            response = self._cancelled_answer(id_, exc.args[0] if exc.args else "")
        finally:
            self.requests.discard(running)
            if session is not None:
                session.release_hold(id_, task)
        while task.cancelling() > cancels:
            task.uncancel()  # that cancellation was the request's, and it is answered
        if self.observe is not None:
            self.observe(message, response)
        return response

    def _reply(self, reply: Reply, response: Response | None) -> None:
        pending = reply(response)
        if pending is not None:
            write = asyncio.ensure_future(pending)
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)

    def _cancelled_answer(self, id_: Any, reason: str) -> Response | None:
        if reason == SHUTDOWN or self.draining:
            return jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, SHUTDOWN_MESSAGE)
        return None  # cancelled by the client or with its session: no response (the spec's rule)

    def _answer(
        self,
        message: dict[str, Any],
        revision: str,
        session: Session | None,
        dispatcher: Dispatcher,
        emit: Emit,
        principal: Principal | None,
        client: str | None = None,
    ) -> Coroutine[Any, Any, Response | None]:
        """The coroutine that answers `message` (not a coroutine of its own: one frame less)."""
        if session is not None and session.shared and message["method"] not in UNCLAIMED:
            return self._answer_shared(message, revision, session, dispatcher, emit, principal)
        return self._dispatch(message, revision, session, dispatcher, emit, principal, client)

    async def _answer_shared(
        self,
        message: dict[str, Any],
        revision: str,
        session: Session,
        dispatcher: Dispatcher,
        emit: Emit,
        principal: Principal | None,
    ) -> Response | None:
        """A request of a shared session that may change something: it runs once its id is
        claimed across processes, and holds the claim until answered (the release is queued when
        it finishes, not awaited: a process that finds the claim before the release lands asks
        this one, which says the request is answered; docs/scale-out.md, request ids)."""
        id_ = message["id"]
        claim = self.sessions.claim(session, id_)
        try:
            # Cancelled while the claim is on its way, the claim future is cancelled with it; the
            # registry then releases the id if Redis granted it (state/shared.py, _flush).
            if not await claim:
                return jsonrpc.error_response(
                    id_, jsonrpc.INVALID_REQUEST, f"Invalid Request: request id {id_!r} is already in use"
                )
        except StateUnavailable as exc:
            return unavailable_answer(id_, exc)
        except asyncio.CancelledError as exc:  # while waiting for the claim (the dispatch answers its own)
            # Cancelled in the turn Redis granted it, before this resumed: the claim is ours, let it go.
            if (
                isinstance(claim, asyncio.Future)
                and claim.done()
                and not claim.cancelled()
                and claim.exception() is None
                and claim.result()
            ):
                self.sessions.release(session, id_)
            return self._cancelled_answer(id_, exc.args[0] if exc.args else "")
        try:
            response = await self._dispatch(message, revision, session, dispatcher, emit, principal)
            if message["method"] == "logging/setLevel" and response is not None and "result" in response:
                await self.sessions.store(session)  # every process logs at the level the client chose
            return response
        except StateUnavailable as exc:
            return unavailable_answer(id_, exc)
        finally:
            self.sessions.release(session, id_)

    async def _dispatch(
        self,
        message: dict[str, Any],
        revision: str,
        session: Session | None,
        dispatcher: Dispatcher,
        emit: Emit,
        principal: Principal | None,
        client: str | None = None,
    ) -> Response | None:
        id_ = message["id"]
        try:
            meta = envelope(message.get("params"))
            caller = principal.caller if principal is not None else ""
            if session is not None:
                capabilities = session.client_capabilities or {}
                # (Positional, in CallContext's field order: keywords cost a dataclass call ~2k
                # instructions more, on every request.)
                ctx = CallContext(
                    id_,
                    revision,
                    emit,
                    meta.get("progressToken"),
                    session.log_level,
                    client,
                    caller,
                    capabilities,
                    session.request,
                )
            else:  # 2026-07-28: logs only when this request asks for them
                requested = meta.get(LOG_LEVEL_KEY)
                log_level = requested if isinstance(requested, str) and requested in LOG_LEVELS else None
                declared = meta.get(CLIENT_CAPABILITIES_KEY)
                capabilities = declared if isinstance(declared, dict) else {}
                ctx = CallContext(
                    id_, revision, emit, meta.get("progressToken"), log_level, client, caller, capabilities
                )
            # Answered at once, the response is serialised as soon as it is returned: the
            # catalog's lists may come as pre-serialised bytes, unless something reads them first.
            ctx.lists_as_bytes = (
                emit is SILENT
                and self.access is None
                and (self.hooks is None or message["method"] not in self.hooks.methods)
            )
            if self.access is not None:  # [auth.policy]: hidden names, filtered lists (auth/access.py)
                dispatcher = self.access.guard(dispatcher, principal)
            hooks = self.hooks
            if hooks is not None and message["method"] in hooks.methods:
                # The one place plugins act, for every transport and endpoint.
                return await hooks.around(
                    message, dispatcher, session, principal, lambda m: dispatcher.handle(m, ctx, session)
                )
            return await dispatcher.handle(message, ctx, session)
        except asyncio.CancelledError as exc:
            return self._cancelled_answer(id_, exc.args[0] if exc.args else "")
        except Exception:
            log.exception("request %r (%s) failed", id_, message.get("method"))
            return jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, "Internal error")
