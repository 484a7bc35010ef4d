"""The one session engine, seen from every transport: the same shutdown drain, the same error
shape for unknown paths, inputs that once reached a 500, and sessions that belong to the
transport that created them. Real `mcpgw serve` / `mcpgw stdio` processes in both edge modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import Gateway
from mcp_http import BASE, Session, headers2026, rpc, rpc2026, wait_live
from test_transports import INIT, INITIALIZED, SseClient

pytestmark = pytest.mark.timeout(120)
SLEEP = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "sleep", "arguments": {"seconds": 60, "ticks": 60}, "_meta": {"progressToken": "p"}},
}
GRACE = "0.5"
NOT_FOUND = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Not Found"}}


def shutting_down(message: dict) -> bool:
    return message.get("id") == 1 and message.get("error") == {"code": -32603, "message": "Server shutting down"}


# -- the shutdown drain, the same on every transport ----------------------------------------
@pytest.fixture
def fresh(component_path, edge_mode):
    """A gateway of its own: the test ends it with SIGTERM."""
    gw = Gateway({"MCPGW_EDGE": edge_mode, "MCPGW_SHUTDOWN_GRACE_S": GRACE}).wait_ready()
    yield gw
    gw.stop()


def terminate_and_wait(gw: Gateway) -> None:
    wait_live(gw.url, requests=1)  # the sleep is running
    gw.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal it captured once its shutdown is complete.
    assert gw.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Traceback" not in gw.log()


def test_shutdown_answers_running_requests_on_streamable_http(fresh):
    session = Session(fresh.url)
    answers: list[dict] = []
    call = dict(SLEEP, params={"name": "sleep", "arguments": {"seconds": 60}})  # no progress: a JSON answer
    worker = threading.Thread(target=lambda: answers.append(session.post(call).json()))
    worker.start()
    terminate_and_wait(fresh)
    worker.join(30)
    assert answers and shutting_down(answers[0])


def test_shutdown_answers_running_requests_on_legacy_sse(fresh):
    client = SseClient(fresh.url)
    try:
        for message in (INIT, INITIALIZED, SLEEP):
            assert client.post(message).status_code == 202
        terminate_and_wait(fresh)
        # The init result, progress, the answer; then the stream ends (with `retry`).
        events = [item.json() for item in client.items if not isinstance(item, str) and item.data]
        assert any(shutting_down(m) for m in events)
    finally:
        client.close()


def test_shutdown_answers_running_requests_on_websocket(fresh):
    with connect(fresh.url.replace("http", "ws") + "/ws", subprotocols=["mcp"], open_timeout=10) as ws:
        for message in (INIT, INITIALIZED, SLEEP):
            ws.send(json.dumps(message))
        terminate_and_wait(fresh)
        seen = []
        while not any(shutting_down(m) for m in seen):
            seen.append(json.loads(ws.recv(timeout=30)))


def test_shutdown_answers_running_requests_on_stdio(component_path):
    env = {**os.environ, "MCPGW_SHUTDOWN_GRACE_S": GRACE}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcpgw.cli", "stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for message in (INIT, INITIALIZED, SLEEP):
            proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
        seen = [json.loads(proc.stdout.readline())]  # the initialize result
        seen.append(json.loads(proc.stdout.readline()))  # the first progress: the sleep is running
        assert seen[-1].get("method") == "notifications/progress"
        proc.send_signal(signal.SIGTERM)
        seen.extend(json.loads(line) for line in proc.stdout)
        assert any(shutting_down(m) for m in seen)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
        assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


# -- one router: every unknown or invalid path gets the same JSON-RPC 404 -------------------
BAD_PATHS = [
    "/nope",
    "/MCP",
    "/servers/a%2Fb/mcp",
    "/servers/a%2Fb/sse",
    "/servers/a%2Fb/message",
    "/servers/a%2Fb/ws",
    "/servers/x/y/mcp",
    "/mcp/extra",
    "/ws",  # a WebSocket endpoint without the upgrade
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_unknown_and_invalid_paths_get_one_json_rpc_404_on_http(gateway, path):
    for method in ("GET", "POST", "DELETE"):
        r = httpx.request(method, gateway.url + path, headers=BASE, content=b"{}")
        assert (r.status_code, r.json()) == (404, NOT_FOUND), (method, path)


@pytest.mark.parametrize("path", ["/nope", "/servers/a%2Fb/ws", "/mcp", "/sse"])
def test_websocket_upgrades_on_other_paths_get_the_same_404(gateway, path):
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.url.replace("http", "ws") + path, subprotocols=["mcp"], open_timeout=10)
    response = refused.value.response
    assert response.status_code == 404 and json.loads(response.body) == NOT_FOUND


def test_unknown_server_ids_get_the_same_shape_on_every_transport(gateway):
    for path in ("/servers/nope/mcp", "/servers/nope/sse"):
        r = httpx.request(
            "GET" if path.endswith("sse") else "POST",
            gateway.url + path,
            json=INIT,
            headers={**BASE, "accept": "application/json, text/event-stream"},
        )
        body = r.json()
        assert r.status_code == 404 and body["id"] is None and body["error"]["code"] == -32600, path
        assert body["error"]["message"] == "Unknown server: nope"


# -- inputs that once reached a 500 with a traceback ----------------------------------------
def test_non_ascii_base64_mcp_name_is_a_header_mismatch(gateway):
    r = httpx.post(
        gateway.url + "/mcp",
        json=rpc2026("tools/call", name="echo", arguments={"text": "x"}),
        headers={**headers2026("tools/call"), "mcp-name": b"=?base64?\xe9?="},
    )  # type: ignore[dict-item]
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020
    assert "Traceback" not in gateway.log()


def test_last_event_id_with_non_ascii_digits_is_unknown(gateway):
    session = Session(gateway.url)
    try:
        r = session.http.get(
            session.url, headers={**session.headers, "accept": "text/event-stream", "last-event-id": b"2_\xb2"}
        )  # type: ignore[dict-item]
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]["message"]
    finally:
        session.delete()
    assert "Traceback" not in gateway.log()


BAD_CANCELS = [{"a": 1}, [1], None, True, 1.5]


def test_cancelled_with_a_request_id_that_is_no_id_is_ignored_on_http(gateway):
    session = Session(gateway.url)
    try:
        for request_id in BAD_CANCELS:
            r = session.post(rpc("notifications/cancelled", None, requestId=request_id))
            assert r.status_code == 202
        assert session.post(rpc("tools/call", 5, name="add", arguments={"a": 1, "b": 2})).json()["id"] == 5
    finally:
        session.delete()
    assert "Traceback" not in gateway.log()


def test_cancelled_with_a_request_id_that_is_no_id_is_ignored_on_websocket(gateway):
    with connect(gateway.url.replace("http", "ws") + "/ws", subprotocols=["mcp"], open_timeout=10) as ws:
        ws.send(json.dumps(INIT))
        json.loads(ws.recv(timeout=10))
        for request_id in BAD_CANCELS:
            ws.send(
                json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}})
            )
        ws.send(json.dumps(rpc("tools/call", 5, name="add", arguments={"a": 1, "b": 2})))
        assert json.loads(ws.recv(timeout=10))["id"] == 5  # the connection survived
    assert "Traceback" not in gateway.log()


def test_cancelled_with_a_request_id_that_is_no_id_is_ignored_on_stdio():
    lines = [
        INIT,
        INITIALIZED,
        *({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": r}} for r in BAD_CANCELS),
        rpc("tools/call", 5, name="add", arguments={"a": 1, "b": 2}),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "stdio"],
        capture_output=True,
        timeout=60,
        check=False,
        input=b"".join(json.dumps(m).encode() + b"\n" for m in lines),
    )
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert [json.loads(line).get("id") for line in done.stdout.splitlines()] == [0, 5]


def test_an_id_of_null_is_not_a_request(gateway):
    session = Session(gateway.url)
    try:
        r = session.post({"jsonrpc": "2.0", "id": None, "method": "tools/list"})
        assert r.status_code == 400 and r.json()["error"]["code"] == -32600
    finally:
        session.delete()


def test_a_session_belongs_to_the_transport_that_created_it(gateway):
    client = SseClient(gateway.url)
    try:
        sse_session = client.endpoint.split("=", 1)[1]
        headers = {**BASE, "mcp-session-id": sse_session, "mcp-protocol-version": "2025-11-25"}
        assert httpx.post(gateway.url + "/mcp", json=rpc("tools/list", 1), headers=headers).status_code == 404
        r = httpx.get(gateway.url + "/mcp", headers={**headers, "accept": "text/event-stream"})
        assert r.status_code == 404 and r.json()["error"]["code"] == -32001
        assert httpx.delete(gateway.url + "/mcp", headers=headers).status_code == 404
        assert client.post(INIT).status_code == 202  # the SSE session is untouched
        assert client.next_event().json()["result"]["serverInfo"]["name"] == "mcpgw"
    finally:
        client.close()
    assert "Traceback" not in gateway.log()
