"""Legacy HTTP+SSE and WebSocket against a real `mcpgw serve`, in both edge modes.

The SDK's SSE client drives /sse. mcp 2.3.0 has no WebSocket client, so /ws is
driven with the `websockets` library (the same one the server side runs on),
and with a raw socket where a client must misbehave (never answering pings).
"""

from __future__ import annotations

import base64
import json
import os
import socket

import httpx
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from mcp_http import NOTHING_LIVE, drained, live, sse_events, wait_live

pytestmark = pytest.mark.timeout(120)
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def sleep_call(id_, seconds, token=None):
    params = {"name": "sleep", "arguments": {"seconds": seconds, "ticks": 2}}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


@pytest.fixture
def gw(gateways, edge_mode):
    return gateways(
        edge_mode,
        MCPGW_SSE_KEEPALIVE_S="0.2",
        MCPGW_MAX_BODY_BYTES="65536",
        MCPGW_WS_PING_INTERVAL_S="0.3",
        MCPGW_WS_PING_TIMEOUT_S="0.6",
    )


# -- legacy HTTP+SSE ------------------------------------------------------------
async def test_the_sdk_sse_client_initializes_lists_calls_with_progress_and_closes(gw):
    seen = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    async with sse_client(gw.url + "/sse") as (read, write), ClientSession(read, write) as session:
        assert (await session.initialize()).server_info.name == "mcpgw"
        assert {"echo", "sleep"} <= {t.name for t in (await session.list_tools()).tools}
        result = await session.call_tool("sleep", {"seconds": 0.2, "ticks": 2}, progress_callback=on_progress)
        assert isinstance(result.content[0], types.TextContent) and seen == [1, 2]
        assert wait_live(gw.url, sessions=1)["sessions"] == 1
    assert drained(gw.url) == NOTHING_LIVE


class SseClient:
    """A raw GET /sse reader: the endpoint, then events and keepalive comments as they come."""

    def __init__(self, url: str, path: str = "/sse"):
        self.http = httpx.Client(timeout=30)
        self.base = url
        request = self.http.build_request("GET", url + path, headers={"accept": "text/event-stream"})
        self.response = self.http.send(request, stream=True)
        self.items = sse_events(self.response.iter_lines())
        first = next(self.items)
        assert first.event == "endpoint"
        self.endpoint = first.data

    def next_event(self):
        return next(item for item in self.items if not isinstance(item, str))

    def post(self, message, **headers):
        return self.http.post(self.base + self.endpoint, json=message, headers=headers)

    def close(self):
        self.response.close()
        self.http.close()


def test_sse_endpoint_event_then_message_events(gw):
    client = SseClient(gw.url)
    try:
        assert client.endpoint.startswith("/message?session_id=")
        session_id = client.endpoint.split("=", 1)[1]
        assert session_id and all(0x21 <= ord(c) <= 0x7E for c in session_id)
        assert client.post(INIT).status_code == 202
        event = client.next_event()
        assert event.event == "message" and event.json()["result"]["serverInfo"]["name"] == "mcpgw"
        assert client.post(INITIALIZED).status_code == 202
        assert client.post(sleep_call(1, 0.1, token="t")).status_code == 202
        kinds = [client.next_event().json().get("method", "result") for _ in range(3)]
        assert kinds == ["notifications/progress", "notifications/progress", "result"]
    finally:
        client.close()
    assert drained(gw.url) == NOTHING_LIVE


def test_sse_keepalives_are_comments_by_default_and_named_events_on_request(gateways, edge_mode):
    for env, expected in (({}, ": keepalive"), ({"MCPGW_SSE_KEEPALIVE_EVENT": "true"}, "keepalive")):
        gw = gateways(edge_mode, MCPGW_SSE_KEEPALIVE_S="0.2", **env)
        client = SseClient(gw.url)
        try:
            seen = []
            for item in client.items:  # two keepalives on an idle stream (bounded by the test timeout)
                seen.append(item if isinstance(item, str) else item.event)
                if len(seen) == 2:
                    break
            assert seen == [expected, expected]
        finally:
            client.close()


