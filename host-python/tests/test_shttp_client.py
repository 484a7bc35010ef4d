"""The gateway's own Streamable HTTP client (mcpgw/federation/shttp_client.py) under a real upstream
link (federation/link.py: the SDK's ClientSession and dispatcher above it): kept-alive connections
reused, an SSE answer with progress before its result, from the toy server (a real MCP SDK server
process); and, from a raw TCP server speaking just enough MCP (the honest way to send an answer in
pieces or a broken one): a JSON answer and an SSE answer split across many reads (a CRLF split
between two of them too), a chunked JSON answer, a JSON answer and an SSE event over
max_message_bytes (that call fails, the link goes on), an upstream closing mid-answer, and a 404 to
a request carrying the session id (the link ends as a lost session, the request marked not run)."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from mcpgw.federation.config import ConfigError, UpstreamConfig, parse
from mcpgw.federation.link import UpstreamLink, UpstreamSessionLost, UpstreamUnavailable
from mcpgw.federation.shttp_client import SseParser, StreamableHttpClient
from mcpgw.server.jsonrpc import JsonRpcError
from upstream_procs import HttpUpstream, toy_http

pytestmark = pytest.mark.timeout(120)

LIMIT = 64 * 1024


def _config(url: str, **extra: object) -> UpstreamConfig:
    return UpstreamConfig(id="up", prefix="up", transport="streamable-http", url=url, **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def toy() -> Iterator[HttpUpstream]:
    upstream = toy_http("toy")
    yield upstream
    upstream.stop()


async def _open(url: str, **extra: object) -> tuple[UpstreamLink, StreamableHttpClient]:
    link = UpstreamLink(_config(url, **extra))
    await link.open()
    assert link.client == "mcpgw"
    client = link._http_transport
    assert isinstance(client, StreamableHttpClient)
    return link, client


async def test_kept_alive_connections_are_reused(toy: HttpUpstream) -> None:
    """The toy server answers with event streams: a connection goes back to the pool once its
    stream has ended, just after the response (so one call may overlap the next's start)."""
    link, client = await _open(toy.url)
    try:
        for _ in range(20):
            result = await link.request("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}})
            assert result["structuredContent"] == {"result": 5}
        assert client.pool.opened <= 4  # the GET stream's and at most three, not one per call
        results = await asyncio.gather(
            *(link.request("tools/call", {"name": "add", "arguments": {"a": i, "b": 1}}) for i in range(8))
        )
        assert [r["structuredContent"]["result"] for r in results] == [i + 1 for i in range(8)]
        assert client.pool.open <= 10
    finally:
        await link.close()


async def test_json_answers_reuse_one_connection(raw: Raw) -> None:
    link, _ = await _open(raw.url, max_message_bytes=LIMIT)
    try:
        assert _text(await link.request("tools/call", {"name": "echo"})) == "ok"
        before = raw.connections
        for i in range(20):
            assert _text(await link.request("tools/call", {"name": "echo", "arguments": {"text": str(i)}})) == str(i)
        assert raw.connections == before  # one connection carried every call
    finally:
        await link.close()


async def test_sse_answer_with_progress_then_result(toy: HttpUpstream) -> None:
    link, _ = await _open(toy.url)
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    try:
        result = await link.request("tools/call", {"name": "slow", "arguments": {"seconds": 0.3}}, on_progress)
        assert not result.get("isError")
        assert progress and progress == sorted(progress)
    finally:
        await link.close()


async def test_progress_is_handed_on_before_the_result_that_follows_it(toy: HttpUpstream) -> None:
    """The link relays its requests itself (federation/link.py `_relay`): the upstream's progress goes
    to the callback as it arrives, awaited before anything read after it, so a call returns only after
    its progress was handed on, however slow the consumer. (Through the SDK's dispatcher each progress
    callback ran in a task of its own: the last one could finish after the call had returned.)"""
    link, _ = await _open(toy.url)
    seen: list[object] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        await asyncio.sleep(0.05)  # a slow consumer, e.g. a client's stream
        seen.append(done)

    try:
        result = await link.request("tools/call", {"name": "slow", "arguments": {"seconds": 0.3}}, on_progress)
        seen.append("result")
        assert result["content"][0]["text"] == "slept 0.3"
        assert seen == [1, 2, 3, "result"]
        assert link._waiting == {}  # nothing left behind
    finally:
        await link.close()


class _CountingProxy:
    """A TCP relay in front of an upstream counting the connections it is sent and the HTTP request
    lines on them (what the upstream is asked, as its access log would say)."""

    def __init__(self, port: int) -> None:
        self.port, self.connections, self.requests = port, 0, collections.Counter[str]()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/mcp"

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await r.read(65536):
                    if count:  # a request's head and body come in one write (shttp_client.py)
                        line = data.split(b"\r\n", 1)[0].decode("latin-1")
                        if line.endswith(" HTTP/1.1"):
                            self.requests[line.split()[0]] += 1
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(client_r, up_w, True), pipe(up_r, client_w, False))


async def test_a_stateless_upstream_is_sent_one_post_per_call_on_kept_connections() -> None:
    """The SDK's server run stateless (no session id, JSON answers), as the bench runs it: each relayed
    call is one POST on a kept-alive connection, and nothing else (no GET stream, no new connection
    per call), sequential or concurrent. (The bench once showed such an upstream spending ~40% more
    CPU per call through the gateway than directly: this is what the gateway sends it.)"""
    upstream = toy_http("stateless", TOY_STATELESS="1")
    proxy = _CountingProxy(upstream.port)
    try:
        link, client = await _open(await proxy.start())
        try:
            assert link.upstream_session is None  # stateless: no session id
            handshake = dict(proxy.requests)
            assert handshake == {"POST": 2} and proxy.connections == 1  # initialize, notifications/initialized
            for i in range(20):
                result = await link.request("tools/call", {"name": "add", "arguments": {"a": i, "b": 1}})
                assert result["structuredContent"] == {"result": i + 1}
            assert proxy.requests == {"POST": 22} and proxy.connections == 1
            results = await asyncio.gather(
                *(link.request("tools/call", {"name": "add", "arguments": {"a": i, "b": 2}}) for i in range(8))
            )
            assert [r["structuredContent"]["result"] for r in results] == [i + 2 for i in range(8)]
            assert proxy.requests == {"POST": 30}  # no GET, no DELETE, no retry
            assert proxy.connections <= 8 and client.pool.opened == proxy.connections
        finally:
            await link.close()
    finally:
        proxy.server.close()
        upstream.stop()


# -- a raw upstream ------------------------------------------------------------------------------
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "raw", "version": "1"},
}


