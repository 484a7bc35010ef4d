"""The gateway's own HTTP/1.1 protocol layer: uvicorn's httptools protocol with limits for
hostile clients, installed with `uvicorn.Config(http=protocol_class(limits))`.

What it adds to `HttpToolsProtocol` (every number comes from `Settings`):

- **Head deadline** (`head_timeout_s`): a connection that has not completed a request head
  within it, counted from the connection (or from the first byte of a later request on a
  kept-alive connection), is answered 408 (if it sent anything; else just closed) and closed.
- **Body rate** (`body_timeout_s`, `body_min_rate_bytes_s`): `t` seconds after a request's head,
  its body must have reached `min_rate * (t - timeout)` bytes; a body behind that is answered
  408 and closed. Once a response has started (SSE streams) neither deadline applies, and
  neither counts time during which the gateway itself stopped reading.
- **Head size** (`max_head_bytes` + `HEAD_SLACK` for the request line and separators): the
  raw bytes of a head are counted as they arrive and the parser is fed at most that many, so an
  80 MB header costs about 80 KiB of parsing, not seconds of httptools' quadratic value growth: 431.
  The exact limit stays the edge middleware's (`head_size`), which sees names and values only.
- **Connections per client** (`max_connections_per_client`, by peer address): past it a new
  connection is answered 503 with `Retry-After` at once (before its request is read) and
  closed. Peers listed in `trusted_proxies` are not capped (their connections are many
  clients'); their requests' client address is the rightmost untrusted `X-Forwarded-For` hop,
  written into `scope["client"]`.

Every refusal above is a JSON-RPC error body (`{"jsonrpc":"2.0","id":null,"error":{"code":
-32600,...}}`, as the edge's 431) with `Connection: close`; the gateway then half-closes and
discards what the client still sends, so the answer is not destroyed by a reset: until the
client pauses `LINGER_IDLE_S`, half-closes, or `LINGER_MAX_S` has passed (at most
`LINGER_MAX_CONNECTIONS` at a time; past that a refused connection is closed at once).
Refusals are counted by kind (`/health` -> `limits.refused`) and logged at most once a
second per kind, with a tally of the rest.

And, around uvicorn's protocol (0.54):

- A client's half-close (FIN after a complete request) no longer drops the answer owed to it:
  `eof_received` keeps the write side open until the owed responses are sent, then closes.
- A parse error pipelined behind a request no longer cuts that request's answer: the 400 is
  written after the responses before it, in order.
- A response with a fixed length goes out in one send, head and body (`_Corked`: uvicorn writes
  them separately, and each write to an idle socket is a system call and a segment of its own).
  A streamed head (SSE) and `100 Continue` go out at once, as before.
- `scope["extensions"]["mcpgw.abort"]` drops the connection at once: uvicorn's `send` waits
  for a client that stopped reading to drain, and nothing else can end such a writer. The SSE
  writer (transports/sse_writer.py) calls it when its stream is ended during a blocked send
  (DELETE, expiry, shutdown, a slow reader cut off); scenario delete-leaves-blocked-stream-open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from .logsafe import escape
from .server.jsonrpc import INVALID_REQUEST, error_response

log = logging.getLogger("mcpgw.http")

HEAD_SLACK = 16 * 1024  # request line, ": " and CRLFs: bytes the edge's head_size does not count
LINGER_IDLE_S = 5.0  # after a refusal, what the client still sends is read and dropped until it
LINGER_MAX_S = 30.0  # pauses this long, half-closes, or this much time has passed: then close;
LINGER_MAX_CONNECTIONS = 1024  # with this many lingering already, close at once (a reset may eat the answer)
RETRY_AFTER_S = 5  # the connection cap's Retry-After
CORK_MAX_BYTES = 16 * 1024  # a response head up to this size may wait for its body (_Corked)
KINDS = ("head_timeout", "body_too_slow", "head_too_large", "connection_cap")
# uvicorn's callbacks, called directly by ours: cheaper than super() once per request.
_on_headers_complete = HttpToolsProtocol.on_headers_complete
_on_message_complete = HttpToolsProtocol.on_message_complete
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: tuple[str, ...] | list[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs; a ValueError names the one that is neither."""
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {item!r}") from None
    return tuple(nets)


