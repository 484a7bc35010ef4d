"""Byte budgets of the event store, the slow-reader bound, and the caps on sessions per client
and running requests per session: the budget object on its own, then real `mcpgw serve`
processes in both edge modes.

Memory is asserted with deadlines on VmRSS (/proc/PID/status), never with durations.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mcp_http import BASE, Session, rpc, wait_live
from mcpgw.server.engine import LIMIT_EXCEEDED
from mcpgw.settings import Settings
from mcpgw.state.budget import EVENT_OVERHEAD, EventBudget
from mcpgw.state.events import EventStream, Listener
from mcpgw.state.streams import SessionStreams

pytestmark = pytest.mark.timeout(300)
MiB = 1024 * 1024
KiB = 1024


# -- the budget object ---------------------------------------------------------------------
def budget(
    max_bytes: int = 100 * KiB,
    session: int = 60 * KiB,
    stream: int = 30 * KiB,
    reader: int = 50 * KiB,
    wait_s: float = 0.0,
) -> EventBudget:
    return EventBudget(
        max_bytes=max_bytes,
        max_session_bytes=session,
        max_stream_bytes=stream,
        slow_reader_max_bytes=reader,
        slow_reader_wait_s=wait_s,
    )


def blob(kib: int) -> bytes:
    return b"x" * (kib * KiB - EVENT_OVERHEAD)  # charged exactly `kib` KiB


def read_all(stream: EventStream) -> Listener:
    """A reader that attaches and is sent everything published so far."""
    listener = Listener()
    stream.attach(listener)
    stream.delivered(stream.last_seq)
    return listener


def test_a_stream_keeps_at_most_its_budget_once_sent_but_a_reader_gets_everything():
    b = budget(max_bytes=1000 * KiB, session=1000 * KiB, reader=1000 * KiB)
    s = EventStream("1", 1000, 300, b, None)
    listener = Listener()
    s.attach(listener)
    s.delivered(0)
    for _ in range(10):
        s.publish(blob(10))
    # Unsent: all kept for the connected reader, whatever the stream budget says.
    assert [seq for seq, _ in s.after(0) or []] == list(range(1, 11))
    s.delivered(10)
    assert s.retained_bytes <= 30 * KiB
    assert b.used == s.retained_bytes
    assert s.after(0) is None  # evicted: a resume from there is refused
    assert s.after(9) is not None


def test_a_single_message_larger_than_every_budget_is_delivered_then_not_kept():
    b = budget()
    s = EventStream("1", 1000, 300, b, None)
    listener = Listener()
    s.attach(listener)
    s.delivered(0)
    s.publish(blob(200))  # larger than the stream, session, process and reader budgets
    events = s.after(0)
    assert events is not None and len(events[0][1]) == 200 * KiB - EVENT_OVERHEAD
    assert b.readers_cut == 0
    s.delivered(1)
    assert s.retained_bytes == 0 and b.used == 0


def test_the_process_budget_evicts_finished_streams_first_then_unread_ones_never_a_readers_unsent():
    b = budget(max_bytes=100 * KiB, session=1000 * KiB, stream=1000 * KiB, reader=1000 * KiB)
    finished = EventStream("f", 1000, 300, b, None)
    read_all(finished)
    finished.publish(blob(30))
    finished.detach(finished.listener)  # type: ignore[arg-type]  # attached by read_all
    finished.finish()
    unread = EventStream("u", 1000, 300, b, None)
    unread.detach(read_all(unread))  # no reader any more
    unread.publish(blob(30))
    live = EventStream("l", 1000, 300, b, None)
    live.attach(Listener())
    live.delivered(0)
    live.publish(blob(30))
    assert b.used == 90 * KiB and b.evicted_bytes == 0
    live.publish(blob(30))  # 120 KiB: over; down to 7/8 of 100 KiB
    assert finished.retained_bytes == 0 and finished.after(0) is None
    assert unread.retained_bytes == 0
    assert live.after(0) is not None and len(live.after(0) or []) == 2  # never cut for someone's retention
    assert b.used == 60 * KiB and b.evicted_bytes == 60 * KiB


def test_a_session_budget_evicts_within_that_session_only():
    b = budget(max_bytes=1000 * KiB, session=50 * KiB, stream=1000 * KiB, reader=1000 * KiB)
    mine, other = SessionStreams(1000, 300, b), SessionStreams(1000, 300, b)
    theirs = other.new_stream()
    read_all(theirs)
    theirs.publish(blob(40))
    theirs.delivered(1)
    first = mine.new_stream()
    read_all(first)
    first.publish(blob(40))
    first.delivered(1)
    first.finish()
    second = mine.new_stream()
    read_all(second)
    second.publish(blob(40))  # 80 KiB in this session: its finished stream goes
    assert first.retained_bytes == 0 and second.retained_bytes == 40 * KiB
    assert theirs.retained_bytes == 40 * KiB
    assert mine.bytes.bytes == 40 * KiB and b.used == 80 * KiB


def test_a_reader_past_its_bound_is_cut_and_finds_the_gap():
    b = budget(max_bytes=10 * MiB, session=10 * MiB, stream=10 * MiB, reader=50 * KiB)
    s = EventStream("1", 1000, 300, b, None)
    s.attach(Listener())
    s.delivered(0)
    for _ in range(4):
        s.publish(blob(10))
    assert s.after(0) is not None and b.readers_cut == 0
    for _ in range(4):
        s.publish(blob(10))
    assert s.after(0) is None  # the pump ends the connection with `retry`
    assert s.unsent_bytes <= 50 * KiB and b.readers_cut == 1


def test_a_producer_waits_for_room_until_the_reader_catches_up_or_the_wait_ends():
    async def scenario() -> None:
        b = budget(max_bytes=10 * MiB, session=10 * MiB, stream=10 * MiB, reader=30 * KiB)
        s = EventStream("1", 1000, 300, b, None)
        s.attach(Listener())
        s.delivered(0)
        s.publish(blob(20))
        waiter = asyncio.ensure_future(s.room(20 * KiB, 30.0))
        await asyncio.sleep(0)
        assert not waiter.done()  # 20 + 20 KiB would pass the reader's 30 KiB
        s.delivered(1)
        assert await waiter
        s.publish(blob(20))
        assert not await s.room(20 * KiB, 0.01)  # nobody reads: the wait ends, then the bound cuts

    asyncio.run(scenario())


def test_bytes_of_a_dropped_stream_are_released():
    b = budget()
    s = EventStream("1", 1000, 300, b, None)
    s.publish(blob(10))
    assert b.used == 10 * KiB
    del s
    gc.collect()
    assert b.used == 0
    streams = SessionStreams(1000, 300, b)
    t = streams.new_stream()
    streams.register(t)
    t.publish(blob(10))
    streams.close("terminated")
    assert b.used == 0 and streams.bytes.bytes == 0


def test_the_defaults_bound_the_process_whatever_the_number_of_sessions():
    s = Settings()
    assert s.event_store_max_bytes == 64 * MiB
    # One session cannot take more than a quarter of the process budget; one stream half a
    # session's; a reader's queue fits one stream.
    assert s.event_store_max_session_bytes * 4 <= s.event_store_max_bytes
    assert s.event_store_max_stream_bytes * 2 <= s.event_store_max_session_bytes
    assert s.slow_reader_max_bytes <= s.event_store_max_stream_bytes


# -- real gateways -----------------------------------------------------------------------------
SMALL = {
    "MCPGW_EVENT_STORE_MAX_STREAM_BYTES": str(256 * KiB),
    "MCPGW_EVENT_STORE_MAX_SESSION_BYTES": str(512 * KiB),
    "MCPGW_EVENT_STORE_MAX_BYTES": str(1 * MiB),
}
SLOW = {"MCPGW_SLOW_READER_MAX_BYTES": str(1 * MiB), "MCPGW_SLOW_READER_WAIT_S": "0.5"}
CAPS = {"MCPGW_MAX_SESSIONS_PER_CLIENT": "3", "MCPGW_MAX_REQUESTS_PER_SESSION": "2"}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def events_health(url: str) -> dict:
    return httpx.get(url + "/health").json()["limits"]["events"]


def log_call(id_: int, kib: int, count: int) -> dict:
    return rpc("tools/call", id_, name="log", arguments={"message": "m" * (kib * KiB), "count": count})


def stream_call(session: Session, message: dict) -> list[dict]:
    """POST one request and read every event of its SSE response (ids kept in `_id`)."""
    out = []
    with session.stream("POST", message) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        event_id = None
        for line in r.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: ") and len(line) > 6:
                out.append({**json.loads(line[6:]), "_id": event_id})
    return out


def test_a_flood_of_1_mib_logs_keeps_rss_within_the_event_budget(gateways, edge_mode):
    gw = gateways(edge_mode)
    s = Session(gw.url)
    before = rss_mib(gw.proc.pid)
    for i in range(3):
        events = stream_call(s, log_call(10 + i, 1024, 100))
        assert len(events) == 101, "the reader gets every message and the result"
        assert events[-1]["id"] == 10 + i and "sent 100 log message(s)" in events[-1]["result"]["content"][0]["text"]
    stats = events_health(gw.url)
    settings = Settings()
    assert stats["bytes"] <= settings.event_store_max_session_bytes  # one session: its own budget
    assert stats["evicted_bytes"] > 0
    bound = before + settings.event_store_max_bytes / MiB + 40
    deadline = time.monotonic() + 30
    while (now := rss_mib(gw.proc.pid)) > bound and time.monotonic() < deadline:
        time.sleep(0.2)
    assert now <= bound, f"RSS {now:.0f} MiB after the flood, from {before:.0f} MiB (bound {bound:.0f})"
    assert s.delete().status_code == 204


def test_resuming_an_evicted_event_id_gets_400(gateways, edge_mode):
    gw = gateways(edge_mode, **SMALL)
    early = Session(gw.url)
    kept = stream_call(early, log_call(1, 50, 2))
    assert len(kept) == 3
    resume = {**early.headers, "last-event-id": kept[0]["_id"]}
    assert early.http.get(early.url, headers=resume).status_code == 200  # within every budget: resumable
    # Three other sessions retain 400 KiB each (two streams of two 100 KiB events), more than the
    # process budget together:
    # the oldest finished stream (early's) goes first.
    floods = [Session(gw.url) for _ in range(3)]
    for i, flood in enumerate(floods * 2):
        assert len(stream_call(flood, log_call(10 + i, 100, 4))) == 5
    r = early.http.get(early.url, headers=resume)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32600 and "no longer retained" in r.json()["error"]["message"]
    stats = events_health(gw.url)
    assert stats["bytes"] <= 1 * MiB and stats["evicted_bytes"] > 0
    assert "events kept 0.25 MiB per stream, 0.5 MiB per session, 1 MiB in all" in gw.log()
    for s in (early, *floods):
        assert s.delete().status_code == 204
    assert wait_live(gw.url, sessions=0, requests=0, streams=0)["sessions"] == 0


def test_a_connected_reader_receives_every_event_of_a_burst_larger_than_the_budgets(gateways, edge_mode):
    gw = gateways(edge_mode, **SMALL)
    s = Session(gw.url)
    events = stream_call(s, log_call(7, 100, 40))  # 4 MiB: four times the process budget
    assert len(events) == 41
    assert [e["params"]["data"].endswith(f"({i}/40)") for i, e in enumerate(events[:-1], 1)] == [True] * 40
    assert [int(e["_id"].rpartition("_")[2]) for e in events] == list(range(1, 42))
    assert events[-1]["id"] == 7 and events_health(gw.url)["readers_cut"] == 0
    assert s.delete().status_code == 204


def test_a_slow_reader_past_its_bound_is_cut_with_retry_while_others_are_served(gateways, edge_mode):
    gw = gateways(edge_mode, **SLOW)
    cut_before = events_health(gw.url)["readers_cut"]
    slow = Session(gw.url)
    body = json.dumps(log_call(3, 200, 100)).encode()  # 20 MiB of messages
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    head = "".join(f"{k}: {v}\r\n" for k, v in slow.headers.items())
    sock.sendall(
        f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{gw.port}\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body
    )
    other = Session(gw.url)
    deadline = time.monotonic() + 60
    served = 0
    while events_health(gw.url)["readers_cut"] == cut_before and time.monotonic() < deadline:
        r = other.post(rpc("tools/call", served + 1, name="add", arguments={"a": served, "b": 1}))
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == str(served + 1)
        served += 1
    assert events_health(gw.url)["readers_cut"] == cut_before + 1
    assert wait_live(gw.url, requests=0)["requests"] == 0  # the producer was not held forever
    # Now read: what was on its way, then `retry` and the end of the response.
    sock.settimeout(30)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed the connection instead of ending the stream"
        data += chunk
    sock.close()
    assert b"\nretry: " in data
    received = data.count(b"event: message")
    assert received < 101
    assert events_health(gw.url)["bytes"] <= 2 * MiB
    assert other.post(rpc("ping", 99)).status_code == 200
    assert slow.delete().status_code == 204 and other.delete().status_code == 204


def initialize(http: httpx.Client, url: str) -> httpx.Response:
    return http.post(
        url + "/mcp",
        json=rpc(
            "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "0"}
        ),
        headers=BASE,
    )


def test_sessions_per_client_past_the_cap_get_429_on_every_transport(gateways, edge_mode):
    gw = gateways(edge_mode, **CAPS)
    refused_before = httpx.get(gw.url + "/health").json()["limits"]["sessions"]["refused"]["sessions_per_client"]
    sessions = [Session(gw.url) for _ in range(3)]
    with httpx.Client(timeout=30) as http:
        r = initialize(http, gw.url)
        assert r.status_code == 429 and r.headers["retry-after"] == "5"
        assert r.json()["error"]["code"] == LIMIT_EXCEEDED
        assert "Too many live sessions" in r.json()["error"]["message"]
        sse = http.get(gw.url + "/sse", headers={"accept": "text/event-stream"})
        assert sse.status_code == 429 and sse.json()["error"]["code"] == LIMIT_EXCEEDED
    with pytest.raises(InvalidStatus) as refused:
        connect(gw.url.replace("http://", "ws://") + "/ws", subprotocols=["mcp"]).close()
    assert refused.value.response.status_code in (403, 429)  # 403 where the server cannot send a body
    health = httpx.get(gw.url + "/health").json()["limits"]["sessions"]
    assert health["refused"]["sessions_per_client"] == refused_before + 3
    assert health["max_sessions_per_client"] == 3
    assert "3 sessions per client address, 2 running requests per session" in gw.log()  # the start-up log
    assert sessions[0].delete().status_code == 204
    replacement = Session(gw.url)  # room again
    for s in [*sessions[1:], replacement]:
        assert s.delete().status_code == 204


def test_running_requests_past_the_cap_get_429_or_a_json_rpc_error(gateways, edge_mode):
    gw = gateways(edge_mode, **CAPS)
    s = Session(gw.url)
    sleep = {"name": "sleep", "arguments": {"seconds": 60, "ticks": 60}}  # until cancelled
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(s.post, rpc("tools/call", i, **sleep)) for i in (1, 2)]
        assert wait_live(gw.url, requests=2)["requests"] == 2
        r = s.post(rpc("tools/call", 3, name="add", arguments={"a": 1, "b": 2}))
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == LIMIT_EXCEEDED and "Too many requests" in r.json()["error"]["message"]
        for i in (1, 2):
            assert s.post(rpc("notifications/cancelled", None, requestId=i)).status_code == 202
        assert [f.result().json()["error"]["code"] for f in running] == [-32800, -32800]
    assert s.post(rpc("tools/call", 4, name="add", arguments={"a": 1, "b": 2})).status_code == 200
    assert s.delete().status_code == 204
    # A message transport answers that one request with the error; the connection goes on.
    with connect(gw.url.replace("http://", "ws://") + "/ws", subprotocols=["mcp"]) as ws:
        ws.send(json.dumps(rpc("initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={})))
        assert "result" in json.loads(ws.recv(timeout=30))
        for i in (1, 2):
            ws.send(json.dumps(rpc("tools/call", i, **sleep)))
        ws.send(json.dumps(rpc("tools/call", 3, name="add", arguments={"a": 1, "b": 2})))
        answer = json.loads(ws.recv(timeout=30))
        assert answer["id"] == 3 and answer["error"]["code"] == LIMIT_EXCEEDED
        for i in (1, 2):  # cancelled: no answer (the spec's rule); the session ends with the connection
            ws.send(json.dumps(rpc("notifications/cancelled", None, requestId=i)))
        assert wait_live(gw.url, requests=0)["requests"] == 0
        ws.send(json.dumps(rpc("ping", 4)))  # room again
        assert json.loads(ws.recv(timeout=30)) == {"jsonrpc": "2.0", "id": 4, "result": {}}
    refused = httpx.get(gw.url + "/health").json()["limits"]["sessions"]["refused"]
    assert refused["requests_per_session"] >= 2
    assert wait_live(gw.url, sessions=0, requests=0, streams=0)["sessions"] == 0
