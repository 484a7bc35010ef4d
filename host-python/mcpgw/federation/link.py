"""One client connection to one upstream MCP server, made with the `mcp` SDK.

The SDK's `ClientSession` does the handshake and turns the upstream's requests
(sampling, elicitation, roots) and notifications into callbacks. Requests we
relay do not go through its JSON-RPC dispatcher: the link writes each to the
transport itself and its pump takes the answer off the wire by our request id
(a future per request; progress handed to the request's callback in arrival
order), so the upstream's results reach the client as raw dicts, not
re-validated into whatever shape the SDK knows, and cost no memory stream, task
or span of the dispatcher's. (With a tracer provider set they take the same
path inside the span the dispatcher would open for each: `_traced`.)

A link lives in its own task (the SDK's transports are context managers); it
ends when the upstream goes away (EOF, process exit, a refused HTTP connection),
when the upstream no longer knows its session (HTTP 404, or 400 naming the session, to a
request carrying the session id: the upstream restarted or expired it), or when it is closed.

With several gateway processes (scale-out), a link to a Streamable HTTP upstream may re-attach an
upstream session another process opened (`Attach`: its id and initialize result, no handshake of
its own), and leaves it open when it closes (`keep_session`) unless its session ended here.

Errors say whose fault they are: what the SDK's transport synthesises (a stream that
ended without a response, a refused connection) is reported in the gateway's words
(`UpstreamUnavailable`, with `data.upstream`); only what the upstream itself answered
passes through unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import anyio
import httpx2
import mcp_types as types
from mcp.client import Transport
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import StreamableHTTPTransport
from mcp.shared._context_streams import create_context_streams
from mcp.shared._httpx_utils import MCP_DEFAULT_TIMEOUT
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types.jsonrpc import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse
from opentelemetry.trace import Span, StatusCode
from pydantic import ValidationError

from .. import __version__
from ..observability import mcp_sdk_spans
from ..server.jsonrpc import INTERNAL_ERROR, JsonRpcError
from .config import UpstreamConfig
from .http_stream import http_transport
from .inbox import Inbox
from .shttp_client import StreamableHttpClient, lean_client_covers
from .sse_client import legacy_sse_client
from .stdio_client import stdio_client

log = logging.getLogger("mcpgw.federation")

# 2026-07-28 envelope keys describe the downstream client's request, not ours.
ENVELOPE_PREFIX = "io.modelcontextprotocol/"
ProgressFn = ProgressFnT  # (progress, total, message) -> None, awaited


PING_TIMEOUT_FALLBACK_S = 10.0  # a health ping's bound when connect_timeout_s is 0
SESSION_HEADER = "mcp-session-id"
# What the SDK's client transports answer in the upstream's name when the connection, not the
# upstream, failed (mcp 2.3.0, code -32000 CONNECTION_CLOSED): reported as the gateway's.
_TRANSPORT_MESSAGES = (
    "Connection closed",
    "SSE stream ended",
    "SSE stream failed",
    "server answered a request with 202",
    "Server returned an error response",
    "Failed to parse",
    "Unexpected content type",
)


# Notifications the SDK's client session drops as not in its surface for the negotiated version
# (mcp 2.3.0 leaves 2025-11-25 tasks to extensions): taken off the wire before it sees them.
SDK_DROPS = frozenset({"notifications/tasks/status"})

# Notifications relayed by the link itself as they arrive, not through the SDK's session (which hands
# each to a task of its own): a log line the upstream wrote before a call's result reaches the client
# before that result.
RELAYED_IN_ORDER = frozenset({"notifications/message"})

# Requests that wait by design, not bounded by call_timeout_s: tasks/result blocks until its task
# ends, however long that is (as it would directly). A dead or hung network upstream still fails
# it (its catalog connection's pings end the session connections); a client can cancel it.
WAITS_BY_DESIGN = frozenset({"tasks/result"})

GET_OPEN_WAIT_S = 2.0  # how long a new link waits for its GET stream to be answered (then opens anyway)
CANCEL_WRITE_S = 5.0  # a courtesy notifications/cancelled is given this long to go out (the SDK's bound)
_CLOSED = types.ErrorData(code=types.CONNECTION_CLOSED, message="Connection closed")  # what waiters get at the end

OVERSIZED: collections.Counter[str] = collections.Counter()  # upstream id -> messages skipped as too large (/health)


class UpstreamUnavailable(JsonRpcError):
    """The upstream cannot take the request: not connected, gone mid-call, or too slow."""

    def __init__(self, upstream: str, reason: str):
        super().__init__(INTERNAL_ERROR, f"Upstream {upstream!r} {reason}", {"upstream": upstream})
        self.reason = reason


class UpstreamTimeout(UpstreamUnavailable):
    """The upstream did not answer within the call's bound."""


class UpstreamSessionLost(UpstreamUnavailable):
    """The upstream refused the request because it no longer knows the link's session (HTTP 404):
    the request was not run, so it may be sent again on a new link."""


@dataclass(slots=True)
class _Waiting:
    """A request the link relayed itself (not through the SDK's dispatcher), awaiting its answer:
    resolved by the pump with the raw result or the error; its progress handed to `on_progress`
    in tasks chained one after the other (`handing`, the last), so the pump never waits for it."""

    answer: asyncio.Future[dict[str, Any] | types.ErrorData]
    on_progress: ProgressFn | None
    written: bool = False  # the request went out (a cancellation is then sent upstream)
    handing: asyncio.Task[None] | None = None  # the last progress handed on, done or not

    def sent(self) -> None:
        self.written = True