@dataclass
class HttpLimits:
    """The limits, the per-client connection counts and the refusal counters (one per server)."""

    head_timeout_s: float
    body_timeout_s: float
    body_min_rate_bytes_s: int
    max_head_bytes: int
    max_connections_per_client: int
    trusted_proxies: tuple[Network, ...]
    refused: Counter[str] = field(default_factory=Counter)
    lingering: int = 0
    connections: Counter[str] = field(default_factory=Counter)
    _logged_at: dict[str, float] = field(default_factory=dict)
    _unlogged: Counter[str] = field(default_factory=Counter)

    @property
    def head_limit(self) -> int:
        return self.max_head_bytes + HEAD_SLACK

    def trusted(self, address: str | None) -> bool:
        if address is None or not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)

    def forwarded_client(self, values: list[bytes]) -> str | None:
        """The rightmost hop of X-Forwarded-For that is not a trusted proxy (None: none usable)."""
        hops = [hop.strip() for value in values for hop in value.decode("latin-1").split(",")]
        for hop in reversed(hops):
            try:
                ip = ipaddress.ip_address(hop)
            except ValueError:
                return None  # not an address: nothing left of it can be believed
            if not any(ip in net for net in self.trusted_proxies):
                return str(ip)
        return None

    def refuse(self, kind: str, client: str | None, now: float) -> None:
        self.refused[kind] += 1
        if now - self._logged_at.get(kind, -1e9) < 1.0:
            self._unlogged[kind] += 1
            return
        more = self._unlogged.pop(kind, 0)
        self._logged_at[kind] = now
        log.warning(
            "refused (%s) a connection from %s%s",
            kind,
            escape(client or "unknown", 120),
            f" (and {more} more since the last line)" if more else "",
        )

    def health(self) -> dict[str, Any]:
        return {
            "head_timeout_s": self.head_timeout_s,
            "body_timeout_s": self.body_timeout_s,
            "body_min_rate_bytes_s": self.body_min_rate_bytes_s,
            "max_connections_per_client": self.max_connections_per_client,
            "trusted_proxies": [str(net) for net in self.trusted_proxies],
            "connections": {
                "open": sum(self.connections.values()),
                "clients": len(self.connections),
                "lingering": self.lingering,
            },
            "refused": {kind: self.refused[kind] for kind in KINDS},
        }

    def describe(self) -> str:
        return (
            f"head {self.head_timeout_s:g} s and {self.head_limit} bytes, body {self.body_min_rate_bytes_s} B/s "
            f"after {self.body_timeout_s:g} s, {self.max_connections_per_client or 'unlimited'} connections per "
            f"client, trusted proxies: {', '.join(str(n) for n in self.trusted_proxies) or 'none'}"
        )


def _response(status: int, message: str, extra: list[tuple[bytes, bytes]]) -> bytes:
    body = orjson.dumps(error_response(None, INVALID_REQUEST, message))
    lines = [STATUS_LINE[status]]
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    return b"".join([*lines, b"\r\n", body])


def _aborter(protocol: weakref.ReferenceType[GatewayHttpProtocol]) -> Callable[[], None]:
    """The `mcpgw.abort` extension of a connection: its protocol's `_abort_now`, while it lives."""

    def abort() -> None:
        live = protocol()
        if live is not None:
            live._abort_now()

    return abort


class _Corked:
    """The transport as a connection's request cycles write to it (the protocol's own answers go
    to the transport itself). uvicorn writes a response's head and its body separately, and each
    write to an idle socket is a system call and a segment of its own: the head of a response
    with a fixed length (`content-length`) is held here until the next write, its body (a cycle
    writes even an empty one; a HEAD request's cycle writes to the transport itself), then both go
    out in one call; `close` writes what is held first. Anything else (a streamed head, `100
    Continue`) goes out at once. No `__getattr__` forwarding: a cycle calls `write`, `close` and
    `is_closing` only, and the hook would tax every attribute read here."""

    __slots__ = ("_held", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) > CORK_MAX_BYTES:  # copying it would cost more than the second send saves
                self.transport.write(held)
                self.transport.write(data)
            else:
                self.transport.write(held + data)
        elif (  # (slices and find: `in` and startswith/endswith cost several times as much here)
            type(data) is bytes
            and data[-4:] == b"\r\n\r\n"
            and data[:9] == b"HTTP/1.1 "
            and data[9] != 0x31  # not an interim 1xx answer: nothing may wait for it
            and data.find(b"\r\ncontent-length: ") > 0  # (uvicorn writes header names in lower case)
            and len(data) <= CORK_MAX_BYTES
        ):
            self._held = data
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.flush()
        self.transport.close()


class GatewayHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection; see the module docstring. `limits` is bound by `protocol_class`."""

    limits: ClassVar[HttpLimits]
    # Our per-connection state in slots, not in the instance dict: uvicorn's protocol keeps 28
    # attributes there, and past 30 CPython 3.11 stops sharing the dict's keys with the class (its
    # attribute caches then miss in uvicorn's per-request code: about 1-2k instructions a request).
    __slots__ = (
        "_body_bytes",
        "_body_open",
        "_body_rate",
        "_body_start",
        "_body_timer",
        "_corked",
        "_counted",
        "_extensions",
        "_head_limit",
        "_head_seen",
        "_head_timer",
        "_in_head",
        "_last_data",
        "_linger_end",
        "_lingering",
        "_peer",
        "_pending",
        "_refusing",
        "_trusted_peer",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer: str | None = None
        self._counted = False
        self._in_head = True  # the next bytes belong to a request head
        self._head_seen = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_start = 0.0
        self._body_bytes = 0
        self._body_open = False
        self._refusing = False  # a refusal was written: drop input, close on EOF or at the linger's end
        self._pending: Callable[[], None] | None = None  # written once the owed responses are out
        self._linger_end = 0.0
        self._lingering = False
        self._last_data = 0.0
        # Per connection, not per request: the head limit, whether the peer is a trusted proxy (set
        # in connection_made), and the scope extension every request of this connection carries.
        self._head_limit = self.limits.head_limit
        self._trusted_peer = False
        self._body_rate = bool(self.limits.body_min_rate_bytes_s)  # whether bodies are timed at all
        # Through a weak reference: a bound method here would make each connection a reference
        # cycle (protocol -> extensions -> protocol), left for the cycle collector when it closes.
        self._extensions: dict[str, Any] = {"mcpgw.abort": _aborter(weakref.ref(self))}

    # -- connection ----------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows it the same way
        super().connection_made(transport)
        self._corked = _Corked(transport)  # what the request cycles write to (on_headers_complete)
        self._peer = self.client[0] if self.client else None
        self._trusted_peer = self.limits.trusted(self._peer)  # per connection, not per request
        cap = self.limits.max_connections_per_client
        if self._peer is not None and not self._trusted_peer:
            if cap and self.limits.connections[self._peer] >= cap:
                self._refuse("connection_cap", 503, "Service Unavailable: too many connections from this client")
                return
            self.limits.connections[self._peer] += 1
            self._counted = True
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lingering:
            self._lingering = False
            self.limits.lingering -= 1
        self._release()
        self._cancel_timers()
        super().connection_lost(exc)

    def _release(self) -> None:
        if self._counted and self._peer is not None:
            self._counted = False
            self.limits.connections[self._peer] -= 1
            if self.limits.connections[self._peer] <= 0:
                del self.limits.connections[self._peer]

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio's contract: True keeps the write side open
        """The client half-closed. Keep the write side open while a response is owed for a
        complete request and has not started (the last owed one then closes the connection);
        else close as uvicorn does. A started response (an SSE stream) ends on the client's
        FIN: for a stream reader a FIN means gone. A FIN before the response starts cannot be
        told from a half-close, so that request runs to its answer (a reset still ends it)."""
        if self._refusing or self._pending is not None:
            return None
        owed = self.pipeline[0][0] if self.pipeline else self._current()
        if owed is None or owed.response_complete or owed.more_body:
            return None  # nothing owed, or a body that can now never complete
        current = self._current()
        if current is not None and current.response_started:
            return None
        owed.keep_alive = False
        return True

    def _current(self) -> RequestResponseCycle | None:
        """The running or last request's cycle (uvicorn types it as always set; it is None at first)."""
        return self.cycle

    def _responding(self) -> bool:
        cycle = self._current()
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    # -- reading ---------------------------------------------------------------
    # Per request, this layer adds one Python frame to each of data_received, on_headers_complete
    # and on_message_complete, one to each write of an answer (_Corked), and nothing else: no
    # timer for a request that arrives whole, no on_body (the body rate counts whole reads, and
    # only while a body is overdue-capable), no on_response_complete (the rare answer that must
    # wait for owed responses hooks their cycles), uvicorn's methods called directly rather than
    # through super(). Callgrind, tools/call echo on one keep-alive connection: see
    # docs/benchmarks.md.
    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refusing or self._pending is not None:  # stopped: a refusal, or an answer waiting
            self._last_data = self.loop.time()
            return
        if self._in_head:
            seen = self._head_seen + len(data)
            if seen > self._head_limit:
                self._feed_head_limited(data)
                return
            self._head_seen = seen
        elif self._body_timer is not None:
            self._body_bytes += len(data)  # a body being timed: this read is (at most) its bytes
        if not self._feed(data):
            return
        if self._in_head:
            if self._head_seen:
                if self._head_seen >= self._head_limit:
                    self._fail(self._head_too_large)
                elif self._head_timer is None and not self._responding():
                    self._arm_head_timer()  # a head started here counts from now
        elif self._body_open and self._body_timer is None:
            self._arm_body_timer()

    def _feed(self, data: bytes) -> bool:
        """Feed the parser; False when this connection stopped reading (error, upgrade, refusal)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(self._invalid_request)
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        return not (self._refusing or self._pending is not None)  # the callbacks may have refused

    def _feed_head_limited(self, data: bytes) -> None:
        """A read that would take the head past its limit: the parser gets at most the head's
        room, then (still in a head) 431; what follows a head that completed is fed on."""
        limit = self._head_limit
        pos, size = 0, len(data)
        while pos < size:
            if self._in_head:
                piece = data[pos : pos + limit - self._head_seen]
                self._head_seen += len(piece)
            else:
                piece = data[pos:]
                if self._body_timer is not None:
                    self._body_bytes += len(piece)
            pos += len(piece)
            if not self._feed(piece):
                return
            if self._in_head and self._head_seen >= limit:
                self._fail(self._head_too_large)
                return
        if self._in_head:
            if self._head_seen and self._head_timer is None and not self._responding():
                self._arm_head_timer()
        elif self._body_open and self._body_timer is None:
            self._arm_body_timer()

    def _head_too_large(self) -> None:
        self._refuse("head_too_large", 431, "Request Header Fields Too Large")

    def _invalid_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _fail(self, answer: Callable[[], None]) -> None:
        """Answer now, or after the responses still owed on this connection (HTTP/1.1 order).
        Now also when the newest request's body is incomplete: the error is in that request,
        which can never complete (its application sees the disconnect)."""
        cycle = self._current()
        if self._responding() and not (cycle is not None and cycle.more_body):
            self._pending = answer
            self.flow.pause_reading()
            # uvicorn calls each cycle's on_response when its response completes: the owed ones
            # (the running cycle and the queued ones) now also check whether the answer is due.
            for owed in (cycle, *(queued for queued, _ in self.pipeline)):
                if owed is not None:
                    owed.on_response = self._response_complete_then_pending
        else:
            answer()

    def _upgrade(self) -> None:
        self._cancel_timers()
        self._corked.flush()
        self.handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                self._release()

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]  # the cap counts WebSockets too

    # -- parser callbacks --------------------------------------------------------
    def on_headers_complete(self) -> None:
        # Our own extension (ASGI allows any), on the scope uvicorn's on_message_begin made; set
        # here rather than in an on_message_begin override: one Python call fewer per request.
        self.scope["extensions"] = self._extensions
        self._in_head = False
        self._head_seen = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._trusted_peer:
            forwarded = [value for name, value in self.headers if name == b"x-forwarded-for"]
            client = self.limits.forwarded_client(forwarded) if forwarded else None
            if client is not None:
                self.scope["client"] = (client, 0)
        _on_headers_complete(self)
        cycle: RequestResponseCycle | None = self.cycle
        # (None before the first request when an upgrade returns early; a HEAD answer has no body
        # write to carry its head, so it is written as it comes)
        if cycle is not None and self.scope["method"] != "HEAD":
            cycle.transport = self._corked  # type: ignore[assignment]  # write, close, is_closing: all a cycle calls
        # Its timer (and start) is set by data_received if the body is still due after this read.
        self._body_open = self._body_rate and not self._refusing

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_seen = 0
        self._body_open = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        _on_message_complete(self)

    def _response_complete_then_pending(self) -> None:
        """An owed response completed while an answer waits for them (_fail): once none is owed,
        write it."""
        self.on_response_complete()
        if self._pending is not None and not self._responding() and not self.transport.is_closing():
            answer, self._pending = self._pending, None
            self._unset_keepalive_if_required()
            answer()

    # -- deadlines -------------------------------------------------------------
    def _arm_body_timer(self) -> None:
        """The body is incomplete after the read that completed its head: time it from now,
        crediting what arrived with the head (uvicorn's cycle holds it: its task has not run)."""
        self._body_start = self.loop.time()
        self._body_bytes = len(self.cycle.body)
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._check_body)

    def _arm_head_timer(self) -> None:
        if self.limits.head_timeout_s and not self._refusing:
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self._in_head or self._responding() or self._refusing or self.transport.is_closing():
            return  # a response is running (streams are exempt) or the head completed
        if self._head_seen:
            self._refuse("head_timeout", 408, "Request Timeout: the request head did not arrive in time")
        else:
            self.limits.refuse("head_timeout", self._peer, self.loop.time())
            self._cancel_timers()
            self.transport.close()

    def _check_body(self) -> None:
        self._body_timer = None
        cycle = self._current()
        if not self._body_open or self._refusing or cycle is None or cycle.response_started:
            return  # the body completed, or the gateway answered already: no deadline on a response
        now = self.loop.time()
        if self.flow.read_paused or self.pipeline:
            self._body_start += 1.0  # the gateway is not reading: that second is not the client's
            self._body_timer = self.loop.call_later(1.0, self._check_body)
            return
        rate = self.limits.body_min_rate_bytes_s
        due = self._body_start + self.limits.body_timeout_s + self._body_bytes / rate
        if now < due:
            self._body_timer = self.loop.call_later(min(due - now, 1.0), self._check_body)
            return
        self._refuse("body_too_slow", 408, "Request Timeout: the request body arrived too slowly")

    # -- refusing --------------------------------------------------------------
    def _refuse(self, kind: str, status: int, message: str) -> None:
        """Write a JSON-RPC error answer, end the running request, half-close, drain, close."""
        scope: dict[str, Any] | None = self.scope  # type: ignore[assignment]  # None before the first request
        client = scope.get("client") if scope is not None else None
        self.limits.refuse(kind, client[0] if client else self._peer, self.loop.time())
        self._refusing = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        cycle = self._current()
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application sees http.disconnect; its sends are dropped
            cycle.message_event.set()
        self.pipeline.clear()
        if self.transport.is_closing():
            return
        extra = [(b"retry-after", str(RETRY_AFTER_S).encode())] if status == 503 else []
        self.transport.write(_response(status, message, extra))
        if self.limits.lingering >= LINGER_MAX_CONNECTIONS:
            self.transport.close()
            return
        self.flow.resume_reading()  # read and drop what the client still sends
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):  # a transport that cannot half-close
            self.transport.close()
            return
        self._lingering = True
        self.limits.lingering += 1
        now = self.loop.time()
        self._last_data, self._linger_end = now, now + LINGER_MAX_S
        self.loop.call_later(LINGER_IDLE_S, self._linger)

    def _linger(self) -> None:
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if now >= self._linger_end or now - self._last_data >= LINGER_IDLE_S:
            self.transport.close()
        else:
            self.loop.call_later(min(self._last_data + LINGER_IDLE_S, self._linger_end) - now, self._linger)

    def _abort_now(self) -> None:
        """`scope["extensions"]["mcpgw.abort"]`: drop the connection and what it still buffers. The
        current exchange counts as disconnected at once (uvicorn would otherwise log the response
        as never completed before its connection_lost runs)."""
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.abort()


def protocol_class(limits: HttpLimits) -> type[GatewayHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to these limits."""
    return type("GatewayHttpProtocol", (GatewayHttpProtocol,), {"limits": limits})
