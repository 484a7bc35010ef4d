"""The asyncio network streams under a plain-HTTP upstream's pool (mcpgw/federation/http_stream.py),
through httpx over real loopback sockets to a small HTTP/1.1 server: bodies over 1 MiB both ways,
kept-alive connections reused, a connection the server closed while idle replaced, read timeouts
and refused connections reported as httpx's errors, and one socket write per request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest

from mcpgw.federation.http_stream import AsyncioBackend, http_transport


class Server:
    """HTTP/1.1 with Content-Length: answers `/echo` with the body it got, `/big` with 1.5 MiB,
    `/close` and then closes the connection after answering, `/slow` after 5 s."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split()[1]
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length)
                if path == "/slow":
                    await asyncio.sleep(5)
                answer = b"x" * (1536 * 1024) if path == "/big" else body
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(answer) + answer)
                await writer.drain()
                if path == "/close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    await s.start()
    yield s
    assert s.server is not None
    s.server.close()


async def test_bodies_over_1mib_and_kept_alive(server: Server) -> None:
    async with httpx2.AsyncClient(transport=http_transport(server.url)) as client:
        sent = bytes(range(256)) * 8192  # 2 MiB
        r = await client.post(server.url + "/echo", content=sent)
        assert r.status_code == 200 and r.content == sent
        r = await client.post(server.url + "/big", content=b"{}")
        assert len(r.content) == 1536 * 1024
        for i in range(20):
            r = await client.post(server.url + "/echo", content=b'{"n":%d}' % i)
            assert r.content == b'{"n":%d}' % i
    assert server.connections == 1  # every request on the one kept-alive connection


async def test_a_connection_the_server_closed_is_replaced(server: Server) -> None:
    async with httpx2.AsyncClient(transport=http_transport(server.url)) as client:
        assert (await client.post(server.url + "/close", content=b"a")).content == b"a"
        pooled = client._transport._pool.connections[0]  # type: ignore[attr-defined]
        for _ in range(500):  # the server's close reaches the idle pooled connection (seen without a syscall)
            if pooled.has_expired():
                break
            await asyncio.sleep(0.01)
        assert pooled.has_expired()
        assert (await client.post(server.url + "/echo", content=b"b")).content == b"b"
    assert server.connections == 2


async def test_timeouts_and_refusals_are_httpx_errors(server: Server) -> None:
    async with httpx2.AsyncClient(transport=http_transport(server.url), timeout=httpx2.Timeout(5, read=0.2)) as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.post(server.url + "/slow", content=b"a")
        assert (await client.post(server.url + "/echo", content=b"ok")).content == b"ok"
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()
    async with httpx2.AsyncClient(transport=http_transport(server.url)) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.post(server.url + "/echo", content=b"a")


async def test_one_socket_write_per_request(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    stream = await AsyncioBackend().connect_tcp(host, int(port))
    writes: list[bytes] = []
    inner = stream._transport.write  # type: ignore[attr-defined]

    def counted(data: bytes) -> None:
        writes.append(data)
        inner(data)

    stream._transport.write = counted  # type: ignore[attr-defined]
    await stream.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n")
    await stream.write(b"hi")
    assert writes == []  # held until the answer is read
    answer = b""
    while not answer.endswith(b"hi"):
        answer += await stream.read(65536, timeout=5)
    assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\nhi")
    assert stream.get_extra_info("is_readable") is False
    await stream.aclose()