class _Answered(Exception):
    """The upstream answered a traced request with an error: raised once the SDK's span is closed."""

    def __init__(self, error: types.ErrorData) -> None:
        self.error = error


def _raise(error: types.ErrorData) -> NoReturn:
    """An error answer raised as the SDK's dispatcher raises it."""
    raise MCPError(error.code, error.message, error.data)


@dataclass(frozen=True)
class Attach:
    """An upstream session another gateway process opened for the same client session (scale-out,
    docs/scale-out.md): re-attached by its `Mcp-Session-Id`, with no `initialize` of its own."""

    session_id: str  # the upstream's Mcp-Session-Id
    init_result: dict[str, Any]  # what the upstream answered to the opener's initialize
    hold_get: bool  # this link holds the upstream session's GET stream (one process does)


class LinkHandler(Protocol):
    """Where a link delivers what the upstream sends on its own initiative."""

    async def upstream_notification(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> None: ...
    async def upstream_request(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> dict[str, Any]: ...


def describe(exc: BaseException) -> str:
    """A one-line reason, reaching into the exception groups anyio raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def _request_ids(request: httpx2.Request) -> set[str]:
    """The JSON-RPC request ids of a POST body (one message, or a batch)."""
    try:
        body = json.loads(request.content or b"null")
    except (ValueError, httpx2.RequestNotRead):
        return set()
    messages = body if isinstance(body, list) else [body]
    return {str(m["id"]) for m in messages if isinstance(m, dict) and "id" in m and "method" in m}


class _Watchful(httpx2.AsyncBaseTransport):
    """The HTTP transport under an upstream link: tells the link when the upstream refuses the
    connection or answers 404 to a request carrying the link's session id."""

    def __init__(self, link: UpstreamLink) -> None:
        self.link = link
        self.inner = http_transport(link.config.url or "")  # plain HTTP: over asyncio streams (http_stream.py)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        get_stream = request.method == "GET" and self.link.config.transport == "streamable-http"
        if get_stream:
            # The stream of what the upstream says on its own: silence is normal there, and the
            # SDK gives it up for good after two read timeouts (resource updates then stop
            # silently). A dead upstream is found by the catalog connection's pings instead.
            request.extensions["timeout"] = {**request.extensions.get("timeout", {}), "read": None}
        try:
            response = await self.inner.handle_async_request(request)
        except httpx2.ConnectError as exc:
            self.link.lose(f"refused the connection ({describe(exc)})")
            raise
        finally:
            if get_stream:
                self.link._get_answered.set()  # answered (the upstream now holds it) or failed
        if response.status_code == 404 and request.headers.get(SESSION_HEADER):
            self.link.refused |= _request_ids(request)
            self.link.lose("lost its session (HTTP 404: the upstream restarted or ended it)", session=True)
        elif response.status_code == 400 and request.headers.get(SESSION_HEADER):
            # Some servers (the TypeScript SDK's) refuse a session id they do not know with 400
            # "No valid session ID provided", not 404: the same loss when the answer says so.
            head = await _head(response)
            if b"session" in head.lower():
                self.link.refused |= _request_ids(request)
                self.link.lose("lost its session (HTTP 400 naming the session: the upstream restarted)", session=True)
        kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if request.method == "POST" and kind == "application/json":
            # A JSON answer is read whole by the SDK: bounded here as SSE events are by the SDK.
            response.stream = _Capped(response.stream, self.link, request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


REFUSAL_HEAD_BYTES = 64 * 1024  # of a 400 answer, read to see whether it is about the session


async def _head(response: httpx2.Response) -> bytes:
    """The first bytes of a response's body; the body still reads whole afterwards."""
    stream = response.stream
    if not isinstance(stream, httpx2.AsyncByteStream):
        return b""
    chunks = aiter(stream)
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= REFUSAL_HEAD_BYTES:
            break
    response.stream = _Replayed(head, chunks, stream)
    return head[:REFUSAL_HEAD_BYTES]


class _Replayed(httpx2.AsyncByteStream):
    def __init__(self, head: bytes, rest: AsyncIterator[bytes], inner: Any) -> None:
        self.head, self.rest, self.inner = head, rest, inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        async for chunk in self.rest:
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Capped(httpx2.AsyncByteStream):
    """A response body read up to the link's `max_message_bytes`; past it the read fails (the SDK
    answers the request it carried with an error) and the link is told which requests those were
    (read from the request's body then: parsing it for every answer cost a relayed call ~1%)."""

    def __init__(self, inner: Any, link: UpstreamLink, request: httpx2.Request) -> None:
        self.inner, self.link, self.request = inner, link, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size, limit = 0, int(self.link.config.max_message_bytes)
        async for chunk in self.inner:
            size += len(chunk)
            if size > limit:
                ids: list[str | None] = [*sorted(_request_ids(self.request))] or [None]
                for request_id in ids:
                    self.link.oversized(request_id, size)
                raise httpx2.StreamError(f"a JSON answer over {limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


# The client capabilities a session connection can carry: server-to-client requests the gateway
# relays (sampling, elicitation, roots, with every sub-capability as the client declared it) and
# `experimental` (its notifications are relayed). Not `tasks` (the client's own tasks, for
# task-augmented sampling or elicitation: not relayed) or `extensions`.
RELAYABLE_CAPABILITIES = ("sampling", "elicitation", "roots", "experimental")


def relayable(declared: dict[str, Any]) -> dict[str, Any]:
    """The client's declared capabilities, exactly, intersected with what the gateway relays."""
    return {key: copy.deepcopy(declared[key]) for key in RELAYABLE_CAPABILITIES if isinstance(declared.get(key), dict)}


class _RelayingClientSession(ClientSession):
    """The SDK's client session, offering the upstream what the downstream client declared (the SDK
    would rebuild capabilities from which callbacks exist: dropping sampling.tools, sampling.context
    and experimental, adding elicitation.url and roots.listChanged)."""

    def __init__(self, offered: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._offered = types.ClientCapabilities.model_validate(offered)

    def _build_capabilities(self, version: str) -> types.ClientCapabilities:
        return self._offered


STDERR_LINES_PER_S = 20.0  # a stdio upstream's stderr lines logged per second (bursts of up to 100)
STDERR_BURST = 100
STDERR_LINE_MAX = 2000  # characters of one line kept


class StderrLog:
    """A stdio upstream's stderr, into the gateway's log line by line, prefixed with the upstream's
    id and connection, rate-limited (a token bucket; what was dropped is counted in the next line
    and when the stream ends). A thread reads the pipe: the SDK hands the fd to the child process."""

    def __init__(self, upstream: str, label: str) -> None:
        self.prefix = f"upstream {upstream} ({label}) stderr"
        read_fd, write_fd = os.pipe()
        self.file = os.fdopen(write_fd, "w")  # the child's stderr; closed here once the child has it
        self._thread = threading.Thread(target=self._pump, args=(read_fd,), name=self.prefix, daemon=True)
        self._thread.start()

    def _pump(self, read_fd: int) -> None:
        tokens, last, dropped = float(STDERR_BURST), time.monotonic(), 0
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                now = time.monotonic()
                tokens = min(float(STDERR_BURST), tokens + (now - last) * STDERR_LINES_PER_S)
                last = now
                if tokens < 1:
                    dropped += 1
                    continue
                tokens -= 1
                line = raw.decode("utf-8", "replace").rstrip()[:STDERR_LINE_MAX]
                if dropped:
                    log.warning("%s: (%d lines dropped: rate limit)", self.prefix, dropped)
                    dropped = 0
                log.info("%s: %s", self.prefix, line)
        if dropped:
            log.warning("%s: (%d lines dropped: rate limit)", self.prefix, dropped)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True) if model is not None else {}


def outgoing_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The client's params minus what only described its own request to us."""
    params = dict(params or {})
    meta = params.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith(ENVELOPE_PREFIX) and k != "progressToken"}
        if kept:
            params["_meta"] = kept
        else:
            del params["_meta"]
    return params


class UpstreamLink:
    # OpenTelemetry (observability/tracing.py, only when tracing is on): a span per relayed request,
    # yielding the headers that carry its context. Process-wide, like the tracer provider itself.
    trace: Callable[[str, str, str, dict[str, Any] | None], AbstractContextManager[dict[str, str]]] | None = None

    def __init__(
        self,
        config: UpstreamConfig,
        handler: LinkHandler | None = None,
        client_capabilities: dict[str, Any] | None = None,
        label: str = "shared",
        auth: httpx2.Auth | None = None,
        attach: Attach | None = None,
        shared: bool = False,
    ) -> None:
        self.config = config
        # Scale-out (a client session several gateway processes serve): an upstream session to
        # re-attach instead of initializing one; request ids unique across processes (every
        # process re-attached to one upstream session sends on it); the upstream session left
        # open when this link closes (keep_session: another process may still use it).
        self.attach = attach
        self.keep_session = shared
        self.upstream_session: str | None = attach.session_id if attach else None  # its Mcp-Session-Id
        self.holds_get = attach is None or attach.hold_get  # the upstream session's GET stream is ours
        self._id_prefix = f"mcpgw-{secrets.token_hex(4)}-" if shared else "mcpgw-"
        self._http_transport: StreamableHTTPTransport | StreamableHttpClient | None = None
        self._start_get: Callable[[], None] | None = None
        self.auth = auth  # an HTTP upstream's OAuth client credentials (oauth.py), shared by its links
        # Which Streamable HTTP client carries this link: the gateway's own ("mcpgw") for plain HTTP
        # without OAuth, the SDK's over httpx ("sdk") for https://, OAuth and `client = "sdk"` (logged,
        # in /health).
        lean = config.transport == "streamable-http" and config.client != "sdk"
        self.client = "mcpgw" if lean and lean_client_covers(config.url, auth) else "sdk"
        self.handler = handler
        self.label = label
        self.capabilities = client_capabilities or {}
        self.init_result: dict[str, Any] = {}
        self.version: str | None = None
        self.error: str | None = None
        self.session_lost = False  # the upstream answered 404 to our session (it restarted)
        self.refused: set[str] = set()  # our request ids the upstream refused that way (never run)
        self.too_large: set[str] = set()  # our request ids whose answer was over max_message_bytes
        self.unreadable_ids: set[str] = set()  # our request ids whose answer could not be parsed (stdio)
        self.list_changes = 0  # notifications/*/list_changed received so far (counted on arrival)
        self._ids = itertools.count(1)
        self._heard = time.monotonic()  # when the upstream last sent anything
        self._dispatcher: JSONRPCDispatcher | None = None
        # Requests relayed past the SDK's dispatcher (`_relay`): written to the transport, answered by
        # the pump, by our own request id. The dispatcher keeps initialize and the upstream's requests.
        self._write: Any = None  # the transport's write stream
        self._direct: StreamableHttpClient | None = None  # the gateway's own HTTP client: calls in the caller's task
        self._waiting: dict[str, _Waiting] = {}
        self._cancels: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self._get_answered = asyncio.Event()  # the SDK client's GET stream was answered, or failed
        self._ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._dispatcher is not None and not self._ended.is_set()

    async def open(self) -> None:
        """Connect and initialize, or raise UpstreamUnavailable within the connect timeout."""
        self._task = asyncio.ensure_future(self._run())
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.connect_timeout_s or None)  # 0: no limit
        except TimeoutError:
            self.error = f"did not initialize within {self.config.connect_timeout_s:g} s"
        if not self.alive:
            token_error = getattr(self.auth, "error", None)  # oauth.py: the reason beneath a refused connection
            if token_error:
                self.error = f"no OAuth token: {token_error}"
            await self.close()
            raise UpstreamUnavailable(self.config.id, f"is unavailable: {self.error or 'connection closed'}")

    def hold_get(self) -> None:
        """Open the GET stream of this re-attached upstream session: the process that held it is gone."""
        if not self.holds_get and self._start_get is not None and self.alive:
            self.holds_get = True
            log.info("upstream %s (%s): holding its GET stream now", self.config.id, self.label)
            self._start_get()

    async def wait_closed(self) -> None:
        await self._ended.wait()

    def lose(self, reason: str, session: bool = False) -> None:
        """End the link because the upstream went away under it (the first reason is kept)."""
        if self._ended.is_set():
            return
        self.session_lost = self.session_lost or session
        self.error = reason
        log.warning("upstream %s (%s): %s", self.config.id, self.label, reason)
        self._ended.set()

    def oversized(self, request_id: str | None, size: int) -> None:
        """The upstream sent a message over max_message_bytes: skipped; the request it answered fails."""
        OVERSIZED[self.config.id] += 1
        if request_id is not None:
            self.too_large.add(request_id)
        log.warning(
            "upstream %s (%s): a message of %s bytes or more, over max_message_bytes (%d), skipped%s",
            self.config.id,
            self.label,
            size,
            int(self.config.max_message_bytes),
            f"; request {request_id} fails" if request_id else "",
        )

    def unreadable(self, request_id: str) -> None:
        """A stdio upstream answered one of our requests with a line that is not a readable JSON-RPC
        message (stdio_client.py): that request fails at once with the gateway's wording."""
        self.unreadable_ids.add(request_id)

    async def close(self) -> None:
        self._ended.set()
        task = self._task
        if task is not None and not task.done():
            if self._dispatcher is None:
                task.cancel()  # still connecting or initializing: nothing to wind down politely
            try:
                await asyncio.wait_for(asyncio.shield(task), 10.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    def _transport(self) -> Transport:
        cfg = self.config
        if cfg.transport == "stdio":
            params = StdioServerParameters(command=cfg.command, args=list(cfg.args), env=cfg.env or None, cwd=cfg.cwd)
            return self._stdio(params)
        if cfg.transport == "sse":
            return self._legacy_sse()
        return self._streamable_http()

    @contextlib.asynccontextmanager
    async def _stdio(self, params: StdioServerParameters) -> AsyncIterator[TransportStreams]:
        stderr = StderrLog(self.config.id, self.label)
        try:
            async with stdio_client(params, self, int(self.config.max_message_bytes), stderr.file) as streams:
                stderr.close()  # the child holds its own copy: EOF comes when the child exits
                yield streams
        finally:
            stderr.close()

    def _http(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        """The SDK's HTTP client, over a transport that tells this link when the upstream goes away."""
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=self.config.read_timeout_s or None),
            auth=auth or self.auth,
            transport=_Watchful(self),
        )

    @contextlib.asynccontextmanager
    async def _streamable_http(self) -> AsyncIterator[TransportStreams]:
        """The SDK's `streamable_http_client` (mcp 2.3.0), assembled here from its transport so that
        a link can re-attach an upstream session opened by another gateway process (its id set, no
        initialize; the GET stream opened only when this link holds it) and leave the upstream
        session open when it closes while other processes may still use it (`keep_session`)."""
        cfg = self.config
        headers = dict(cfg.headers or {})
        if self.attach is not None:
            # On what carries no per-message header (the GET stream, answers to the upstream's requests).
            headers[MCP_PROTOCOL_VERSION_HEADER] = str(self.attach.init_result.get("protocolVersion", ""))
        if self.client == "mcpgw":  # plain HTTP, no OAuth: the gateway's own client (shttp_client.py)
            lean = StreamableHttpClient(
                cfg.url or "",
                self,
                headers,
                int(cfg.max_message_bytes),
                cfg.read_timeout_s or None,
                cfg.connect_timeout_s or None,
            )
            if self.attach is not None:
                lean.session_id = self.attach.session_id
            self._http_transport = lean
            self._direct = lean
            self._start_get = lean.start_get
            async with lean.streams(start_get=self.attach is not None and self.attach.hold_get) as streams:
                try:
                    yield streams
                finally:
                    if lean.session_id and not self.keep_session:
                        await lean.terminate()
            return
        transport = StreamableHTTPTransport(cfg.url, max_sse_event_size=int(cfg.max_message_bytes))
        if self.attach is not None:
            transport.session_id = self.attach.session_id
        async with self._http(headers=headers or None) as http:
            read_writer, read = create_context_streams[SessionMessage | Exception](0)
            write, write_reader = create_context_streams[SessionMessage](0)
            async with read_writer, read, write, write_reader, anyio.create_task_group() as tasks:

                def start_get_stream() -> None:  # after notifications/initialized, or re-attached
                    tasks.start_soon(transport.handle_get_stream, http, read_writer)

                tasks.start_soon(transport.post_writer, http, write_reader, read_writer, write, start_get_stream, tasks)
                self._start_get = start_get_stream
                if self.attach is not None and self.attach.hold_get:
                    start_get_stream()
                self._http_transport = transport
                try:
                    yield read, write
                finally:
                    if transport.session_id and not self.keep_session:
                        await transport.terminate_session(http)
                    tasks.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def _legacy_sse(self) -> AsyncIterator[TransportStreams]:
        cfg = self.config
        timeout = httpx2.Timeout(cfg.connect_timeout_s or None)
        async with (
            self._http(headers=cfg.headers or None, timeout=timeout) as http,
            legacy_sse_client(http, cfg.url, self, int(cfg.max_message_bytes), cfg.read_timeout_s) as streams,
        ):
            yield streams

    async def _run(self) -> None:
        try:
            async with self._transport() as streams:
                read, write = streams[0], streams[1]
                # Our own hop between transport and dispatcher, so the link knows when the upstream is gone.
                inbound: Inbox[SessionMessage | Exception] = Inbox(1)  # cheaper than anyio's streams (inbox.py)
                mcp_sdk_spans.install()  # the SDK's span per request, skipped while no tracer provider is set
                dispatcher = JSONRPCDispatcher(inbound, write)
                session = _RelayingClientSession(
                    relayable(self.capabilities),
                    dispatcher=dispatcher,
                    message_handler=self._on_message,
                    client_info=types.Implementation(name="mcpgw", version=__version__),
                    **self._callbacks(),
                )
                async with session, anyio.create_task_group() as tasks:
                    tasks.start_soon(self._pump, read, inbound)
                    if self.attach is None:
                        try:
                            result = await session.initialize()
                        except Exception as exc:
                            self._initialize_failed(exc)
                            raise
                        self.init_result = _dump(result)
                    else:  # re-attached: what the opener negotiated, installed with no wire traffic
                        result = types.InitializeResult.model_validate(self.attach.init_result)
                        session.adopt(result)
                        self.init_result = copy.deepcopy(self.attach.init_result)
                    if self._http_transport is not None:
                        self.upstream_session = self._http_transport.session_id
                    self.version = result.protocol_version
                    if self.holds_get:
                        # Open once the upstream holds our GET stream: a notification it sends on its own
                        # before then (a list_changed the first call causes) it would drop.
                        await self._get_opened()
                    self._write = write
                    self._dispatcher = dispatcher
                    self._ready.set()
                    if self.config.transport == "sse" and self.config.read_timeout_s > 0:
                        tasks.start_soon(self._keepalive)
                    log.info(
                        "upstream %s (%s): %s, %s, protocol %s%s",
                        self.config.id,
                        self.label,
                        "connected" if self.attach is None else "re-attached its upstream session",
                        result.server_info.name,
                        self.version,
                        f", client {self.client}" if self.config.transport == "streamable-http" else "",
                    )
                    await self._ended.wait()
                    tasks.cancel_scope.cancel()
        except BaseException as exc:  # every way a link ends is reported the same way
            if not isinstance(exc, asyncio.CancelledError):
                if not self._ended.is_set():  # else lose() already said why
                    self.error = describe(exc)
                log.warning("upstream %s (%s): connection failed: %s", self.config.id, self.label, self.error)
            elif not self._ended.is_set():
                raise
        finally:
            if self.error is None and not self._ended.is_set():
                self.error = "closed the connection"
            self._ended.set()
            self._ready.set()

    async def _get_opened(self) -> None:
        """Until the GET stream this link started was answered or failed, at most GET_OPEN_WAIT_S."""
        if self._direct is not None:
            await self._direct.get_opened(GET_OPEN_WAIT_S)
            return
        http = self._http_transport
        # The SDK's client opens it after notifications/initialized, in a task, with a session id only.
        if isinstance(http, StreamableHTTPTransport) and http.session_id and not self._get_answered.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GET_OPEN_WAIT_S):
                    await self._get_answered.wait()

    async def _pump(self, read: Any, inbound: Any) -> None:
        try:
            async for item in read:
                self._heard = time.monotonic()
                message = item.message if isinstance(item, SessionMessage) else None
                if self._waiting:
                    if isinstance(message, JSONRPCResponse | JSONRPCError):
                        waiting = self._waiting.get(message.id) if isinstance(message.id, str) else None
                        if waiting is not None:  # one the link relayed itself: its caller has it now
                            if not waiting.answer.done():
                                outcome = message.result if isinstance(message, JSONRPCResponse) else message.error
                                waiting.answer.set_result(outcome)
                            continue
                    elif (
                        isinstance(message, JSONRPCNotification)
                        and message.method == "notifications/progress"
                        and self._progress(message.params)
                    ):
                        continue
                if isinstance(message, JSONRPCNotification) and message.method in SDK_DROPS:
                    await self._on_raw_notification(message.method, message.params or {})
                elif isinstance(message, JSONRPCNotification) and message.method in RELAYED_IN_ORDER:
                    # Relayed here, before what follows it is read: through the dispatcher it would be
                    # handled in a task of its own and could reach the client after the result.
                    await self._on_raw_notification(message.method, message.params or {})
                    continue
                elif isinstance(message, JSONRPCNotification) and message.method.endswith("/list_changed"):
                    # Counted here, in arrival order: the SDK runs notification handlers in tasks of
                    # their own, so an answer sent after it can reach its caller first (hub.py view).
                    self.list_changes += 1
                await inbound.send(item)
        finally:
            # Marked ended before the dispatcher sees EOF, so the requests it then fails are
            # reported as the upstream going away, not as the upstream's own errors.
            if not self._ended.is_set() and self.error is None:  # else initialize's failure said why
                self.error = "closed the connection"
                log.warning("upstream %s (%s): closed the connection", self.config.id, self.label)
            self._ended.set()
            for waiting in self._waiting.values():  # the link's own requests fail as the SDK's would
                if not waiting.answer.done():
                    waiting.answer.set_result(_CLOSED)
            if self._direct is not None:
                self._direct.abort()  # and those still in an exchange in their caller's task
            await inbound.aclose()

    def _progress(self, params: dict[str, Any] | None) -> bool:
        """Progress for a request the link relayed itself, handed to its callback in a task chained
        after that request's earlier progress (in arrival order, and `_relay` returns the result only
        once it was handed on), so a slow consumer holds up its own request, never the pump and every
        other request on the link; False when it is not for one of those."""
        token = (params or {}).get("progressToken")
        waiting = self._waiting.get(token) if isinstance(token, str) else None
        if waiting is None or params is None:
            return False
        progress, total, text = params.get("progress"), params.get("total"), params.get("message")
        if waiting.on_progress is None or isinstance(progress, bool) or not isinstance(progress, int | float):
            return True  # malformed, or nobody asked: dropped, as the SDK's dispatcher drops it
        waiting.handing = asyncio.ensure_future(
            self._hand_on(
                waiting.handing,
                waiting.on_progress,
                float(progress),
                float(total) if isinstance(total, int | float) and not isinstance(total, bool) else None,
                text if isinstance(text, str) else None,
            )
        )
        return True

    async def _hand_on(
        self,
        earlier: asyncio.Task[None] | None,
        on_progress: ProgressFn,
        progress: float,
        total: float | None,
        text: str | None,
    ) -> None:
        if earlier is not None and not earlier.done():
            await asyncio.wait((earlier,))  # its outcome is its own (logged there)
        try:
            await on_progress(progress, total, text)
        except Exception:
            log.exception("upstream %s: relaying progress failed", self.config.id)

    def _initialize_failed(self, exc: Exception) -> None:
        """Why initialize failed, kept as the link's error before the pump, wound down as the
        failure leaves the task group, could call it a closed connection: the upstream's JSON-RPC
        error ("refused initialize: <code> <message>"), or what the client's transport said."""
        if self._ended.is_set():
            return  # lose() already said why (a refused connection, a lost session)
        if isinstance(exc, MCPError):
            code, message = exc.error.code, exc.error.message
            if code == types.CONNECTION_CLOSED and message.startswith(_TRANSPORT_MESSAGES):
                # The client's transport speaking (shttp_client.py names the reason after the prefix).
                self.error = f"failed initialize: {message.partition('Connection closed: ')[2] or message}"
            else:
                self.error = f"refused initialize: {code} {message}"[:300]
        else:
            self.error = f"failed initialize: {describe(exc)}"

    async def _keepalive(self) -> None:
        """A legacy SSE stream that carries nothing for read_timeout_s counts as gone, and many SSE
        servers send no keepalive of their own: a ping when the stream has been quiet for a third
        of that makes the upstream answer on it. (A ping that fails is left to the read timeout.)"""
        quiet = self.config.read_timeout_s / 3
        while True:
            await asyncio.sleep(max(quiet - (time.monotonic() - self._heard), 0.01))
            if time.monotonic() - self._heard >= quiet:
                with contextlib.suppress(JsonRpcError):
                    await self.request("ping", None, timeout=quiet)

    # -- relaying requests ---------------------------------------------------
    @property
    def ping_timeout_s(self) -> float:
        """A health ping always has a bound, whatever call_timeout_s says (0 there means no bound)."""
        bounds = [t for t in (self.config.call_timeout_s, self.config.connect_timeout_s) if t > 0]
        return min(bounds) if bounds else PING_TIMEOUT_FALLBACK_S

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        on_progress: ProgressFn | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request upstream and return its raw result; upstream errors come back as JsonRpcError.

        `timeout` (seconds) overrides call_timeout_s. Raises UpstreamSessionLost when the upstream
        refused the request for want of our session (not run: it may be sent again on a new link)."""
        dispatcher, version = self._dispatcher, self.version  # the version is set before the dispatcher
        if dispatcher is None or version is None or self._ended.is_set():
            raise UpstreamUnavailable(self.config.id, f"is unavailable: {self.error or 'not connected'}")
        request_id = f"{self._id_prefix}{next(self._ids)}"  # ours, so a refusal (404) names the request it refused
        bound = timeout if timeout is not None else (self.config.call_timeout_s or None)
        if timeout is None and method in WAITS_BY_DESIGN:
            bound = None
        try:
            if UpstreamLink.trace is None and mcp_sdk_spans.untraced():  # relayed by the link itself: no task,
                # stream or span per request (with a tracer provider, `_traced`: the same, in the SDK's span)
                if bound is None:
                    return await self._relay(method, params, on_progress, request_id, version)
                async with asyncio.timeout(bound):
                    return await self._relay(method, params, on_progress, request_id, version)
            async with asyncio.timeout(bound):
                return await self._traced(method, params, on_progress, request_id, version)
        except TimeoutError:
            raise UpstreamTimeout(self.config.id, f"did not answer {method} within {bound:g} s") from None
        except MCPError as exc:
            if request_id in self.too_large or "byte limit" in exc.error.message:
                # Skipped on arrival (sse_client.py, _Capped) or refused by the SDK's SSE reader.
                limit = int(self.config.max_message_bytes)
                if request_id not in self.too_large:  # the SDK's reader: counted and logged here
                    self.oversized(request_id, limit + 1)
                self.too_large.discard(request_id)
                raise JsonRpcError(
                    INTERNAL_ERROR,
                    f"Upstream {self.config.id!r} answered {method} with a message over {limit} bytes"
                    " (the upstream's max_message_bytes)",
                    {"upstream": self.config.id},
                ) from None
            if request_id in self.unreadable_ids:
                self.unreadable_ids.discard(request_id)
                raise JsonRpcError(
                    INTERNAL_ERROR,
                    f"Upstream {self.config.id!r} answered {method} with a message the gateway cannot read"
                    " (not a valid JSON-RPC message, e.g. nested too deep)",
                    {"upstream": self.config.id},
                ) from None
            if request_id in self.refused:
                self.refused.discard(request_id)
                raise UpstreamSessionLost(self.config.id, f"{self.error} during {method}") from None
            if self._ended.is_set():
                raise UpstreamUnavailable(
                    self.config.id, f"{self.error or 'closed the connection'} during {method}"
                ) from None
            if exc.error.code == types.CONNECTION_CLOSED and exc.error.message.startswith(_TRANSPORT_MESSAGES):
                # The SDK's transport speaking, not the upstream: the connection failed mid-call.
                log.info("upstream %s (%s): %s: %s", self.config.id, self.label, method, exc.error.message)
                # shttp_client.py names the reason: "Connection closed: sent nothing for 30 s"
                reason = exc.error.message.partition("Connection closed: ")[2] or "closed the connection"
                raise UpstreamUnavailable(self.config.id, f"{reason} during {method}") from None
            raise JsonRpcError(exc.error.code, exc.error.message, exc.error.data) from None

    async def _traced(
        self, method: str, params: dict[str, Any] | None, on_progress: ProgressFn | None, request_id: str, version: str
    ) -> dict[str, Any]:
        """A request relayed as `_relay` relays it, with a tracer provider set: inside the gateway's
        upstream span (tracing on: its context in the HTTP headers) and the span the SDK's dispatcher
        would open (`MCP send <method> [<tool>]`, CLIENT, its two attributes, an error answer's code and
        status), the trace context injected into `params._meta` as the dispatcher injects it; an error
        answer raised after that span ends, as by the dispatcher."""
        trace = UpstreamLink.trace
        with (
            trace(self.config.id, self.config.transport, method, params)
            if trace is not None
            else contextlib.nullcontext({})
        ) as headers:
            target = (params or {}).get("name")
            name = f"MCP send {method}{f' {target}' if isinstance(target, str) else ''}"
            attributes = {"mcp.method.name": method, "jsonrpc.request.id": request_id}
            try:
                with mcp_sdk_spans.request_span(name, attributes) as span:
                    return await self._relay(method, params, on_progress, request_id, version, headers, span)
            except _Answered as answered:
                _raise(answered.error)

    async def _relay(
        self,
        method: str,
        params: dict[str, Any] | None,
        on_progress: ProgressFn | None,
        request_id: str,
        version: str,
        trace_headers: dict[str, str] | None = None,
        span: Span | None = None,
    ) -> dict[str, Any]:
        """One request written to the transport as the SDK's dispatcher would write it (progress token =
        the request id, the protocol version header), its answer taken off the wire by the pump: no
        memory stream, task or span per request. Cancelled (the client gave up, or call_timeout_s) after
        it was written: the upstream is sent notifications/cancelled, as by the dispatcher.
        Errors are raised as the dispatcher raises them (MCPError), for `request` to name."""
        out = dict(params) if params else {}
        if on_progress is not None:
            out["_meta"] = {**(out.get("_meta") or {}), "progressToken": request_id}
        if span is not None:  # SEP-414, as the dispatcher injects it
            meta = dict(out.get("_meta") or {})
            mcp_sdk_spans.inject_request_meta(meta)
            if meta:
                out["_meta"] = meta
        if out:
            message = JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=out)
        else:
            message = JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method)
        answer: asyncio.Future[dict[str, Any] | types.ErrorData] = asyncio.get_running_loop().create_future()
        waiting = self._waiting[request_id] = _Waiting(answer, on_progress)
        headers = {MCP_PROTOCOL_VERSION_HEADER: version}
        if trace_headers:  # HTTP upstreams get the trace context as headers (stdio ones ignore them)
            headers.update(trace_headers)
        outcome: dict[str, Any] | types.ErrorData | None = None
        try:
            try:
                if self._direct is not None:  # in this task; a JSON answer comes back here, the rest by the pump
                    found = await self._direct.call(message, headers, waiting.sent)
                    if found is not None:
                        outcome = found.result if isinstance(found, JSONRPCResponse) else found.error
                else:
                    waiting.written = True  # a write cut short may still have gone out: it counts as sent
                    await self._write.send(SessionMessage(message, metadata=ClientMessageMetadata(headers=headers)))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise MCPError(types.CONNECTION_CLOSED, "Connection closed") from None
            if outcome is None:
                outcome = await answer
            if waiting.handing is not None:  # its progress handed on before its result
                await asyncio.wait((waiting.handing,))
        except asyncio.CancelledError:
            # Never for one answered (the future is cancelled with the task awaiting it, if not set).
            if waiting.written and outcome is None and (answer.cancelled() or not answer.done()):
                await self._cancel_upstream(request_id)
            raise
        finally:
            self._waiting.pop(request_id, None)
        if isinstance(outcome, types.ErrorData):
            if span is not None:
                if outcome is not _CLOSED:  # as the dispatcher marks its span
                    code = str(outcome.code)
                    span.set_attributes({"error.type": code, "rpc.response.status_code": code})
                    span.set_status(StatusCode.ERROR, outcome.message)
                    raise _Answered(outcome)
                _raise(outcome)  # the link ended: raised in the span, as the dispatcher raises it
            _raise(outcome)
        return outcome

    async def _cancel_upstream(self, request_id: str) -> None:
        """notifications/cancelled for a request given up after it was written, bounded by CANCEL_WRITE_S;
        it goes out even when the caller is cancelled again meanwhile (the write is a task of its own)."""

        async def write() -> None:
            params = {"requestId": request_id, "reason": "caller cancelled"}
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CANCEL_WRITE_S):
                    await self.notify("notifications/cancelled", params)

        task = asyncio.ensure_future(write())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        dispatcher, version = self._dispatcher, self.version  # the version is set before the dispatcher
        if dispatcher is not None and version is not None and not self._ended.is_set():  # self.alive
            await dispatcher.notify(method, params, {"headers": {MCP_PROTOCOL_VERSION_HEADER: version}})

    # -- what the upstream sends us ------------------------------------------
    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.debug("upstream %s (%s): transport error: %s", self.config.id, self.label, describe(message))
            return
        data = _dump(message)
        method = data.get("method", "")
        if method == "notifications/progress" or self.handler is None:
            return  # progress is routed by the dispatcher to the request it belongs to
        try:
            await self.handler.upstream_notification(self, method, data.get("params") or {})
        except Exception:
            log.exception("upstream %s: relaying %s failed", self.config.id, method)

    async def _on_raw_notification(self, method: str, params: dict[str, Any]) -> None:
        """A notification the SDK's client session drops (SDK_DROPS), relayed as it came."""
        if self.handler is None:
            return
        try:
            await self.handler.upstream_notification(self, method, params)
        except Exception:
            log.exception("upstream %s: relaying %s failed", self.config.id, method)

    def _callbacks(self) -> dict[str, Any]:
        """Answer the upstream's requests only with what the downstream client can do."""
        caps = self.capabilities
        callbacks: dict[str, Any] = {}
        if "sampling" in caps:

            async def sampling(ctx: Any, params: Any) -> Any:
                result = await self._ask("sampling/createMessage", _dump(params))
                if isinstance(result, types.ErrorData):
                    return result
                try:
                    return types.CreateMessageResult.model_validate(result)
                except ValidationError:  # a tool-use answer has its own shape
                    return types.CreateMessageResultWithTools.model_validate(result)

            callbacks["sampling_callback"] = sampling
        if "elicitation" in caps:

            async def elicitation(ctx: Any, params: Any) -> Any:
                result = await self._ask("elicitation/create", _dump(params))
                return result if isinstance(result, types.ErrorData) else types.ElicitResult.model_validate(result)

            callbacks["elicitation_callback"] = elicitation
        if "roots" in caps:

            async def roots(ctx: Any) -> Any:
                result = await self._ask("roots/list", {})
                return result if isinstance(result, types.ErrorData) else types.ListRootsResult.model_validate(result)

            callbacks["list_roots_callback"] = roots
        return callbacks

    async def _ask(self, method: str, params: dict[str, Any]) -> dict[str, Any] | types.ErrorData:
        if self.handler is None:
            return types.ErrorData(code=INTERNAL_ERROR, message=f"{method} has no client to go to")
        try:
            return await self.handler.upstream_request(self, method, params)
        except JsonRpcError as err:
            return types.ErrorData(code=err.code, message=err.message, data=err.data)
        except Exception as exc:  # noqa: BLE001 - the client vanished, timed out, ...: the upstream gets an error
            return types.ErrorData(code=INTERNAL_ERROR, message=f"{method} could not reach the client: {describe(exc)}")
