"""mcpgw's own Streamable HTTP client transport for plain-HTTP upstreams (issue 20).

It yields what the MCP SDK's `StreamableHTTPTransport` yields, a read stream and a write stream of
`SessionMessage`, so the SDK's `ClientSession` and JSON-RPC dispatcher above it are unchanged; under
it there is no httpx, no httpcore, no per-message writer loop and no task for a notification:

- a pool of kept-alive HTTP/1.1 connections of its own (asyncio protocols; at most
  `MAX_CONNECTIONS`, `MAX_IDLE` kept, each for `IDLE_S`), one exchange at a time on each; a
  request waits for a free one at most the connect timeout (`POOL_WAIT_FALLBACK_S` without one);
- each POST is one socket write: a head prebuilt per (session id, protocol version) plus the
  message serialised once by pydantic's own JSON writer;
- answers parsed with `httptools` (llhttp, the parser uvicorn uses) as they arrive: an
  `application/json` body kept up to `max_message_bytes`, a `text/event-stream` body parsed
  incrementally into events (each up to `max_message_bytes`);
- one task per request (its POST and its answer); a notification or a response is POSTed by its
  sender; the GET stream (the upstream's own messages, no read timeout) in a task of its own.

What the link learns on the way is told to it (`LinkSide`): a refused connection ends the link; a
404, or a 400 naming the session, to a request carrying the session id ends it as a lost session
with the request ids the upstream refused (never run: the hub sends them again); a JSON answer or an
SSE event over `max_message_bytes` fails the request it answered (`oversized`), and an oversized
event on the GET stream is skipped. An exchange that is cancelled, times out or fails discards its
connection; only a connection whose answer was read to its end goes back to the pool. A request
whose SSE answer ends early after events with ids is resumed with `Last-Event-ID` (GET), as the
SDK's transport does (at most two attempts, the server's `retry` or 1 s apart).

Not covered (the link keeps the SDK's transport for them): `https://` and upstreams with OAuth.
Redirects are not followed (a request answered with one fails, naming the location), and the
2026-07-28 cancellation by closing a POST is not done: links negotiate 2025 revisions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import anyio
import httptools
import mcp_types as types
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from pydantic import ValidationError

from .. import __version__
from .inbox import Inbox

log = logging.getLogger("mcpgw.federation")
wire = logging.getLogger("mcpgw.federation.shttp")  # one debug line per HTTP request: what, never the payload

MAX_CONNECTIONS = 100  # open to one upstream per link (httpx's default pool, as before)
MAX_IDLE = 20  # kept open while idle
# A request waits for a free connection (all MAX_CONNECTIONS busy) at most the link's
# connect_timeout_s, or this when that is 0; then it fails, saying the pool was full. (Not the GET
# stream, which has no bound of its own; a cancellation never waits.)
POOL_WAIT_FALLBACK_S = 10.0
IDLE_S = 4.0  # an idle connection older than this is closed instead of reused (below uvicorn's 5 s keep-alive)
REFUSAL_HEAD_BYTES = 64 * 1024  # of a 400 answer, looked at for the word "session"
EVENTS_PAUSE = 64  # parsed SSE events not yet handed on: the socket is not read past this
RESUME_ATTEMPTS = 2  # Last-Event-ID reconnections of a request's SSE answer (the SDK's count)
ACCEPT_BOTH = "application/json, text/event-stream"
RESUME_DELAY_S = 1.0  # between them, unless the server said `retry`
SSE_END_GRACE_S = 1.0  # after a request's response on its event stream, for the stream to end
MAX_HEAD_BYTES = 64 * 1024  # of an answer's head (interim 1xx heads included); past it the exchange fails
MAX_HEAD_FIELDS = 256  # header fields in an answer's heads


class LinkSide(Protocol):
    """What the transport tells the link it serves (federation/link.py)."""

    refused: set[str]

    def lose(self, reason: str, session: bool = False) -> None: ...
    def oversized(self, request_id: str | None, size: int) -> None: ...


class ExchangeError(Exception):
    """The connection failed under an exchange (refused, closed, timed out, unreadable)."""


class ConnectFailed(ExchangeError):
    pass


class Withdrawn(Exception):
    """The request was cancelled before it was sent (it waited for a free connection)."""


class ReadTimedOut(ExchangeError):
    """Nothing came for read_timeout_s: the upstream may have read the request (never sent again)."""


# -- server-sent events --------------------------------------------------------------------------
class SseParser:
    """Server-sent events from the chunks of a body, each event's data kept up to `limit` bytes.
    An event: (event type, data, id or None); an oversized one: (None, size, id)."""

    __slots__ = ("_cr", "_data", "_event", "_id", "_line", "_over", "_size", "events", "limit", "retry_ms")

    def __init__(self, limit: int, events: list[tuple[Any, Any, str | None]]) -> None:
        self.limit = limit
        self.events = events
        self.retry_ms: int | None = None
        self._line = bytearray()
        self._event = ""
        self._data: list[bytes] = []
        self._size = 0
        self._id: str | None = None
        self._over = False
        self._cr = False  # the last chunk ended with CR: a LF starting the next one belongs to it

    def feed(self, chunk: bytes) -> None:
        start, end = 0, len(chunk)
        if self._cr:
            self._cr = False
            if end and chunk[0] == 0x0A:
                start = 1
        while start < end:
            cut = chunk.find(b"\n", start)
            cr = chunk.find(b"\r", start, cut if cut >= 0 else end)
            if cr >= 0:  # CR ends the line (CRLF or a lone CR)
                stop, nxt = cr, cr + 1
                if nxt < end and chunk[nxt] == 0x0A:
                    nxt += 1
                elif nxt == end:
                    self._cr = True
            elif cut >= 0:
                stop, nxt = cut, cut + 1
            else:  # no line end in this chunk: keep the part (bounded by the event's limit)
                if len(self._line) + end - start > self.limit + 16:
                    self._overflow(end - start)
                else:
                    self._line += chunk[start:end]
                return
            if self._line:
                self._line += chunk[start:stop]
                line = bytes(self._line)
                self._line.clear()
            else:
                line = chunk[start:stop]
            self._field(line)
            start = nxt

    def _overflow(self, more: int) -> None:
        self._size += len(self._line) + more
        self._line.clear()
        self._data.clear()
        self._over = True

    def _field(self, line: bytes) -> None:
        if not line:  # blank line: the event is complete
            if self._over:
                self.events.append((None, self._size, self._id))
            elif self._data:
                self.events.append((self._event or "message", b"\n".join(self._data), self._id))
            elif self._id is not None:  # a priming event: an id, no data
                self.events.append((self._event or "message", b"", self._id))
            self._event, self._data, self._size, self._over = "", [], 0, False
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._size += len(value) + 1
            if self._over:
                return
            if self._size > self.limit:
                self._over = True
                self._data.clear()
            else:
                self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry_ms = int(value)


# -- one HTTP/1.1 connection ---------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    """One kept-alive connection: the bytes of one exchange at a time, parsed as they arrive.
    The body is kept (up to `limit`; past it only counted) or, for an event stream, parsed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False  # an exchange is using it
        self.closed = False
        self.counted = True  # counted in its pool's open connections
        self.idle_since = 0.0
        self.heard = 0.0  # when bytes last arrived
        self.error: str | None = None
        self.local = False  # the error was set here (the link ended), not caused by the upstream
        self.waiter: asyncio.Future[bool] | None = None
        self.paused = False  # reading stopped: EVENTS_PAUSE events not yet handed on
        self._reset()

    def _reset(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()  # paused for the last exchange's events
        self.paused = False
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.head_done = False
        self.keep_alive = False
        self.done = False
        self.framed = False  # Content-Length or chunked: EOF before the end is a failure
        self.got = False  # any byte of the answer arrived
        self.body = bytearray()
        self.size = 0
        self.limit = 0
        self.sse: SseParser | None = None
        self.events: list[tuple[Any, Any, str | None]] = []
        self.interim = False  # the head just parsed was a 1xx one: the answer's own head comes next
        self.head_size = 0  # bytes received before the final head ended
        self.fields = 0

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection is not reusable
            self._fail("unasked bytes on an idle connection")
            return
        self.got = True
        self.heard = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"sent an answer that is not HTTP/1.1 ({exc})")
            return
        if not self.head_done:  # bounded by one read past the limit (a read is at most 256 KiB)
            self.head_size += len(data)
            if self.head_size > MAX_HEAD_BYTES:
                self._fail(f"sent an answer head over {MAX_HEAD_BYTES} bytes")

    def eof_received(self) -> bool:
        return False  # close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy and not self.done:
            if self.head_done and not self.framed:
                self.done = True  # a body delimited by the end of the connection
            elif self.error is None:
                self.error = f"closed the connection ({exc})" if exc else "closed the connection"
        self._wake()

    def _fail(self, reason: str, local: bool = False) -> None:
        if self.error is None:
            self.error = reason
            self.local = local
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # httptools' side
    def on_message_begin(self) -> None:
        if self.done:  # more after the answer (a second answer?): the connection is not reused
            self._fail("sent more bytes after its answer")
            raise ExchangeError(self.error)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields += 1
        if self.fields > MAX_HEAD_FIELDS:
            self._fail(f"sent an answer head over {MAX_HEAD_FIELDS} header fields")
            raise ExchangeError(self.error)
        name = name.lower()
        if name in (b"content-length", b"transfer-encoding"):
            self.framed = True
        self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:  # interim (100 Continue, 103 Early Hints): the answer comes after it
            if self.status == 101:
                self._fail("switched protocols (HTTP 101), which was not asked for")
                raise ExchangeError(self.error)
            self.interim = True
            self.headers = {}
            self.framed = False
            return
        self.keep_alive = self.parser.should_keep_alive()  # llhttp knows it only until the message ends
        self.head_done = True
        kind = self.headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        if kind == b"text/event-stream" and self.status < 300:
            self.sse = SseParser(self.limit, self.events)
        self._wake()

    def on_body(self, chunk: bytes) -> None:
        sse = self.sse
        if sse is not None:
            sse.feed(chunk)
            if self.events:
                if len(self.events) >= EVENTS_PAUSE and not self.paused and self.transport is not None:
                    self.paused = True
                    self.transport.pause_reading()
                self._wake()
            return
        self.size += len(chunk)
        if self.size <= self.limit:
            self.body += chunk
        elif self.status < 300:
            self._wake()  # a JSON answer past the limit: the exchange gives up now

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.done = True
        self._wake()

    # the exchange's side
    def send(self, data: bytes, limit: int) -> None:
        self._reset()
        self.limit = limit
        self.busy = True
        self.heard = time.monotonic()
        if self.closed or self.transport is None:
            self.error = "closed the connection"  # before anything was sent: the caller may retry
            return
        self.transport.write(data)

    def take_events(self) -> list[tuple[Any, Any, str | None]]:
        events, self.events = self.events, []
        if self.sse is not None:
            self.sse.events = self.events
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return events

    async def wait(self, read_timeout: float | None) -> None:
        """Until the parser has something new or the connection failed; past `read_timeout` seconds
        without a byte from the upstream, ExchangeError."""
        loop = asyncio.get_running_loop()
        while True:
            self.waiter = waiter = loop.create_future()
            try:
                if read_timeout is None:
                    await waiter
                    return
                handle = loop.call_later(read_timeout, _time_out, waiter)
                try:
                    if await waiter:
                        return
                finally:
                    handle.cancel()
            finally:
                self.waiter = None
            if time.monotonic() - self.heard >= read_timeout:
                raise ReadTimedOut(f"sent nothing for {read_timeout:g} s")


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Pool:
    """Kept-alive connections to one host and port."""

    def __init__(self, host: str, port: int, connect_timeout: float | None) -> None:
        self.host, self.port, self.connect_timeout = host, port, connect_timeout
        self.idle: list[_Connection] = []
        self.lent: set[_Connection] = set()  # in use by an exchange
        self.open = 0
        self.opened = 0  # connections made so far
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.ended: str | None = None  # the link ended (`end`): no exchange starts but the session's DELETE

    async def acquire(
        self, over_cap: bool = False, bounded: bool = True, final: bool = False
    ) -> tuple[_Connection, bool]:
        """A connection for one exchange, and whether it was reused (kept from an earlier one);
        `over_cap`: a new one even when MAX_CONNECTIONS are open (a cancellation must not wait);
        `bounded`: waits for a free one at most connect_timeout (or POOL_WAIT_FALLBACK_S), then
        fails (ExchangeError: the pool is full); `final`: the session's DELETE, the one exchange
        still made once the link ended."""
        if self.ended is not None and not final:
            raise ExchangeError(self.ended)
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if conn.closed or now - conn.idle_since > IDLE_S:
                self.discard(conn)
                continue
            self.lent.add(conn)
            return conn, True
        bound = (self.connect_timeout or POOL_WAIT_FALLBACK_S) if bounded else None
        deadline = None if bound is None else asyncio.get_running_loop().time() + bound
        while self.open >= MAX_CONNECTIONS and not over_cap:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken as the time ran out: the free slot goes to the next in line
                raise ExchangeError(
                    f"had no free connection within {bound:g} s (the pool is full: all {MAX_CONNECTIONS} in use)"
                ) from None
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the free slot goes to the next in line
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
            if self.ended is not None and not final:  # woken by `end`: nothing is sent on an ended link
                raise ExchangeError(self.ended)
            if self.idle:
                return await self.acquire(bounded=bounded, final=final)
        self.open += 1
        self.opened += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        except TimeoutError:  # that call fails, the link goes on (a refusal ends it)
            self._freed()
            raise ExchangeError(f"did not accept a connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            self._freed()
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
        except BaseException:
            self._freed()
            raise
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lent.add(conn)
        return conn, False

    def release(self, conn: _Connection) -> None:
        """Back to the pool when its answer was read to the end and it stays open."""
        conn.busy = False
        self.lent.discard(conn)
        if conn.closed or conn.error is not None or not conn.done or not conn.keep_alive or len(self.idle) >= MAX_IDLE:
            self.discard(conn)
        else:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
            if self.waiters:
                self._wake_one()

    def unused(self, conn: _Connection) -> None:
        """Back to the pool with nothing sent on it."""
        self.lent.discard(conn)
        if conn.closed or len(self.idle) >= MAX_IDLE:
            self.discard(conn)
            return
        conn.busy = False
        conn.idle_since = time.monotonic()
        self.idle.append(conn)
        if self.waiters:
            self._wake_one()

    def discard(self, conn: _Connection) -> None:
        conn.busy = False
        self.lent.discard(conn)
        conn.close()
        if conn.counted:
            conn.counted = False
            self._freed()

    def _freed(self) -> None:
        self.open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def end(self, reason: str) -> None:
        """The link ended: every exchange still under way (a call in its caller's task too) fails now,
        as one failed here (never sent again), and every exchange waiting for a connection fails; no
        exchange starts after this but the session's DELETE (`acquire(final=True)`)."""
        if self.ended is None:
            self.ended = reason
        for conn in [*self.lent]:
            conn._fail(reason, local=True)
        waiters, self.waiters = self.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        self.end("the link closed")


# -- the transport -------------------------------------------------------------------------------
def _header_line(name: str, value: str) -> bytes:
    if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
        raise ValueError(f"header {name!r} has a character HTTP does not allow")
    return f"{name}: {value}\r\n".encode("latin-1")


def _error(request_id: Any, code: int, message: str) -> SessionMessage:
    return SessionMessage(
        types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))
    )


