"""Streamable HTTP, every revision, both edge modes: a real `mcpgw serve` process driven by the
MCP SDK's client and by raw HTTP (httpx). Each test names the rule it proves."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import threading

import httpx
import mcp_types as types
import pytest
from mcp import Client

from mcp_http import (
    BASE,
    NOTHING_LIVE,
    SESSIONFUL,
    STATELESS,
    Event,
    Session,
    drained,
    handled,
    headers2026,
    live,
    read_sse,
    read_sse_text,
    rpc,
    rpc2026,
    sse_events,
    wait_live,
)
from mcpgw.state.budget import EventBudget
from mcpgw.state.events import EventStream
from mcpgw.state.streams import GET_STREAM_ID
from mcpgw.transports.sse_writer import SSE_KEEPALIVE, PumpOptions, StreamWriters, pump, sse_priming

# The SDK marks ping and logging/setLevel deprecated (2026-07-28 drops them); sessionful revisions have them.
pytestmark = pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")


@pytest.fixture
def gw(gateways, edge_mode):
    return gateways(edge_mode)


@pytest.fixture
def open_session():
    """Raw sessions that are deleted after the test whatever happens, so the live counts
    other tests read on the same gateway start from zero."""
    opened = []

    def make(url: str, revision: str = "2025-11-25") -> Session:
        opened.append(Session(url, revision))
        return opened[-1]

    yield make
    for s in opened:
        with contextlib.suppress(httpx.HTTPError):  # its gateway is gone (the shutdown test)
            s.delete()


# -- real MCP client ---------------------------------------------------------------------------


async def _journey(client: Client, logs: list, progress: list) -> None:
    tools = {t.name for t in (await client.list_tools()).tools}
    assert tools == {"echo", "add", "sleep", "log", "ask"}
    assert (await client.call_tool("echo", {"text": "héllo"})).content[0].text == "héllo"
    assert (await client.call_tool("add", {"a": 2, "b": 3})).content[0].text == "5"
    assert (await client.call_tool("add", {"a": "x", "b": 3})).is_error

    async def on_progress(value, total, message):
        progress.append((value, total))

    slept = await client.call_tool("sleep", {"seconds": 0.2, "ticks": 4}, progress_callback=on_progress)
    assert slept.content[0].text == "slept 0.2s"
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    logged = await client.call_tool("log", {"message": "hi", "level": "warning", "count": 2})
    assert not logged.is_error
    await handled(logs, 2)  # the SDK client handles each log in a task of its own
    assert [(entry.level, entry.data) for entry in logs] == [("warning", "hi (1/2)"), ("warning", "hi (2/2)")]

    resources = {r.uri: r for r in (await client.list_resources()).resources}
    assert set(resources) == {"mcpgw://readme", "mcpgw://logo.png"}
    text = (await client.read_resource("mcpgw://readme")).contents[0]
    assert "mcpgw" in text.text and text.mime_type == "text/plain"
    blob = (await client.read_resource("mcpgw://logo.png")).contents[0]
    assert blob.mime_type == "image/png" and base64.b64decode(blob.blob).startswith(b"\x89PNG\r\n\x1a\n")
    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["mcpgw://echo/{text}"]
    assert (await client.read_resource("mcpgw://echo/hello%20you")).contents[0].text == "hello you"

    prompts = (await client.list_prompts()).prompts
    assert [(p.name, [a.name for a in p.arguments]) for p in prompts] == [("greet", ["name", "style"])]
    got = await client.get_prompt("greet", {"name": "Ada", "style": "formal"})
    assert got.messages[0].content.text == "Please write a formal greeting addressed to Ada."
    done = await client.complete(types.PromptReference(name="greet"), {"name": "style", "value": "p"})
    assert done.completion.values == ["pirate"]
    names = await client.complete(types.PromptReference(name="greet"), {"name": "name", "value": "A"})
    assert names.completion.values == ["Ada", "Alan"]


async def test_sdk_client_sessionful_journey(gw):
    """initialize, setLevel, ping, tools (progress, logging), resources, templates, prompts,
    completion, then DELETE on exit: nothing of the session is left afterwards."""
    logs, progress = [], []

    async def on_log(params):
        logs.append(params)

    async with Client(gw.url + "/mcp", mode="legacy", logging_callback=on_log) as client:
        assert client.protocol_version == "2025-11-25"
        assert client.server_info.name == "mcpgw"
        await client.set_logging_level("warning")
        await client.send_ping()
        await _journey(client, logs, progress)
        assert wait_live(gw.url, sessions=1)["sessions"] == 1
    assert drained(gw.url) == NOTHING_LIVE


async def test_sdk_client_stateless_journey(gw):
    """mode=auto probes server/discover and speaks 2026-07-28: no session, Mcp-Method/Mcp-Name
    on every request, results stamped as that revision requires."""
    logs, progress = [], []

    async def on_log(params):
        logs.append(params)

    async with Client(gw.url + "/mcp", mode="auto", log_level="warning", logging_callback=on_log) as client:
        assert client.protocol_version == STATELESS
        assert client.server_info.name == "mcpgw"
        await _journey(client, logs, progress)
        assert wait_live(gw.url, sessions=0)["sessions"] == 0
    assert drained(gw.url) == NOTHING_LIVE


# -- raw HTTP: status codes and JSON-RPC errors, per revision ------------------------------------


@pytest.mark.parametrize("revision", SESSIONFUL)
def test_every_status_and_jsonrpc_error_per_revision(open_session, gw, revision):
    s = open_session(gw.url, revision)

    def check(response, status, code):
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code, response.text

    check(s.post(rpc("ping"), accept="text/event-stream"), 406, -32600)
    check(s.post(rpc("ping"), accept="text/html"), 406, -32600)
    check(
        s.http.post(
            s.url,
            content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            headers={**s.headers, "content-type": "text/plain"},
        ),
        415,
        -32600,
    )
    check(s.http.post(s.url, content=b'{"jsonrpc": "2.0", "method": ', headers=s.headers), 400, -32700)
    check(s.post({"jsonrpc": "1.0", "id": 1, "method": "ping"}), 400, -32600)
    check(s.post({"id": 1, "result": {}}), 400, -32600)  # neither request nor valid response
    check(s.post(rpc("no/such/method")), 200, -32601)
    check(s.post(rpc("tools/call", arguments={})), 200, -32602)
    check(s.post(rpc("resources/read", uri="mcpgw://nope")), 200, -32002)
    unsupported = s.post(rpc("ping"), **{"mcp-protocol-version": "1999-01-01"})
    check(unsupported, 400, -32022)
    assert unsupported.json()["error"]["data"] == {"supported": [*SESSIONFUL, STATELESS], "requested": "1999-01-01"}
    missing = s.http.post(s.url, json=rpc("ping"), headers={**BASE, "mcp-protocol-version": revision})
    check(missing, 400, -32600)
    check(s.post(rpc("ping"), **{"mcp-session-id": "no-such-session"}), 404, -32001)
    check(s.post(rpc("ping"), **{"mcp-session-id": "bad id"}), 400, -32600)
    ok = s.post(rpc("ping", 7))
    assert ok.status_code == 200 and ok.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert ok.headers["content-type"] == "application/json"
    for accepted in (rpc("notifications/roots/list_changed", None), {"jsonrpc": "2.0", "id": "x", "result": {}}):
        r = s.post(accepted)
        assert r.status_code == 202 and r.content == b""
    assert s.delete().status_code == 204
    check(s.post(rpc("ping")), 404, -32001)
    check(s.http.delete(s.url, headers=s.headers), 404, -32001)


def test_oversized_bodies_get_413_without_being_buffered(open_session, gateways, edge_mode):
    gw = gateways(edge_mode, MCPGW_MAX_BODY_BYTES="2048")
    s = open_session(gw.url)
    big = rpc("tools/call", name="echo", arguments={"text": "x" * 4096})
    declared = s.post(big)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == -32600

    def chunks():  # no Content-Length: the limit applies while reading
        payload = httpx.Request("POST", "/", json=big).content
        for i in range(0, len(payload), 512):
            yield payload[i : i + 512]

    streamed = s.http.post(s.url, content=chunks(), headers=s.headers)
    assert streamed.status_code == 413
    assert s.post(rpc("tools/call", name="echo", arguments={"text": "small"})).status_code == 200


def test_batches_only_where_the_revision_allows_them(open_session, gw):
    old = open_session(gw.url, "2025-03-26")
    r = old.post(
        [
            rpc("tools/call", 1, name="add", arguments={"a": 1, "b": 2}),
            rpc("ping", 2),
            rpc("notifications/progress", None, progressToken="t", progress=1),
        ]
    )
    assert r.status_code == 200
    assert sorted((m["id"], m["result"]) for m in r.json()) == [
        (1, {"content": [{"type": "text", "text": "3"}], "isError": False}),
        (2, {}),
    ]
    only_notes = old.post([rpc("notifications/roots/list_changed", None)])
    assert only_notes.status_code == 202 and only_notes.content == b""
    assert old.post([]).status_code == 400
    init_in_batch = old.post(
        [rpc("initialize", 9, protocolVersion="2025-03-26", capabilities={}, clientInfo={"name": "t", "version": "0"})]
    )
    assert init_in_batch.status_code == 400 and init_in_batch.json()["error"]["code"] == -32600
    for revision in ("2025-06-18", "2025-11-25"):
        new = open_session(gw.url, revision)
        r = new.post([rpc("ping", 1), rpc("ping", 2)])
        assert r.status_code == 400 and "batches are not supported" in r.json()["error"]["message"]


def test_a_batch_is_answered_in_the_order_of_its_requests(open_session, gw):
    """The first request finishes last; its response still comes first (as on every process
    of a Redis-backed gateway, where a ping need not wait for anything a call waits for)."""
    old = open_session(gw.url, "2025-03-26")
    r = old.post(
        [
            rpc("tools/call", "slow", name="sleep", arguments={"seconds": 0.3, "ticks": 1}),
            rpc("ping", 2),
            rpc("tools/call", 3, name="add", arguments={"a": 1, "b": 2}),
        ]
    )
    assert r.status_code == 200
    assert [m["id"] for m in r.json()] == ["slow", 2, 3]
    assert "result" in r.json()[0]


# -- SSE responses --------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", SESSIONFUL)
def test_sse_response_framing(open_session, gw, revision):
    """Progress forces SSE; 2025-11-25 primes with an id and empty data; ids are unique and name
    their stream; no-cache and X-Accel-Buffering: no."""
    s = open_session(gw.url, revision)
    msg = rpc("tools/call", 3, name="sleep", arguments={"seconds": 0, "ticks": 3}, _meta={"progressToken": "p"})
    with s.stream("POST", msg) as r:
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
        events = read_sse(r)
    if revision == "2025-11-25":
        assert events[0].data == "" and events[0].id is not None
        events = events[1:]
    assert [e.json().get("method") for e in events] == ["notifications/progress"] * 3 + [None]
    assert events[-1].json()["id"] == 3 and events[-1].json()["result"]["content"][0]["text"] == "slept 0s"
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids) and len({i.rsplit("_", 1)[0] for i in ids}) == 1
    # A second stream in the same session has its own stream id.
    with s.stream("POST", {**msg, "id": 4}) as r:
        other = [e.id for e in read_sse(r)]
    assert not set(other) & set(ids) and {i.rsplit("_", 1)[0] for i in other} != {i.rsplit("_", 1)[0] for i in ids}


def test_json_mode_answers_plain_results_as_json_and_json_only_clients_get_json(open_session, gw):
    s = open_session(gw.url)
    plain = s.post(rpc("tools/call", name="echo", arguments={"text": "x"}))
    assert plain.headers["content-type"] == "application/json"
    # A client accepting only JSON (allowed in JSON mode) gets the result without the progress.
    r = s.post(
        rpc("tools/call", 5, name="sleep", arguments={"seconds": 0, "ticks": 2}, _meta={"progressToken": 1}),
        accept="application/json",
    )
    assert r.headers["content-type"] == "application/json" and r.json()["result"]["content"][0]["text"] == "slept 0s"


def test_sse_mode_answers_every_request_as_sse(open_session, gateways, edge_mode):
    gw = gateways(edge_mode, MCPGW_RESPONSE_MODE="sse")
    s = open_session(gw.url)
    with s.stream("POST", rpc("ping", 8)) as r:
        assert r.headers["content-type"] == "text/event-stream"
        events = read_sse(r)
    assert events[-1].json() == {"jsonrpc": "2.0", "id": 8, "result": {}}
    assert s.post(rpc("ping"), accept="application/json").status_code == 406


# -- GET stream -----------------------------------------------------------------------------------


def test_get_stream_one_per_session_with_keepalives(open_session, gateways, edge_mode):
    # Keepalives the gateway writes before it handles the DELETE are still on their way when the
    # client reads the end; so the DELETE follows the keepalive read at once, and the interval
    # (2 s) leaves a loaded machine ample time to handle it before the next one is due.
    gw = gateways(edge_mode, MCPGW_SSE_KEEPALIVE_S="2")
    s = open_session(gw.url)
    assert s.http.get(s.url, headers={**s.headers, "accept": "application/json"}).status_code == 406
    with s.stream("GET") as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        items = sse_events(r.iter_lines())
        priming = next(items)
        assert isinstance(priming, Event) and priming.data == "" and priming.id == "0_0"
        second = s.http.get(s.url, headers=s.headers)
        assert second.status_code == 409 and second.json()["error"]["code"] == -32600
        assert wait_live(gw.url, streams=1)["streams"] == 1
        assert next(items) == ": keepalive"
        assert s.delete().status_code == 204
        assert list(items) == []  # ended by DELETE: cleanly, nothing more (no retry: the client ended it)
    assert drained(gw.url) == NOTHING_LIVE


async def test_a_delete_landing_as_the_keepalive_timer_fires_ends_the_stream_without_a_keepalive():
    """The GET stream's writer (sse_writer.pump) on a real EventStream whose keepalive wait times
    out just as the session is deleted (the DELETE handled before the writer's next turn, as on a
    busy event loop): the stream ends, and no keepalive is written after the DELETE."""

    class DeletedAsTheTimerFires(EventStream):
        async def wait(self, timeout: float | None) -> bool:
            woke = await super().wait(timeout)
            if not woke:
                self.kick(retry=False)  # what SessionStreams.close("terminated") does
            return woke

    budget = EventBudget(
        max_bytes=1 << 20,
        max_session_bytes=1 << 20,
        max_stream_bytes=1 << 20,
        slow_reader_max_bytes=1 << 20,
        slow_reader_wait_s=0.0,
    )
    stream = DeletedAsTheTimerFires(GET_STREAM_ID, 100, 60.0, budget, None)
    sent: list[bytes] = []

    async def send(message: dict) -> None:
        sent.append(message["body"])

    options = PumpOptions(ids=True, keepalive_s=0.01, keepalive=SSE_KEEPALIVE, retry_ms=1000)
    await asyncio.wait_for(pump(stream, 0, send, None, StreamWriters(), options, None, prime=True), 30)
    assert sent == [sse_priming(stream.event_id(0)), b""]


def test_lifecycle_initialize_stream_calls_delete(open_session, gw):
    s = open_session(gw.url, "2025-06-18")
    with s.stream("GET") as get:
        for i in range(3):
            assert s.post(rpc("tools/call", i, name="add", arguments={"a": i, "b": 1})).json()["result"]["content"][0][
                "text"
            ] == str(i + 1)
        assert wait_live(gw.url, sessions=1, streams=1) == {
            "sessions": 1,
            "requests": 0,
            "streams": 1,
            "upstream_links": 0,
        }
        assert s.delete().status_code == 204
        assert read_sse(get) == []  # 2025-06-18: no priming event, and DELETE ends the stream
    assert s.post(rpc("ping")).status_code == 404
    assert s.http.get(s.url, headers=s.headers).status_code == 404
    assert drained(gw.url) == NOTHING_LIVE


# -- resumability ---------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", ["2025-06-18", "2025-11-25"])
def test_resume_replays_exactly_the_missed_events_of_that_stream(open_session, gw, revision):
    s = open_session(gw.url, revision)
    slow = rpc("tools/call", 11, name="sleep", arguments={"seconds": 0.6, "ticks": 6}, _meta={"progressToken": "a"})
    with s.stream("POST", slow) as r:
        seen = []
        for event in sse_events(r.iter_lines()):
            if isinstance(event, Event) and event.data:
                seen.append(event)
                if len(seen) == 2:
                    break  # leave mid-stream: the connection closes here
    assert [e.json()["params"]["progress"] for e in seen] == [1, 2]
    # Another stream of the same session produces events meanwhile; none may leak into the replay.
    with s.stream("POST", rpc("tools/call", 12, name="log", arguments={"message": "other", "count": 3})) as r:
        assert len([e for e in read_sse(r) if e.data]) == 4
    with s.stream("GET", **{"last-event-id": seen[-1].id}) as r:
        assert r.status_code == 200
        replay = [e for e in read_sse(r) if e.data]
    assert [e.json().get("params", {}).get("progress") for e in replay] == [3, 4, 5, 6, None]
    assert replay[-1].json()["id"] == 11 and replay[-1].json()["result"]["content"][0]["text"] == "slept 0.6s"
    assert all(e.id.rsplit("_", 1)[0] == seen[0].id.rsplit("_", 1)[0] for e in replay)
    # Resuming again from the last event gets nothing more: the stream is complete.
    with s.stream("GET", **{"last-event-id": replay[-1].id}) as r:
        assert [e for e in read_sse(r) if e.data] == []
    assert s.delete().status_code == 204


def test_unknown_or_evicted_event_ids_get_a_clear_error(open_session, gateways, edge_mode):
    gw = gateways(edge_mode, MCPGW_EVENT_STORE_MAX_EVENTS="3")
    s = open_session(gw.url)
    with s.stream("POST", rpc("tools/call", 1, name="log", arguments={"message": "m", "count": 10})) as r:
        events = [e for e in read_sse(r) if e.data]
    assert len(events) == 11
    for bad in (events[0].id, "99_1", "garbage", "1_999"):
        r = s.http.get(s.url, headers={**s.headers, "last-event-id": bad})
        assert r.status_code == 400, bad
        assert "Last-Event-ID" in r.json()["error"]["message"]
    # Still retained: the last three.
    with s.stream("GET", **{"last-event-id": events[-4].id}) as r:
        assert [e.id for e in read_sse(r) if e.data] == [e.id for e in events[-3:]]
    # Another session's ids select nothing of this one.
    other = open_session(gw.url)
    assert other.http.get(other.url, headers={**other.headers, "last-event-id": events[-2].id}).status_code == 400


# -- expiry and the session cap -------------------------------------------------------------------


def test_idle_sessions_expire(open_session, gateways, edge_mode):
    gw = gateways(edge_mode, MCPGW_SESSION_IDLE_TIMEOUT_S="0.5")
    s = open_session(gw.url)
    assert wait_live(gw.url, sessions=0)["sessions"] == 0
    gone = s.post(rpc("ping"))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == -32001


def test_session_cap_answers_503_with_a_jsonrpc_error(open_session, gateways, edge_mode):
    gw = gateways(edge_mode, MCPGW_MAX_SESSIONS="2")
    first = open_session(gw.url)
    open_session(gw.url)
    r = httpx.post(
        gw.url + "/mcp",
        headers=BASE,
        json=rpc(
            "initialize", 1, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "0"}
        ),
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == -32603 and r.headers["retry-after"]
    assert first.delete().status_code == 204
    open_session(gw.url)  # room again


# -- cancellation ---------------------------------------------------------------------------------


def test_cancelled_notification_stops_a_running_sleep(open_session, gw):
    s = open_session(gw.url)
    msg = rpc("tools/call", 21, name="sleep", arguments={"seconds": 60, "ticks": 600}, _meta={"progressToken": 1})
    with s.stream("POST", msg) as r:
        events = sse_events(r.iter_lines())
        first = next(e for e in events if isinstance(e, Event) and e.data)
        assert first.json()["method"] == "notifications/progress"
        note = s.post(rpc("notifications/cancelled", None, requestId=21, reason="test"))
        assert note.status_code == 202
        rest = [e for e in events if isinstance(e, Event) and e.data]
    assert all("id" not in e.json() for e in rest)  # no response for a cancelled request
    assert len(rest) < 599
    assert wait_live(gw.url, requests=0)["requests"] == 0
    assert s.post(rpc("ping")).status_code == 200  # the session lives on


def _sleep_in_background(gw, s: Session, id_: int):
    """A 60 s `sleep` from a JSON-only client, running once this returns; its answer lands in the list."""
    answers: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: answers.append(
            s.post(rpc("tools/call", id_, name="sleep", arguments={"seconds": 60}), accept="application/json")
        )
    )
    worker.start()
    assert wait_live(gw.url, requests=1)["requests"] == 1
    return worker, answers


def test_cancelled_json_request_gets_an_answer(open_session, gw):
    """A JSON-only client still needs an HTTP answer: a -32800 error for the cancelled id."""
    s = open_session(gw.url)
    worker, answers = _sleep_in_background(gw, s, 22)
    assert s.post(rpc("notifications/cancelled", None, requestId=22)).status_code == 202
    worker.join(30)
    assert answers[0].status_code == 200 and answers[0].json()["error"]["code"] == -32800
    assert wait_live(gw.url, requests=0)["requests"] == 0


def test_2026_closing_the_stream_cancels_the_request(gw):
    msg = rpc2026("tools/call", 31, name="sleep", arguments={"seconds": 60, "ticks": 600}, meta={"progressToken": 31})
    with httpx.stream("POST", gw.url + "/mcp", json=msg, headers=headers2026("tools/call", "sleep")) as r:
        events = sse_events(r.iter_lines())  # kept referenced: dropping it would close the stream early
        first = next(e for e in events if isinstance(e, Event))
        assert first.json()["method"] == "notifications/progress" and first.id is None
        assert wait_live(gw.url, requests=1)["requests"] == 1
    assert wait_live(gw.url, requests=0, streams=0) == NOTHING_LIVE


def test_deleting_a_session_cancels_its_requests_and_closes_its_streams(open_session, gw):
    s = open_session(gw.url)
    msg = rpc("tools/call", 41, name="sleep", arguments={"seconds": 60, "ticks": 600}, _meta={"progressToken": 1})
    with s.stream("GET") as get, s.stream("POST", msg) as post:
        posted = sse_events(post.iter_lines())
        next(e for e in posted if isinstance(e, Event) and e.data)
        assert s.delete().status_code == 204
        assert all("id" not in e.json() for e in posted if isinstance(e, Event) and e.data)
        assert [e for e in read_sse(get) if e.data] == []
    assert drained(gw.url) == NOTHING_LIVE


# -- 2026-07-28 -----------------------------------------------------------------------------------


def test_2026_is_post_only_and_ignores_session_and_resume_headers(gw):
    url = gw.url + "/mcp"
    for method in ("GET", "DELETE", "PUT"):
        r = httpx.request(method, url, headers=headers2026("tools/list"))
        assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = httpx.post(
        url,
        json=rpc2026("tools/list"),
        headers=headers2026("tools/list", **{"mcp-session-id": "whatever", "last-event-id": "1_1"}),
    )
    assert r.status_code == 200 and r.json()["result"]["resultType"] == "complete"
    assert "mcp-session-id" not in r.headers
    assert live(gw.url)["sessions"] == 0


@pytest.mark.parametrize(
    "headers, body, status, code",
    [
        (headers2026("tools/list"), rpc2026("tools/list"), 200, None),
        ({**BASE, "mcp-protocol-version": STATELESS}, rpc2026("tools/list"), 400, -32020),  # no Mcp-Method
        (headers2026("tools/call", "echo"), rpc2026("tools/list"), 400, -32020),
        (headers2026("tools/call"), rpc2026("tools/call", name="echo", arguments={"text": "x"}), 400, -32020),
        (headers2026("tools/call", "add"), rpc2026("tools/call", name="echo", arguments={"text": "x"}), 400, -32020),
        (headers2026("tools/call", "=?base64?w6k=?="), rpc2026("tools/call", name="é", arguments={}), 400, -32602),
        (headers2026("tools/call", "=?base64?w6k?="), rpc2026("tools/call", name="é", arguments={}), 400, -32020),
        (headers2026("resources/read", "mcpgw://readme"), rpc2026("resources/read", uri="mcpgw://readme"), 200, None),
        (headers2026("resources/read", "mcpgw://other"), rpc2026("resources/read", uri="mcpgw://readme"), 400, -32020),
        (
            headers2026("prompts/get", "greet"),
            rpc2026("prompts/get", name="greet", arguments={"name": "Ada"}),
            200,
            None,
        ),
        (headers2026("tools/list"), rpc("tools/list"), 400, -32602),  # no envelope
        (
            headers2026("tools/list"),
            rpc2026("tools/list", meta={"io.modelcontextprotocol/protocolVersion": "2025-11-25"}),
            400,
            -32020,
        ),
        (headers2026("tools/list"), [rpc2026("tools/list")], 400, -32600),
        (headers2026("ping"), rpc2026("ping"), 404, -32601),
        (headers2026("no/such"), rpc2026("no/such"), 404, -32601),
        (headers2026("tools/call", "echo"), rpc2026("tools/call", name="echo", arguments=[]), 400, -32602),
    ],
    ids=[
        "ok",
        "no-method-header",
        "method-mismatch",
        "no-name-header",
        "name-mismatch",
        "name-base64-unknown-tool",
        "name-bad-base64",
        "read-ok",
        "uri-mismatch",
        "prompt-ok",
        "no-envelope",
        "envelope-version-mismatch",
        "batch",
        "ping-not-in-2026",
        "unknown-method",
        "invalid-params",
    ],
)
def test_2026_headers_must_match_the_body(gw, headers, body, status, code):
    r = httpx.post(gw.url + "/mcp", json=body, headers=headers)
    assert r.status_code == status, r.text
    if code is None:
        assert r.json()["result"]["resultType"] == "complete"
    else:
        assert r.json()["error"]["code"] == code, r.text


def test_2026_discover_and_result_stamps(gw):
    r = httpx.post(gw.url + "/mcp", json=rpc2026("server/discover"), headers=headers2026("server/discover"))
    result = r.json()["result"]
    assert STATELESS in result["supportedVersions"] and set(SESSIONFUL) <= set(result["supportedVersions"])
    assert result["capabilities"]["tools"] == {"listChanged": True}
    assert (result["resultType"], result["ttlMs"], result["cacheScope"]) == ("complete", 0, "private")
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcpgw"
    call = httpx.post(
        gw.url + "/mcp",
        json=rpc2026("tools/call", name="add", arguments={"a": 1, "b": 1}),
        headers=headers2026("tools/call", "add"),
    ).json()["result"]
    assert call["resultType"] == "complete" and "ttlMs" not in call
    note = httpx.post(
        gw.url + "/mcp",
        json=rpc("notifications/cancelled", None, requestId=1),
        headers=headers2026("notifications/cancelled"),
    )
    assert note.status_code == 202
    response = httpx.post(gw.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "result": {}}, headers=headers2026("x"))
    assert response.status_code == 400
    # Logs only when the request's envelope asks for them.
    quiet = httpx.post(
        gw.url + "/mcp",
        json=rpc2026("tools/call", name="log", arguments={"message": "m"}),
        headers=headers2026("tools/call", "log"),
    )
    assert quiet.headers["content-type"] == "application/json"
    loud = httpx.post(
        gw.url + "/mcp",
        json=rpc2026(
            "tools/call", name="log", arguments={"message": "m"}, meta={"io.modelcontextprotocol/logLevel": "info"}
        ),
        headers=headers2026("tools/call", "log"),
    )
    assert loud.headers["content-type"] == "text/event-stream"
    assert [e.json().get("method") for e in read_sse_text(loud.text)] == ["notifications/message", None]


# -- shutdown -------------------------------------------------------------------------------------


def test_graceful_shutdown_closes_streams_with_retry_and_answers_running_requests(
    open_session, edge_mode, component_path
):
    from conftest import Gateway

    gw = Gateway({"MCPGW_EDGE": edge_mode, "MCPGW_SHUTDOWN_GRACE_S": "0.5"}).wait_ready()
    try:
        s = open_session(gw.url)
        results = {}

        def run_get():
            with s.stream("GET") as r:
                results["get"] = read_sse(r)

        def run_post():
            results["post"] = s.post(rpc("tools/call", 51, name="sleep", arguments={"seconds": 60}))

        workers = [threading.Thread(target=run_get), threading.Thread(target=run_post)]
        for w in workers:
            w.start()
        assert wait_live(gw.url, requests=1, streams=1) == {
            "sessions": 1,
            "requests": 1,
            "streams": 1,
            "upstream_links": 0,
        }
        gw.proc.terminate()
        for w in workers:
            w.join(60)
        assert results["post"].json()["error"] == {"code": -32603, "message": "Server shutting down"}
        assert results["get"][-1].retry == 1000
        # uvicorn re-raises the captured SIGTERM once its graceful shutdown is done.
        assert gw.proc.wait(60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in gw.log() and "Traceback" not in gw.log()
    finally:
        gw.stop()


def test_a_request_id_in_use_is_refused_and_the_first_keeps_running(open_session, gw):
    s = open_session(gw.url)
    worker, answers = _sleep_in_background(gw, s, 61)
    again = s.post(rpc("ping", 61))
    assert again.json()["error"]["code"] == -32600 and "already in use" in again.json()["error"]["message"]
    assert s.post(rpc("ping", "61")).json()["result"] == {}  # "61" is another id than 61
    assert live(gw.url)["requests"] == 1
    s.post(rpc("notifications/cancelled", None, requestId=61))
    worker.join(30)
    assert answers[0].json()["error"]["code"] == -32800
