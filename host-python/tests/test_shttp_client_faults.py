"""The gateway's own Streamable HTTP client (federation/shttp_client.py) against upstreams that
misbehave or are merely unusual on the wire: a raw asyncio TCP server speaking just enough MCP,
whose answer to each tools/call is scripted by the tool's name, under a real upstream link (the
SDK's ClientSession and dispatcher above the transport).

Each test here failed before its fix (the review findings of issue 20's client), except the two
that pin behaviour kept (a reused connection closed with no answer is replaced once; redirects are
not followed): events parsed while the link's read stream was full were dropped or held; a POST
was sent again after a read timeout; an interim 1xx answer was taken as the final one; a
resumption GET waited with no bound; the GET stream carried no MCP-Protocol-Version; an answer's
head had no size bound; a connect time-out ended the link; the failure's reason was lost; an event
stream answering a notification left its connection paused; idle connections were kept as long
as uvicorn keeps them; a call given up while waiting for a connection was sent later anyway; an
initialize the upstream refused was reported as a closed connection (with either client); a call
waiting for a free connection waited with no bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from mcpgw.federation import shttp_client
from mcpgw.federation.config import UpstreamConfig
from mcpgw.federation.link import UpstreamLink, UpstreamTimeout, UpstreamUnavailable
from mcpgw.federation.shttp_client import IDLE_S, MAX_CONNECTIONS, StreamableHttpClient
from mcpgw.federation.upstream import Upstream
from mcpgw.server.jsonrpc import JsonRpcError

pytestmark = pytest.mark.timeout(120)

INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "raw", "version": "1"},
}
GONE_405 = b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n"

# (message, headers, writer, server) -> False to close the connection
Script = Callable[[dict[str, Any], dict[str, str], asyncio.StreamWriter, "Raw"], Awaitable[bool]]
# (headers, writer, server) -> False to close the connection
GetScript = Callable[[dict[str, str], asyncio.StreamWriter, "Raw"], Awaitable[bool]]


def _result(rid: Any, text: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}}).encode()


def _json_answer(data: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(data)
        + data
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _progress(token: Any, n: int) -> bytes:
    message = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": n}}
    return b"data: " + json.dumps(message).encode() + b"\n\n"


SSE_CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def _echo(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
    writer.write(_json_answer(_result(message["id"], message["params"]["name"])))
    return True


async def _no_get(headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
    writer.write(GONE_405)
    return True


class Raw:
    """HTTP/1.1 over asyncio streams: initialize (session `s1`), 202 to notifications, 200 to
    DELETE; GET and tools/call as scripted (`tools`: by the tool's name, else an echo of the name)."""

    def __init__(self) -> None:
        self.tools: dict[str, Script] = {}
        self.get: GetScript = _no_get
        self.notification: Script | None = None
        self.initialize: Script | None = None
        self.log: list[tuple[int, str, str | None, dict[str, str]]] = []  # (connection, method, rpc method, headers)
        self.connections = 0
        self.url = ""
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopped = asyncio.Event()  # what a script that holds its connection open waits for
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/mcp"

    def calls(self, name: str) -> int:
        return sum(1 for _, _, rpc, h in self.log if rpc == "tools/call" and h.get("x-tool") == name)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.writers.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                method = head.split(" ", 1)[0]
                headers = dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                message = json.loads(body) if body else {}
                if message.get("method") == "tools/call":
                    headers["x-tool"] = message["params"]["name"]
                self.log.append((number, method, message.get("method"), headers))
                if method == "GET":
                    keep = await self.get(headers, writer, self)
                elif method == "DELETE":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    keep = True
                elif "id" not in message:
                    if self.notification is not None and "method" in message:
                        keep = await self.notification(message, headers, writer, self)
                    else:
                        writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                        keep = True
                elif message.get("method") == "initialize" and self.initialize is not None:
                    keep = await self.initialize(message, headers, writer, self)
                elif message.get("method") == "initialize":
                    data = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": INIT}).encode()
                    writer.write(_json_answer(data, b"mcp-session-id: s1\r\n"))
                    keep = True
                else:
                    keep = await self.tools.get(message["params"]["name"], _echo)(message, headers, writer, self)
                await writer.drain()
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self.stopped.set()
        for writer in self.writers:
            writer.close()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 30)


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    server = Raw()
    await server.start()
    yield server
    await server.stop()