class _Writer:
    """The write stream the dispatcher sends on: each message goes out as it is sent (no queue)."""

    def __init__(self, client: StreamableHttpClient) -> None:
        self.client = client

    async def send(self, item: SessionMessage, /) -> None:
        await self.client.send(item)

    async def aclose(self) -> None:
        self.client.writer_closed = True
        self.client.inbox.close()  # the dispatcher is done: the read side ends too (as the SDK's)

    async def __aenter__(self) -> _Writer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


class StreamableHttpClient:
    """One upstream session's Streamable HTTP transport (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        link: LinkSide,
        headers: dict[str, str],
        max_message_bytes: int,
        read_timeout_s: float | None,
        connect_timeout_s: float | None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise ValueError(f"not a plain-HTTP URL: {url!r}")
        self.url = url
        self.link = link
        self.limit = max_message_bytes
        self.read_timeout = read_timeout_s
        self.session_id: str | None = None
        self.protocol_version: str | None = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        self.writer_closed = False
        port = parts.port or 80
        self.pool = _Pool(parts.hostname, port, connect_timeout_s)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:  # IPv6 literal
            host = f"[{parts.hostname}]" + (f":{port}" if parts.port is not None else "")
        own = {"host", "content-length", "content-type", "accept", "connection", "transfer-encoding"}
        own |= {"mcp-session-id", MCP_PROTOCOL_VERSION_HEADER.lower()}
        configured = b"".join(_header_line(k, v) for k, v in headers.items() if k.lower() not in own)
        self._target = target.encode("latin-1")
        self._fixed = _header_line("host", host) + _header_line("user-agent", f"mcpgw/{__version__}") + configured
        if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
            # Credentials in the URL are sent as HTTP Basic, as httpx (the SDK's client) does.
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._fixed += _header_line("authorization", "Basic " + base64.b64encode(userinfo).decode())
        self._shown = f"http://{host}{parts.path or '/'}"  # what the debug line names: no userinfo, no query
        self._heads: dict[tuple[str, str | None, str | None], bytes] = {}
        self.inbox: Inbox[SessionMessage | Exception] = Inbox(16)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._get_task: asyncio.Task[None] | None = None
        self._get_opened = asyncio.Event()  # the GET stream's first answer head arrived, or it failed
        self._init_id: types.RequestId | None = None  # the initialize request's id, once sent
        self._unsent: set[types.RequestId] = set()  # requests waiting for a connection
        self._withdrawn: set[types.RequestId] = set()  # of those, the ones cancelled meanwhile: never sent

    # -- the streams ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def streams(self, start_get: bool) -> AsyncIterator[tuple[Any, _Writer]]:
        """(read, write) for the SDK's dispatcher; on exit every exchange is cancelled and the
        pool closed (the caller sends DELETE first when the session should end)."""
        if start_get:
            self.start_get()
        try:
            async with self.inbox:
                yield self.inbox, _Writer(self)
        finally:
            tasks = [*self._tasks, *([self._get_task] if self._get_task else [])]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.pool.close()

    def abort(self) -> None:
        """The link ended: every exchange still under way fails now, a call in its caller's task too
        (`call`; the link's pump calls this as it ends, so nothing waits on a silent upstream), and is
        never sent again; one waiting for a connection fails; nothing is sent after it but the DELETE."""
        self.pool.end("the link closed")

    async def get_opened(self, bound: float) -> None:
        """Until the GET stream, once started, was answered (the upstream then holds it: what it sends
        on its own while it holds none it drops, e.g. a `list_changed` a first call causes) or failed;
        at most `bound` seconds."""
        if self._get_task is not None and not self._get_opened.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    await self._get_opened.wait()

    def start_get(self) -> None:
        """Open the GET stream (the upstream's own messages), once."""
        if self._get_task is None and self.session_id:
            self._get_task = asyncio.ensure_future(self._get_stream())

    # -- heads ---------------------------------------------------------------------------------
    def _head(self, method: str, accept: str, extra: dict[str, str] | None, length: int, last_event: str = "") -> bytes:
        version = self.protocol_version
        if extra:
            version = extra.get(MCP_PROTOCOL_VERSION_HEADER, version)
        key = (method + accept, self.session_id, version)
        prefix = self._heads.get(key)
        if prefix is None:
            prefix = b"%s %s HTTP/1.1\r\n" % (method.encode(), self._target) + self._fixed
            prefix += _header_line("accept", accept)
            if method == "POST":
                prefix += b"content-type: application/json\r\n"
            elif method == "GET":
                prefix += b"cache-control: no-store\r\n"
            if self.session_id:
                prefix += _header_line("mcp-session-id", self.session_id)
            if version:
                prefix += _header_line(MCP_PROTOCOL_VERSION_HEADER, version)
            if len(self._heads) > 16:
                self._heads.clear()
            self._heads[key] = prefix
        head = prefix
        if extra and (len(extra) > 1 or MCP_PROTOCOL_VERSION_HEADER not in extra):
            head += b"".join(_header_line(k, v) for k, v in extra.items() if k != MCP_PROTOCOL_VERSION_HEADER)
        if last_event:
            head += _header_line("last-event-id", last_event)
        if method == "POST":
            head += b"content-length: %d\r\n" % length
        return head + b"\r\n"

    # -- what the dispatcher sends --------------------------------------------------------------
    async def send(self, item: SessionMessage) -> None:
        if self.writer_closed:
            raise anyio.ClosedResourceError
        message = item.message
        metadata = item.metadata if isinstance(item.metadata, ClientMessageMetadata) else None
        extra = metadata.headers if metadata is not None else None
        if isinstance(message, types.JSONRPCRequest):
            if message.method == "initialize":
                self.protocol_version = None  # the negotiation itself carries no version header
                self._init_id = message.id  # its answer names the version (_learn_version)
            elif extra and MCP_PROTOCOL_VERSION_HEADER in extra:
                self.protocol_version = extra[MCP_PROTOCOL_VERSION_HEADER]
            token = metadata.resumption_token if metadata is not None else None
            if not token:
                self._unsent.add(message.id)
            task = asyncio.ensure_future(self._request(message, extra, token))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if extra and MCP_PROTOCOL_VERSION_HEADER in extra:
            self.protocol_version = extra[MCP_PROTOCOL_VERSION_HEADER]
        if (
            self._unsent
            and isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/cancelled"
        ):
            cancelled = (message.params or {}).get("requestId")
            if cancelled in self._unsent:  # still waiting for a connection: withdrawn, nothing to tell upstream
                self._unsent.discard(cancelled)
                self._withdrawn.add(cancelled)
                return
        await self._post_quietly(message, extra)
        if isinstance(message, types.JSONRPCNotification) and message.method == "notifications/initialized":
            self.start_get()

    async def _post_quietly(self, message: types.JSONRPCMessage, extra: dict[str, str] | None) -> None:
        """A notification or a response: POSTed, answered 202 (anything else is logged, not raised)."""
        try:
            conn = await self._exchange("POST", message, extra)
        except ExchangeError as exc:
            log.debug("upstream POST of a %s failed: %s", type(message).__name__, exc)
            return
        try:
            if conn.status >= 400:
                await self._until_done(conn)
                self._session_refused(conn, None)
                log.debug("upstream answered a %s with HTTP %d", type(message).__name__, conn.status)
            elif conn.sse is not None:  # an event stream: its messages handed on, as the SDK's transport does
                await self._get_events(conn, "", self.read_timeout)
            elif conn.status != 202:
                await self._until_done(conn)
        except ExchangeError:
            pass
        finally:
            if conn.done and not conn.closed:
                self.pool.release(conn)
            else:
                self.pool.discard(conn)

    async def _exchange(
        self,
        method: str,
        message: types.JSONRPCMessage | None,
        extra: dict[str, str] | None,
        last_event: str = "",
        unbounded: bool = False,
        on_sent: Callable[[], None] | None = None,
    ) -> _Connection:
        """Send one HTTP request and wait for the answer's head (up to read_timeout_s, unless
        `unbounded`: the GET stream); the connection is the caller's (release or discard it). A
        reused connection the server closed before answering anything (its keep-alive ran out as
        the request left) is replaced once: the request was not read. Never after a time-out."""
        if message is not None:
            body = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
            data = self._head(method, ACCEPT_BOTH, extra, len(body)) + body
            if wire.isEnabledFor(logging.DEBUG):
                what = getattr(message, "method", None) or type(message).__name__
                wire.debug("POST %s %s id %s (%d bytes)", self._shown, what, getattr(message, "id", None), len(body))
        else:
            data = self._head(method, ACCEPT_BOTH if method == "DELETE" else "text/event-stream", extra, 0, last_event)
        for attempt in (0, 1):
            try:
                conn, reused = await self.pool.acquire(
                    isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled",
                    bounded=not unbounded,  # the GET stream waits for a connection as long as it takes
                    final=method == "DELETE",
                )
            except BaseException as exc:
                if isinstance(message, types.JSONRPCRequest):  # no longer waiting: forgotten
                    self._unsent.discard(message.id)
                    self._withdrawn.discard(message.id)
                if isinstance(exc, ConnectFailed):
                    self.link.lose(f"refused the connection ({exc})")
                raise
            if self._unsent and isinstance(message, types.JSONRPCRequest):
                self._unsent.discard(message.id)
            if self._withdrawn and isinstance(message, types.JSONRPCRequest) and message.id in self._withdrawn:
                self._withdrawn.discard(message.id)
                self.pool.unused(conn)
                raise Withdrawn
            try:
                conn.send(data, self.limit if method != "DELETE" else REFUSAL_HEAD_BYTES)
                if on_sent is not None:
                    on_sent()
                timeout = None if unbounded else self.read_timeout
                while not conn.head_done and conn.error is None:
                    await conn.wait(timeout)
                if conn.error is not None and not conn.done:  # a whole answer, then more: answered
                    raise ExchangeError(conn.error)
            except ExchangeError as exc:
                self.pool.discard(conn)
                # Sent again only when the upstream closed a kept-alive connection with not a byte
                # of answer (its keep-alive ran out as the request left): never after a time-out,
                # nor when the failure was set here (the link ended: the upstream may be running it).
                if reused and not conn.got and attempt == 0 and not conn.local and not isinstance(exc, ReadTimedOut):
                    continue
                raise
            except BaseException:
                self.pool.discard(conn)
                raise
            return conn
        raise AssertionError("unreachable")

    async def _until_done(self, conn: _Connection) -> None:
        while not conn.done and conn.error is None and conn.size <= conn.limit:
            await conn.wait(self.read_timeout)
        if conn.error is not None and not conn.done:
            raise ExchangeError(conn.error)

    def _session_refused(self, conn: _Connection, request_id: Any) -> bool:
        """404, or a 400 whose body names the session, to a request carrying the session id: the
        upstream no longer knows the session (restarted, expired). The link ends; the request was not run."""
        if not self.session_id or conn.status not in (404, 400):
            return False
        if conn.status == 400 and b"session" not in bytes(conn.body[:REFUSAL_HEAD_BYTES]).lower():
            return False
        if request_id is not None:
            self.link.refused.add(str(request_id))
        if conn.status == 404:
            self.link.lose("lost its session (HTTP 404: the upstream restarted or ended it)", session=True)
        else:
            self.link.lose("lost its session (HTTP 400 naming the session: the upstream restarted)", session=True)
        return True

    def _learn_version(self, answer: types.JSONRPCMessage) -> None:
        """The negotiated protocol version, from initialize's result: on every request after it
        (the GET stream and answers to the upstream's requests too), as the SDK's transport does."""
        if isinstance(answer, types.JSONRPCResponse) and isinstance(answer.result, dict):
            version = answer.result.get("protocolVersion")
            if isinstance(version, str) and version:
                self.protocol_version = version

    async def _deliver(self, item: SessionMessage | Exception) -> None:
        with contextlib.suppress(anyio.ClosedResourceError):
            await self.inbox.send(item)

    # -- one request ---------------------------------------------------------------------------
    async def call(
        self, message: types.JSONRPCRequest, extra: dict[str, str] | None, on_sent: Callable[[], None]
    ) -> types.JSONRPCResponse | types.JSONRPCError | None:
        """One request exchanged in its caller's task (the link's own relay, link.py `_relay`): no task
        and no hop through the read stream for a JSON answer, which is returned parsed when it answers
        this request. Anything else goes to the read stream as for `send` (an event stream's messages,
        read on in a task of its own; the errors this transport makes up) and None is returned: the
        link has it from there. `on_sent` is called once the request went out; a call cancelled before
        it was sent was never sent (nothing to cancel upstream), and one cancelled after closes its
        connection."""
        if self.writer_closed:
            raise anyio.ClosedResourceError
        if extra and MCP_PROTOCOL_VERSION_HEADER in extra:
            self.protocol_version = extra[MCP_PROTOCOL_VERSION_HEADER]
        return await self._request(message, extra, None, on_sent)

    async def _request(
        self,
        message: types.JSONRPCRequest,
        extra: dict[str, str] | None,
        token: str | None,
        on_sent: Callable[[], None] | None = None,
    ) -> types.JSONRPCResponse | types.JSONRPCError | None:
        """One request: its answer delivered to the read stream, or (`on_sent` given: `call`) a JSON
        answer to it returned."""
        request_id = message.id
        try:
            if token:  # the dispatcher asks to resume an earlier answer's stream
                await self._resume(request_id, token, None)
                return None
            conn = await self._exchange("POST", message, extra, on_sent=on_sent)  # (its failure: below)
            if on_sent is not None and conn.sse is not None:  # an event stream: read on in a task of its own
                task = asyncio.ensure_future(self._finish(conn, message, request_id, False))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return None
            return await self._finish(conn, message, request_id, on_sent is not None)
        except Withdrawn:
            pass  # its caller gave up before it was sent
        except ExchangeError as exc:  # the reason goes with it (the link names it)
            await self._deliver(_error(request_id, types.CONNECTION_CLOSED, f"Connection closed: {exc}"))
        except Exception as exc:
            log.exception("upstream exchange failed")
            await self._deliver(_error(request_id, types.CONNECTION_CLOSED, f"Connection closed ({exc})"))
        return None

    async def _finish(
        self, conn: _Connection, message: types.JSONRPCRequest, request_id: Any, direct: bool
    ) -> types.JSONRPCResponse | types.JSONRPCError | None:
        """The answer to a request whose head has arrived, delivered to the read stream (or, `direct`,
        a JSON answer to it returned); the connection back to the pool once read to its end."""
        try:
            try:
                body = await self._answer(conn, message, request_id)
            finally:
                if conn.done and conn.error is None and not conn.closed:
                    self.pool.release(conn)
                else:
                    self.pool.discard(conn)
            if body is None:
                return None
            try:  # a JSON answer, parsed after its connection went back to the pool
                parsed = types.jsonrpc_message_adapter.validate_json(body, by_name=False)
            except (ValidationError, ValueError) as exc:
                text = f"Failed to parse JSON response: {exc}"
                await self._deliver(_error(request_id, types.PARSE_ERROR, text))
                return None
            if message.method == "initialize":
                self._learn_version(parsed)
            if direct and isinstance(parsed, types.JSONRPCResponse | types.JSONRPCError) and parsed.id == request_id:
                return parsed
            await self._deliver(SessionMessage(parsed))
        except ExchangeError as exc:
            await self._deliver(_error(request_id, types.CONNECTION_CLOSED, f"Connection closed: {exc}"))
        except Exception as exc:
            log.exception("upstream exchange failed")
            await self._deliver(_error(request_id, types.CONNECTION_CLOSED, f"Connection closed ({exc})"))
        return None

    async def _answer(self, conn: _Connection, message: types.JSONRPCRequest, request_id: Any) -> bytes | None:
        """Deliver what the answer says, or return a JSON answer's body (read whole) to be parsed."""
        status = conn.status
        if status == 202:
            await self._deliver(
                _error(request_id, types.INVALID_REQUEST, "server answered a request with 202 Accepted")
            )
            return None
        if 300 <= status < 400:
            await self._until_done(conn)
            where = conn.headers.get(b"location", b"").decode("latin-1")
            await self._deliver(
                _error(
                    request_id,
                    types.INVALID_REQUEST,
                    f"Redirect to {where} not followed; use that URL as the endpoint if it is the intended server",
                )
            )
            return None
        if status >= 400:
            await self._until_done(conn)
            if self._session_refused(conn, request_id):
                await self._deliver(_error(request_id, types.INVALID_REQUEST, "Session terminated"))
                return None
            if conn.headers.get(b"content-type", b"").lower().startswith(b"application/json"):
                with contextlib.suppress(ValidationError, ValueError):
                    parsed = types.jsonrpc_message_adapter.validate_json(bytes(conn.body), by_name=False)
                    if isinstance(parsed, types.JSONRPCError):
                        reply = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=parsed.error)
                        await self._deliver(SessionMessage(reply))
                        return None
            if status == 404:
                code, text = (
                    (types.INVALID_REQUEST, "Session terminated")
                    if self.session_id
                    else (types.METHOD_NOT_FOUND, "Not Found")
                )
            else:
                code, text = types.INTERNAL_ERROR, "Server returned an error response"
            await self._deliver(_error(request_id, code, text))
            return None
        if message.method == "initialize":
            session = conn.headers.get(b"mcp-session-id")
            if session:
                self.session_id = session.decode("latin-1")
        if conn.sse is not None:
            await self._sse_answer(conn, request_id)
            return None
        kind = conn.headers.get(b"content-type", b"").lower()
        if not kind.startswith(b"application/json"):
            text = kind.decode("latin-1")
            await self._deliver(_error(request_id, types.INVALID_REQUEST, f"Unexpected content type: {text}"))
            return None
        await self._until_done(conn)
        if conn.size > conn.limit:
            conn.close()  # the rest is not read
            self.link.oversized(str(request_id), conn.size)
            await self._deliver(_error(request_id, types.INTERNAL_ERROR, "message over the limit"))
            return None
        return bytes(conn.body)

    async def _sse_answer(self, conn: _Connection, request_id: Any) -> None:
        """A request's answer as an event stream: its events handed on until the response; an early
        end resumed with Last-Event-ID when events had ids."""
        last_id, retry = await self._read_events(conn, request_id)
        if last_id is True:
            return
        if last_id is None:
            await self._deliver(_error(request_id, types.CONNECTION_CLOSED, "SSE stream ended without a response"))
            return
        await self._resume(request_id, last_id, retry)

    async def _resume(self, request_id: Any, last_id: str, retry: int | None) -> None:
        attempts = 0
        while attempts < RESUME_ATTEMPTS:
            await asyncio.sleep((retry if retry is not None else RESUME_DELAY_S * 1000) / 1000)
            try:
                conn = await self._exchange("GET", None, None, last_event=last_id)
            except ExchangeError:
                attempts += 1
                continue
            try:
                if conn.sse is None:
                    attempts += 1
                    continue
                found, retry = await self._read_events(conn, request_id)
                if found is True:
                    return
                attempts = 0
                last_id = found or last_id
            except ExchangeError:
                attempts += 1
            finally:
                self.pool.release(conn)  # kept only when its answer was read to the end
        await self._deliver(
            _error(request_id, types.CONNECTION_CLOSED, "SSE stream ended and reconnection attempts were exhausted")
        )

    async def _read_events(self, conn: _Connection, request_id: Any) -> tuple[Any, int | None]:
        """Hand on the stream's events. (True, _) once the response came; else (the last event id
        seen or None, the server's retry) when the stream ended."""
        last_id: str | None = None
        sse = conn.sse
        assert sse is not None
        while True:
            for kind, data, event_id in conn.take_events():
                if event_id is not None:
                    last_id = event_id
                if kind is None:  # over max_message_bytes: the request fails, the stream is left
                    self.link.oversized(str(request_id), data)
                    conn.close()
                    await self._deliver(_error(request_id, types.INTERNAL_ERROR, "message over the limit"))
                    return True, None
                if kind != "message" or not data:
                    continue
                try:
                    parsed = types.jsonrpc_message_adapter.validate_json(data, by_name=False)
                except (ValidationError, ValueError) as exc:
                    conn.close()
                    text = f"Failed to parse SSE message: {exc}"
                    await self._deliver(_error(request_id, types.PARSE_ERROR, text))
                    return True, None
                if isinstance(parsed, types.JSONRPCResponse | types.JSONRPCError):
                    parsed.id = request_id
                    if request_id == self._init_id:
                        self._learn_version(parsed)
                    await self._deliver(SessionMessage(parsed))
                    await self._stream_end(conn)
                    return True, None
                await self._deliver(SessionMessage(parsed))
            if conn.events:  # parsed while the last ones waited to be handed on (a full inbox)
                continue
            if conn.done or conn.error is not None:
                return last_id, sse.retry_ms
            await conn.wait(self.read_timeout)

    async def _stream_end(self, conn: _Connection) -> None:
        """After the response, the stream's end (servers end it at once), so that the connection
        can be kept; a stream still open after SSE_END_GRACE_S, or carrying more, is dropped."""
        try:
            async with asyncio.timeout(SSE_END_GRACE_S):
                while not conn.done and conn.error is None and not conn.events:
                    await conn.wait(None)
        except TimeoutError:
            pass
        if not conn.done or conn.events:
            conn.close()

    # -- the GET stream ------------------------------------------------------------------------
    async def _get_stream(self) -> None:
        """What the upstream says on its own, with no read timeout; reopened (with Last-Event-ID)
        when it ends, given up after two failures in a row or when the server does not offer it."""
        last_id, retry, failures = "", None, 0
        while failures < RESUME_ATTEMPTS and self.session_id:
            try:
                conn = await self._exchange("GET", None, None, last_event=last_id, unbounded=True)
            except ExchangeError:
                failures += 1
                self._get_opened.set()
            else:
                self._get_opened.set()
                try:
                    if conn.status >= 400 or conn.sse is None:
                        await self._until_done(conn)
                        self._session_refused(conn, None)
                        log.debug("upstream GET stream: HTTP %d", conn.status)
                        if conn.status == 405 or self.link_ended():
                            return
                        failures += 1
                    else:
                        failures = 0
                        last_id, retry = await self._get_events(conn, last_id)
                except ExchangeError:
                    failures += 1
                finally:
                    self.pool.release(conn)  # kept only when its answer was read to the end
            await asyncio.sleep((retry if retry is not None else RESUME_DELAY_S * 1000) / 1000)

    def link_ended(self) -> bool:
        return bool(getattr(self.link, "session_lost", False))

    async def _get_events(
        self, conn: _Connection, last_id: str, read_timeout: float | None = None
    ) -> tuple[str, int | None]:
        sse = conn.sse
        assert sse is not None
        while True:
            for kind, data, event_id in conn.take_events():
                if event_id is not None:
                    last_id = event_id
                if kind is None:
                    self.link.oversized(None, data)
                    continue
                if kind != "message" or not data:
                    continue
                try:
                    parsed = types.jsonrpc_message_adapter.validate_json(data, by_name=False)
                except (ValidationError, ValueError) as exc:
                    log.warning("upstream GET stream: an event that is not a JSON-RPC message: %s", exc)
                    continue
                await self._deliver(SessionMessage(parsed))
            if conn.events:  # parsed while the last ones waited to be handed on (a full inbox)
                continue
            if conn.done or conn.error is not None:
                return last_id, sse.retry_ms
            await conn.wait(read_timeout)

    # -- the end -------------------------------------------------------------------------------
    async def terminate(self) -> None:
        """DELETE the upstream session (405: the server keeps it; anything else is logged)."""
        if not self.session_id:
            return
        try:
            conn = await self._exchange("DELETE", None, None)
        except ExchangeError as exc:
            log.warning("upstream session termination failed: %s", exc)
            return
        status = conn.status
        self.pool.release(conn)  # kept only when its answer was read to the end
        if status not in (200, 202, 204, 405):
            log.warning("upstream session termination: HTTP %d", status)


def lean_client_covers(url: str | None, auth: object) -> bool:
    """Whether this transport serves an upstream: plain HTTP and no OAuth."""
    return bool(url) and str(url).lower().startswith("http://") and auth is None
