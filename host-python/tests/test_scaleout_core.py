"""Scale-out through Redis, the core (docs/scale-out.md): several real `mcpgw serve` processes
sharing one real `redis-server` (no persistence, a free loopback port); any process serves any
request of any session."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis as sync_redis

from conftest import Gateway, stop_process
from mcp_http import BASE, Event, Session, read_sse_text, rpc, sse_events, wait_live
from mcpgw.state.shared import CLAIM_PREFIX


class Redis:
    """A real redis-server on a free loopback port, no persistence."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is missing: `make test` installs it (Debian's redis-server)")
        self.dir = tempfile.mkdtemp(prefix="mcpgw-redis-")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        for _ in range(20):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            if self.port:
                port = self.port  # a restart keeps its address
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                cwd=self.dir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                        conn.sendall(b"PING\r\n")
                        if conn.recv(16).startswith(b"+PONG"):
                            self.port, self.proc = port, proc
                            return
                except OSError:
                    time.sleep(0.05)
            stop_process(proc)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    server = Redis()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def trio(redis: Redis) -> Iterator[list[Gateway]]:
    """Three gateway processes sharing the Redis."""
    env = {"MCPGW_EDGE": "python", "MCPGW_REDIS_URL": redis.url}
    gws = [Gateway(env) for _ in range(3)]
    try:
        yield [gw.wait_ready() for gw in gws]
    finally:
        for gw in gws:
            gw.stop()


def on(gw: Gateway, s: Session) -> Session:
    """The same session, spoken to another process."""
    other = object.__new__(Session)
    other.url, other.http, other.id, other.revision = gw.url + "/mcp", s.http, s.id, s.revision
    other.headers = dict(s.headers)
    return other


def answer(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return read_sse_text(r.text)[-1].json() if r.headers["content-type"] == "text/event-stream" else r.json()


def test_health_and_log_name_the_backend(trio: list[Gateway], redis: Redis) -> None:
    procs = set()
    for gw in trio:
        state = httpx.get(gw.url + "/health").json()["state"]
        assert state["backend"] == "redis" and state["url"] == redis.url and state["available"] is True
        procs.add(state["process"])
        assert f"state: redis {redis.url}" in gw.log()
    assert len(procs) == 3


def test_initialize_on_a_use_on_b_delete_on_c_then_404_everywhere(trio: list[Gateway]) -> None:
    a, b, c = trio
    s = Session(a.url)
    tools = answer(on(b, s).post(rpc("tools/list", 1)))["result"]["tools"]
    assert {t["name"] for t in tools} >= {"echo", "add", "sleep", "log"}
    called = answer(on(b, s).post(rpc("tools/call", 2, name="add", arguments={"a": 2, "b": 3})))
    assert called["result"]["content"][0]["text"] == "5"
    assert answer(on(c, s).post(rpc("ping", 3)))["result"] == {}
    assert on(c, s).delete().status_code == 204
    for gw in trio:
        r = on(gw, s).post(rpc("ping", 4))
        assert r.status_code == 404, (gw.url, r.text)
        assert r.json()["error"]["code"] == -32001
    assert on(a, s).delete().status_code == 404


def test_log_level_set_on_one_process_applies_on_another(trio: list[Gateway]) -> None:
    a, b, _ = trio
    s = Session(a.url)
    assert "result" in answer(on(b, s).post(rpc("logging/setLevel", 1, level="error")))
    text = answer(on(a, s).post(rpc("tools/call", 2, name="log", arguments={"message": "x", "level": "info"})))
    assert "sent 0 log message(s)" in text["result"]["content"][0]["text"]
    assert "client level error" in text["result"]["content"][0]["text"]


def _sleep_on(gw: Gateway, s: Session, id_: int, seconds: float = 60) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: answers.append(
            on(gw, s).post(
                rpc("tools/call", id_, name="sleep", arguments={"seconds": seconds}), accept="application/json"
            )
        )
    )
    worker.start()
    assert wait_live(gw.url, requests=1)["requests"] == 1
    # running here, and its id claimed in Redis (the claim is what other processes see)
    claim = f"{CLAIM_PREFIX}{s.id}:{id_}"
    with redis_client(gw) as r:
        deadline = time.monotonic() + 30
        while not r.exists(claim) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert r.get(claim) is not None, claim
    return worker, answers


def redis_client(gw: Gateway) -> sync_redis.Redis:
    """A plain client of the Redis the gateway uses (its URL from /health)."""
    return sync_redis.Redis.from_url(httpx.get(gw.url + "/health").json()["state"]["url"])


def test_duplicate_request_id_refused_across_processes(trio: list[Gateway]) -> None:
    a, b, _ = trio
    s = Session(a.url)
    worker, _ = _sleep_on(a, s, 7)
    dup = answer(on(b, s).post(rpc("tools/call", 7, name="add", arguments={"a": 1, "b": 1})))
    assert dup["error"]["code"] == -32600 and "already in use" in dup["error"]["message"]
    # another id runs fine meanwhile, on either process
    assert answer(on(b, s).post(rpc("ping", 8)))["result"] == {}
    assert on(b, s).post(rpc("notifications/cancelled", None, requestId=7)).status_code == 202
    worker.join(30)
    assert not worker.is_alive()
    # released: the id may be used again once its request is answered
    assert answer(on(b, s).post(rpc("tools/call", 7, name="add", arguments={"a": 1, "b": 1})))["result"]


