"""Never a silent fallback: every way the component can be unusable ends in the Python
edge with a warning that says why, and /health says so too. MCPGW_EDGE=wasm refuses instead."""

from __future__ import annotations

import logging
import shutil

import httpx
import orjson
import pytest

from conftest import CASES, VECTORS_DIR, Gateway
from mcpgw.edge.backend import EdgeStartupError, load_edge
from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.python_core import PythonCore
from mcpgw.edge.vectors import matches
from mcpgw.edge.wasm_core import WasmComponent, WasmCore
from mcpgw.settings import Settings

CFG = EdgeConfig()
# What the gateway passes by default (every default lives in Settings).
DEFAULTS = Settings()
LIMITS = {
    "fuel": DEFAULTS.edge_fuel,
    "memory_bytes": DEFAULTS.edge_memory_mb * 1024 * 1024,
    "allowed_sha256": frozenset(DEFAULTS.edge_allowed_sha256),
}
HEAD = (
    "POST",
    "/mcp",
    "",
    [
        ("host", "127.0.0.1:4444"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ],
)


def _fallback(caplog, path, reason, **kw):
    with caplog.at_level(logging.WARNING, logger="mcpgw.edge"):
        edge = load_edge("auto", CFG, path, **{**LIMITS, **kw})
    assert edge.status.active == "python"
    assert edge.status.fallback_reason.startswith(reason), edge.status.fallback_reason
    warning = [r for r in caplog.records if r.levelno == logging.WARNING and "FALLBACK" in r.getMessage()]
    assert warning and reason in warning[0].getMessage()
    health = edge.health()
    assert health["backend"] == "python" and health["fallback_reason"].startswith(reason)
    # And it serves.
    assert edge.evaluate(*HEAD)["forward"]["route"] == "mcp"
    return edge


def test_auto_uses_the_component_when_it_is_sound(component_path, caplog):
    with caplog.at_level(logging.INFO, logger="mcpgw.edge"):
        edge = load_edge("auto", CFG, component_path, **LIMITS)
    assert edge.status.active == "wasm"
    assert edge.health()["component"]["self_test"].endswith("vectors passed")
    assert any("edge backend: wasm" in r.getMessage() for r in caplog.records)


def test_missing_file(tmp_path, caplog):
    _fallback(caplog, tmp_path / "nope.wasm", "missing")


def test_corrupt_file(tmp_path, caplog, component_path):
    bad = tmp_path / "corrupt.wasm"
    data = bytearray(component_path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    bad.write_bytes(bytes(data))
    _fallback(caplog, bad, "corrupt")
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"definitely not wasm")
    _fallback(caplog, junk, "corrupt")


def test_wrong_contract_version(contract2_component_path, caplog):
    _fallback(caplog, contract2_component_path, "contract-mismatch")


def test_core_module_instead_of_component(tmp_path, caplog):
    core_module = tmp_path / "module.wasm"
    core_module.write_bytes(b"\x00asm\x01\x00\x00\x00")  # a valid, empty core module: not a component
    _fallback(caplog, core_module, "corrupt")


def test_self_test_failure(tmp_path, caplog, component_path):
    vectors = tmp_path / "vectors"
    shutil.copytree(VECTORS_DIR, vectors)
    target = next(p for p in sorted(vectors.glob("*.json")) if p.name != "base-config.json")
    data = orjson.loads(target.read_bytes())
    first = next(c for c in data["cases"] if "request" in c)
    first["expect"] = {"forward": {"path": "/this-is-not-what-the-contract-says"}}
    target.write_bytes(orjson.dumps(data))
    _fallback(caplog, component_path, "self-test-failed", vectors_dir=vectors)


def test_strict_wasm_mode_refuses_to_start(tmp_path):
    with pytest.raises(EdgeStartupError, match="missing"):
        load_edge("wasm", CFG, tmp_path / "nope.wasm", **LIMITS)


@pytest.mark.parametrize("fault, kind", [("panic", "panic"), ("loop", "fuel"), ("alloc", "memory")])
def test_trap_recovers_with_python_and_a_fresh_instance(faults_component_path, caplog, fault, kind):
    core = WasmCore(
        WasmComponent.from_file(faults_component_path, fuel=Settings().edge_fuel, memory_bytes=4 * 1024 * 1024), CFG
    )
    head = ("POST", f"/__mcpgw_fault/{fault}", "", HEAD[3])  # the fault variant's trigger
    expected = PythonCore()
    expected.configure(CFG)
    with caplog.at_level(logging.WARNING, logger="mcpgw.edge"):
        out = core.evaluate(*head)
    assert out == expected.evaluate(*head)  # the request was still served, by Python
    assert core.traps.total == 1 and core.traps.by_kind[kind] == 1
    assert any(kind in r.getMessage() and "Python fallback" in r.getMessage() for r in caplog.records)
    # The trapped instance was discarded: the next request runs on a fresh one, in wasm.
    again = core.evaluate(*HEAD)
    assert again == expected.evaluate(*HEAD)
    assert core.traps.total == 1


def test_gateway_process_falls_back_visibly(tmp_path):
    gw = Gateway({"MCPGW_EDGE": "auto", "MCPGW_EDGE_COMPONENT": str(tmp_path / "missing.wasm")}).wait_ready()
    try:
        edge = httpx.get(gw.url + "/health").json()["edge"]
        assert edge["backend"] == "python" and edge["requested"] == "auto"
        assert edge["fallback_reason"].startswith("missing")
        assert "WARNING mcpgw.edge: edge backend: python (FALLBACK: Rust component unusable: missing" in gw.log()
    finally:
        gw.stop()


def test_gateway_process_in_strict_wasm_mode_exits_with_the_reason(tmp_path):
    gw = Gateway({"MCPGW_EDGE": "wasm", "MCPGW_EDGE_COMPONENT": str(tmp_path / "missing.wasm")})
    try:
        assert gw.proc.wait(60) == 1
        assert "MCPGW_EDGE=wasm but the component cannot serve: missing" in gw.log()
    finally:
        gw.stop()


def test_gateway_serves_through_traps_and_reports_them(faults_component_path):
    gw = Gateway({"MCPGW_EDGE": "wasm", "MCPGW_EDGE_COMPONENT": str(faults_component_path)}).wait_ready()
    try:
        # The fault variant traps on this path; the Python edge then serves the
        # request (a 404: no such route), and the next request runs in wasm again.
        r = httpx.get(gw.url + "/__mcpgw_fault/panic")
        assert r.status_code == 404
        h = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        r = httpx.post(gw.url + "/mcp", json=body, headers=h)
        assert r.status_code == 200 and "mcp-session-id" in r.headers
        edge = httpx.get(gw.url + "/health").json()["edge"]
        assert edge["backend"] == "wasm" and edge["traps"]["total"] == 1 and edge["traps"]["panic"] == 1
        assert "failed (panic)" in gw.log()
    finally:
        gw.stop()


def test_wasmtime_not_importable(monkeypatch, caplog, component_path):
    import sys

    monkeypatch.setitem(sys.modules, "mcpgw.edge.wasm_core", None)  # import now raises ImportError
    _fallback(caplog, component_path, "wasmtime-unavailable")


@pytest.mark.parametrize("change", ["layout", "bindings"])
def test_a_wasmtime_the_fast_path_does_not_know_still_serves_wasm(monkeypatch, caplog, component_path, change):
    """A future wasmtime-py whose value layout differs from the fast path's, or whose bindings were
    renamed: the component is called through wasmtime-py's public API instead (slower, still
    wasm), with a warning."""
    import ctypes
    import types

    from mcpgw.edge import wasm_core

    class OtherLayout(ctypes.Structure):  # what a changed wasmtime_component_val_t would look like to us
        _fields_ = [("kind", ctypes.c_uint32), ("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]

    if change == "layout":
        monkeypatch.setattr(wasm_core, "_StrVal", OtherLayout)
    else:  # only the fast path's view of the bindings; wasmtime-py's own public path keeps the real ones
        monkeypatch.setattr(wasm_core, "ffi", types.SimpleNamespace())
    assert wasm_core._fast_path_problem() is not None  # the real check, failing

    def raw_call(*args):
        raise AssertionError("the raw C call must not be used when the layout check fails")

    monkeypatch.setattr(wasm_core, "_func_call", raw_call)
    with caplog.at_level(logging.WARNING, logger="mcpgw.edge"):
        edge = load_edge("auto", CFG, component_path, **LIMITS)  # the self-test runs every vector on the public path
    assert edge.status.active == "wasm" and isinstance(edge.backend, WasmCore)
    assert edge.backend.component.call_path == "public"
    assert edge.health()["component"]["call_path"] == "public"
    assert edge.health()["component"]["encoding"] == "compact"  # the compact export, on the public path too
    assert any("public API" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

    by_config: dict[str, tuple[WasmCore, PythonCore]] = {}
    checked = 0
    for case in CASES:
        if case.request is None or case.edge_config is None:
            continue
        key = repr(case.config)
        if key not in by_config:
            python = PythonCore()
            python.configure(case.edge_config)
            by_config[key] = (WasmCore(edge.backend.component, case.edge_config), python)
        wasm, python = by_config[key]
        got = wasm.evaluate(*case.head)
        assert got == python.evaluate(*case.head), case.name
        assert matches(case.expect, got), case.name
        checked += 1
    assert checked > 400
    assert sum(w.crossings for w, _ in by_config.values()) == checked  # every one answered by the component
    assert all(w.traps.total == 0 for w, _ in by_config.values())


def test_trap_warnings_are_rate_limited_but_every_trap_is_counted(faults_component_path, caplog, monkeypatch):
    from mcpgw.edge import wasm_core

    monkeypatch.setattr(wasm_core, "TRAP_LOG_INTERVAL_S", 3600.0)  # no interval ends by itself in this test
    core = WasmCore(
        WasmComponent.from_file(faults_component_path, fuel=LIMITS["fuel"], memory_bytes=LIMITS["memory_bytes"]), CFG
    )
    head = ("POST", "/__mcpgw_fault/panic", "", HEAD[3])
    with caplog.at_level(logging.WARNING, logger="mcpgw.edge"):
        for _ in range(50):
            core.evaluate(*head)
        assert core.traps.total == 50
        warnings = [r.getMessage() for r in caplog.records if "failed (panic)" in r.getMessage()]
        assert len(warnings) == 1
        core._log_after = 0.0  # the interval is over: the next failure is logged with the tally
        core.evaluate(*head)
    warnings = [r.getMessage() for r in caplog.records if "failed (panic)" in r.getMessage()]
    assert len(warnings) == 2 and "(49 more failures in the last interval, not logged)" in warnings[1]
