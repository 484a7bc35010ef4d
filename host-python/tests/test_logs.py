"""Logs in a real gateway process at debug level, in both formats: a request id on every request
(the client's well-formed X-Request-Id, else a new one; in the response header, errors, SSE
streams and WebSocket handshakes included) and on its access-log line; JSON lines that parse; and
no secret a client sends, wherever it sends it, on any line: Authorization, Cookie, the query
string, X-Api-Key, the body, the WebSocket handshake and frames, legacy SSE's ?session_id=.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest
from websockets.sync.client import connect

from conftest import Gateway
from mcp_http import BASE, Session, rpc
from upstream_procs import http_table, toy_http, wait_upstreams

pytestmark = pytest.mark.timeout(120)
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


@pytest.fixture(scope="module")
def web():
    """An HTTP upstream: what a client sends is relayed to it, and the SDK's client logs messages."""
    upstream = toy_http("web")
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module", params=["text", "json"])
def gw(request, tmp_path_factory, web, component_path):
    from mcpgw.auth.tokens import hash_line

    key = "apikey-" + uuid.uuid4().hex  # the credential: valid, so requests reach every layer
    where = tmp_path_factory.mktemp("logs")
    keys = where / "keys"
    keys.write_text(hash_line("alice", key, []) + "\n")
    config = where / "mcpgw.toml"
    config.write_text(http_table("web", web.url, prefix="w") + "\n")
    gateway = Gateway(
        {
            "MCPGW_EDGE": "wasm",
            "MCPGW_LOG_LEVEL": "debug",
            "MCPGW_LOG_FORMAT": request.param,
            "MCPGW_ACCESS_LOG": "true",
            "MCPGW_AUTH": "api-key",
            "MCPGW_AUTH_API_KEYS_FILE": str(keys),
            "MCPGW_CONFIG": str(config),
        }
    ).wait_ready()
    wait_upstreams(gateway.url)
    gateway.format = request.param
    gateway.key = key
    yield gateway
    gateway.stop()


def lines(gw: Gateway) -> list[str]:
    return [line for line in gw.log().splitlines() if line.strip()]


