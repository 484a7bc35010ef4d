"""Generated JSON-RPC messages and MCP headers thrown at every transport's entry into the session
engine: Streamable HTTP (the ASGI app, in process), the message-oriented connection that legacy
SSE, WebSocket and stdio share (in process), and a real `mcpgw stdio` process. Whatever arrives:
no 5xx, nothing logged at error level (no traceback), no crashed process, and every live count
back where it was once the client is done."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpgw.app import create_app
from mcpgw.protocol import ALL_REVISIONS
from mcpgw.settings import Settings
from mcpgw.transports.connection import Connection

# Fast methods only: `sleep` and `log` with a generated count would make an example slow, not wrong.
METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "nope/nope",
    "",
]
TOOLS = ["echo", "add", "nope", ""]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
ids = st.one_of(st.integers(-5, 5), st.text(max_size=4), st.none(), st.booleans(), json_value)


@st.composite
def params(draw: st.DrawFn, method: str) -> Any:
    shape = draw(st.sampled_from(["none", "random", "shaped"]))
    if shape == "none":
        return None
    if shape == "random":
        return draw(json_value)
    p: dict[str, Any] = {}
    if method == "tools/call":
        p = {"name": draw(st.sampled_from(TOOLS)), "arguments": draw(json_value)}
    elif method == "initialize":
        p = {
            "protocolVersion": draw(st.sampled_from([*ALL_REVISIONS, "bogus"])),
            "capabilities": draw(json_value),
            "clientInfo": draw(json_value),
        }
    elif method == "notifications/cancelled":
        p = {"requestId": draw(ids)}
    if draw(st.booleans()):
        p["_meta"] = draw(
            st.one_of(
                json_value,
                st.fixed_dictionaries(
                    {
                        "io.modelcontextprotocol/protocolVersion": st.sampled_from([*ALL_REVISIONS, "x"]),
                        "io.modelcontextprotocol/clientCapabilities": json_value,
                        "progressToken": json_value,
                    }
                ),
            )
        )
    return p


@st.composite
def messages(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)  # anything at all
    method = draw(st.one_of(st.sampled_from(METHODS), st.text(max_size=10)))
    msg: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        msg["jsonrpc"] = "2.0"
    if draw(st.booleans()):
        msg["id"] = draw(ids)
    kind = draw(st.sampled_from(["method", "method", "method", "result", "error"]))
    if kind == "method":
        msg["method"] = method
        value = draw(params(method))
        if value is not None:
            msg["params"] = value
    else:
        msg[kind] = draw(json_value)
    return msg


def _encode(value: Any) -> bytes:
    """As a client would send it (integers past 64 bits included, which the gateway refuses)."""
    return json.dumps(value).encode()


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=24)
b64 = st.builds(lambda s: f"=?base64?{s}?=", header_text)


@st.composite
def heads(draw: st.DrawFn) -> dict[str, str]:
    h: dict[str, str] = {}
    for name, value in (
        ("mcp-protocol-version", st.sampled_from([*ALL_REVISIONS, "1999-01-01", ""])),
        ("mcp-method", st.one_of(st.sampled_from(METHODS), header_text)),
        ("mcp-name", st.one_of(st.sampled_from(TOOLS), b64, header_text)),
        ("mcp-session-id", header_text),
        ("last-event-id", header_text),
        (
            "accept",
            st.sampled_from(
                ["application/json, text/event-stream", "application/json", "text/event-stream", "*/*", ""]
            ),
        ),
        ("content-type", st.sampled_from(["application/json", "text/plain", ""])),
    ):
        if draw(st.booleans()):
            h[name] = draw(value)
    return h


def _errors(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("mcpgw")]


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(
    batch=st.lists(
        st.tuples(
            st.sampled_from(["POST", "POST", "POST", "GET", "DELETE"]),
            heads(),
            st.one_of(messages(), st.lists(messages(), max_size=3)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_streamable_http_answers_generated_input_without_a_5xx(batch: list[Any], caplog: Any) -> None:
    app = create_app(Settings(edge="python"))

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        issued = 0
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30) as client:
            for method, headers, body in batch:
                if method == "GET":
                    headers.pop("accept", None)  # a GET stream of a real session would never end
                    headers["accept"] = "application/json"
                content = _encode(body) if method == "POST" else None
                raw = {k: v.encode("latin-1") for k, v in headers.items()}  # bytes: non-ASCII as sent
                r = await client.request(method, "/mcp", headers=raw, content=content)
                assert r.status_code < 500, (r.status_code, r.text)
                if r.headers.get("content-type") == "application/json":
                    assert r.json()["jsonrpc"] == "2.0"
                issued += "mcp-session-id" in r.headers
        assert app.live() == {"sessions": issued, "requests": 0, "streams": 0, "upstream_links": 0}
        app.engine.sessions.close_all("test over")

    with caplog.at_level(logging.ERROR):
        asyncio.run(run())
    assert _errors(caplog) == []


class RecordingPeer:
    name = "websocket"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.open = True

    def connected(self) -> bool:
        return self.open

    async def send(self, message: dict[str, Any]) -> bool:
        orjson.dumps(message)  # whatever is sent must be serialisable
        self.sent.append(message)
        return self.open

    def close(self, reason: str) -> None:
        self.open = False


@PROPERTY
@given(inputs=st.lists(st.one_of(messages().map(_encode), st.binary(max_size=16)), min_size=1, max_size=8))
def test_the_message_connection_answers_generated_input(inputs: list[bytes], caplog: Any) -> None:
    app = create_app(Settings(edge="python"))

    async def run() -> None:
        peer = RecordingPeer()
        connection = Connection(peer, app.engine, app.gateway.dispatcher, None)
        connection.open()
        for data in [orjson.dumps({**_init(), "id": "init"}), *inputs]:
            await connection.receive(data)
        while app.engine.requests:
            await asyncio.wait(set(app.engine.requests), timeout=10)
        await app.engine.flush()
        assert all(m.get("jsonrpc") == "2.0" for m in peer.sent)
        connection.disconnected()
        await asyncio.sleep(0)
        assert app.live() == {"sessions": 0, "requests": 0, "streams": 0, "upstream_links": 0}

    with caplog.at_level(logging.ERROR):
        asyncio.run(run())
    assert _errors(caplog) == []


def _init() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "p", "version": "0"}},
    }


@settings(max_examples=4, deadline=None)
@given(inputs=st.lists(messages(), min_size=5, max_size=40))
def test_a_real_stdio_process_survives_generated_input(inputs: list[Any]) -> None:
    lines = [_encode({**_init(), "id": "init"}), *(_encode(m) for m in inputs)]
    done = subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "stdio"],
        capture_output=True,
        timeout=60,
        check=False,
        input=b"\n".join(lines) + b"\n",
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr and b" ERROR " not in done.stderr
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in done.stdout.splitlines())