def test_an_answered_id_is_free_at_once_on_every_process(trio: list[Gateway]) -> None:
    """A request's id claim is released with the turn's other Redis operations, not awaited: the
    answer goes out at once. A client that reuses the id the moment it has the answer finds it free
    on any process, in both answer paths (JSON only: the connection's own task; SSE accepted: a
    request task of its own): where the release has not landed yet, the process asks the claim's
    owner, which says it is answered (docs/scale-out.md, request ids). No claim outlives its
    request by more than the release's own round trip."""
    a, b, c = trio
    s = Session(a.url)
    for round_ in range(10):
        for gw in (a, b, c):
            for accept in ("application/json", "application/json, text/event-stream"):
                call = rpc("tools/call", 5, name="add", arguments={"a": round_, "b": 1})
                got = answer(on(gw, s).post(call, accept=accept))
                assert got.get("result", {}).get("content", [{}])[0].get("text") == str(round_ + 1), got
    r = redis_client(a)
    deadline = time.monotonic() + 10  # the last release is on its way (generous: a loaded machine)
    while list(r.scan_iter(f"{CLAIM_PREFIX}{s.id}:*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(r.scan_iter(f"{CLAIM_PREFIX}{s.id}:*")), "a claim outlived its answered request"


def test_sleep_on_a_cancelled_by_a_notification_posted_to_b(trio: list[Gateway]) -> None:
    a, b, _ = trio
    s = Session(a.url)
    worker, answers = _sleep_on(a, s, 21)
    started = time.monotonic()
    assert on(b, s).post(rpc("notifications/cancelled", None, requestId=21, reason="test")).status_code == 202
    worker.join(30)
    assert not worker.is_alive() and time.monotonic() - started < 30
    assert answers[0].json()["error"]["code"] == -32800  # the JSON-only client's answer for a cancelled request
    assert wait_live(a.url, requests=0)["requests"] == 0


def test_2026_stateless_requests_on_any_process(trio: list[Gateway]) -> None:
    from mcp_http import headers2026, rpc2026

    for gw in trio:
        r = httpx.post(
            gw.url + "/mcp",
            json=rpc2026("tools/call", 1, name="add", arguments={"a": 1, "b": 2}),
            headers=headers2026("tools/call", "add"),
        )
        assert answer(r)["result"]["content"][0]["text"] == "3"


def test_without_redis_the_default_is_memory() -> None:
    gw = Gateway({"MCPGW_EDGE": "python"}).wait_ready()
    try:
        assert httpx.get(gw.url + "/health").json()["state"] == {"backend": "memory"}
        assert "state: memory;" in gw.log()
    finally:
        gw.stop()


# -- events: delivery and resumption across processes ---------------------------------------
def _events(response: httpx.Response) -> Iterator[Event]:
    for item in sse_events(response.iter_lines()):
        if isinstance(item, Event) and item.data:
            yield item


def test_post_stream_read_on_a_resumed_on_b(trio: list[Gateway]) -> None:
    """A POST's SSE response, cut after two progress events on A, resumes with Last-Event-ID on
    B: the events after it, then the result, exactly once each."""
    a, b, _ = trio
    s = Session(a.url)
    msg = rpc("tools/call", 5, name="sleep", arguments={"seconds": 1.5, "ticks": 6}, _meta={"progressToken": "p"})
    seen: list[Event] = []
    with on(a, s).stream("POST", msg) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for event in _events(r):
            seen.append(event)
            if len(seen) == 2:
                break
    last_id = seen[-1].id
    assert last_id is not None
    with on(b, s).stream("GET", None, **{"last-event-id": last_id}) as r:
        assert r.status_code == 200
        rest = list(_events(r))
    progress = [e.json()["params"]["progress"] for e in seen + rest if e.json().get("method")]
    assert progress == [1, 2, 3, 4, 5, 6]
    assert rest[-1].json()["id"] == 5 and rest[-1].json()["result"]["content"][0]["text"] == "slept 1.5s"
    # the events' ids are the same on every process: resuming again from the first one on C
    with on(trio[2], s).stream("GET", None, **{"last-event-id": seen[0].id}) as r:
        again = list(_events(r))
    assert [e.id for e in again] == [e.id for e in seen[1:] + rest]


def test_unknown_last_event_id_is_400_on_any_process(trio: list[Gateway]) -> None:
    s = Session(trio[0].url)
    for gw in trio:
        with on(gw, s).stream("GET", None, **{"last-event-id": "nosuch-1_3"}) as r:
            assert r.status_code == 400


# -- process death -------------------------------------------------------------------------------
LOSS_BOUND_S = 5.0  # the stated bound (docs/scale-out.md): heartbeat TTL 3 s + one 1 s read


def test_sigkilled_mid_stream_resumed_on_b_gets_the_events_then_the_loss(redis: Redis) -> None:
    """SSE stream read from A, A SIGKILLed mid-stream, resumed with Last-Event-ID on B: the
    retained events arrive, then a JSON-RPC error for the lost request, within the bound."""
    env = {"MCPGW_EDGE": "python", "MCPGW_REDIS_URL": redis.url}
    a, b = Gateway(env).wait_ready(), Gateway(env).wait_ready()
    try:
        s = Session(a.url)
        msg = rpc("tools/call", 9, name="sleep", arguments={"seconds": 60, "ticks": 120}, _meta={"progressToken": 9})
        seen: list[Event] = []
        with on(a, s).stream("POST", msg) as r:
            for event in _events(r):
                seen.append(event)
                if len(seen) == 2:
                    break
        time.sleep(1.2)  # two more ticks are written through to redis while nobody reads
        a.proc.kill()
        a.proc.wait()
        killed = time.monotonic()
        with on(b, s).stream("GET", None, **{"last-event-id": seen[-1].id}) as r:
            assert r.status_code == 200
            rest = list(_events(r))
        took = time.monotonic() - killed
        messages = [e.json() for e in rest]
        progress = [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"]
        assert progress[:2] == [3, 4]  # the retained events first, in order
        assert progress == list(range(3, 3 + len(progress)))
        final = messages[-1]
        assert final["id"] == 9 and final["error"]["code"] == -32603
        assert "lost" in final["error"]["message"] and final["error"]["data"]["lost"] is True
        assert took < LOSS_BOUND_S + 5, took  # the bound, with slack for a loaded 2-core machine
        # the session continues on B, and the lost request's id is free again
        assert answer(on(b, s).post(rpc("tools/call", 9, name="add", arguments={"a": 1, "b": 1})))["result"]
        # a second resume gets the same ending, without waiting
        with on(b, s).stream("GET", None, **{"last-event-id": seen[-1].id}) as r:
            assert [e.json() for e in _events(r)][-1] == final
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def upstream_pair(redis: Redis) -> Iterator[list[Gateway]]:
    """Two gateway processes sharing the Redis, both federating the toy upstream over HTTP as `w`."""
    from upstream_procs import http_table, toy_http, wait_upstreams

    upstream = toy_http("w")
    fd, config = tempfile.mkstemp(prefix="mcpgw-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(http_table("w", upstream.url) + "\n")
    env = {"MCPGW_EDGE": "python", "MCPGW_REDIS_URL": redis.url, "MCPGW_CONFIG": config}
    pair = [Gateway(env), Gateway(env)]
    try:
        for gw in pair:
            gw.wait_ready()
            wait_upstreams(gw.url)
        yield pair
    finally:
        for gw in pair:
            gw.stop()
        upstream.stop()
        os.unlink(config)


class GetReader:
    """The session's GET stream on one process, read in a thread until a message matches."""

    def __init__(self, gw: Gateway, s: Session, until: Callable[[dict], bool]) -> None:
        self.got: list[dict] = []
        self.arrived = threading.Event()
        self.until = until
        self.thread = threading.Thread(target=self._read, args=(gw, s), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and httpx.get(gw.url + "/health").json()["live"]["streams"] < 1:
            time.sleep(0.05)

    def _read(self, gw: Gateway, s: Session) -> None:
        with on(gw, s).stream("GET", None) as r:
            assert r.status_code == 200
            for event in _events(r):
                self.got.append(event.json())
                if self.until(event.json()):
                    self.arrived.set()
                    return


def test_get_stream_on_a_gets_a_list_changed_caused_by_a_request_on_b(upstream_pair: list[Gateway]) -> None:
    """GET stream on A; a tool call on B makes its upstream add a tool and say list_changed: the
    notification reaches the client on A's GET stream."""
    a, b = upstream_pair
    s = Session(a.url)
    reader = GetReader(a, s, lambda m: m.get("method") == "notifications/tools/list_changed")
    name = f"sprout{os.getpid()}"
    # B tells sessions that listed through B (federation's list_changed goes to viewers)
    assert "result" in answer(on(b, s).post(rpc("tools/list", 2)))
    called = answer(on(b, s).post(rpc("tools/call", 1, name="w__grow", arguments={"name": name})))
    assert called["result"]["content"][0]["text"] == f"added {name}"
    assert reader.arrived.wait(30), reader.got
    assert on(a, s).delete().status_code == 204


def test_an_http_upstream_session_is_re_attached_so_the_client_is_told_nothing(upstream_pair: list[Gateway]) -> None:
    """A Streamable HTTP upstream's session is opened by one process and re-attached by the other
    (docs/scale-out.md, upstream connections): calls alternating between A and B keep one upstream
    session, so the client gets no gateway warning (a second upstream session would be told once)."""
    a, b = upstream_pair
    s = Session(a.url)
    reader = GetReader(a, s, lambda m: m.get("method") == "notifications/tools/list_changed")
    for i, gw in enumerate((a, b, b, a), start=1):
        assert "result" in answer(on(gw, s).post(rpc("tools/call", i, name="w__whoami", arguments={})))
    assert "result" in answer(on(a, s).post(rpc("tools/list", 5)))
    grown = on(a, s).post(rpc("tools/call", 6, name="w__grow", arguments={"name": f"mark{os.getpid()}"}))
    assert "result" in answer(grown)
    assert reader.arrived.wait(30), reader.got
    reader.thread.join(5)
    replay: list[dict] = []
    with on(b, s).stream("GET", None, **{"last-event-id": "0_0"}) as r:
        assert r.status_code == 200
        for event in _events(r):
            replay.append(event.json())
            if event.json().get("method") == "notifications/tools/list_changed":
                break
    assert on(a, s).delete().status_code == 204
    assert not [m for m in reader.got if m.get("method") == "notifications/message"], reader.got
    # the GET stream's retained events, up to the list_changed caused last, hold no warning
    assert [m.get("method") for m in replay].count("notifications/message") == 0, replay


# -- Redis down and back -------------------------------------------------------------------------
def _state(gw: Gateway) -> dict:
    return httpx.get(gw.url + "/health", timeout=10).json()["state"]


def _wait_state(gw: Gateway, available: bool, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(gw)
        if state["available"] is available or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_redis_stopped_and_restarted_under_load() -> None:
    """Meanwhile: 503 with Retry-After and a JSON-RPC error (never a 500, a hang or a crash),
    /health says so; after: full service (Redis restarted empty: old sessions are 404, as after
    an expiry, and clients initialize again)."""
    own = Redis()
    env = {"MCPGW_EDGE": "python", "MCPGW_REDIS_URL": own.url, "MCPGW_MAX_SESSIONS_PER_CLIENT": "0"}
    a, b = Gateway(env).wait_ready(), Gateway(env).wait_ready()
    statuses: dict[int, int] = {}
    stop = threading.Event()

    def load() -> None:
        init = rpc(
            "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "0"}
        )
        with httpx.Client(timeout=15) as http:
            while not stop.is_set():
                for first, second in ((a, b), (b, a)):
                    r = http.post(first.url + "/mcp", json=init, headers=BASE)
                    codes = [r.status_code]
                    if r.status_code == 200:
                        headers = {**BASE, "mcp-session-id": r.headers["mcp-session-id"]}
                        call = rpc("tools/call", 1, name="echo", arguments={"text": "x"})
                        codes.append(http.post(second.url + "/mcp", json=call, headers=headers).status_code)
                        codes.append(http.delete(first.url + "/mcp", headers=headers).status_code)
                    for code in codes:
                        statuses[code] = statuses.get(code, 0) + 1

    try:
        s = Session(a.url)
        workers = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(1)
        own.stop()
        refused = httpx.post(
            a.url + "/mcp",
            json=rpc(
                "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "0"}
            ),
            headers=BASE,
        )
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == -32603 and "state unavailable" in refused.json()["error"]["message"]
        used = on(b, s).post(rpc("ping", 2))
        assert used.status_code == 503 and used.headers["retry-after"]
        down = _wait_state(a, False)
        assert down["available"] is False and down["error"]
        time.sleep(1)
        own.start()
        assert _wait_state(a, True)["available"] is True and _wait_state(b, True)["available"] is True
        stop.set()
        for w in workers:
            w.join(30)
        assert set(statuses) <= {200, 204, 404, 503}, statuses  # 404: a session whose record Redis lost
        assert statuses.get(503, 0) > 0 and statuses.get(200, 0) > 0
        # full service after
        fresh = Session(b.url)
        assert answer(on(a, fresh).post(rpc("tools/call", 3, name="add", arguments={"a": 2, "b": 2})))["result"]
        assert on(a, s).post(rpc("ping", 4)).status_code == 404  # its record died with Redis's memory
        assert a.proc.poll() is None and b.proc.poll() is None
    finally:
        stop.set()
        a.stop()
        b.stop()
        own.stop()


def test_a_gracefully_stopped_process_leaves_its_finished_streams_resumable_elsewhere(redis: Redis) -> None:
    """SIGTERM on A while a request streams: the drain lets it finish, its last events and end
    marker reach Redis before A exits, and a resume on B gets the real result, not a loss."""
    env = {"MCPGW_EDGE": "python", "MCPGW_REDIS_URL": redis.url}
    a, b = Gateway(env).wait_ready(), Gateway(env).wait_ready()
    try:
        s = Session(a.url)
        msg = rpc("tools/call", 3, name="sleep", arguments={"seconds": 2, "ticks": 8}, _meta={"progressToken": 3})
        seen: list[Event] = []
        with on(a, s).stream("POST", msg) as r:
            for event in _events(r):
                seen.append(event)
                if len(seen) == 2:
                    break
        a.proc.terminate()
        a.proc.wait(60)  # (uvicorn re-raises SIGTERM once drained)
        with on(b, s).stream("GET", None, **{"last-event-id": seen[-1].id}) as r:
            assert r.status_code == 200
            rest = [e.json() for e in _events(r)]
        assert [m["params"]["progress"] for m in rest if m.get("method")] == [3, 4, 5, 6, 7, 8]
        assert rest[-1]["id"] == 3 and rest[-1]["result"]["content"][0]["text"] == "slept 2s"
    finally:
        a.stop()
        b.stop()


def test_the_redis_url_is_shown_without_its_secrets():
    """What logs and the public /health show of MCPGW_REDIS_URL: never a password, in the
    authority or in the query (redis-py also reads `?password=`)."""
    from mcpgw.state.shared import redact

    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact("redis://:hunter2@cache:6380/1") == "redis://:***@cache:6380/1"
    assert redact("redis://app:hunter2@cache/0?db=1") == "redis://app:***@cache/0"
    assert redact("redis://cache:6379/0?password=hunter2") == "redis://cache:6379/0"
    assert redact("rediss://app@cache:6379") == "rediss://app@cache:6379"


async def test_a_claim_given_up_on_its_way_leaves_the_reused_id_claimed(redis: Redis) -> None:
    """Review finding 7: a request's claim is on its way to Redis when the request is given up, and
    the client at once reuses the id on the same process. Redis grants both (a claim's value is
    the process); the release owed for the first grant must not delete the second request's
    claim, or another process would accept the id while that request runs."""
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import RedisSessions, claim_key

    sessions = RedisSessions(redis.url, 100, 60.0)
    session = LiveSession("finding-7", "2025-11-25", "streamable-http")
    session.shared = True
    try:
        given_up = sessions.claim(session, 5)
        given_up.cancel()  # its request was cancelled while the claim was queued for this turn's batch
        reused = sessions.claim(session, 5)
        assert await reused == 1
        assert await sessions.claim(session, 6) == 1  # the next batch, where a release owed would go
        holder = sync_redis.Redis.from_url(redis.url).get(claim_key(session.id, 5))
        # the running request's claim is still there (a claim's value: the process and its number)
        assert holder is not None and holder.decode() == sessions._held[claim_key(session.id, 5)]
    finally:
        await sessions.stop()


async def test_a_request_cancelled_after_its_claim_was_granted_releases_the_id(redis: Redis) -> None:
    """Review 3 finding 2: Redis grants a request's claim, and in the same loop turn, before the
    request resumes, it is cancelled (a notifications/cancelled handled in that turn). The claim
    is released: else the id stays claimed for the session's idle timeout, refused as in use on
    every other process, and this process says "running" about it for ever. The cancellation is
    made by a callback on the claim future registered before the request awaits it, so it lands
    between the grant and the resumption every time (no sleep orders it)."""
    import asyncio
    from types import SimpleNamespace

    from mcpgw.server.engine import SessionEngine
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import RedisSessions, claim_key

    a, b = RedisSessions(redis.url, 100, 60.0), RedisSessions(redis.url, 100, 60.0)
    session = LiveSession("granted-then-cancelled", "2025-11-25", "streamable-http")
    session.shared = True
    plain = sync_redis.Redis.from_url(redis.url)
    key = claim_key(session.id, 5)
    dispatched: list[dict] = []
    request: list[asyncio.Task] = []
    granted = a.claim

    def claim(s: LiveSession, id_: object) -> asyncio.Future:
        future = granted(s, id_)
        future.add_done_callback(lambda _: request[0].cancel())  # runs before the request's wake-up
        return future

    async def dispatch(message: dict, *args: object) -> dict:
        dispatched.append(message)
        return {"jsonrpc": "2.0", "id": message["id"], "result": {}}

    engine = SimpleNamespace(
        sessions=SimpleNamespace(claim=claim, release=a.release),
        _dispatch=dispatch,
        _cancelled_answer=lambda id_, reason: None,
    )
    message = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo"}}
    try:
        a.start()
        b.start()
        answer = SessionEngine._answer_shared(engine, message, "2025-11-25", session, None, None, None)  # type: ignore[arg-type]
        request.append(asyncio.ensure_future(answer))
        assert await request[0] is None  # cancelled by the client: no answer, and nothing ran
        assert not dispatched
        assert key not in a._held  # asked about it, A says "answered"
        assert await a.claim(session, 6) == 1  # the next batch: the release went before it
        assert not plain.exists(key)
        assert await asyncio.wait_for(b.claim(session, 5), 10) == 1  # the id is free on another process
    finally:
        await a.stop()
        await b.stop()


async def test_a_claim_of_a_process_of_the_previous_claim_format_is_neither_read_nor_taken_over(
    redis: Redis,
) -> None:
    """Review R2 finding 1 (a rolling upgrade): processes before the claim value became
    `<process>:<n>` wrote `<process>` and took any value with a `:` for a dead process's claim
    (taking over a running request's id), and a new process asked an old one, which never
    answers, then refused the id after CLAIM_ASK_S. The claim keys are versioned, so the two never
    read each other's claims: an old live process's claim of the same id is left alone and the new
    claim is granted at once."""
    import asyncio

    from mcpgw.state import shared
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import RedisSessions, claim_key

    plain = sync_redis.Redis.from_url(redis.url)
    sessions = RedisSessions(redis.url, 100, 60.0)
    session = LiveSession("rolling-upgrade", "2025-11-25", "streamable-http")
    session.shared = True
    old_key = f"mcpgw:r:{session.id}:5"  # the previous format's key and value: a live process's name
    plain.set(shared.proc_key("oldproc"), b"1", px=60_000)
    plain.set(old_key, b"oldproc", px=60_000)
    shared_ask, shared.CLAIM_ASK_S = shared.CLAIM_ASK_S, 30.0  # an old process never answers
    try:
        assert claim_key(session.id, 5) != old_key
        assert await asyncio.wait_for(sessions.claim(session, 5), 10) == 1
        assert plain.get(old_key) == b"oldproc"  # the old process's claim, untouched
    finally:
        shared.CLAIM_ASK_S = shared_ask
        plain.delete(old_key, shared.proc_key("oldproc"))
        await sessions.stop()


async def test_a_claim_found_before_its_release_landed_is_taken_over_after_asking_its_owner(redis: Redis) -> None:
    """The release of an answered request's id is not awaited (the answer goes out at once). A
    claim of the same id on another process that reaches Redis before the release asks the owner,
    over its channel, whether that claim still runs: answered -> taken over (compare-and-set on
    the exact claim), running -> refused; an owner that does not answer -> refused (never run
    twice). Two registries on one Redis stand for two processes, so the order is deterministic."""
    import asyncio

    from mcpgw.state import shared
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import RedisSessions, claim_key

    a, b = RedisSessions(redis.url, 100, 60.0), RedisSessions(redis.url, 100, 60.0)
    session = LiveSession("asked", "2025-11-25", "streamable-http")
    session.shared = True
    plain = sync_redis.Redis.from_url(redis.url)

    async def until(done: Callable[[], bool]) -> None:
        for _ in range(500):  # 10 s: generous on a loaded machine
            if done():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("not within 10 s")

    def listening(proc: str) -> bool:
        return bool(plain.exists(shared.proc_key(proc))) and plain.pubsub_numsub(shared.proc_channel(proc))[0][1] > 0

    try:
        a.start()
        b.start()
        await until(lambda: listening(a.proc) and listening(b.proc))  # heartbeating, subscribed
        key = claim_key(session.id, 5)
        assert await a.claim(session, 5) == 1
        # answered on A, its release still on its way: what release() does before queueing the op
        held = a._held.pop(key)
        assert plain.get(key) == held.encode()
        assert await asyncio.wait_for(b.claim(session, 5), 10) == 1  # A said "answered": B holds it
        assert plain.get(key) == b._held[key].encode()
        # a claim that still runs on B is refused on A, and stays B's
        assert not await asyncio.wait_for(a.claim(session, 5), 10)
        assert plain.get(key) == b._held[key].encode()
        assert key not in a._held
        # B answers it: the release lands
        b.release(session, 5)
        await until(lambda: not plain.exists(key))
        # an owner that does not answer (its listener gone, its heartbeat still there): refused
        assert await b.claim(session, 6) == 1
        b._tasks[1].cancel()  # B's channel listener
        shared_ask, shared.CLAIM_ASK_S = shared.CLAIM_ASK_S, 0.5
        try:
            b._held.pop(claim_key(session.id, 6))  # answered, but B will not say so
            assert not await asyncio.wait_for(a.claim(session, 6), 10)
        finally:
            shared.CLAIM_ASK_S = shared_ask
    finally:
        await a.stop()
        await b.stop()


async def test_a_relayed_call_cancelled_while_its_upcall_is_on_its_way_is_cancelled_after_it(redis: Redis) -> None:
    """Review finding 9 (upcancel overtaking upcall): a request relayed to the process holding a
    stdio upstream is cancelled while its `upcall` publish is on its way (handed to Redis: it
    cannot be taken back). The `upcancel` must reach the holder after the `upcall`, or the holder
    ignores it (no such call yet) and then runs the call the client cancelled. The publish is held
    on its way here by the store (real Redis, a real subscriber standing for the holder)."""
    import asyncio
    from types import SimpleNamespace

    import redis.asyncio as async_redis

    from mcpgw.federation.hub import Federation
    from mcpgw.state.shared import RedisSessions, proc_channel

    class HeldUpcall(RedisSessions):
        def __init__(self, url: str) -> None:
            super().__init__(url, 100, 60.0)
            self.on_its_way = asyncio.Event()
            self.let_go = asyncio.Event()
            self._publishes: set[asyncio.Task[None]] = set()  # not `_held` (RedisSessions' claims)

        async def send_to(self, process: str, message: dict) -> None:
            if message["kind"] != "upcall":
                await super().send_to(process, message)
                return

            async def publish() -> None:  # on the wire: it goes out whatever its sender does now
                await self.let_go.wait()
                await RedisSessions.send_to(self, process, message)

            task = asyncio.ensure_future(publish())
            self._publishes.add(task)
            self.on_its_way.set()
            await asyncio.shield(task)

    store = HeldUpcall(redis.url)
    holder = async_redis.Redis.from_url(redis.url).pubsub()
    await holder.subscribe(proc_channel("holder"))
    federation = Federation([])
    upstream = SimpleNamespace(id="toy", config=SimpleNamespace(call_timeout_s=10))
    ctx, session = SimpleNamespace(progress_token=None), SimpleNamespace(id="finding-9")
    try:
        call = asyncio.ensure_future(
            federation._call_remote(store, "holder", upstream, "tools/call", {"name": "slow"}, ctx, session)
        )
        await asyncio.wait_for(store.on_its_way.wait(), 30)
        call.cancel()  # the client's notifications/cancelled
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.5)  # room for an upcancel sent at once to overtake the held upcall
        store.let_go.set()
        kinds: list[str] = []
        deadline = time.monotonic() + 30
        while len(kinds) < 2 and time.monotonic() < deadline:
            message = await holder.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                kinds.append(json.loads(message["data"])["kind"])
        assert kinds == ["upcall", "upcancel"]
    finally:
        await holder.aclose()
        await store.stop()


async def test_idle_expiry_costs_the_idle_sessions_own_links_and_a_cap_runs_it_at_most_once_a_second(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 2 finding 2: asking whether this process holds something of an idle shared session
    (its keepers) walked every link of every session, so a sweep cost idle sessions x all links,
    and a client at its session cap could run one per initialize. The links examined by a sweep
    are now the idle sessions' own however many other sessions hold; from a cap (make_room) the
    sweep runs at most once per MAKE_ROOM_EVERY_S."""
    import asyncio
    from types import SimpleNamespace

    from mcpgw.federation import hub
    from mcpgw.federation.hub import Federation
    from mcpgw.federation.links import SessionLinks
    from mcpgw.state.shared import MAKE_ROOM_EVERY_S, RedisSessions

    examined = 0
    opened = hub._opened

    def counting(pending: hub.PendingLink) -> object:
        nonlocal examined
        examined += 1
        return opened(pending)

    monkeypatch.setattr(hub, "_opened", counting)
    walk = SessionLinks.__iter__

    def walking(links: SessionLinks[hub.PendingLink]) -> Iterator[tuple[str, str]]:
        nonlocal examined
        for key in walk(links):  # a walk over every session's links counts each one
            examined += 1
            yield key

    monkeypatch.setattr(SessionLinks, "__iter__", walking)
    items = SessionLinks.items

    def walking_items(links: SessionLinks[hub.PendingLink]) -> Iterator[tuple[tuple[str, str], hub.PendingLink]]:
        nonlocal examined
        for item in items(links):
            examined += 1
            yield item

    monkeypatch.setattr(SessionLinks, "items", walking_items)

    async def close() -> None:
        return None

    async def sweep(others: int) -> tuple[int, int, int]:
        """(links examined, sessions forgotten, sessions left) sweeping 10 idle sessions of one
        link each beside `others` active sessions of two links each."""
        nonlocal examined
        store = RedisSessions(redis.url, max_sessions=100_000, idle_timeout_s=60)
        federation = Federation([])
        for uid in ("a", "b"):
            federation.upstreams[uid] = SimpleNamespace(config=SimpleNamespace(transport="streamable-http"), stop=close)  # type: ignore[assignment]
        now = time.monotonic()
        try:
            for n in range(10 + others):
                session = store.create("2025-06-18", "streamable-http", None, client=None)
                session.shared = True
                session.last_active = now - 120 if n < 10 else now
                for uid in ("a",) if n < 10 else ("a", "b"):
                    link = SimpleNamespace(holds_get=False, upstream_session=None, close=close, alive=True)
                    pending: hub.PendingLink = asyncio.get_running_loop().create_future()
                    pending.set_result((None, link))  # type: ignore[arg-type]
                    federation._links[(session.id, uid)] = pending
                federation._track(session)  # its keeper: federation._holds
            examined = 0
            forgotten = store.expire_idle(now)
            return examined, forgotten, len(store)
        finally:
            await federation.stop()
            await store.stop()

    alone, with_others = await sweep(0), await sweep(2000)
    assert alone[1:] == (10, 0) and with_others[1:] == (10, 2000)  # the idle ones forgotten, the others kept
    assert 10 <= alone[0] <= 30  # each idle session's one link, looked at a bounded number of times
    assert with_others[0] == alone[0]  # 4,000 other links cost nothing

    store = RedisSessions(redis.url, max_sessions=100_000, idle_timeout_s=0.001)
    try:
        first = store.create("2025-06-18", "streamable-http", None, client=None)
        first.last_active -= 10
        assert store.make_room() == 1  # a cap: idle ones make room
        second = store.create("2025-06-18", "streamable-http", None, client=None)
        second.last_active -= 10
        assert store.make_room() == 0 and len(store) == 1  # again at once: not another sweep
        monkeypatch.setattr(time, "monotonic", lambda: second.last_active + 10 + MAKE_ROOM_EVERY_S + 1)
        assert store.make_room() == 1 and len(store) == 0  # a second later: one
        monkeypatch.undo()
    finally:
        await store.stop()


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[tuple[int, str]]:
    """A redis-server that wants a password (`pw` for its default user, `apppw` for user `app`),
    on a free loopback port and on a unix socket: (port, socket path)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: `make test` installs it (Debian's redis-server)")
    where = tempfile.mkdtemp(prefix="mcpgw-redis-auth-")
    path = os.path.join(where, "redis.sock")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--requirepass", "pw", "--user", "app", "on", ">apppw", "~*", "&*", "+@all"]
    argv += ["--unixsocket", path, "--unixsocketperm", "700"]
    proc = subprocess.Popen(argv, cwd=where, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port, path
    finally:
        stop_process(proc)
        shutil.rmtree(where, ignore_errors=True)


async def test_the_batch_connection_speaks_auth_select_and_unix_sockets(guarded_redis: tuple[int, str]) -> None:
    """The per-turn BATCH call's own client (state/batch_link.py) authenticates as the URL says (a
    password; a username and a password), selects its database, and reaches a unix socket: each
    claim lands in the database the URL names, where redis-py's own clients look for it."""
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import RedisSessions, claim_key

    port, path = guarded_redis
    session = LiveSession("batch-link", "2025-11-25", "streamable-http")
    session.shared = True
    for url, db in (
        (f"redis://app:apppw@127.0.0.1:{port}/3", 3),
        (f"redis://:pw@127.0.0.1:{port}", 0),
        (f"unix://{path}?db=2&password=pw", 2),
    ):
        sessions = RedisSessions(url, 100, 60.0)
        try:
            assert sessions.health()["batch"] == "direct"
            assert await sessions.claim(session, db) == 1
            held = sync_redis.Redis.from_url(url).get(claim_key(session.id, db))
            assert held is not None and held.decode() == sessions._held[claim_key(session.id, db)], url
            assert sync_redis.Redis(port=port, password="pw", db=(db + 1) % 16).get(claim_key(session.id, db)) is None
        finally:
            await sessions.stop()


async def test_a_wrong_password_on_the_batch_connection_is_a_clear_unavailable_state(
    guarded_redis: tuple[int, str],
) -> None:
    from mcpgw.state.registry import StateUnavailable
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import RedisSessions

    port, _ = guarded_redis
    sessions = RedisSessions(f"redis://app:wrong@127.0.0.1:{port}/0", 100, 60.0)
    session = LiveSession("batch-link-auth", "2025-11-25", "streamable-http")
    session.shared = True
    sessions.available = True  # as after start-up: the failure is logged and shown
    try:
        with pytest.raises(StateUnavailable):
            await sessions.claim(session, 1)
        state = sessions.health()
        assert state["available"] is False and "WRONGPASS" in state["error"], state
    finally:
        await sessions.stop()


async def test_urls_the_batch_connection_does_not_speak_use_redis_py_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """rediss:// (TLS) and connection options of the URL's query go through redis-py's connection,
    named in /health's `state.batch` and in the start-up log (nothing is connected here)."""
    import logging

    from mcpgw.state.shared import RedisSessions

    with caplog.at_level(logging.INFO, logger="mcpgw.state"):
        tls = RedisSessions("rediss://127.0.0.1:6390/0", 100, 60.0)
        tuned = RedisSessions("redis://127.0.0.1:6390/0?socket_keepalive=true", 100, 60.0)
    assert tls.health()["batch"] == "redis-py (rediss:// (TLS) is not spoken by the direct connection)"
    assert tuned.health()["batch"] == "redis-py (connection option(s) socket_keepalive)"
    assert "per-turn BATCH calls on redis-py's connection: rediss:// (TLS)" in caplog.text
    for sessions in (tls, tuned):
        await sessions.redis.aclose()
        await sessions.listening.aclose()


async def test_the_batch_connection_survives_a_killed_connection_and_a_flushed_script(redis: Redis) -> None:
    """Redis drops the batch connection (CLIENT KILL, as a restart does): the next claim is retried
    once on a new connection; Redis forgets the script (SCRIPT FLUSH, as a restart empty does): the
    claim is sent as the script itself (NOSCRIPT -> EVAL). Neither is seen by the request."""
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import RedisSessions, claim_key

    sessions = RedisSessions(redis.url, 100, 60.0)
    session = LiveSession("batch-link-restart", "2025-11-25", "streamable-http")
    session.shared = True
    plain = sync_redis.Redis.from_url(redis.url)
    try:
        assert await sessions.claim(session, 1) == 1
        assert plain.client_kill_filter(_type="normal", skipme=True) >= 1
        assert await sessions.claim(session, 2) == 1
        plain.script_flush()
        assert await sessions.claim(session, 3) == 1
        assert all(plain.exists(claim_key(session.id, n)) for n in (1, 2, 3))
        assert sessions.available is True
    finally:
        await sessions.stop()


async def test_a_redis_that_never_answers_fails_the_batch_within_its_socket_timeout() -> None:
    """A Redis that accepts the connection and never answers (a listening socket nobody reads):
    the claim fails as state unavailable after the socket timeout of each of its two attempts,
    never hangs."""
    from mcpgw.state.registry import StateUnavailable
    from mcpgw.state.session import Session as LiveSession
    from mcpgw.state.shared import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, RedisSessions

    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # connections complete in the backlog; nothing is ever read or answered
        sessions = RedisSessions(f"redis://127.0.0.1:{mute.getsockname()[1]}/0", 100, 60.0)
        session = LiveSession("batch-link-mute", "2025-11-25", "streamable-http")
        session.shared = True
        started = time.monotonic()
        try:
            with pytest.raises(StateUnavailable):
                await sessions.claim(session, 1)
        finally:
            elapsed = time.monotonic() - started
            await sessions.redis.aclose()
            await sessions.listening.aclose()
            if sessions._batch_link is not None:
                sessions._batch_link.close()
    assert SOCKET_TIMEOUT_S <= elapsed < 2 * (SOCKET_TIMEOUT_S + CONNECT_TIMEOUT_S) + 10, elapsed
    assert "no answer from redis within 2 s" in sessions.health()["error"]


async def _resp_server(answer: Callable[[list[bytes]], bytes]) -> asyncio.Server:
    """A raw-TCP server speaking RESP on a free loopback port: each command read (hiredis) is
    answered with the bytes `answer` gives for it, written at once (several replies in one write
    arrive in one segment). Stands in for a Redis version or a misbehaving server the Makefile's
    redis-server is not."""
    import hiredis

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        reader = hiredis.Reader()
        try:
            while data := await r.read(65536):
                reader.feed(data)
                while (command := reader.gets()) is not False:
                    w.write(answer(command))
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_the_batch_connection_retries_auth_with_the_password_alone_on_a_redis_before_6() -> None:
    """A URL with a username and a password (redis://default:pw@...) against a Redis before 6.0,
    whose AUTH takes the password alone and says "wrong number of arguments" to two: redis-py
    retries AUTH with the password only, and so does the batch connection (else every claimed
    request fails while redis-py's connections work). The fake server answers as Redis 5 does."""
    from mcpgw.state.batch_link import BatchLink

    seen: list[list[bytes]] = []

    def redis5(command: list[bytes]) -> bytes:
        seen.append(command)
        if command[0].upper() == b"AUTH":
            if len(command) != 2:
                return b"-ERR wrong number of arguments for 'auth' command\r\n"
            return b"+OK\r\n" if command[1] == b"pw" else b"-ERR invalid password\r\n"
        if command[0].upper() == b"ECHO":
            return b"$%d\r\n%s\r\n" % (len(command[1]), command[1])
        return b"+OK\r\n"

    server = await _resp_server(redis5)
    port = server.sockets[0].getsockname()[1]
    link = BatchLink({"host": "127.0.0.1", "port": port, "username": "default", "password": "pw"}, 5.0, 30.0)
    try:
        assert await link.call(("ECHO", "hi")) == b"hi"
        assert seen == [[b"AUTH", b"default", b"pw"], [b"AUTH", b"pw"], [b"ECHO", b"hi"]]
        # a wrong password is still an authentication error, after the same retry
        from redis.exceptions import AuthenticationError

        wrong = BatchLink({"host": "127.0.0.1", "port": port, "username": "default", "password": "no"}, 5.0, 30.0)
        with pytest.raises(AuthenticationError, match="invalid password"):
            await wrong.call(("ECHO", "hi"))
    finally:
        link.close()
        server.close()
        await server.wait_closed()


async def test_a_reply_nobody_asked_for_drops_the_batch_connection_never_answers_the_next_call() -> None:
    """A server that sends two replies to one command, both in one segment: the first answers the
    call; the surplus one is a protocol violation that drops the connection, and is never taken as
    the next call's reply (which is asked afresh on a new connection and gets its own answer)."""
    from mcpgw.state.batch_link import BatchLink

    echoes = 0

    def twice_once(command: list[bytes]) -> bytes:
        nonlocal echoes
        if command[0].upper() != b"ECHO":
            return b"+OK\r\n"
        echoes += 1
        reply = b"$%d\r\n%s\r\n" % (len(command[1]), command[1])
        return reply + b"$5\r\nstale\r\n" if echoes == 1 else reply

    server = await _resp_server(twice_once)
    port = server.sockets[0].getsockname()[1]
    link = BatchLink({"host": "127.0.0.1", "port": port}, 5.0, 30.0)
    try:
        assert await link.call(("ECHO", "first")) == b"first"
        assert link._transport is None  # the surplus reply, read with the first, dropped the connection
        assert await link.call(("ECHO", "second")) == b"second"
        assert await link.call(("ECHO", "third")) == b"third"
        assert echoes == 3
    finally:
        link.close()
        server.close()
        await server.wait_closed()
