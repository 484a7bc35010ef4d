"""Server-Sent Events on the wire: the event framing, and the one loop that writes an
event stream to an HTTP connection (Streamable HTTP's POST responses and GET streams,
and legacy HTTP+SSE's stream), with keepalives while idle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..asgi import Receive, Scope, Send
from ..state.events import EventStream, Listener

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
SSE_KEEPALIVE = b": keepalive\n\n"
BODY = "http.response.body"
CHUNK_BYTES = 1024 * 1024
# A stream the server has ended (DELETE, expiry, shutdown, a slow reader cut off) still gets this
# long to write what it holds; a client that reads nothing by then has its connection dropped.
KICKED_WRITE_GRACE_S = 2.0

Abort = Callable[[], None]


def abort_of(scope: Scope) -> Abort | None:
    """The HTTP layer's way to drop this connection at once (http_server.py), if it offers one."""
    abort: Abort | None = scope.get("extensions", {}).get("mcpgw.abort")
    return abort


def sse_event(event_id: str | None, data: bytes) -> bytes:
    # orjson output never contains a newline, so one `data:` line holds the message.
    head = b"" if event_id is None else b"id: " + event_id.encode() + b"\n"
    return head + b"event: message\ndata: " + data + b"\n\n"


def sse_priming(event_id: str) -> bytes:
    return b"id: " + event_id.encode() + b"\ndata: \n\n"


def sse_retry(retry_ms: int) -> bytes:
    return b"retry: " + str(retry_ms).encode() + b"\n\n"


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def wake_or_disconnect(
    stream: EventStream, timeout: float | None, watcher: asyncio.Future[Any] | None
) -> bool | None:
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


@dataclass
class StreamWriters:
    """How many event streams are being written to connections now (every HTTP transport)."""

    count: int = 0


@dataclass(frozen=True)
class PumpOptions:
    ids: bool  # events carry `id:` (resumable streams)
    keepalive_s: float | None  # None: no keepalives (a POST's response stream)
    keepalive: bytes
    retry_ms: int


async def pump(
    stream: EventStream,
    cursor: int,
    send: Send,
    watcher: asyncio.Future[Any] | None,
    writers: StreamWriters,
    options: PumpOptions,
    abort: Abort | None,
    prime: bool = False,
) -> None:
    """Write `stream` from after `cursor` to this connection until it finishes, the client
    goes away, or the server ends the connection (then with `retry` first). The response
    start has been sent. A write to a client that has stopped reading blocks (the socket does
    not drain); if the server ends the stream meanwhile, the connection is dropped with `abort`
    rather than left waiting for a reader that never comes."""
    listener = Listener()

    async def send_or_abort(message: dict[str, Any]) -> None:
        if abort is None:
            await send(message)
            return
        sending = asyncio.ensure_future(send(message))
        while not sending.done():
            if listener.kicked:
                done, _ = await asyncio.wait({sending}, timeout=KICKED_WRITE_GRACE_S)
                if not done:
                    abort()
                    sending.cancel()
                    raise ConnectionAbortedError("the stream ended while its client was not reading")
                break
            stream.clear_wake()  # the loop below re-reads the stream after every write anyway
            waiter = asyncio.ensure_future(stream.wait(None))
            await asyncio.wait({sending, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        await sending

    stream.attach(listener)
    stream.delivered(cursor)
    writers.count += 1
    try:
        if prime:
            await send_or_abort({"type": BODY, "body": sse_priming(stream.event_id(cursor)), "more_body": True})
        while True:
            stream.clear_wake()
            events = [] if listener.kicked and not listener.retry else stream.after(cursor)
            if events is None:
                # This client fell behind the retained window: end it; on reconnect it is told.
                await send_or_abort({"type": BODY, "body": sse_retry(options.retry_ms), "more_body": False})
                return
            if events:
                # At most about CHUNK_BYTES per write (at least one event): a backlog is not copied whole.
                size = 0
                for n, (_, data) in enumerate(events, 1):
                    size += len(data)
                    if size >= CHUNK_BYTES:
                        del events[n:]
                        break
                chunk = b"".join(sse_event(stream.event_id(seq) if options.ids else None, data) for seq, data in events)
                cursor = events[-1][0]
                await send_or_abort({"type": BODY, "body": chunk, "more_body": True})
                stream.delivered(cursor)
                continue
            if listener.kicked:
                # Replaced by a newer connection, or closed by us (then `retry` tells the client to return).
                tail = sse_retry(options.retry_ms) if listener.retry else b""
                await send_or_abort({"type": BODY, "body": tail, "more_body": False})
                return
            if stream.done:
                await send_or_abort({"type": BODY, "body": b"", "more_body": False})
                return
            woke = await wake_or_disconnect(stream, options.keepalive_s, watcher)
            if woke is None:
                return  # the client went away; the stream keeps its events for a resume
            if not woke and not listener.kicked:
                # A kick (DELETE, expiry, shutdown) that lands as the timer fires, before this
                # turn, ends the stream on the next pass: no keepalive after the session's end.
                await send_or_abort({"type": BODY, "body": options.keepalive, "more_body": True})
    finally:
        stream.detach(listener)
        writers.count -= 1
