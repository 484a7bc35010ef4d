"""The stdio client transport under an upstream link, with a message limit.

The mcp SDK's `stdio_client` (2.3.0) reads each line of the upstream's stdout whole, however long,
and rebuilds its buffer for every chunk (a 5 MiB line read 64 KiB at a time is copied and
re-split some 80 times). This is the same transport (the SDK's own process start and shutdown:
a process group of its own, stdin closed, then SIGTERM and SIGKILL to the tree) with its own line
reader: bytes, at most `limit` of them per line. A longer line is skipped unread to its newline,
only its first and last bytes kept to name the request it answered; that request alone fails
(an error in its place, `link.oversized`), and the link goes on.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, Protocol, TextIO

import anyio
import anyio.lowlevel
import mcp_types as types
from mcp.client._transport import TransportStreams
from mcp.client.stdio import (
    StdioServerParameters,
    _aclose_all,
    _create_platform_compatible_process,
    _drain_stdout,
    _get_executable_command,
    _stop_server_process,
    get_default_environment,
)
from mcp.shared.message import SessionMessage

log = logging.getLogger("mcpgw.federation")

READ_BYTES = 1 << 20  # asked of the pipe per read (the SDK's default is 64 KiB)
EDGE_BYTES = 4096  # of an oversized line, the first and the last kept to find whose answer it was
OUR_IDS = "mcpgw-"  # the ids the link gives its requests (link.py): only answers to those are failed
_WRITER_FLUSH_TIMEOUT = 0.5  # as the SDK: time for the writer to flush before stdin closes

# Where a response's own id sits: before its result (the Python SDK: {"jsonrpc","id","result"}) or
# after it, at the very end of the line (the TypeScript SDK: {"result":...,"jsonrpc","id"}). Only
# top-level members with plain values may stand between the brace and the id, so an "id" inside
# the result is never taken for it.
_SCALAR = rb'(?:"[^"\\]*"|-?\d+|null)'
_ID_FIRST = re.compile(rb'^\s*\{(?:\s*"\w+"\s*:\s*' + _SCALAR + rb"\s*,)*?\s*\"id\"\s*:\s*(" + _SCALAR + rb")")
_ID_LAST = re.compile(rb'[{,]\s*"id"\s*:\s*(' + _SCALAR + rb")(?:\s*,\s*\"\w+\"\s*:\s*" + _SCALAR + rb")*\s*\}\s*$")


class LinkSide(Protocol):
    def oversized(self, request_id: str | None, size: int) -> None: ...

    def unreadable(self, request_id: str) -> None: ...


def answered_id(head: bytes, tail: bytes) -> str | int | None:
    """The id of the response a line's first and last bytes belong to, when they show it."""
    found = _ID_FIRST.match(head) or _ID_LAST.search(tail)
    if found is None or found.group(1) == b"null":
        return None
    raw = found.group(1)
    return raw[1:-1].decode("utf-8", "replace") if raw.startswith(b'"') else int(raw)


async def read_lines(receive: Any, limit: int) -> AsyncIterator[bytes | tuple[int, bytes, bytes]]:
    """Lines from a byte stream, none buffered beyond `limit` bytes: a line, or for a longer one
    (size, first bytes, last bytes)."""
    line = bytearray()
    over = False  # the current line is past the limit: only its edges are kept
    size, head, tail = 0, b"", b""
    while True:
        try:
            chunk = await receive(READ_BYTES)
        except anyio.EndOfStream:
            return
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end
            if over:
                size += stop - start
                tail = (tail + chunk[max(start, stop - EDGE_BYTES) : stop])[-EDGE_BYTES:]
            elif len(line) + stop - start > limit:
                over, size = True, len(line) + stop - start
                whole = bytes(line[:EDGE_BYTES]) if len(line) >= EDGE_BYTES else bytes(line) + chunk[start:stop]
                head = whole[:EDGE_BYTES]
                tail = (bytes(line[-EDGE_BYTES:]) + chunk[max(start, stop - EDGE_BYTES) : stop])[-EDGE_BYTES:]
                line.clear()
            else:
                line += chunk[start:stop]
            if end < 0:
                break
            start = end + 1
            if over:
                yield size, head, tail
                over, size, head, tail = False, 0, b"", b""
            elif line.strip():
                yield bytes(line)
                line.clear()
            else:
                line.clear()


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        log.warning("a stdio upstream wrote a line that is not a JSON-RPC message: %s", str(exc).splitlines()[0])
        return exc


@contextlib.asynccontextmanager
async def stdio_client(
    server: StdioServerParameters, link: LinkSide, limit: int, errlog: TextIO
) -> AsyncIterator[TransportStreams]:
    """The SDK's stdio_client with a bounded line reader (see the module's docstring)."""
    command = await _get_executable_command(server.command)
    process = await _create_platform_compatible_process(
        command=command,
        args=server.args,
        env=get_default_environment() | (server.env or {}),
        errlog=errlog,
        cwd=server.cwd,
    )
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    writer_done = anyio.Event()
    shutting_down = False

    async def stdout_reader() -> None:
        assert process.stdout
        try:
            async with read_writer:
                try:
                    async for item in read_lines(process.stdout.receive, limit):
                        if isinstance(item, bytes):
                            message: SessionMessage | Exception = _parse(item)
                            if isinstance(message, Exception):
                                # Unreadable (e.g. nested deeper than the parser goes): if it names
                                # one of our requests, that request fails now instead of waiting
                                # out its timeout.
                                found = answered_id(item[:EDGE_BYTES], item[-EDGE_BYTES:])
                                if isinstance(found, str) and found.startswith(OUR_IDS):
                                    link.unreadable(found)
                                    error = types.ErrorData(code=types.INTERNAL_ERROR, message="unreadable answer")
                                    message = SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=found, error=error))
                        else:
                            size, head, tail = item
                            found = answered_id(head, tail)
                            request_id = found if isinstance(found, str) and found.startswith(OUR_IDS) else None
                            link.oversized(request_id, size)
                            if request_id is None:  # not an answer to us: nothing waits for it
                                continue
                            error = types.ErrorData(code=types.INTERNAL_ERROR, message="message over the limit")
                            message = SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
                        try:
                            await read_writer.send(message)
                        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                            return
                finally:
                    await _drain_stdout(process)
        except anyio.ClosedResourceError:
            pass
        except (anyio.BrokenResourceError, ConnectionError):
            if not shutting_down:
                log.exception("reading a stdio upstream's stdout failed mid-session")

    async def stdin_writer() -> None:
        assert process.stdin
        try:
            async with write_reader:
                async for session_message in write_reader:
                    data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send(data.encode() + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()
        finally:
            writer_done.set()

    async def shutdown() -> None:
        read_stream.close()
        write_stream.close()
        with anyio.move_on_after(_WRITER_FLUSH_TIMEOUT):
            await writer_done.wait()
        await _stop_server_process(process)
        await _aclose_all(read_stream, write_stream, read_writer, write_reader)
        await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stdout_reader)
        tg.start_soon(stdin_writer)
        try:
            yield read_stream, write_stream
        finally:
            shutting_down = True
            with anyio.CancelScope(shield=True):
                await shutdown()
            tg.cancel_scope.cancel()
    await anyio.lowlevel.cancel_shielded_checkpoint()