async def _open(url: str, **extra: Any) -> tuple[UpstreamLink, StreamableHttpClient]:
    link = UpstreamLink(UpstreamConfig(id="up", prefix="up", transport="streamable-http", url=url, **extra))
    await link.open()
    assert link.client == "mcpgw"
    client = link._http_transport
    assert isinstance(client, StreamableHttpClient)
    return link, client


def _text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


# -- 1: events parsed while the link's read stream is full ---------------------------------------
@pytest.mark.parametrize("stream_ends", [True, False])
async def test_no_event_is_lost_or_held_when_the_read_stream_is_full(raw: Raw, stream_ends: bool) -> None:
    """Many concurrent calls, each answered with 40 progress events, then its response (and, or
    not, the stream's end): the link's read stream (16 slots) fills behind a slow progress handler,
    so events are parsed while earlier ones wait to be handed on. Every call gets its response."""

    async def progress_then_result(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        token = message["params"]["_meta"]["progressToken"]
        writer.write(SSE_CHUNKED + b"".join(_chunk(_progress(token, i)) for i in range(40)))
        await writer.drain()
        await asyncio.sleep(0.002)
        writer.write(_chunk(b"data: " + _result(message["id"], "done") + b"\n\n"))
        if stream_ends:
            writer.write(b"0\r\n\r\n")
            return True
        await writer.drain()
        await raw.stopped.wait()  # the stream stays open (the client closes it after the response)
        return False

    raw.tools["p"] = progress_then_result
    link, _ = await _open(raw.url, read_timeout_s=60, call_timeout_s=0)

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        await asyncio.sleep(0.001)

    try:
        for _ in range(3):
            results = await asyncio.wait_for(
                asyncio.gather(*(link.request("tools/call", {"name": "p"}, on_progress) for _ in range(20))), 30
            )
            assert [_text(r) for r in results] == ["done"] * 20
    finally:
        await link.close()


# -- 2: a POST is never sent twice after a read timeout ------------------------------------------
async def test_a_read_timeout_on_a_reused_connection_does_not_send_the_post_again(raw: Raw) -> None:
    silent = asyncio.Event()

    async def never(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        silent.set()
        await raw.stopped.wait()
        return False

    raw.tools["silent"] = never
    link, _ = await _open(raw.url, read_timeout_s=1.0, call_timeout_s=0)
    try:
        assert _text(await link.request("tools/call", {"name": "echo"})) == "echo"  # a kept-alive connection
        with pytest.raises(UpstreamUnavailable):
            await asyncio.wait_for(link.request("tools/call", {"name": "silent"}), 30)
        assert silent.is_set()
        assert raw.calls("silent") == 1  # sent once, not again on a fresh connection
        assert link.alive
    finally:
        await link.close()


async def test_a_reused_connection_closed_before_the_answer_is_replaced_once(raw: Raw) -> None:
    """The upstream closes a kept-alive connection as the request leaves (its keep-alive ran out):
    nothing of the answer came, the request was not read: sent again on a new connection."""
    closes = 0

    async def close_once(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        nonlocal closes
        if closes == 0:
            closes += 1
            return False  # closed with no answer
        writer.write(_json_answer(_result(message["id"], "second")))
        return True

    raw.tools["flaky"] = close_once
    link, _ = await _open(raw.url, read_timeout_s=30, call_timeout_s=0)
    try:
        assert _text(await link.request("tools/call", {"name": "echo"})) == "echo"
        assert _text(await asyncio.wait_for(link.request("tools/call", {"name": "flaky"}), 30)) == "second"
    finally:
        await link.close()


# -- 3: interim 1xx answers ----------------------------------------------------------------------
async def test_an_interim_1xx_answer_is_not_taken_as_the_final_one(raw: Raw) -> None:
    async def hinted(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        event = b"data: " + _result(message["id"], "hinted answer") + b"\n\n"
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(event)
        writer.write(head + event)
        return True

    async def continued(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _json_answer(_result(message["id"], "continued answer")))
        return True

    raw.tools["hinted"] = hinted
    raw.tools["continued"] = continued
    link, _ = await _open(raw.url, read_timeout_s=30, call_timeout_s=30)
    try:
        assert _text(await link.request("tools/call", {"name": "warm"})) == "warm"
        assert _text(await link.request("tools/call", {"name": "hinted"})) == "hinted answer"
        assert _text(await link.request("tools/call", {"name": "B"})) == "B"
        assert _text(await link.request("tools/call", {"name": "continued"})) == "continued answer"
        assert _text(await link.request("tools/call", {"name": "C"})) == "C"
    finally:
        await link.close()


async def test_bytes_after_a_complete_answer_are_not_read_as_the_next_one(raw: Raw) -> None:
    """An upstream that writes a second answer behind the first: the connection is not reused
    (the next call must not read a stale answer)."""

    async def twice(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        writer.write(_json_answer(_result(message["id"], "first")) + _json_answer(_result(message["id"], "stale")))
        return True

    raw.tools["twice"] = twice
    link, _ = await _open(raw.url, read_timeout_s=30, call_timeout_s=30)
    try:
        assert _text(await link.request("tools/call", {"name": "twice"})) == "first"
        for name in ("a", "b", "c"):
            assert _text(await link.request("tools/call", {"name": name})) == name
    finally:
        await link.close()


# -- 4: the resumption GET is bounded by read_timeout_s -------------------------------------------
async def test_a_silent_resumption_get_fails_the_call_within_the_read_timeout(raw: Raw) -> None:
    resumed = asyncio.Event()

    async def cut_after_an_event(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        token = message["params"]["_meta"]["progressToken"]
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        writer.write(head + b"retry: 50\nid: e1\n" + _progress(token, 1))
        return False  # the stream ends before the response

    async def silent_get(headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        if "last-event-id" in headers:
            resumed.set()
            await raw.stopped.wait()
        writer.write(GONE_405)
        return True

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        pass

    raw.tools["cut"] = cut_after_an_event
    raw.get = silent_get
    link, _ = await _open(raw.url, read_timeout_s=1.0, call_timeout_s=0)
    try:
        with pytest.raises(UpstreamUnavailable):
            await asyncio.wait_for(link.request("tools/call", {"name": "cut"}, on_progress), 30)
        assert resumed.is_set()
    finally:
        await link.close()


# -- 5: MCP-Protocol-Version on every request after initialize ---------------------------------
async def test_every_request_after_initialize_carries_the_protocol_version(raw: Raw) -> None:
    got = asyncio.Event()

    async def get(headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        got.set()
        writer.write(GONE_405)
        return True

    raw.get = get
    link, _ = await _open(raw.url, read_timeout_s=30)
    try:
        await link.request("tools/call", {"name": "echo"})
        await asyncio.wait_for(got.wait(), 30)
    finally:
        await link.close()
    after = [(method, rpc, h.get("mcp-protocol-version")) for _, method, rpc, h in raw.log if rpc != "initialize"]
    assert {m for m, _, _ in after} >= {"GET", "POST", "DELETE"}
    assert all(version == "2025-11-25" for _, _, version in after), after


# -- 7: an answer's head is bounded -------------------------------------------------------------
async def test_an_endless_answer_head_fails_the_call_soon(raw: Raw) -> None:
    sent = 0

    async def endless_head(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nx-junk: ")
        piece = b"a" * 65536
        for _ in range(384):  # 24 MiB, never ending the header
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        await raw.stopped.wait()
        return False

    async def many_headers(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        fields = b"".join(b"x-h%d: 1\r\n" % i for i in range(2000))
        writer.write(b"HTTP/1.1 200 OK\r\n" + fields)
        await writer.drain()
        await raw.stopped.wait()
        return False

    raw.tools["endless"] = endless_head
    raw.tools["many"] = many_headers
    link, _ = await _open(raw.url, read_timeout_s=60, call_timeout_s=0)
    try:
        for name in ("endless", "many"):
            with pytest.raises(UpstreamUnavailable, match="head over"):
                await asyncio.wait_for(link.request("tools/call", {"name": name}), 30)
            assert link.alive
        assert sent < 8 * 1024 * 1024  # the connection was closed long before the 24 MiB
        assert _text(await link.request("tools/call", {"name": "echo"})) == "echo"
    finally:
        await link.close()


# -- 9: the reason a call failed reaches its caller ---------------------------------------------
async def test_the_reason_a_call_failed_reaches_the_caller(raw: Raw) -> None:
    async def never(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        await raw.stopped.wait()
        return False

    raw.tools["silent"] = never
    link, _ = await _open(raw.url, read_timeout_s=1.0, call_timeout_s=0)
    try:
        with pytest.raises(UpstreamUnavailable, match=r"^Upstream 'up' sent nothing for 1 s during tools/call$"):
            await asyncio.wait_for(link.request("tools/call", {"name": "silent"}), 30)
    finally:
        await link.close()


# -- 8: a connect time-out fails the call, not the link ------------------------------------------
def _unanswering_listener(port: int) -> list[socket.socket]:
    """A socket listening on `port` whose accept queue is full: a new connection's SYN goes
    unanswered, so connecting times out (as with an upstream behind a dropped route)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    held = [listener]
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        held.append(filler)
    return held


async def test_a_connect_timeout_fails_the_call_and_the_link_goes_on(raw: Raw) -> None:
    link, client = await _open(raw.url, read_timeout_s=30, connect_timeout_s=3)
    held: list[socket.socket] = []
    try:
        assert _text(await link.request("tools/call", {"name": "echo"})) == "echo"
        assert raw.server is not None
        port = raw.server.sockets[0].getsockname()[1]
        await raw.stop()
        for conn in client.pool.idle:
            conn.close()
        held = _unanswering_listener(port)
        with pytest.raises(UpstreamUnavailable, match="did not accept a connection within 3 s during tools/call"):
            await asyncio.wait_for(link.request("tools/call", {"name": "echo"}), 60)
        assert link.alive  # as under the SDK's client: a connect time-out is not a refusal
    finally:
        for sock in held:
            sock.close()
        await link.close()


# -- 12: an event stream answering a notification ------------------------------------------------
async def test_an_event_stream_answering_a_notification_leaves_its_connection_usable(raw: Raw) -> None:
    """200 with an event stream of 100 messages to a notification, all in one write: more events than
    the parser holds before it stops reading the socket. Its connection is used again after."""

    async def chatty(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
        events = b"".join(b"data: " + json.dumps(log).encode() + b"\n\n" for _ in range(100))
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(events)
        writer.write(head + events)
        return True

    link, client = await _open(raw.url, read_timeout_s=60, call_timeout_s=0)
    raw.notification = chatty
    try:
        assert _text(await link.request("tools/call", {"name": "echo"})) == "echo"
        await asyncio.wait_for(link.notify("notifications/roots/list_changed"), 30)
        for name in ("a", "b", "c"):
            assert _text(await asyncio.wait_for(link.request("tools/call", {"name": name}), 30)) == name
        assert not any(conn.paused for conn in client.pool.idle)
    finally:
        await link.close()


# -- 13: idle connections are dropped before the upstream drops them ---------------------------
def test_an_idle_connection_is_dropped_before_uvicorns_keep_alive_ends() -> None:
    """An idle connection kept as long as the server keeps it races the server's close (the request
    leaves as the server closes): the pool drops it earlier than uvicorn's default keep-alive."""
    assert uvicorn.Config(app=None).timeout_keep_alive > IDLE_S


# -- 10: a call that gives up while waiting for a free connection --------------------------------
async def test_a_call_that_times_out_waiting_for_a_connection_is_never_sent(raw: Raw) -> None:
    """Every connection of the pool (MAX_CONNECTIONS) is busy with a held call; one more call times
    out at the link while it waits for one: it is not POSTed later, when connections free up, and
    its caller hears of the time-out without waiting for a connection (nothing to cancel upstream)."""
    release = asyncio.Event()
    held = 0
    all_held = asyncio.Event()

    async def hold(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        nonlocal held
        held += 1
        if held == MAX_CONNECTIONS:
            all_held.set()
        await release.wait()
        writer.write(_json_answer(_result(message["id"], "held")))
        return True

    raw.tools["hold"] = hold
    link, client = await _open(raw.url, read_timeout_s=60, call_timeout_s=0)
    try:
        holds = [asyncio.ensure_future(link.request("tools/call", {"name": "hold"})) for _ in range(MAX_CONNECTIONS)]
        await asyncio.wait_for(all_held.wait(), 60)
        assert client.pool.open == MAX_CONNECTIONS
        with pytest.raises(UpstreamTimeout):
            await asyncio.wait_for(link.request("tools/call", {"name": "late"}, timeout=1.0), 20)
        release.set()
        assert [_text(r) for r in await asyncio.wait_for(asyncio.gather(*holds), 60)] == ["held"] * MAX_CONNECTIONS
        assert _text(await link.request("tools/call", {"name": "after"})) == "after"
        assert raw.calls("late") == 0
        assert not any(rpc == "notifications/cancelled" for _, _, rpc, _ in raw.log)  # it never left
    finally:
        release.set()
        await link.close()


async def test_a_waiter_woken_then_cancelled_passes_the_free_connection_on(
    raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One connection allowed, two exchanges waiting for it: the first is woken as it frees up and
    cancelled before it runs; the second still gets a connection (the wake-up is not lost)."""
    monkeypatch.setattr(shttp_client, "MAX_CONNECTIONS", 1)
    assert raw.server is not None
    pool = shttp_client._Pool("127.0.0.1", raw.server.sockets[0].getsockname()[1], 10.0)
    first, _ = await pool.acquire()
    woken = asyncio.ensure_future(pool.acquire())
    second = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)  # both run to their wait (nothing else is awaited before it)
    assert len(pool.waiters) == 2
    pool.discard(first)  # wakes `woken`...
    woken.cancel()  # ...which is cancelled before it runs
    conn, _ = await asyncio.wait_for(second, 20)
    assert woken.cancelled() and pool.open == 1
    pool.discard(conn)
    pool.close()


async def test_no_event_of_the_get_stream_is_lost_when_the_read_stream_is_full(raw: Raw) -> None:
    """The GET stream carries 100 progress notifications of a call in flight, in two bursts, and
    stays open; the progress handler is slow, so the read stream fills while events are parsed: every
    one reaches it (the call's answer waits for the 100th)."""
    token: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    seen: list[float] = []
    all_seen = asyncio.Event()

    async def wait_for_progress(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        token.set_result(message["params"]["_meta"]["progressToken"])
        await all_seen.wait()
        writer.write(_json_answer(_result(message["id"], "all seen")))
        return True

    async def burst(headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        if token.done():  # one stream only
            writer.write(GONE_405)
            return True
        writer.write(SSE_CHUNKED)
        await writer.drain()
        progress = await token
        writer.write(b"".join(_chunk(_progress(progress, i)) for i in range(50)))
        await writer.drain()
        await asyncio.sleep(0.002)  # the rest arrives while the first ones are handed on (not a synchronisation)
        writer.write(b"".join(_chunk(_progress(progress, i)) for i in range(50, 100)))
        await writer.drain()
        await raw.stopped.wait()
        return False

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        await asyncio.sleep(0.001)
        seen.append(done)
        if len(seen) == 100:
            all_seen.set()

    raw.tools["wait"] = wait_for_progress
    raw.get = burst
    link, _ = await _open(raw.url, read_timeout_s=60, call_timeout_s=0)
    try:
        result = await asyncio.wait_for(link.request("tools/call", {"name": "wait"}, on_progress), 30)
        assert _text(result) == "all seen"
        assert seen == list(range(100))
    finally:
        await link.close()


# -- 11: redirects are not followed, and say so -------------------------------------------------
async def test_a_redirect_is_not_followed_and_names_the_location(raw: Raw) -> None:
    async def moved(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /mcp/\r\ncontent-length: 0\r\n\r\n")
        return True

    raw.tools["moved"] = moved
    link, _ = await _open(raw.url, read_timeout_s=30)
    try:
        with pytest.raises(JsonRpcError, match="Redirect to /mcp/ not followed; use that URL as the endpoint"):
            await link.request("tools/call", {"name": "moved"})
        assert _text(await link.request("tools/call", {"name": "echo"})) == "echo"  # its connection kept
    finally:
        await link.close()


async def test_a_cancellation_does_not_wait_for_a_free_connection(raw: Raw) -> None:
    """Every connection is busy with a held call, one of which times out at the link: the
    cancellation it sends upstream goes out at once on a connection of its own, not once one
    frees up (when the call it cancels may have run to its end)."""
    release = asyncio.Event()
    cancelled = asyncio.Event()
    held = 0
    all_held = asyncio.Event()

    async def hold(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        nonlocal held
        held += 1
        if held == MAX_CONNECTIONS:
            all_held.set()
        await release.wait()
        writer.write(_json_answer(_result(message["id"], "held")))
        return True

    async def notified(
        message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw
    ) -> bool:
        if message["method"] == "notifications/cancelled":
            cancelled.set()
        writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        return True

    raw.tools["hold"] = hold
    link, _ = await _open(raw.url, read_timeout_s=60, call_timeout_s=0)
    raw.notification = notified
    try:
        holds = [
            asyncio.ensure_future(link.request("tools/call", {"name": "hold"})) for _ in range(MAX_CONNECTIONS - 1)
        ]
        timed = asyncio.ensure_future(link.request("tools/call", {"name": "hold"}, timeout=1.0))
        await asyncio.wait_for(all_held.wait(), 60)
        with pytest.raises(UpstreamTimeout):
            await asyncio.wait_for(timed, 20)
        await asyncio.wait_for(cancelled.wait(), 20)
        assert not release.is_set()  # every held call still held
        release.set()
        assert len(await asyncio.wait_for(asyncio.gather(*holds), 60)) == MAX_CONNECTIONS - 1
    finally:
        release.set()
        await link.close()


# -- an initialize the upstream refuses: its reason is the link's -------------------------------
@pytest.mark.parametrize("client", ["mcpgw", "sdk"])
async def test_an_initialize_answered_with_an_error_names_the_upstreams_reason(
    raw: Raw, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The upstream answers initialize with a JSON-RPC error: the link's error (what the log,
    /health and a client calling its tools see) is that error's code and message, with either
    client, not "closed the connection"."""
    refusal = {"code": -32600, "message": "unsupported protocol version X"}

    async def refuse(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        writer.write(_json_answer(json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": refusal}).encode()))
        return True

    raw.initialize = refuse
    link = UpstreamLink(UpstreamConfig(id="up", prefix="up", transport="streamable-http", url=raw.url, client=client))
    assert link.client == client
    expected = "refused initialize: -32600 unsupported protocol version X"
    with (
        caplog.at_level("WARNING", "mcpgw.federation"),
        pytest.raises(UpstreamUnavailable, match=f"^Upstream 'up' is unavailable: {expected}$"),
    ):
        await asyncio.wait_for(link.open(), 30)
    assert link.error == expected
    assert expected in caplog.text
    assert "closed the connection" not in caplog.text

    async def unchanged(upstream: Upstream, keys: set[str], whole: bool) -> None:
        pass

    config = UpstreamConfig(id="up", prefix="up", transport="streamable-http", url=raw.url, client=client)
    upstream = Upstream(config, unchanged)  # the catalog connection /health reports
    upstream.start()
    try:
        assert not await upstream.attempt_now(30)
        assert upstream.health()["state"] == "restarting" and upstream.health()["error"] == expected
    finally:
        await upstream.stop()


@pytest.mark.parametrize("client", ["mcpgw", "sdk"])
async def test_an_initialize_answered_with_a_redirect_names_it(raw: Raw, client: str) -> None:
    """A redirected initialize: the link's error is what the client made of the answer, not
    "closed the connection"."""

    async def moved(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /mcp/\r\ncontent-length: 0\r\n\r\n")
        return True

    raw.initialize = moved
    link = UpstreamLink(UpstreamConfig(id="up", prefix="up", transport="streamable-http", url=raw.url, client=client))
    with pytest.raises(UpstreamUnavailable) as failed:
        await asyncio.wait_for(link.open(), 30)
    assert link.error is not None and "initialize: -32600 Redirect to " in link.error
    assert "/mcp/ not followed; use that URL as the endpoint" in str(failed.value)
    assert "closed the connection" not in str(failed.value)


# -- a wait for a free connection is bounded -----------------------------------------------------
async def test_a_call_waiting_for_a_free_connection_fails_after_connect_timeout(
    raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections allowed, both busy with held calls, no call timeout (`call_timeout_s = 0`):
    a third call waits for a free connection at most connect_timeout_s, then fails saying the pool
    is full; it is never sent, and the held calls and the link go on."""
    monkeypatch.setattr(shttp_client, "MAX_CONNECTIONS", 2)
    release = asyncio.Event()
    held = 0
    all_held = asyncio.Event()

    async def hold(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        nonlocal held
        held += 1
        if held == 2:
            all_held.set()
        await release.wait()
        writer.write(_json_answer(_result(message["id"], "held")))
        return True

    raw.tools["hold"] = hold
    link, client = await _open(raw.url, read_timeout_s=60, call_timeout_s=0, connect_timeout_s=1)
    try:
        holds = [asyncio.ensure_future(link.request("tools/call", {"name": "hold"})) for _ in range(2)]
        await asyncio.wait_for(all_held.wait(), 30)
        assert client.pool.open == 2
        full = r"^Upstream 'up' had no free connection within 1 s \(the pool is full: all 2 in use\) during tools/call$"
        with pytest.raises(UpstreamUnavailable, match=full):
            await asyncio.wait_for(link.request("tools/call", {"name": "late"}), 30)
        assert not client.pool.waiters and link.alive
        release.set()
        assert [_text(r) for r in await asyncio.wait_for(asyncio.gather(*holds), 30)] == ["held"] * 2
        assert _text(await link.request("tools/call", {"name": "after"})) == "after"
        assert raw.calls("late") == 0
    finally:
        release.set()
        await link.close()


# -- connect_timeout_s = 0 means no limit, as everywhere else it is read -------------------------
async def test_a_link_with_connect_timeout_0_opens(raw: Raw) -> None:
    """`connect_timeout_s = 0` is "no limit" for the HTTP connect, the pool wait and a waiting call;
    opening the link read it as a 0 s deadline, so every such link failed at once with "did not
    initialize within 0 s" before the upstream could answer."""
    link, _client = await asyncio.wait_for(_open(raw.url, connect_timeout_s=0), 30)
    try:
        assert link.alive and link.error is None
        assert _text(await link.request("tools/call", {"name": "echo"})) == "echo"
    finally:
        await link.close()


# -- a link that ends sends nothing more (review of issue 20's relay) -----------------------------
@pytest.mark.parametrize("end", ["lose", "close"])
async def test_a_call_running_when_the_link_ends_is_not_sent_again(raw: Raw, end: str) -> None:
    """A JSON-answering upstream sends nothing until its tool is done; a call running on a kept-alive
    connection when the link ends (a failed ping's lose(), close()) fails at its caller and is not
    POSTed again on a new connection (the failure is the link's, not the upstream's)."""
    running = asyncio.Event()

    async def slow(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        running.set()
        await raw.stopped.wait()
        return False

    raw.tools["slow"] = slow
    link, _ = await _open(raw.url, read_timeout_s=60, call_timeout_s=0)
    try:
        assert _text(await link.request("tools/call", {"name": "fast"})) == "fast"  # a connection kept alive
        call = asyncio.ensure_future(link.request("tools/call", {"name": "slow"}))
        await asyncio.wait_for(running.wait(), 30)
        before = len(raw.log)
        if end == "lose":
            link.lose("did not answer a ping (as upstream.py's watch says it)")
        else:
            await link.close()
        with pytest.raises(UpstreamUnavailable):
            await asyncio.wait_for(call, 30)
        await link.close()  # its DELETE sent: everything the client would send has gone out
        assert raw.calls("slow") == 1
        assert [method for _, method, _, _ in raw.log[before:]] == ["DELETE"]
    finally:
        await link.close()


async def test_a_call_waiting_for_a_connection_when_the_link_ends_fails_unsent(
    raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One connection allowed and busy; a second call waits for it when the link ends: it fails at
    once (not after connect_timeout_s) and is never sent, not when the first call's connection frees
    its slot either."""
    monkeypatch.setattr(shttp_client, "MAX_CONNECTIONS", 1)
    held = asyncio.Event()

    async def hold(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        held.set()
        await raw.stopped.wait()
        return False

    raw.tools["hold"] = hold
    link, client = await _open(raw.url, read_timeout_s=0, call_timeout_s=0, connect_timeout_s=60)
    try:
        first = asyncio.ensure_future(link.request("tools/call", {"name": "hold"}))
        await asyncio.wait_for(held.wait(), 30)
        second = asyncio.ensure_future(link.request("tools/call", {"name": "late"}))
        for _ in range(3000):  # until it waits for the connection (a loop bounded at 30 s)
            if client.pool.waiters:
                break
            await asyncio.sleep(0.01)
        assert client.pool.waiters
        link.lose("did not answer a ping (as upstream.py's watch says it)")
        outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 30)  # not 60 s
        assert all(isinstance(o, UpstreamUnavailable) for o in outcomes), outcomes
        await link.close()
        assert raw.calls("late") == 0
        assert not client.pool.waiters
    finally:
        await link.close()


async def test_a_link_opens_once_the_upstream_holds_its_get_stream(raw: Raw) -> None:
    """An upstream drops what it sends on its own while it holds no GET stream of the session (the
    SDK's server does): a link opens only once its GET stream was answered, so a list_changed its
    first call causes (the toy server's `grow`) reaches the link. Here the GET is answered 0.5 s late."""
    streams: list[asyncio.StreamWriter] = []

    async def late_get(headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        await asyncio.sleep(0.5)
        writer.write(SSE_CHUNKED)
        await writer.drain()
        streams.append(writer)
        await raw.stopped.wait()
        return False

    async def grow(message: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter, raw: Raw) -> bool:
        for stream in streams:  # else dropped, as by the SDK's server
            changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
            stream.write(_chunk(b"data: " + json.dumps(changed).encode() + b"\n\n"))
        writer.write(_json_answer(_result(message["id"], "grown")))
        return True

    raw.get = late_get
    raw.tools["grow"] = grow
    link, _ = await _open(raw.url)
    try:
        assert _text(await link.request("tools/call", {"name": "grow"})) == "grown"
        for _ in range(300):  # read by the pump from the GET stream (a loop bounded at 30 s)
            if link.list_changes:
                break
            await asyncio.sleep(0.1)
        assert link.list_changes == 1
    finally:
        await link.close()
