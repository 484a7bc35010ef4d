"""`/metrics` in a real gateway process: after a scripted mix of traffic (calls that succeed and
fail, a plugin's denial, modification and fault, a preflight, a 404, a WebSocket handshake, an
upstream call and an upstream timeout, a swap to the fault variant, a trap, a rollback), the
exposition parses with prometheus-client's own parser and every counter moved by exactly what
the traffic did. Label values stay bounded under 1,000 session ids and 1,000 tool names a client
made up. Who may read it: loopback, the admin credential, MCPGW_METRICS=admin and off.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from conftest import Gateway
from mcp_http import Session, rpc
from test_plugins import example, hostile, plugin_table
from upstream_procs import TOY, federated_gateway, stdio_table

pytestmark = pytest.mark.timeout(240)

TOKEN = "metrics-test-admin-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
REMOTE = {"x-forwarded-for": "203.0.113.9"}  # believed: the gateway trusts 127.0.0.1 as a proxy here
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana" / "mcpgw.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gw: Gateway, **headers: str) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, labels), and every family's type."""
    r = httpx.get(gw.url + "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(r.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def gw(component_path):
    gateway = federated_gateway(
        "wasm",
        [
            stdio_table("toy", TOY, "stdio", "toy", call_timeout_s=2),
            plugin_table(
                "guard", example("tool-guard"), tools=["add"], hooks=["tool-pre-invoke"], config={"deny": ["add"]}
            ),
            plugin_table("redact", example("redact"), tools=["echo"], hooks=["tool-post-invoke"]),
            plugin_table("open", hostile("panic"), tools=["sleep"], hooks=["tool-pre-invoke"], on_error="fail-open"),
        ],
        MCPGW_ADMIN_TOKEN=TOKEN,
        MCPGW_TRUSTED_PROXIES="127.0.0.1",
    )
    yield gateway
    gateway.stop()


def call(session: Session, id_: int, name: str, **arguments: Any) -> dict[str, Any]:
    r = session.post(rpc("tools/call", id_, name=name, arguments=arguments))
    assert r.status_code == 200, r.text
    return r.json()


def test_every_counter_counts_the_scripted_traffic(gw, faults_component_path):
    before, types = scrape(gw)
    http = httpx.Client(timeout=30)
    s = Session(gw.url, http=http)  # POST initialize 200, POST notifications/initialized 202
    assert len(s.post(rpc("tools/list", 1)).json()["result"]["tools"]) > 4
    for i in range(3):  # redact (tool-post-invoke) modifies each result
        assert "[redacted:email]" in json.dumps(call(s, 10 + i, "echo", text="write to ops@example.com"))
    assert "error" in call(s, 20, "add", a=1, b=2)  # guard denies it
    assert "result" in call(s, 21, "sleep", seconds=0)  # the panicking plugin is fail-open: skipped
    assert "error" in call(s, 22, "no-such-tool")
    assert "error" in call(s, 23, "another-made-up-tool")
    assert call(s, 24, "toy__add", a=2, b=3)["result"]["content"][0]["text"] == "5"  # relayed upstream
    assert "within 2 s" in call(s, 25, "toy__slow", seconds=30)["error"]["message"]  # upstream timeout
    bad = http.post(s.url, content=b"{not json", headers=s.headers)
    assert bad.status_code == 400
    preflight = http.options(
        gw.url + "/mcp", headers={"origin": "http://localhost:5173", "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 204
    assert http.get(gw.url + "/nowhere").status_code == 404
    # A head over MCPGW_MAX_HEAD_BYTES (64 KiB): the edge middleware's 431. One far over it: the
    # HTTP layer's 431 while the head arrives, before any request exists (a refusal, not a request).
    assert http.get(gw.url + "/health", headers={"x-big": "a" * 70_000}).status_code == 431
    with httpx.Client(timeout=30) as once:
        assert once.get(gw.url + "/health", headers={"x-big": "a" * 200_000}).status_code == 431
    with connect(gw.url.replace("http://", "ws://") + "/ws", subprotocols=["mcp"]) as ws:
        assert ws.response.headers["x-request-id"]
    # A swap to the fault variant, one trap (the Python fallback answers: 404), a manual rollback.
    swap = http.post(gw.url + "/admin/edge/swap", content=faults_component_path.read_bytes(), headers=ADMIN)
    assert swap.status_code == 200, swap.text
    assert http.get(gw.url + "/__mcpgw_fault/panic").status_code == 404
    assert http.post(gw.url + "/admin/edge/rollback", headers=ADMIN).status_code == 200
    after, types = scrape(gw)

    requests = "mcpgw_http_requests_total"
    edge = "wasm"

    def req(route: str, method: str, status: int, transport: str = "http") -> float:
        labels = {"route": route, "method": method, "status": str(status), "transport": transport, "edge": edge}
        return delta(before, after, requests, **labels)

    assert req("mcp", "POST", 200, "streamable-http") == 1 + 1 + 9  # initialize, tools/list, nine calls
    assert req("mcp", "POST", 202, "streamable-http") == 1
    assert req("mcp", "POST", 400, "streamable-http") == 1
    assert req("edge", "OPTIONS", 204) == 1  # the preflight, answered by the edge
    assert req("other", "GET", 404) == 2  # /nowhere, and the fault path
    assert req("edge", "GET", 431) == 1
    assert delta(before, after, "mcpgw_http_refused_total", reason="head_too_large") == 1
    assert req("ws", "GET", 101, "websocket") == 1
    assert req("admin", "POST", 200) == 2
    assert req("metrics", "GET", 200) == 1  # the first scrape (this one counts itself afterwards)
    assert (
        sum(v for (n, _), v in after.items() if n == requests) - sum(v for (n, _), v in before.items() if n == requests)
        == 11 + 1 + 1 + 1 + 2 + 1 + 1 + 2 + 1  # mcp 200, 202, 400; preflight; 404s; 431; ws; admin; metrics
    )
    # Latency: one observation per HTTP request of the route, none for the WebSocket handshake.
    assert delta(before, after, "mcpgw_http_request_duration_seconds_count", route="mcp") == 13
    assert delta(before, after, "mcpgw_http_request_duration_seconds_count", route="ws") == 0
    assert delta(before, after, "mcpgw_http_request_duration_seconds_bucket", route="mcp", le="+Inf") == 13

    mcp = "mcpgw_mcp_requests_total"
    assert delta(before, after, mcp, method="tools/list", outcome="ok") == 1
    assert delta(before, after, mcp, method="tools/call", outcome="ok") == 5  # echo x3, sleep, toy__add
    assert delta(before, after, mcp, method="tools/call", outcome="error") == 4
    tools = "mcpgw_tool_calls_total"
    assert delta(before, after, tools, tool="echo", outcome="ok") == 3
    assert delta(before, after, tools, tool="add", outcome="error") == 1
    assert delta(before, after, tools, tool="sleep", outcome="ok") == 1
    assert delta(before, after, tools, tool="other", outcome="error") == 2  # not in the catalog
    assert delta(before, after, tools, tool="toy__add", outcome="ok") == 1
    assert delta(before, after, tools, tool="toy__slow", outcome="error") == 1

    up = {"upstream": "toy", "method": "tools/call"}
    assert delta(before, after, "mcpgw_upstream_calls_total", **up, outcome="ok") == 1
    assert delta(before, after, "mcpgw_upstream_calls_total", **up, outcome="timeout") == 1
    assert delta(before, after, "mcpgw_upstream_call_duration_seconds_count", **up) == 2
    assert delta(before, after, "mcpgw_upstream_call_duration_seconds_sum", **up) >= 2.0  # the timeout's 2 s
    assert value(after, "mcpgw_upstream_state", upstream="toy", state="ready") == 1
    assert value(after, "mcpgw_upstream_state", upstream="toy", state="restarting") == 0
    assert value(after, "mcpgw_upstream_restarts_total", upstream="toy") == 0

    assert delta(before, after, "mcpgw_plugin_calls_total", plugin="guard") == 1
    assert delta(before, after, "mcpgw_plugin_denials_total", plugin="guard") == 1
    assert delta(before, after, "mcpgw_plugin_calls_total", plugin="redact") == 3
    assert delta(before, after, "mcpgw_plugin_modifications_total", plugin="redact") == 3
    assert delta(before, after, "mcpgw_plugin_calls_total", plugin="open") == 1
    assert delta(before, after, "mcpgw_plugin_faults_total", plugin="open", kind="panic") == 1
    assert delta(before, after, "mcpgw_plugin_skipped_total", plugin="open") == 1
    assert delta(before, after, "mcpgw_plugin_cost_seconds_total", plugin="redact") > 0
    assert value(after, "mcpgw_plugin_enabled", plugin="guard") == 1

    assert delta(before, after, "mcpgw_edge_swaps_total") == 1
    assert delta(before, after, "mcpgw_edge_rollbacks_total", trigger="manual") == 1
    assert delta(before, after, "mcpgw_edge_rollbacks_total", trigger="auto") == 0
    assert delta(before, after, "mcpgw_edge_traps_total", kind="panic") == 1
    assert value(after, "mcpgw_edge_info", backend="wasm", version="1.0.0", sha256=_active_sha(gw)[:12]) == 1
    # Every crossing into the edge is timed once; the three identical echo heads hit the cache.
    assert value(after, "mcpgw_edge_crossing_seconds_count") == value(after, "mcpgw_edge_crossings_total") > 0
    assert delta(before, after, "mcpgw_edge_cache_hits_total") >= 2

    assert value(after, "mcpgw_sessions") == 1
    assert value(after, "mcpgw_running_requests") == 0
    assert value(after, "mcpgw_streams") == 0
    assert "mcpgw_event_retained_bytes" in types and "mcpgw_auth_refusals" in types
    assert types["mcpgw_http_requests"] == "counter" and types["mcpgw_http_request_duration_seconds"] == "histogram"
    assert types["mcpgw_sessions"] == "gauge"
    # Everything /metrics says about the edge agrees with /health.
    health = http.get(gw.url + "/health").json()
    assert health["edge"]["cache"]["crossings"] >= value(after, "mcpgw_edge_crossings_total")
    assert health["edge"]["traps"]["total"] == 0  # the active (rolled back to) version's own; /metrics keeps all
    s.delete()
    http.close()


def _active_sha(gw: Gateway) -> str:
    return httpx.get(gw.url + "/health").json()["edge"]["component"]["sha256"]


def test_labels_stay_bounded_under_made_up_session_ids_and_tool_names(gw):
    before, _ = scrape(gw)
    probes = [f"probe-{uuid.uuid4().hex}" for _ in range(1000)]
    with httpx.Client(timeout=30) as http:
        s = Session(gw.url, http=http)
        for i, probe in enumerate(probes):  # 1,000 session ids nobody issued: 404 each
            r = http.post(gw.url + "/mcp", json=rpc("tools/list", i), headers={**s.headers, "mcp-session-id": probe})
            assert r.status_code == 404
        for i, probe in enumerate(probes):  # 1,000 tool names the catalog never had
            assert "error" in call(s, i, probe)
        s.delete()
    after, _ = scrape(gw)
    new = set(after) - set(before)
    assert not [key for key in after if any(probe in str(key) for probe in probes[:50])]
    # The probes added a handful of series (a 404 status, the `other` tool's error), not thousands.
    assert len(new) <= 10, sorted(new)
    assert delta(before, after, "mcpgw_tool_calls_total", tool="other", outcome="error") == 1000
    assert (
        delta(
            before,
            after,
            "mcpgw_http_requests_total",
            route="mcp",
            method="POST",
            status="404",
            transport="streamable-http",
            edge="wasm",
        )
        == 1000
    )


def test_loopback_by_default_else_the_admin_credential(gw):
    assert httpx.get(gw.url + "/metrics").status_code == 200  # loopback
    remote = httpx.get(gw.url + "/metrics", headers=REMOTE)
    assert remote.status_code == 401 and remote.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(gw.url + "/metrics", headers={**REMOTE, "authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(gw.url + "/metrics", headers={**REMOTE, **ADMIN}).status_code == 200
    assert httpx.post(gw.url + "/metrics").status_code == 405


def test_metrics_admin_needs_the_credential_even_on_loopback_and_off_has_none(gateways):
    admin = gateways("python", MCPGW_METRICS="admin", MCPGW_ADMIN_TOKEN=TOKEN)
    assert httpx.get(admin.url + "/metrics").status_code == 401
    assert httpx.get(admin.url + "/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
    ok = httpx.get(admin.url + "/metrics", headers=ADMIN)
    assert ok.status_code == 200 and "mcpgw_http_requests_total" in ok.text
    off = gateways("python", MCPGW_METRICS="off")
    assert httpx.get(off.url + "/metrics").status_code == 404
    assert "metrics: off" in off.log()
    assert httpx.get(off.url + "/health").json()["metrics"] == {"enabled": False, "access": "off"}
    assert httpx.get(admin.url + "/health").json()["metrics"] == {
        "enabled": True,
        "path": "/metrics",
        "access": "admin",
        "multiprocess": False,
    }


def test_auth_outcomes_by_reason(tmp_path, component_path):
    key = "good-" + uuid.uuid4().hex
    keys = tmp_path / "keys"
    keys.write_text(f"alice sha256:{hashlib.sha256(key.encode()).hexdigest()}\n")
    gw = Gateway({"MCPGW_EDGE": "python", "MCPGW_AUTH": "api-key", "MCPGW_AUTH_API_KEYS_FILE": str(keys)})
    try:
        gw.wait_ready()
        before, _ = scrape(gw)
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        body = rpc("ping", 1)
        assert httpx.post(gw.url + "/mcp", json=body, headers=headers).status_code == 401  # no credential
        wrong = {**headers, "authorization": "Bearer wrong-key"}
        assert httpx.post(gw.url + "/mcp", json=body, headers=wrong).status_code == 401
        Session(gw.url, http=httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}"}))
        after, _ = scrape(gw)
        assert delta(before, after, "mcpgw_auth_refusals_total", status="401") == 2
        assert delta(before, after, "mcpgw_auth_outcomes_total", outcome="rejected") == 1
        assert delta(before, after, "mcpgw_auth_outcomes_total", outcome="accepted") == 2  # initialize, initialized
    finally:
        gw.stop()


def test_every_metric_the_grafana_dashboard_queries_exists(gw):
    import re

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    queried = {name for expr in exprs for name in re.findall(r"\bmcpgw_[a-z0-9_]+", expr)}
    samples, types = scrape(gw)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exposed = {name for name, _ in samples} | {n + s for n, t in types.items() for s in suffixes.get(t, ("",))}
    missing = queried - exposed
    assert not missing, f"the dashboard queries metrics /metrics does not expose: {sorted(missing)}"


@pytest.mark.parametrize("directory", ["given", "made by the supervisor"])
def test_workers_share_one_exposition_in_multiprocess_mode(tmp_path, component_path, directory):
    """`mcpgw serve --workers 2`, with PROMETHEUS_MULTIPROC_DIR set or without (the supervisor
    makes one and removes it at exit): whichever worker answers the scrape, the request counters
    are the sum over both, and the gauges read from /health-style state (live sessions) are summed
    over the live workers within the mirror's interval. A worker killed with SIGKILL is marked dead
    (its gauges leave the sum) and its replacement counts in."""
    import re
    import signal

    from scaleout_procs import RedisServer, wait_workers, workers_gateway

    redis = RedisServer()
    env = {}
    if directory == "given":
        shared = tmp_path / "prometheus"
        shared.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    gw = workers_gateway(redis, 2, **env)
    try:
        wait_workers(gw)
        log = gw.log()
        assert "multiprocess (PROMETHEUS_MULTIPROC_DIR=" in log
        if directory != "given":
            made = re.search(r"metrics: 2 workers share (\S+) \(multiprocess mode; removed at exit\)", log)
            assert made is not None, log
            shared = Path(made.group(1))
        before, _ = scrape(gw)
        sessions = 20
        for _ in range(sessions):  # a new connection each: the kernel spreads them over the workers
            Session(gw.url)
        key = {"route": "mcp", "method": "POST", "transport": "streamable-http", "edge": "wasm"}
        deadline = time.monotonic() + 60
        while True:
            after, _ = scrape(gw)
            posts = delta(before, after, "mcpgw_http_requests_total", status="200", **key)
            observed = delta(before, after, "mcpgw_http_request_duration_seconds_count", route="mcp")
            live = value(after, "mcpgw_sessions")
            if (posts == sessions and observed == 2 * sessions and live >= sessions) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert posts == sessions  # initialize, counted by whichever worker served it
        assert observed == 2 * sessions  # the latency histogram merged too (initialize, initialized)
        assert delta(before, after, "mcpgw_http_request_duration_seconds_bucket", route="mcp", le="+Inf") == observed
        assert delta(before, after, "mcpgw_http_requests_total", status="202", **key) == sessions
        assert live >= sessions  # summed over the workers (each counts the sessions it holds)
        version = after_version(after)
        assert value(after, "mcpgw_build_info", version=version) == 2  # one per live worker
        pids = {int(p.stem.rsplit("_", 1)[1]) for p in shared.glob("counter_*.db")}
        assert len(pids) == 2  # each worker wrote its own file
        if directory == "given":
            return
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)  # a worker of the gateway this test started
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            live_files = {int(p.stem.rsplit("_", 1)[1]) for p in shared.glob("gauge_livesum_*.db")}
            if victim not in live_files and len(live_files) == 2:
                break
            time.sleep(0.5)
        assert victim not in live_files and len(live_files) == 2  # marked dead; the replacement writes
        deadline = time.monotonic() + 30
        while (count := value(scrape(gw)[0], "mcpgw_build_info", version=version)) != 2:
            assert time.monotonic() < deadline, count
            time.sleep(0.5)
        after_kill, _ = scrape(gw)
        # The killed worker's counts stay: counters never go down.
        assert delta(before, after_kill, "mcpgw_http_requests_total", status="200", **key) >= sessions
    finally:
        gw.stop()
        redis.close()
    if directory != "given":
        assert not shared.exists()  # removed by the supervisor at exit


def after_version(samples: Samples) -> str:
    return next(dict(labels)["version"] for name, labels in samples if name == "mcpgw_build_info")
