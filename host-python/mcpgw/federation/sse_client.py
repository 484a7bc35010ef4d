"""The legacy HTTP+SSE (2024-11-05) client transport under an upstream link, with a message limit.

The mcp SDK's `sse_client` reads the event stream with a fixed 1 MiB limit per event, and an event
over it ends the whole stream: every call on the connection fails. This transport speaks the same
protocol (GET the SSE URL; its first `endpoint` event says where to POST messages; `message` events
carry JSON-RPC messages) but reads events up to the link's `max_message_bytes`. A larger event is
skipped without being buffered (only its first bytes are kept); when it answered one of our
requests, that request alone gets an error and the connection goes on.

Lines end with LF or CRLF (what servers send; a lone CR as a line end is not recognised).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import anyio
import httpx2
import mcp_types as types
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from .stdio_client import OUR_IDS, answered_id

log = logging.getLogger("mcpgw.federation")

HEAD_BYTES = 4096  # of an oversized event, the first and the last kept to find whose answer it was


class LinkSide(Protocol):
    """What the transport tells the link it serves."""

    refused: set[str]

    def lose(self, reason: str, session: bool = False) -> None: ...
    def oversized(self, request_id: str | None, size: int) -> None: ...


@dataclass
class Event:
    event: str = "message"
    data: str = ""


@dataclass
class Oversized:
    """An event over the limit: its size and the first and last bytes of its data."""

    size: int
    head: bytes
    tail: bytes = b""

    def request_id(self) -> str | None:
        """The link's request this answered. The id comes before the result (the Python SDK's
        servers) or after it, at the end (the TypeScript SDK's): stdio_client.answered_id."""
        found = answered_id(self.head, self.tail)
        return found if isinstance(found, str) and found.startswith(OUR_IDS) else None


@dataclass
class _Building:
    event: str = ""
    data: list[bytes] = field(default_factory=list)
    size: int = 0
    over: bool = False
    head: bytes = b""
    tail: bytes = b""
    pending: bool = False


async def read_events(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[Event | Oversized]:
    """Server-sent events from a byte stream, none buffered beyond `limit` bytes."""
    line = bytearray()
    skipping = False  # the rest of the current line is past the limit: dropped
    skipping_data = False  # ... and it is a data line (its last bytes are kept)
    ev = _Building()

    def field_line(raw: bytes) -> Event | Oversized | None:
        nonlocal ev
        if not raw:  # the blank line that ends an event
            done, ev = ev, _Building()
            if done.over:
                return Oversized(done.size, done.head, done.tail)
            if not done.pending:
                return None
            return Event(done.event or "message", b"\n".join(done.data).decode("utf-8", "replace"))
        if raw.startswith(b":"):
            return None  # a comment (keepalive)
        ev.size += len(raw)
        name, _, value = raw.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if ev.size > limit and not ev.over:
            ev.over, ev.data = True, []
        if ev.over:
            if name == b"data":
                ev.head = ev.head or value[:HEAD_BYTES]
                ev.tail = (ev.tail + value[-HEAD_BYTES:])[-HEAD_BYTES:]
            return None
        if name == b"event":
            ev.event, ev.pending = value.decode("utf-8", "replace"), True
        elif name == b"data":
            ev.data.append(value)
            ev.pending = True
        return None

    async for chunk in chunks:
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            start = len(chunk) if end < 0 else end + 1
            if skipping:
                ev.size += len(piece)
                if skipping_data:
                    ev.tail = (ev.tail + piece[-HEAD_BYTES:])[-HEAD_BYTES:]
                skipping = end < 0
                continue
            line += piece
            if end < 0:
                if ev.size + len(line) > limit:  # an unfinished line already past the limit
                    ev.over = True
                    ev.data = []
                    skipping_data = line.startswith(b"data:")
                    if skipping_data:
                        ev.head = ev.head or bytes(line[5:].lstrip(b" ")[:HEAD_BYTES])
                        ev.tail = (ev.tail + bytes(line[-HEAD_BYTES:]))[-HEAD_BYTES:]
                    ev.size += len(line)
                    line.clear()
                    skipping = True
                continue
            raw = bytes(line[:-1] if line.endswith(b"\r") else line)
            line.clear()
            found = field_line(raw)
            if found is not None:
                yield found


@contextlib.asynccontextmanager
async def legacy_sse_client(
    http: httpx2.AsyncClient, url: str, link: LinkSide, max_message_bytes: int, read_timeout_s: float
) -> AsyncIterator[TransportStreams]:
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    timeout = httpx2.Timeout(http.timeout.connect, read=read_timeout_s or None)
    headers = {"accept": "text/event-stream", "cache-control": "no-store"}
    async with http.stream("GET", url, headers=headers, timeout=timeout) as response:
        response.raise_for_status()
        kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "text/event-stream":
            raise httpx2.HTTPError(f"expected text/event-stream from {url}, got {kind!r}")
        events = aiter(read_events(response.aiter_bytes(), max_message_bytes))
        endpoint = None
        async for first in events:
            if isinstance(first, Event) and first.event == "endpoint":
                endpoint = urljoin(url, first.data)
                break
        if endpoint is None:
            raise httpx2.HTTPError("the event stream ended before naming its endpoint")
        if urlsplit(endpoint)[:2] != urlsplit(url)[:2]:
            raise httpx2.HTTPError(f"the endpoint {endpoint} is not on the event stream's origin")

        async def reader() -> None:
            async with read_writer:
                try:
                    async for event in events:
                        if isinstance(event, Oversized):
                            request_id = event.request_id()
                            link.oversized(request_id, event.size)
                            if request_id is not None:  # that request fails; the stream goes on
                                error = types.ErrorData(code=types.INTERNAL_ERROR, message="message over the limit")
                                await read_writer.send(
                                    SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
                                )
                            continue
                        if event.event != "message" or not event.data:
                            continue
                        try:
                            message = types.jsonrpc_message_adapter.validate_json(event.data, by_name=False)
                        except ValueError as exc:
                            await read_writer.send(exc)
                            continue
                        await read_writer.send(SessionMessage(message))
                except httpx2.ReadTimeout:
                    link.lose(f"sent nothing on its event stream for {read_timeout_s:g} s (read_timeout_s)")
                except httpx2.HTTPError as exc:
                    link.lose(f"event stream failed: {str(exc) or type(exc).__name__}")

        async def writer() -> None:
            async with write_reader:
                async for outgoing in write_reader:
                    message = outgoing.message
                    body = message.model_dump(by_alias=True, mode="json", exclude_unset=True)
                    response = await http.post(endpoint, json=body)
                    if response.status_code == 404:  # the upstream no longer knows this session
                        if isinstance(message, types.JSONRPCRequest):
                            link.refused.add(str(message.id))
                        link.lose("lost its session (HTTP 404: the upstream restarted or ended it)", session=True)
                        return
                    if response.is_error and isinstance(message, types.JSONRPCRequest):
                        # One refused message (413, 500...) fails that request only, not the link.
                        error = types.ErrorData(
                            code=types.INTERNAL_ERROR,
                            message=f"the upstream refused the request with HTTP {response.status_code}",
                        )
                        await read_writer.send(
                            SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=message.id, error=error))
                        )
                    elif response.is_error:
                        log.warning("a legacy SSE upstream refused a message with HTTP %d", response.status_code)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader)
            tasks.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                tasks.cancel_scope.cancel()
