"""Hot swap: verified atomic swap, rollback (manual and automatic), the admin API and CLI."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import Gateway
from mcp_http import headers2026, rpc2026
from mcpgw.app import create_app
from mcpgw.edge.backend import load_edge
from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.registry import EdgeRegistry, SwapRefused
from mcpgw.settings import Settings

TOKEN = "test-admin-token-0123456789"
CFG = EdgeConfig()
HEAD = ("POST", "/mcp", "", [("host", "127.0.0.1:4444"), ("origin", "https://evil.example")])
STATELESS = headers2026("tools/list")
# What the gateway passes by default (every default lives in Settings).
DEFAULTS = Settings()
LIMITS = {
    "fuel": DEFAULTS.edge_fuel,
    "memory_bytes": DEFAULTS.edge_memory_mb * 1024 * 1024,
    "allowed_sha256": frozenset(DEFAULTS.edge_allowed_sha256),
}


def _registry(component_path, **kw) -> EdgeRegistry:
    rollback = {"rollback_traps": DEFAULTS.edge_rollback_traps, "rollback_window_s": DEFAULTS.edge_rollback_window_s}
    return EdgeRegistry(load_edge("wasm", CFG, component_path, **LIMITS), CFG, **{**LIMITS, **rollback, **kw})


def _serving_unchanged(registry, sha):
    assert registry.edge.backend.component.sha256 == sha
    assert registry.edge.evaluate(*HEAD)["forward"]["origin_state"] == "denied"


@pytest.mark.parametrize(
    "variant, step",
    [
        ("contract2", "contract"),
        ("wrong", "self-test"),
        ("corrupt", "compile"),
        ("allowlist", "allowlist"),
        ("missing", "read"),
    ],
)
def test_each_verification_failure_is_refused_and_the_old_version_keeps_serving(
    component_path, contract2_component_path, wrong_component_path, v2_component_path, tmp_path, variant, step
):
    good = component_path.read_bytes()
    sha = hashlib.sha256(good).hexdigest()
    registry = _registry(component_path, allowed_sha256=frozenset({sha}) if variant == "allowlist" else frozenset())
    files = {
        "contract2": contract2_component_path,
        "wrong": wrong_component_path,
        "allowlist": v2_component_path,
        "missing": tmp_path / "nope.wasm",
    }
    if variant == "corrupt":
        files["corrupt"] = tmp_path / "corrupt.wasm"
        files["corrupt"].write_bytes(good[: len(good) // 2])
    with pytest.raises(SwapRefused) as refused:
        registry.activate(registry.verify_file(files[variant]), "test")
    assert refused.value.step == step, refused.value
    assert registry.previous is None
    _serving_unchanged(registry, sha)


def test_the_wrong_answers_variant_fails_on_origin_vectors(component_path, wrong_component_path):
    with pytest.raises(SwapRefused, match="origin"):
        _registry(component_path).verify_file(wrong_component_path)


def test_swap_and_rollback_in_process(component_path, v2_component_path):
    registry = _registry(component_path)
    old = registry.edge.backend
    started = time.perf_counter()
    candidate = registry.verify_file(v2_component_path)
    verified = time.perf_counter()
    event = registry.activate(candidate, "test")
    activated = time.perf_counter()
    assert registry.edge.backend.component.version["component"] == "1.0.1-test"
    assert event["from"]["sha256"] == old.component.sha256 and event["to"]["version"] == "1.0.1-test"
    assert registry.edge.evaluate(*HEAD)["forward"]["origin_state"] == "denied"
    registry.rollback("test")
    assert registry.edge.backend is old
    with pytest.raises(SwapRefused, match="no previous"):
        registry.rollback("test")
    print(f"verify {1000 * (verified - started):.1f} ms, activate {1000 * (activated - verified):.2f} ms")


@pytest.mark.parametrize("fault, kind", [("panic", "panic"), ("loop", "fuel"), ("alloc", "memory")])
def test_a_trapping_version_is_rolled_back_automatically(component_path, faults_component_path, caplog, fault, kind):
    registry = _registry(component_path, rollback_traps=3, rollback_window_s=60)
    good = registry.edge.backend
    registry.activate(registry.verify_file(faults_component_path), "test")
    bad = registry.edge.backend
    head = ("POST", f"/__mcpgw_fault/{fault}", "", [("host", "127.0.0.1:4444")])
    with caplog.at_level(logging.WARNING, logger="mcpgw.edge"):
        for _ in range(3):
            out = registry.edge.evaluate(*head)  # each one still answered, by the Python fallback
            assert out["forward"]["route"] == "other"
    assert bad.traps.by_kind[kind] == 3
    assert registry.edge.backend is good
    assert registry.events[-1]["action"] == "rollback" and registry.events[-1]["actor"] == "auto-rollback"
    assert any("rolling back automatically" in r.getMessage() for r in caplog.records)


# --- the admin API, in process (client address chosen per test) -------------


def _client(app, host="127.0.0.1"):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5555)), base_url="http://127.0.0.1")


def _app(component_path, **settings):
    return create_app(Settings(edge="wasm", edge_component=str(component_path), **settings))


async def test_admin_api_is_off_without_a_token(component_path):
    async with _client(_app(component_path)) as c:
        assert (await c.get("/admin/edge/status", headers={"authorization": f"Bearer {TOKEN}"})).status_code == 404


async def test_admin_api_refuses_missing_and_wrong_tokens_and_remote_callers(component_path, caplog):
    app = _app(component_path, admin_token=TOKEN)
    with caplog.at_level(logging.WARNING, logger="mcpgw.admin"):
        async with _client(app) as c:
            assert (await c.get("/admin/edge/status")).status_code == 401
            assert (await c.get("/admin/edge/status", headers={"authorization": "Bearer nope"})).status_code == 401
            assert (await c.post("/admin/edge/rollback", headers={"authorization": TOKEN})).status_code == 401
        async with _client(app, host="10.1.2.3") as c:
            r = await c.get("/admin/edge/status", headers={"authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 403
    messages = [r.getMessage() for r in caplog.records]
    assert any("no valid token" in m for m in messages) and any("10.1.2.3 is not loopback" in m for m in messages)


async def test_admin_api_remote_callers_when_configured(component_path):
    app = _app(component_path, admin_token=TOKEN, admin_allow_remote=True)
    async with _client(app, host="10.1.2.3") as c:
        r = await c.get("/admin/edge/status", headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["active"]["backend"] == "wasm"


async def test_admin_api_with_the_right_token_swaps_and_logs(
    component_path, v2_component_path, wrong_component_path, caplog
):
    app = _app(component_path, admin_token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    v2 = v2_component_path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="mcpgw.admin"):
        async with _client(app) as c:
            refused = await c.post("/admin/edge/swap", content=wrong_component_path.read_bytes(), headers=auth)
            assert refused.status_code == 422 and refused.json()["step"] == "self-test"
            ok = await c.post("/admin/edge/swap", content=v2, headers=auth)
            assert ok.status_code == 200, ok.text
            status = (await c.get("/admin/edge/status", headers=auth)).json()
            assert status["active"]["version"] == "1.0.1-test" and status["previous"]["backend"] == "wasm"
            health = (await c.get("/health")).json()["edge"]
            assert health["component"]["version"] == "1.0.1-test" and "events" not in health
            assert (await c.post("/admin/edge/rollback", headers=auth)).status_code == 200
            assert (await c.post("/admin/edge/rollback", headers=auth)).status_code == 409
    sha = hashlib.sha256(v2).hexdigest()
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"admin swap by 127.0.0.1:5555: sha256 {sha} now active" in m for m in messages)
    assert any("refused at step self-test" in m for m in messages)
    assert any("admin rollback by 127.0.0.1:5555" in m for m in messages)


# --- under load, a real gateway process, through the CLI --------------------


def _cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MCPGW_ADMIN_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "core", "--url", gw.url, *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _edge_health(gw: Gateway) -> dict:
    return httpx.get(gw.url + "/health").json()["edge"]


def test_swaps_under_concurrent_load_fail_no_request(component_path, v2_component_path):
    # The outcome cache is off: every request crosses into whichever version is active, instead
    # of the first one per distinct head (the load repeats one head), so the swaps happen under
    # component calls, which the crossing count below proves.
    gw = Gateway(
        {
            "MCPGW_EDGE": "wasm",
            "MCPGW_ADMIN_TOKEN": TOKEN,
            "MCPGW_EDGE_TAG_RESPONSES": "true",
            "MCPGW_EDGE_CACHE_ENTRIES": "0",
        }
    ).wait_ready()
    crossings_before = _edge_health(gw)["cache"]["crossings"]
    stop = threading.Event()
    results: list[tuple[int, str | None]] = []
    errors: list[BaseException] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = c.post("/mcp", json=rpc2026("tools/list", f"{n}-{i}"), headers=STATELESS)
                    ok = r.status_code == 200 and r.json()["result"]["tools"]
                    results.append((r.status_code if ok else -r.status_code, r.headers.get("mcpgw-edge")))
                except BaseException as exc:  # noqa: BLE001 - any failure is a finding, recorded, not swallowed
                    errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        latencies = []
        time.sleep(0.5)
        for _ in range(5):
            t0 = time.perf_counter()
            swapped = _cli(gw, "swap", str(v2_component_path))
            latencies.append(time.perf_counter() - t0)
            assert swapped.returncode == 0, swapped.stdout + swapped.stderr
            time.sleep(0.3)
            back = _cli(gw, "rollback")
            assert back.returncode == 0, back.stdout + back.stderr
            time.sleep(0.3)
        status = _cli(gw, "status")
        assert status.returncode == 0 and '"action": "rollback"' in status.stdout
    finally:
        stop.set()
        for t in threads:
            t.join()
        cache = _edge_health(gw)["cache"]
        log = gw.log()
        gw.stop()
    crossings = cache["crossings"] - crossings_before
    assert cache["hits"] == 0 and crossings >= len(results), (crossings, len(results))
    # Each crossing entered the component: the Python edge serves a wasm backend's request only
    # after a failure, and every failure is logged.
    assert "Python fallback" not in log and "cannot build a fresh instance" not in log
    assert not errors, errors[:3]
    assert results and all(code == 200 for code, _ in results), [r for r in results if r[0] != 200][:5]
    tags = {tag for _, tag in results}
    v1 = "wasm/1.0.0/" + hashlib.sha256(component_path.read_bytes()).hexdigest()[:12]
    v2 = "wasm/1.0.1-test/" + hashlib.sha256(v2_component_path.read_bytes()).hexdigest()[:12]
    assert tags == {v1, v2}, tags  # every response names exactly one version, and both served
    assert "Traceback" not in log
    print(
        f"{len(results)} requests, 0 failed, {crossings} crossings into the component; "
        f"swap via CLI p50 {1000 * sorted(latencies)[2]:.0f} ms"
    )


def test_cli_reports_refusals_with_a_non_zero_exit(component_path, wrong_component_path):
    gw = Gateway({"MCPGW_EDGE": "wasm", "MCPGW_ADMIN_TOKEN": TOKEN}).wait_ready()
    try:
        refused = _cli(gw, "swap", str(wrong_component_path))
        assert refused.returncode == 1 and '"step": "self-test"' in refused.stdout
        assert _cli(gw, "rollback").returncode == 1  # nothing to roll back to
        edge = httpx.get(gw.url + "/health").json()["edge"]
        assert edge["component"]["sha256"] == hashlib.sha256(component_path.read_bytes()).hexdigest()
    finally:
        gw.stop()


def test_a_replaced_version_is_dropped_once_nothing_uses_it(component_path, v2_component_path):
    import gc
    import weakref

    registry = _registry(component_path)
    registry.activate(registry.verify_file(v2_component_path), "test")
    v2 = weakref.ref(registry.edge.backend)
    registry.edge.evaluate(*HEAD)  # its instance has served
    registry.rollback("test")
    gc.collect()
    assert v2() is None, "the rolled-back version (and its instance) must not be kept alive"
