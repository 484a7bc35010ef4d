"""How the gateway's HTTP protocol (mcpgw/http_server.py) writes responses to its transport: a
head and its body in one write, a streamed head without waiting for its body, and every write
in order with the protocol's own answers. In-process: uvicorn's protocol with our subclass fed
raw bytes, its transport a recorder (what a socket would be asked to send, write by write)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from mcpgw.http_server import CORK_MAX_BYTES, HttpLimits, protocol_class

JSON_BODY = b'{"jsonrpc":"2.0","id":1,"result":{}}'


class Recorder(asyncio.Transport):
    """A transport that records each write and what else the protocol asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        assert not self.closing, "written after close"
        self.writes.append(bytes(data))
        self.events.append("write")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def write_eof(self) -> None:
        self.events.append("eof")

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 4444), "peername": ("127.0.0.1", 50000)}.get(name, default)


def limits() -> HttpLimits:
    return HttpLimits(
        head_timeout_s=30.0,
        body_timeout_s=30.0,
        body_min_rate_bytes_s=0,
        max_head_bytes=8192,
        max_connections_per_client=0,
        trusted_proxies=(),
    )


def request(method: str = "POST", body: bytes = b"{}", extra: bytes = b"") -> bytes:
    head = f"{method} /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n".encode()
    return head + extra + b"\r\n" + body


async def serve(app: Any, data: bytes) -> tuple[Recorder, Any]:
    config = uvicorn.Config(app=app, http=protocol_class(limits()), lifespan="off", log_level="warning")
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Recorder()
    transport.protocol = protocol
    protocol.connection_made(transport)
    protocol.data_received(data)
    return transport, protocol


def fixed(body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Any:
    """An app answering every request with `body` and its content-length (head, then body)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        head = [*headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": body})

    return app


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_json_answer_is_one_write_with_its_head() -> None:
    app = fixed(JSON_BODY, ((b"content-type", b"application/json"),))
    transport, _ = await serve(app, request() + request())  # two kept-alive requests, pipelined
    await turns(20)
    assert len(transport.writes) == 2, transport.writes  # one per response, not two
    for written in transport.writes:
        assert written.startswith(b"HTTP/1.1 200 OK\r\n") and written.endswith(b"\r\n\r\n" + JSON_BODY)


async def test_a_streamed_head_leaves_before_its_body_is_ready() -> None:
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    transport, _ = await serve(app, request())
    await turns()
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in transport.writes[0]
    release.set()
    await turns()
    assert b"".join(transport.writes[1:]) == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"


async def test_a_large_body_is_not_copied_to_join_its_head() -> None:
    body = b"x" * (CORK_MAX_BYTES + 1)

    transport, _ = await serve(fixed(body), request())
    await turns()
    assert len(transport.writes) == 2 and transport.writes[1] == body
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"\r\n\r\n")


async def test_a_head_request_gets_its_head_without_a_body_write() -> None:
    transport, _ = await serve(fixed(b"hello"), request("HEAD", b""))
    await turns()
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"content-length: 5\r\n\r\n")


async def test_100_continue_is_sent_while_the_app_waits_for_the_body() -> None:
    got: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    head = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
    transport, protocol = await serve(app, head)
    await turns()
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # out though nothing follows it yet
    protocol.data_received(b"{}")
    await turns()
    assert got == [b"{}"] and transport.writes[1].endswith(b"\r\n\r\nok")


async def test_close_sends_what_is_held_first() -> None:
    transport, _ = await serve(fixed(b"ok"), request(extra=b"connection: close\r\n"))
    await turns()
    assert transport.events == ["write", "close"]
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"ok")


async def test_a_parse_error_after_an_answer_is_written_after_it() -> None:
    transport, _ = await serve(fixed(b"ok"), request() + b"NOT HTTP AT ALL\r\n\r\n")
    await turns(20)
    written = b"".join(transport.writes)
    assert written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert written.index(b"ok") < written.index(b"HTTP/1.1 400")
