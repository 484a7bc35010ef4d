"""stdio: newline-delimited JSON-RPC on stdin/stdout, for desktop clients that start the gateway.

One message per line, UTF-8. stdout carries nothing but MCP messages (logs go to
stderr); JSON never needs a raw newline, because one inside a string is written
as `\\n`. A line that is not JSON gets a parse error and the stream goes on; a
line longer than the body limit is refused without being kept. At EOF the
running requests get the shutdown grace to finish, then are cancelled; on
SIGTERM they get the same grace, then -32603 "Server shutting down" (the
engine's shutdown drain, as on every transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..server import jsonrpc
from ..server.dispatcher import Dispatcher
from ..server.engine import SessionEngine
from ..state.principal import Principal
from .connection import Connection

log = logging.getLogger("mcpgw.stdio")
READ_CHUNK = 64 * 1024


# U+2028/U+2029 are legal raw in JSON strings but are line breaks to some readers (Python's
# splitlines, older JavaScript): written escaped, a message is one line by any reading.
_UNICODE_BREAKS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def encode_line(message: dict[str, Any]) -> bytes:
    data = orjson.dumps(message)
    for raw, escaped in _UNICODE_BREAKS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data + b"\n"


class FileWriter:
    """Blocking writes for a stdout that is a regular file (asyncio pipes refuse those)."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    async def drain(self) -> None:
        return None


async def open_stdio(stdin: Any, stdout: Any) -> tuple[asyncio.StreamReader, Any]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    except ValueError:  # a regular file: read it in a thread

        def pump() -> None:
            while data := stdin.buffer.read1(READ_CHUNK) if hasattr(stdin, "buffer") else stdin.read(READ_CHUNK):
                loop.call_soon_threadsafe(reader.feed_data, data)
            loop.call_soon_threadsafe(reader.feed_eof)

        loop.run_in_executor(None, pump)
    try:
        out_transport, out_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
        writer: Any = asyncio.StreamWriter(out_transport, out_protocol, None, loop)
    except ValueError:
        writer = FileWriter(stdout.buffer if hasattr(stdout, "buffer") else stdout)
    return reader, writer


class StdioTransport:
    """stdout: the Peer of the one session."""

    name = "stdio"

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._open = True

    def connected(self) -> bool:
        return self._open

    async def send(self, message: dict[str, Any]) -> bool:
        if not self._open:
            return False
        try:
            self._writer.write(encode_line(message))
            await self._writer.drain()
        except (ConnectionError, BrokenPipeError):
            self._open = False  # the client stopped reading for good
            return False
        return True

    def close(self, reason: str) -> None:
        self._open = False


async def lines(reader: asyncio.StreamReader, limit: int) -> AsyncIterator[bytes | None]:
    """Each complete line (without its newline), or None for a line over `limit` bytes (dropped)."""
    buffer = bytearray()
    skipping = False
    while True:
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            if buffer and not skipping:
                yield bytes(buffer)  # a last line without its newline
            return
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not skipping:
                buffer += piece
                if len(buffer) > limit:
                    buffer.clear()
                    skipping = True
                    yield None
            if end < 0:
                break
            if not skipping:
                yield bytes(buffer)
            buffer.clear()
            skipping = False
            start = end + 1


async def serve(
    engine: SessionEngine,
    dispatcher: Dispatcher,
    max_message_bytes: int,
    grace_s: float,
    stdin: Any = None,
    stdout: Any = None,
    principal: Principal | None = None,
) -> None:
    reader, writer = await open_stdio(stdin or sys.stdin, stdout or sys.stdout)
    transport = StdioTransport(writer)
    connection = Connection(transport, engine, dispatcher, None)
    connection.open(None, principal)  # the caller from the environment (cli.py: stdio_principal)
    async for line in lines(reader, max_message_bytes):
        if line is None:
            await transport.send(
                jsonrpc.error_response(
                    None, jsonrpc.INVALID_REQUEST, f"Invalid Request: message larger than {max_message_bytes} bytes"
                )
            )
        elif line.strip():
            await connection.receive(line)
    log.info("stdin closed; finishing %d running request(s)", connection.running())
    await connection.finish(grace_s)
    transport.close("eof")
    with contextlib.suppress(ConnectionError, BrokenPipeError):  # the client stopped reading for good
        await writer.drain()