def test_sse_message_errors_name_the_problem(gw):
    client = SseClient(gw.url)
    try:
        r = httpx.post(gw.url + "/message", json=INIT)
        assert r.status_code == 400 and "session_id" in r.json()["error"]["message"]
        r = httpx.post(gw.url + "/message?session_id=nope", json=INIT)
        assert r.status_code == 404 and r.json()["error"]["code"] == -32001
        r = httpx.post(gw.url + client.endpoint, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == -32700
        r = httpx.post(gw.url + client.endpoint, content=b"{}", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = httpx.post(gw.url + client.endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 202  # answered on the stream: not initialized yet
        assert client.next_event().json()["error"]["code"] == -32600
        client.post({"jsonrpc": "2.0", "id": 2, "method": "ping"})  # allowed before initialize
        assert client.next_event().json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    finally:
        client.close()
    assert drained(gw.url) == NOTHING_LIVE


def test_sse_disconnect_mid_call_reaps_the_session_and_its_request(gw):
    client = SseClient(gw.url)
    client.post(INIT)
    client.next_event()
    client.post(INITIALIZED)
    assert client.post(sleep_call(1, 30)).status_code == 202
    assert wait_live(gw.url, requests=1)["requests"] == 1
    client.close()
    assert drained(gw.url) == NOTHING_LIVE


# -- WebSocket --------------------------------------------------------------------
def ws_url(gw, path="/ws") -> str:
    return gw.url.replace("http://", "ws://") + path


def ws_initialize(ws) -> dict:
    ws.send(json.dumps(INIT))
    answer = json.loads(ws.recv(timeout=30))
    ws.send(json.dumps(INITIALIZED))
    return answer


def test_websocket_initializes_lists_calls_with_progress_and_closes(gw):
    with connect(ws_url(gw), subprotocols=["mcp"]) as ws:
        assert ws.subprotocol == "mcp"
        assert ws_initialize(ws)["result"]["serverInfo"]["name"] == "mcpgw"
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        assert "echo" in {t["name"] for t in json.loads(ws.recv(timeout=30))["result"]["tools"]}
        ws.send(json.dumps(sleep_call(2, 0.1, token="p")))
        frames = [json.loads(ws.recv(timeout=30)) for _ in range(3)]
        assert [f.get("method", "result") for f in frames] == ["notifications/progress"] * 2 + ["result"]
        assert wait_live(gw.url, sessions=1, streams=1)["streams"] == 1
    assert drained(gw.url) == NOTHING_LIVE


def test_websocket_invalid_json_gets_an_error_and_the_connection_goes_on(gw):
    with connect(ws_url(gw), subprotocols=["mcp"]) as ws:
        ws_initialize(ws)
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == -32700
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        assert json.loads(ws.recv(timeout=30)) == {"jsonrpc": "2.0", "id": 1, "result": {}}


@pytest.mark.parametrize("frame, code", [(b"\x00binary", 1003), ("x" * 100_000, 1009)])
def test_websocket_binary_and_oversized_frames_close_the_connection(gw, frame, code):
    with connect(ws_url(gw), subprotocols=["mcp"]) as ws:
        ws_initialize(ws)
        ws.send(frame)
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd.code == code
    assert drained(gw.url) == NOTHING_LIVE


@pytest.mark.parametrize(
    "options",
    [{"origin": "http://evil.example"}, {"subprotocols": None}],
    ids=["cross-site origin", "no mcp subprotocol"],
)
def test_websocket_upgrades_are_refused_for_a_foreign_origin_or_without_the_subprotocol(gw, options):
    kwargs = {"subprotocols": ["mcp"], **options}
    if kwargs["subprotocols"] is None:
        del kwargs["subprotocols"]
    with pytest.raises(InvalidStatus) as refused, connect(ws_url(gw), **kwargs):
        pass
    assert refused.value.response.status_code == 403
    assert live(gw.url)["sessions"] == 0


def test_websocket_client_that_never_answers_pings_is_disconnected(gw):
    port = int(gw.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mcp\r\n\r\n"
        ).encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    try:
        assert wait_live(gw.url, streams=1)["streams"] == 1
        # Never read, never pong: the server's ping times out and it drops the connection.
        assert wait_live(gw.url, sessions=0, streams=0) == NOTHING_LIVE
    finally:
        sock.close()


def test_websocket_disconnect_mid_call_reaps_the_session_and_its_request(gw):
    with connect(ws_url(gw), subprotocols=["mcp"]) as ws:
        ws_initialize(ws)
        ws.send(json.dumps(sleep_call(1, 30)))
        assert wait_live(gw.url, requests=1)["requests"] == 1
    assert drained(gw.url) == NOTHING_LIVE  # closed mid-call: the request and the session are gone
