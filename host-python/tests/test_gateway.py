"""The gateway as users run it: a real `mcpgw serve` process (uvicorn), in both edge modes,
driven by the MCP SDK's client and by raw HTTP for the error paths."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from mcp import Client

from mcp_http import headers2026, rpc2026
from mcpgw.edge.backend import PACKAGED_COMPONENT

JSON_AND_SSE = "application/json, text/event-stream"
BASE = {"accept": JSON_AND_SSE, "content-type": "application/json"}


def rpc(method, id_=1, **params):
    msg = {"jsonrpc": "2.0", "method": method, "params": params}
    if id_ is not None:
        msg["id"] = id_
    return msg


def initialize(url: str, **headers) -> str:
    r = httpx.post(
        url + "/mcp",
        json=rpc("initialize", protocolVersion="2025-06-18", capabilities={}, clientInfo={"name": "t", "version": "0"}),
        headers={**BASE, **headers},
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["protocolVersion"] == "2025-06-18"
    return r.headers["mcp-session-id"]


def session_headers(sid: str) -> dict[str, str]:
    return {**BASE, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_client_lists_and_calls_builtin_tools(gateway, mode):
    async with Client(gateway.url + "/mcp", mode=mode) as client:
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} >= {"echo", "add"}
        echoed = await client.call_tool("echo", {"text": "héllo, gateway"})
        assert echoed.content[0].text == "héllo, gateway" and not echoed.is_error
        added = await client.call_tool("add", {"a": 2, "b": 3})
        assert added.content[0].text == "5"
        bad = await client.call_tool("add", {"a": "x", "b": 3})
        assert bad.is_error


def test_health_and_startup_log_name_the_active_backend(gateway):
    edge = httpx.get(gateway.url + "/health").json()["edge"]
    assert edge["backend"] == gateway.mode
    if gateway.mode == "wasm":
        sha = hashlib.sha256(PACKAGED_COMPONENT.read_bytes()).hexdigest()
        assert edge["component"]["sha256"] == sha
        assert edge["component"]["contract"] == "1.0.0"
        assert f"edge backend: wasm (Rust component 1.0.0, contract 1.0.0, sha256 {sha}" in gateway.log()
    else:
        assert "edge backend: python (requested by MCPGW_EDGE=python)" in gateway.log()


def test_health_and_startup_log_name_state_backend_plugins_and_auth(gateway):
    health = httpx.get(gateway.url + "/health").json()
    assert health["state"] == {"backend": "memory"}
    assert health["plugins"] == []
    assert health["auth"]["mode"] == "none"
    log = gateway.log()
    assert "state: memory; plugins: none" in log
    assert "auth: none" in log


def test_session_lifecycle(gateway):
    url = gateway.url
    sid = initialize(url)
    assert sid.isascii() and sid.isprintable() and " " not in sid and len(sid) >= 32
    h = session_headers(sid)
    note = httpx.post(url + "/mcp", json=rpc("notifications/initialized", id_=None), headers=h)
    assert note.status_code == 202 and note.content == b""
    ping = httpx.post(url + "/mcp", json=rpc("ping", id_=7), headers=h)
    assert ping.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert httpx.delete(url + "/mcp", headers=h).status_code == 204
    gone = httpx.post(url + "/mcp", json=rpc("ping"), headers=h)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == -32001


@pytest.mark.parametrize(
    "headers, body, status, code",
    [
        ({"accept": "text/html"}, rpc("ping"), 406, -32600),
        ({"accept": "text/event-stream"}, rpc("ping"), 406, -32600),
        ({"content-type": "text/plain"}, rpc("ping"), 415, -32600),
        ({}, b'{"jsonrpc": "2.0", "method": ', 400, -32700),
        ({}, b"\xff\xfe not utf-8", 400, -32700),
        ({}, {"jsonrpc": "1.0", "id": 1, "method": "ping"}, 400, -32600),
        ({}, [1, 2], 400, -32600),
        ({"mcp-protocol-version": "1999-01-01"}, rpc("ping"), 400, -32022),
        ({"mcp-protocol-version": "2025-06-18"}, rpc("ping"), 400, -32600),  # no session id
        ({"mcp-protocol-version": "2025-06-18", "mcp-session-id": "bad id"}, rpc("ping"), 400, -32600),
        ({"mcp-protocol-version": "2025-06-18", "mcp-session-id": "unknown"}, rpc("ping"), 404, -32001),
        ({}, rpc("no/such/method"), 400, -32600),  # no session: refused before dispatch
    ],
    ids=[
        "accept-neither",
        "accept-sse-only",
        "content-type",
        "invalid-json",
        "invalid-utf8",
        "not-jsonrpc",
        "batch",
        "unsupported-version",
        "missing-session",
        "malformed-session",
        "unknown-session",
        "no-session",
    ],
)
def test_bad_requests_get_the_right_status_and_jsonrpc_error(gateway, headers, body, status, code):
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    r = httpx.post(gateway.url + "/mcp", content=content, headers={**BASE, **headers})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["jsonrpc"] == "2.0"


def test_unknown_method_in_a_session_is_method_not_found(gateway):
    sid = initialize(gateway.url)
    r = httpx.post(gateway.url + "/mcp", json=rpc("no/such/method", id_=3), headers=session_headers(sid))
    assert r.status_code == 200 and r.json()["error"]["code"] == -32601


def test_stateless_revision_needs_no_session(gateway):
    r = httpx.post(gateway.url + "/mcp", json=rpc2026("tools/list", 5), headers=headers2026("tools/list"))
    assert r.status_code == 200 and r.json()["result"]["tools"]


def test_oversized_body_is_refused_with_413(gateway):
    sid = initialize(gateway.url)
    big = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
        + b"x" * (4 * 1024 * 1024 + 10)
        + b'"}}}'
    )
    r = httpx.post(gateway.url + "/mcp", content=big, headers=session_headers(sid))
    assert r.status_code == 413 and r.json()["error"]["code"] == -32600
    # The gateway keeps serving.
    assert httpx.post(gateway.url + "/mcp", json=rpc("ping"), headers=session_headers(sid)).status_code == 200


def test_non_canonical_paths_are_served_without_redirects(gateway):
    for path in ("/mcp/", "//mcp", "/./mcp", "/m%63p", "/x/../mcp//"):
        r = httpx.post(
            gateway.url + path,
            json=rpc(
                "initialize", protocolVersion="2025-06-18", capabilities={}, clientInfo={"name": "t", "version": "0"}
            ),
            headers=BASE,
        )
        assert r.status_code == 200, (path, r.status_code, r.text)
        assert "mcp-session-id" in r.headers
    assert httpx.post(gateway.url + "/MCP", json=rpc("ping"), headers=BASE).status_code == 404


def test_preflight_is_answered_at_the_edge(gateway):
    h = {
        "origin": "http://localhost:5173",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, mcp-session-id, Mcp-Protocol-Version",
    }
    # /servers/nope/mcp would be a 404 from the app: a 204 proves the app was never called.
    for path in ("/mcp", "/servers/nope/mcp"):
        r = httpx.options(gateway.url + path, headers=h)
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert r.headers["access-control-allow-methods"] == "GET, POST, DELETE, OPTIONS"
        assert r.headers["access-control-allow-headers"] == "content-type, mcp-session-id, mcp-protocol-version"
        assert r.headers["access-control-max-age"] == "600"
        assert r.headers["vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        assert "access-control-allow-credentials" not in r.headers
        assert r.content == b""
    denied = httpx.options(gateway.url + "/mcp", headers={**h, "origin": "https://evil.example"})
    assert denied.status_code == 403 and "access-control-allow-origin" not in denied.headers


def test_cors_headers_on_actual_responses_and_denied_origins(gateway):
    ok = httpx.post(
        gateway.url + "/mcp",
        json=rpc("initialize", protocolVersion="2025-06-18", capabilities={}, clientInfo={"name": "t", "version": "0"}),
        headers={**BASE, "origin": "http://127.0.0.1:8080"},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://127.0.0.1:8080"
    assert ok.headers["access-control-expose-headers"] == "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
    assert ok.headers["vary"] == "Origin"
    evil = httpx.post(gateway.url + "/mcp", json=rpc("ping"), headers={**BASE, "origin": "https://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == -32600
    assert "access-control-allow-origin" not in evil.headers


def test_dns_rebinding_host_is_refused_on_loopback_bind(gateway):
    r = httpx.post(gateway.url + "/mcp", json=rpc("ping"), headers={**BASE, "host": "evil.example:4444"})
    assert r.status_code == 421
    ok = httpx.get(gateway.url + "/health", headers={"host": "localhost:4444"})
    assert ok.status_code == 200


@pytest.mark.parametrize("path", ["/servers/a%2Fb/mcp", "/servers/" + "a" * 65 + "/mcp", "/servers/%C3%A9/mcp"])
def test_invalid_server_ids_are_not_found(gateway, path):
    r = httpx.post(
        gateway.url + path,
        json=rpc("initialize", protocolVersion="2025-06-18", capabilities={}, clientInfo={"name": "t", "version": "0"}),
        headers=BASE,
    )
    assert r.status_code == 404 and "mcp-session-id" not in r.headers


def test_oversized_request_head_is_refused_with_431(gateway):
    r = httpx.post(
        gateway.url + "/mcp", json=rpc("ping"), headers={**BASE, "accept": ",".join(["application/json"] * 5000)}
    )
    assert r.status_code == 431 and r.json()["error"]["code"] == -32600
    assert httpx.get(gateway.url + "/health").status_code == 200  # and everyone else is still served


def test_stateless_revision_allows_post_only(gateway):
    for method in ("GET", "DELETE"):
        r = httpx.request(method, gateway.url + "/mcp", headers={**BASE, "mcp-protocol-version": "2026-07-28"})
        assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_client_info_is_kept_bounded(gateway):
    r = httpx.post(
        gateway.url + "/mcp",
        json=rpc(
            "initialize",
            protocolVersion="2025-06-18",
            capabilities={},
            clientInfo={"name": "n" * 100_000, "version": "1", "x": "y" * 100_000},
        ),
        headers=BASE,
    )
    assert r.status_code == 200
