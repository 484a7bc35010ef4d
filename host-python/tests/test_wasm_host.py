"""The wasmtime-py host itself: one store per thread, limits that hold on hostile but
legal heads, and no secrets crossing into the sandbox."""
from __future__ import annotations

import threading

import orjson

from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.python_core import CONTRACT_HEADERS, PythonCore
from mcpgw.edge.wasm_core import WasmCore

from conftest import CASES

CFG = EdgeConfig()


def _python() -> PythonCore:
    core = PythonCore()
    core.configure(CFG)
    return core


def _raw(head):
    method, path, query, headers = head
    return method, path.encode("latin-1"), query.encode("latin-1"), [
        (n.encode("latin-1"), v.encode("latin-1")) for n, v in headers
    ]


def test_each_thread_gets_its_own_instance_and_the_same_answers(component):
    core = WasmCore(component, CFG)
    python = _python()
    heads = [c.head for c in CASES if c.request is not None and c.config == CASES[0].config
             and all(ord(ch) < 256 for ch in c.head[1] + "".join(a + b for a, b in c.head[3]))]
    assert len(heads) > 50
    instances, mismatches, errors = [], [], []

    def worker():
        try:
            instances.append(core._instance())  # the objects, so no id can be reused
            for head in heads * 3:
                if core.evaluate_raw(*_raw(head)) != python.evaluate(*head):
                    mismatches.append(head)
        except Exception as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches
    assert len({id(i) for i in instances}) == 4
    assert core.traps.total == 0


def test_hostile_but_legal_heads_stay_within_the_limits(component):
    core = WasmCore(component, CFG)
    python = _python()
    heads = [
        ("POST", "/mcp", "", [("accept", "application/json, " * 60_000 + "text/event-stream")]),  # ~1 MiB
        ("POST", "/" + "a/" * 50_000 + "../" * 50_000 + "mcp", "", []),
        ("POST", "/mcp", "", [("origin", "http://localhost:1")] * 1000),
        ("OPTIONS", "/mcp", "", [("origin", "http://localhost:1"), ("access-control-request-method", "POST"),
                                 ("access-control-request-headers", "content-type," * 20_000)]),
        ("POST", "/mcp", "", [("mcp-session-id", "x" * 300_000)]),
    ]
    for head in heads:
        assert core.evaluate(*head) == python.evaluate(*head)
    assert core.traps.total == 0, core.traps


def test_only_contract_headers_enter_the_sandbox(component, monkeypatch):
    core = WasmCore(component, CFG)
    seen = []
    inst = core._instance()
    real = inst.evaluate_encoded
    monkeypatch.setattr(inst, "evaluate_encoded", lambda head: seen.append(orjson.loads(head)) or real(head))
    headers = [(b"authorization", b"Bearer s3cret"), (b"cookie", b"sid=s3cret"), (b"Origin", b"http://localhost:1"),
               (b"host", b"127.0.0.1:4444"), (b"x-api-key", b"s3cret"), (b"accept", b"*/*")]
    out = core.evaluate_raw("POST", b"/mcp", b"", headers)
    assert out["forward"]["origin_state"] == "allowed"
    names = [n for n, _ in seen[0][3]]
    assert names == ["origin", "host", "accept"]
    assert "s3cret" not in orjson.dumps(seen[0]).decode()
    assert set(CONTRACT_HEADERS.values()) >= set(names)


def test_a_failed_rebuild_backs_off_and_python_serves(component, monkeypatch, caplog):
    core = WasmCore(component, CFG)
    python = _python()
    head = ("POST", "/mcp", "", [("host", "127.0.0.1:4444")])
    inst = core._instance()
    monkeypatch.setattr(inst, "evaluate_encoded", lambda head: b"this is not json")
    calls = []

    def broken_instantiate():
        calls.append(1)
        raise RuntimeError("no memory for a new store")

    monkeypatch.setattr(core.component, "instantiate", broken_instantiate)
    for _ in range(5):  # non-JSON output, then a rebuild that fails, then back-off
        assert core.evaluate(*head) == python.evaluate(*head)
    assert core.traps.by_kind["error"] == 1 and core.traps.by_kind["rebuild-failed"] == 1
    assert len(calls) == 1, "a failing rebuild must not be retried on every request"
    assert any("cannot build a fresh instance" in r.getMessage() for r in caplog.records)