class Raw:
    """HTTP/1.1 over asyncio streams, answering MCP just enough: initialize (session `s1`), 202 to
    notifications, 405 to GET, 200 to DELETE, and tools/call by the tool's name (see `answer`)."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""
        self.server: asyncio.Server | None = None
        self.deleted = 0
        self.heads: list[dict[str, str]] = []  # every request's headers

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/mcp"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                method = head.split(" ", 1)[0]
                fields = [line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line]
                headers = {name.lower(): value for name, value in fields}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.heads.append(headers)
                if method == "GET":
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                elif method == "DELETE":
                    self.deleted += 1
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                else:
                    message = json.loads(body)
                    if "id" not in message:
                        writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                    elif not await self.answer(message, headers, writer):
                        return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, message: dict, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        """Write the answer; False to close the connection."""
        rid = message["id"]
        if message["method"] == "initialize":
            data = json.dumps({"jsonrpc": "2.0", "id": rid, "result": INIT}).encode()
            writer.write(_json_head(len(data), b"mcp-session-id: s1\r\n") + data)
            return True
        name = message["params"]["name"]
        text = message["params"].get("arguments", {}).get("text", "ok")
        result = json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}})
        if name == "split-json":  # the answer 3 bytes at a time, each its own segment
            await _dribble(writer, _json_head(len(result)) + result.encode(), 3)
        elif name == "chunked-json":
            pieces = [result[i : i + 5].encode() for i in range(0, len(result), 5)]
            chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            await _dribble(writer, head + chunked, 7)
        elif name == "split-sse":  # progress, a comment, then the result; CRLF line ends, 2 bytes a write
            token = message["params"]["_meta"]["progressToken"]
            progress = {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 1},
            }
            events = f": hi\r\nevent: message\r\ndata: {json.dumps(progress)}\r\n\r\ndata: {result}\r\n\r\n".encode()
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(events)
            await _dribble(writer, head + events, 2)
        elif name == "big-json":
            data = json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"text": "x" * (LIMIT + 10)}}).encode()
            writer.write(_json_head(len(data)) + data)
        elif name == "big-sse":
            event = b"data: " + json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"t": "x" * (LIMIT + 10)}}).encode()
            event += b"\n\n"
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(event)
            writer.write(head + event)
        elif name == "cut":  # half the answer, then the connection closes
            data = _json_head(len(result)) + result.encode()
            writer.write(data[: len(data) - 10])
            await writer.drain()
            return False
        elif name == "gone":  # the session is no longer known
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        else:
            writer.write(_json_head(len(result)) + result.encode())
        return True


def _json_head(length: int, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra + b"content-length: %d\r\n\r\n" % length


async def _dribble(writer: asyncio.StreamWriter, data: bytes, size: int) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(6, 1, 1)  # TCP_NODELAY: each piece its own segment
    for i in range(0, len(data), size):
        writer.write(data[i : i + size])
        await writer.drain()
        await asyncio.sleep(0.001)


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    server = Raw()
    await server.start()
    yield server
    assert server.server is not None
    server.server.close()


def _text(result: dict) -> str:
    return result["content"][0]["text"]


async def test_answers_split_across_many_reads(raw: Raw) -> None:
    link, client = await _open(raw.url, max_message_bytes=LIMIT)
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    try:
        assert (
            _text(await link.request("tools/call", {"name": "split-json", "arguments": {"text": "é" * 50}})) == "é" * 50
        )
        before = raw.connections
        assert (
            _text(await link.request("tools/call", {"name": "chunked-json", "arguments": {"text": "abc" * 9}}))
            == "abc" * 9
        )
        result = await link.request("tools/call", {"name": "split-sse", "arguments": {"text": "s"}}, on_progress)
        assert _text(result) == "s" and progress == [1]
        # The event stream's end is read in a task after the result was handed on: its connection
        # is back in the pool once that is done (the link opens after its GET stream was answered,
        # so no second connection of that GET's is there to take meanwhile).
        for _ in range(300):  # bounded at 30 s
            if not client.pool.lent:
                break
            await asyncio.sleep(0.1)
        assert _text(await link.request("tools/call", {"name": "echo"})) == "ok"
        assert raw.connections == before  # every answer was read to its end: its connection kept
    finally:
        await link.close()
    assert raw.deleted == 1  # the session ended with DELETE


@pytest.mark.parametrize("tool", ["big-json", "big-sse"])
async def test_an_answer_over_max_message_bytes_fails_that_call_only(raw: Raw, tool: str) -> None:
    link, _ = await _open(raw.url, max_message_bytes=LIMIT)
    try:
        with pytest.raises(JsonRpcError, match=f"over {LIMIT} bytes"):
            await link.request("tools/call", {"name": tool})
        assert link.alive
        assert _text(await link.request("tools/call", {"name": "echo"})) == "ok"
    finally:
        await link.close()


async def test_an_upstream_that_closes_mid_answer(raw: Raw) -> None:
    link, _ = await _open(raw.url, max_message_bytes=LIMIT)
    try:
        with pytest.raises(UpstreamUnavailable, match="closed the connection during tools/call"):
            await link.request("tools/call", {"name": "cut"})
        assert link.alive  # the connection went, the link did not
        assert _text(await link.request("tools/call", {"name": "echo"})) == "ok"
    finally:
        await link.close()


async def test_a_404_to_the_session_ends_the_link_and_the_request_was_not_run(raw: Raw) -> None:
    link, _ = await _open(raw.url, max_message_bytes=LIMIT)
    try:
        with pytest.raises(UpstreamSessionLost):
            await link.request("tools/call", {"name": "gone"})
        assert not link.alive and link.session_lost
        assert "HTTP 404" in (link.error or "")
    finally:
        await link.close()


async def test_a_refused_connection_ends_the_link(raw: Raw) -> None:
    link, _ = await _open(raw.url, max_message_bytes=LIMIT)
    try:
        assert raw.server is not None
        raw.server.close()
        await raw.server.wait_closed()
        for conn in link._http_transport.pool.idle:  # type: ignore[union-attr]
            conn.close()  # the server's side is gone; the pool's next connection is refused
        with pytest.raises(UpstreamUnavailable, match="refused the connection"):
            await link.request("tools/call", {"name": "echo"})
        assert not link.alive
    finally:
        await link.close()


def test_sse_parser_lines_and_limits() -> None:
    events: list = []
    parser = SseParser(10, events)
    for piece in [
        b"id: 7\r",
        b"\ndata: abc\r\n",
        b"data: d\r\n\r",
        b"\nretry: 50\n",
        b"data: 0123456789ab\n\n",
        b"data: z\n\n",
    ]:
        parser.feed(piece)
    assert events == [("message", b"abc\nd", "7"), (None, 13, "7"), ("message", b"z", "7")]
    assert parser.retry_ms == 50


def test_the_client_key_chooses_the_transport() -> None:
    auto, sdk, tls, oauth = parse(
        '[upstreams.a]\ntransport = "streamable-http"\nurl = "http://127.0.0.1:1/mcp"\n'
        '[upstreams.b]\ntransport = "streamable-http"\nurl = "http://127.0.0.1:1/mcp"\nclient = "sdk"\n'
        '[upstreams.c]\ntransport = "streamable-http"\nurl = "https://example.com/mcp"\n'
        '[upstreams.d]\ntransport = "streamable-http"\nurl = "http://127.0.0.1:1/mcp"\n'
        '[upstreams.d.oauth]\ntoken_endpoint = "http://127.0.0.1:1/t"\nclient_id = "x"\nclient_secret = "y"\n'
    )
    assert [UpstreamLink(c).client for c in (auto, sdk, tls)] == ["mcpgw", "sdk", "sdk"]
    assert UpstreamLink(oauth, auth=object()).client == "sdk"  # type: ignore[arg-type]  # any credentials
    with pytest.raises(ConfigError, match='client must be "auto" or "sdk"'):
        parse('[upstreams.a]\ntransport = "streamable-http"\nurl = "http://h/mcp"\nclient = "lean"\n')
    with pytest.raises(ConfigError, match="client does not apply to a sse upstream"):
        parse('[upstreams.a]\ntransport = "sse"\nurl = "http://h/sse"\nclient = "sdk"\n')


async def test_credentials_in_the_url_go_as_basic_auth(raw: Raw) -> None:
    url = raw.url.replace("http://", "http://bob:s%40cret@")
    link, _ = await _open(url, max_message_bytes=LIMIT)
    try:
        assert _text(await link.request("tools/call", {"name": "echo"})) == "ok"
    finally:
        await link.close()
    assert raw.heads and all(h.get("authorization") == "Basic Ym9iOnNAY3JldA==" for h in raw.heads)  # bob:s@cret
