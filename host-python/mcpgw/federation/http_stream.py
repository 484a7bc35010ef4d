"""The sockets under a plain-HTTP upstream's connection pool: asyncio's own transport and a small
protocol, in place of httpx's default anyio streams (issue 20, docs/benchmarks.md "Relaying").

A relayed call is an HTTP/1.1 POST on a kept-alive pooled connection. With the default streams
the profile showed three costs per call that are not the request's own work: two `send`
syscalls (httpcore writes the head and the body separately; on loopback each wakes the
upstream), the pool's health check of every idle connection (a `poll` syscall plus anyio's
attribute lookup, for each of up to 20 connections, twice per request) and anyio's cancel scopes
and events per read and write. Here:

- writes are held until the next read (httpcore reads the answer only after the whole request is
  written, so nothing waits on the peer unsent) or 64 KiB: one `send` per request;
- the bytes arrive through the protocol, so "is the idle connection readable" (the server closed
  it, or sent something unasked) is known without a syscall;
- a read or a drain waits on one future, bounded by `asyncio.timeout` only when it has a bound.

Only for `http://` upstreams: TLS (`start_tls`) stays with httpx's default backend.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

COALESCE_BYTES = 64 * 1024  # written out at once past this, without waiting for the read
READ_PAUSE_BYTES = 256 * 1024  # the socket is not read while this much is unconsumed


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None  # a read waiting for bytes
        self.drain: asyncio.Future[None] | None = None  # a write waiting for the send buffer
        self.paused_reading = False
        self.paused_writing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= READ_PAUSE_BYTES and not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def _wake_reader(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._pending: list[bytes] = []
        self._pending_size = 0

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            if self._transport.is_closing():
                raise httpcore2.WriteError("the connection is closed")
            self._transport.write(data)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._flush()
        except httpcore2.WriteError as exc:
            raise httpcore2.ReadError(str(exc)) from None
        protocol = self._protocol
        while not protocol.buffer:
            if protocol.eof:
                if protocol.error is not None:
                    raise httpcore2.ReadError(str(protocol.error) or type(protocol.error).__name__)
                return b""
            protocol.waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await protocol.waiter
                else:
                    async with asyncio.timeout(timeout):
                        await protocol.waiter
            except TimeoutError:
                raise httpcore2.ReadTimeout("timed out reading from the upstream") from None
            finally:
                protocol.waiter = None
        chunk = bytes(protocol.buffer[:max_bytes])
        del protocol.buffer[:max_bytes]
        if protocol.paused_reading and len(protocol.buffer) < READ_PAUSE_BYTES // 2:
            protocol.paused_reading = False
            self._transport.resume_reading()
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._protocol.eof:
            raise httpcore2.WriteError("the connection is closed")
        self._pending.append(buffer)
        self._pending_size += len(buffer)
        if self._pending_size < COALESCE_BYTES:
            return  # sent with what follows, at the latest when the answer is read
        self._flush()
        protocol = self._protocol
        if protocol.paused_writing:
            protocol.drain = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await protocol.drain
            except TimeoutError:
                raise httpcore2.WriteTimeout("timed out writing to the upstream") from None
            finally:
                protocol.drain = None
            if protocol.eof:
                raise httpcore2.WriteError("the connection is closed")

    async def aclose(self) -> None:
        self._pending.clear()
        self._transport.close()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("TLS upstreams use httpx's default network backend")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # asked of idle pooled connections: the server closed or spoke
            return bool(self._protocol.buffer) or self._protocol.eof
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        return None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not used for upstreams")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def http_transport(url: str) -> httpx2.AsyncHTTPTransport:
    """httpx's transport for an upstream at `url`: over asyncio streams when it is plain HTTP,
    httpx's default otherwise. Same pool limits as httpx's default (100 connections, 20 kept)."""
    transport = httpx2.AsyncHTTPTransport()
    if url.lower().startswith("http://"):
        limits = httpx2.Limits(max_connections=100, max_keepalive_connections=20)
        # httpx2 2.16 takes no network backend of its own: its pool is replaced with one that has ours.
        transport._pool = httpcore2.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )
    return transport