def access_lines_of(gw: Gateway, rid: str, timeout: float = 20.0) -> list[dict]:
    """The access lines of request `rid`, once there is one: the observer writes a request's line
    after its response has gone out, so a client can read the log before it is written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [a for a in access_lines(gw) if a.get("request_id") == rid]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def access_lines(gw: Gateway) -> list[dict]:
    """The access-log lines, as fields (JSON) or parsed from text."""
    found = []
    for line in lines(gw):
        if gw.format == "json":
            record = json.loads(line)
            if record["logger"] == "mcpgw.access":
                found.append(record)
        elif " mcpgw.access: " in line:
            _, _, message = line.partition(" mcpgw.access: ")
            client, method, path, status, duration, *rest = message.split(" ")
            assert client == "127.0.0.1" and duration.endswith("ms")
            fields = dict(item.split("=", 1) for item in rest)
            found.append({"method": method, "path": path, "status": int(status), **fields})
    return found


def test_every_secret_a_client_can_send_stays_out_of_every_log_line(gw):
    marker = "s3cr3t" + uuid.uuid4().hex[:12]
    auth = {"authorization": f"Bearer {gw.key}"}
    everywhere = {
        **auth,
        "cookie": f"session={marker}-cookie; theme=dark",
        "x-api-key": f"{marker}-x-api-key",
    }
    with httpx.Client(timeout=30, headers=everywhere) as http:
        s = Session(gw.url, http=http)
        # The body, and the query string (Streamable HTTP ignores it; it must still not be logged).
        answer = http.post(
            s.url + f"?token={marker}-query&q={marker}-plain",
            json=rpc("tools/call", 1, name="echo", arguments={"text": f"{marker}-body"}),
            headers=s.headers,
        )
        assert answer.status_code == 200 and f"{marker}-body" in answer.text
        assert http.post(s.url, json=rpc("tools/call", 2, name="nope", arguments={"p": marker}), headers=s.headers)
        # Relayed to the HTTP upstream: the SDK's client logs the messages it sends and receives.
        relayed = rpc("tools/call", 4, name="w__add", arguments={"a": 1, "b": 2, "note": f"{marker}-relayed"})
        assert http.post(s.url, json=relayed, headers=s.headers).status_code == 200
        # A wrong credential, then no credential: refused, neither logged.
        refused = http.post(s.url, json=rpc("ping", 3), headers={**s.headers, "authorization": f"Bearer {marker}-bad"})
        assert refused.status_code == 401
        s.delete()
        # Legacy SSE: the session id is in the query of every POST.
        with http.stream(
            "GET", gw.url + f"/sse?key={marker}-sse-query", headers={"accept": "text/event-stream"}
        ) as sse:
            lines_ = sse.iter_lines()
            endpoint = next(line for line in lines_ if line.startswith("data: "))[6:]
            session_id = endpoint.split("session_id=")[1]
            init = rpc("initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t"})
            assert http.post(gw.url + endpoint, json=init).status_code == 202
    # The WebSocket handshake (credential, cookie, query) and a frame's payload.
    ws_headers = {**everywhere, "x-request-id": "ws-handshake-1"}
    with connect(
        gw.url.replace("http://", "ws://") + f"/ws?token={marker}-ws-query",
        subprotocols=["mcp"],
        additional_headers=ws_headers,
    ) as ws:
        assert ws.response.headers["x-request-id"] == "ws-handshake-1"
        ws.send(json.dumps(rpc("initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"n": 1})))
        ws.recv(timeout=30)
        ws.send(json.dumps(rpc("tools/call", 1, name="echo", arguments={"text": f"{marker}-ws-frame"})))
        assert f"{marker}-ws-frame" in ws.recv(timeout=30)
    text = gw.log()
    leaks = [line for line in text.splitlines() if marker in line or gw.key in line or session_id in line]
    assert not leaks, "\n".join(leaks[:20])
    # The debug lines that used to carry them are there (masked): the filter ran, the level was debug.
    assert "< authorization: ***" in text.lower() or "< Authorization: ***" in text
    assert "route=ws" in text or '"route":"ws"' in text


def test_lines_parse_and_access_lines_carry_the_request_fields(gw):
    rid = "client-chosen.id-" + uuid.uuid4().hex[:8]
    r = httpx.post(gw.url + "/mcp", json=rpc("ping", 1), headers={**BASE, "x-request-id": rid})
    assert r.status_code == 401 and r.headers["x-request-id"] == rid  # errors carry it too
    for line in lines(gw):
        if gw.format == "json":
            record = json.loads(line)  # every line, uvicorn's included
            assert {"ts", "level", "logger", "message"} <= set(record)
        else:
            assert TEXT_LINE.match(line), line
    mine = access_lines_of(gw, rid)
    assert len(mine) == 1
    assert mine[0]["route"] == "mcp" and mine[0]["method"] == "POST" and mine[0]["status"] == 401
    assert mine[0]["path"] == "/mcp"
    if gw.format == "json":
        assert mine[0]["duration_ms"] >= 0 and mine[0]["principal"] is None and mine[0]["client"] == "127.0.0.1"
    else:
        assert mine[0]["subject"] == "-"


def test_lines_written_during_a_request_carry_its_id_and_caller(gw):
    """The access line in both formats; in JSON also the upstream relay's own debug lines, written
    by the task that serves the call: the request id and the principal."""
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {gw.key}"}) as http:
        s = Session(gw.url, http=http)
        rid = "relay-" + uuid.uuid4().hex[:8]
        answer = s.post(rpc("tools/call", 9, name="w__add", arguments={"a": 2, "b": 2}), **{"x-request-id": rid})
        assert answer.status_code == 200 and answer.headers["x-request-id"] == rid
        s.delete()
    access = access_lines_of(gw, rid)
    assert len(access) == 1 and (access[0].get("principal") or access[0].get("subject")) == "alice"
    if gw.format == "json":
        mine = [json.loads(line) for line in lines(gw) if rid in line]
        relay = [r for r in mine if r["logger"] == "mcpgw.federation.shttp"]
        assert relay, mine  # the upstream client's line for the relayed POST (what, never the payload)
        assert "w__add" not in relay[0]["message"] and '"a"' not in relay[0]["message"]
        assert all(r["request_id"] == rid and r["principal"] == "alice" for r in mine)


def test_request_ids_are_taken_when_well_formed_else_made(gw):
    auth = {"authorization": f"Bearer {gw.key}"}
    with httpx.Client(timeout=30, headers=auth) as http:
        s = Session(gw.url, http=http)
        kept = s.post(rpc("tools/list", 1), **{"x-request-id": "abc-123"})
        assert kept.headers["x-request-id"] == "abc-123"
        for bad in ("has space", "x" * 129, "new\\nline"):
            made = s.post(rpc("tools/list", 2), **{"x-request-id": bad})
            assert made.headers["x-request-id"] != bad and len(made.headers["x-request-id"]) == 16
        a, b = s.post(rpc("tools/list", 3)), s.post(rpc("tools/list", 4))
        assert a.headers["x-request-id"] != b.headers["x-request-id"]
        with s.stream(
            "POST",
            rpc("tools/call", 5, name="sleep", arguments={"seconds": 0.1, "ticks": 1}, _meta={"progressToken": 1}),
            **{"x-request-id": "sse-1"},
        ) as stream:
            assert stream.headers["content-type"] == "text/event-stream"
            assert stream.headers["x-request-id"] == "sse-1"
            stream.read()
        s.delete()
    assert access_lines_of(gw, "sse-1")  # written once the stream has ended (the client may read first)
    lines_by_id = {a.get("request_id"): a for a in access_lines(gw)}
    assert lines_by_id["abc-123"]["status"] == 200
    assert lines_by_id["sse-1"]["route"] == "mcp"
    assert (lines_by_id["abc-123"].get("principal") or lines_by_id["abc-123"].get("subject")) == "alice"
    assert httpx.get(gw.url + "/nowhere").headers["x-request-id"]
