"""The wasmtime-py host itself: nothing imported and nothing granted, one instance shared
safely by callers on several threads, limits that hold on hostile but legal heads, and no
secrets crossing into the sandbox."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest
from wasmtime import Store, WasmtimeError, wat2wasm
from wasmtime.component import Component, Linker

from conftest import CASES, LIMITS
from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.python_core import CONTRACT_HEADERS, PythonCore
from mcpgw.edge.wasm_core import ComponentLoadError, WasmComponent, WasmCore

CFG = EdgeConfig()


def _python() -> PythonCore:
    core = PythonCore()
    core.configure(CFG)
    return core


def _raw(head):
    method, path, query, headers = head
    return (
        method,
        path.encode("latin-1"),
        query.encode("latin-1"),
        [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
    )


# A component that imports one WASI interface the host used to link (wasi:cli/environment).
WASI_IMPORTER = wat2wasm("""(component
  (import "wasi:cli/environment@0.2.0" (instance
    (export "get-arguments" (func (result (list string))))))
)""")


def test_the_component_imports_nothing_and_exports_only_the_contract(component):
    ty = component.component.type
    assert dict(ty.imports(component.engine)) == {}
    assert list(ty.exports(component.engine)) == ["mcpgw:edge/transport@1.0.0"]


def test_the_linker_grants_nothing(component):
    importer = Component(component.engine, WASI_IMPORTER)
    with pytest.raises(WasmtimeError, match="wasi:cli/environment"):
        component.linker.instantiate(Store(component.engine), importer)
    # The control: a WASI linker (what the host used to use) does satisfy that import.
    wasi = Linker(component.engine)
    wasi.add_wasip2()
    wasi.instantiate(Store(component.engine), importer)


def test_a_component_that_imports_anything_is_refused_by_name():
    with pytest.raises(ComponentLoadError) as refused:
        WasmComponent(WASI_IMPORTER, **LIMITS)
    assert refused.value.reason == "contract-mismatch"
    assert "wasi:cli/environment@0.2.0" in refused.value.detail


def test_callers_on_several_threads_share_one_instance_and_get_the_same_answers(component):
    core = WasmCore(component, CFG)
    python = _python()
    heads = [
        c.head
        for c in CASES
        if c.request is not None
        and c.config == CASES[0].config
        and all(ord(ch) < 256 for ch in c.head[1] + "".join(a + b for a, b in c.head[3]))
    ]
    assert len(heads) > 50
    instance = core._instance()
    mismatches, errors = [], []

    def worker():
        try:
            mismatches.extend(head for head in heads * 3 if core.evaluate_raw(*_raw(head)) != python.evaluate(*head))
        except Exception as exc:  # noqa: BLE001 - surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches
    assert core._instance() is instance  # one store, entered by one thread at a time
    assert core.crossings == 4 * 3 * len(heads)
    assert core.traps.total == 0


def test_hostile_but_legal_heads_stay_within_the_limits(component):
    core = WasmCore(component, CFG)
    python = _python()
    heads = [
        ("POST", "/mcp", "", [("accept", "application/json, " * 60_000 + "text/event-stream")]),  # ~1 MiB
        ("POST", "/" + "a/" * 50_000 + "../" * 50_000 + "mcp", "", []),
        ("POST", "/mcp", "", [("origin", "http://localhost:1")] * 1000),
        (
            "OPTIONS",
            "/mcp",
            "",
            [
                ("origin", "http://localhost:1"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type," * 20_000),
            ],
        ),
        ("POST", "/mcp", "", [("mcp-session-id", "x" * 300_000)]),
    ]
    for head in heads:
        assert core.evaluate(*head) == python.evaluate(*head)
    assert core.traps.total == 0, core.traps


_SECRET_HEADERS = [
    (b"authorization", b"Bearer s3cret"),
    (b"cookie", b"sid=s3cret"),
    (b"Origin", b"http://localhost:1"),
    (b"host", b"127.0.0.1:4444"),
    (b"x-api-key", b"s3cret"),
    (b"accept", b"*/*"),
    (b"mcp-session-id", b"s3cret-session"),
    (b"last-event-id", b"s3cret-event"),
    (b"mcp-method", b"tools/call"),
]


def test_only_what_a_rule_reads_enters_the_sandbox_compact(component, monkeypatch):
    """The compact encoding (what serves): the headers a rule reads, each once, the session id as a
    stand-in, and nothing that is only passed through (Last-Event-ID, Mcp-Method, Mcp-Name)."""
    core = WasmCore(component, CFG)
    assert core.encoding == "compact"
    seen = []
    inst = core._instance()
    real = inst.evaluate_compact
    monkeypatch.setattr(inst, "evaluate_compact", lambda head: seen.append(head) or real(head))
    out = core.evaluate_raw("POST", b"/mcp", b"q=s3cret", _SECRET_HEADERS)
    assert out["forward"]["origin_state"] == "allowed"
    assert out["forward"]["session_id"] == "s3cret-session" and out["forward"]["last_event_id"] == "s3cret-event"
    assert out["forward"]["mcp_method"] == "tools/call"
    assert b"s3cret" not in seen[0] and b"tools/call" not in seen[0]
    assert seen[0] == b"\x04POST\x04/mcpe\x12http://localhost:1f\x0e127.0.0.1:4444c\x03*/*a\x01s"
    assert core.traps.total == 0


def test_the_byte_path_writes_the_head_from_the_asgi_bytes(component, monkeypatch):
    """Lower-case names, each once (what ASGI servers deliver): the head is written from the
    bytes as they are (`CompactCodec.head_bytes`), in the same encoding; every other head goes
    the way that decodes first (`head_raw`). Both answer what the Python edge answers."""
    core = WasmCore(component, CFG)
    python = _python()
    seen = []
    inst = core._instance()
    real = inst.evaluate_compact
    monkeypatch.setattr(inst, "evaluate_compact", lambda head: seen.append(head) or real(head))
    sid = b"Vq3n0bq2oQ0rPzJ7s1k9cM8wYpX4hT6uLf2eR5aD1gE"
    base = [
        (b"host", b"127.0.0.1:4444"),
        (b"accept", b" application/json, text/event-stream\t"),
        (b"mcp-session-id", sid),
        (b"mcp-protocol-version", b"2025-06-18"),
        (b"origin", b"http://localhost:3000"),
        (b"last-event-id", b"ev-1"),
        (b"mcp-name", b"caf\xe9"),
        (b"authorization", b"Bearer s3cret"),
    ]
    out = core.evaluate_raw("POST", b"/mcp", b"", base)
    assert out == python.evaluate_raw("POST", b"/mcp", b"", base)
    assert out["forward"]["session_id"] == sid.decode() and out["forward"]["mcp_name"] == "caf\xe9"
    # The packed form (section 16): the crossing headers' letters, their lengths, then the values
    # as received (the component trims them), and the session id's stand-in letter by letter.
    assert core._codec.packed
    assert seen[-1] == (
        b"\x04POST\x04/mcp*\x04bcef\x0a\x25\x15\x0e2025-06-18 application/json, text/event-stream\t"
        b"http://localhost:3000127.0.0.1:4444a\x01s"
    )
    # Letter by letter for a component that does not read the packed form: the same answer.
    core._codec.packed = False
    assert core.evaluate_raw("POST", b"/mcp", b"", base) == out
    assert seen[-1] == (
        b"\x04POST\x04/mcpb\x0a2025-06-18c\x23application/json, text/event-stream"
        b"e\x15http://localhost:3000f\x0e127.0.0.1:4444a\x01s"
    )
    core._codec.packed = True
    variants = {
        "a name in capitals": [(b"Origin", b"http://localhost:3000"), *base[:4]],
        "a name twice": [*base, (b"accept", b"text/plain")],
        "a field of 256 bytes": [*base[:4], (b"accept", b"*/*;x=" + b"y" * 250)],
        "a latin-1 value": [*base[:4], (b"origin", b"http://caf\xe9.example")],
        "an invalid session id": [(b"mcp-session-id", b"bad id"), *base[:2]],
        "a session id of 257 bytes": [(b"mcp-session-id", b"s" * 257), *base[:2]],
        "no headers": [],
        "a preflight": [
            (b"origin", b"http://localhost:3000"),
            (b"access-control-request-method", b"POST"),
            (b"access-control-request-headers", b"content-type,mcp-session-id"),
        ],
    }
    for why, headers in variants.items():
        method = "OPTIONS" if why == "a preflight" else "GET"
        for path in (b"/mcp", b"//servers/a%7e/mcp/", b"/caf\xe9"):
            assert core.evaluate_raw(method, path, b"", headers) == python.evaluate_raw(method, path, b"", headers), (
                why,
                path,
            )
    # Which headers cross is planned once per tuple of names (`CompactCodec._plan`): a name the
    # contract does not read may be in capitals or twice; one it reads may not.
    codec = core._codec
    mixed = [(b"User-Agent", b"curl/8"), *base, (b"x-a", b"1"), (b"x-a", b"2")]
    assert codec.head_bytes("POST", b"/mcp", mixed) is not None
    assert codec.head_bytes("POST", b"/mcp", [(b"Origin", b"http://localhost:3000"), *base[:4]]) is None
    assert codec.head_bytes("POST", b"/mcp", [*base, (b"origin", b"http://localhost:3000")]) is None
    assert core.evaluate_raw("POST", b"/mcp", b"", mixed) == python.evaluate_raw("POST", b"/mcp", b"", mixed)
    # Plans are bounded whatever names clients send.
    from mcpgw.edge.compact import _PLAN_LIMIT

    for i in range(_PLAN_LIMIT + 10):
        codec.head_bytes("GET", b"/mcp", [(b"x-%d" % i, b"v"), *base[:2]])
    assert 0 < len(codec._plans) <= _PLAN_LIMIT
    assert codec.head_bytes("GET", b"/mcp", [(b"x" * 2000, b"v")]) is not None and (b"x" * 2000,) not in codec._plans
    # Headers as any iterable ASGI allows: a tuple of lists, a generator (read by `head_raw`).
    expected = python.evaluate_raw("POST", b"/mcp", b"", base)
    assert core.evaluate_raw("POST", b"/mcp", b"", tuple(list(h) for h in base)) == expected
    assert core.evaluate_raw("POST", b"/mcp", b"", (h for h in base)) == expected
    # Non-ASCII crosses as UTF-8 (the latin-1 head transcoded, lengths in code points).
    core.evaluate_raw("GET", b"/caf\xe9", b"", [(b"origin", b"http://caf\xe9.example")])
    assert seen[-1] == "\x03GET\x05/caf\xe9*\x01e\x13http://caf\xe9.example".encode()
    assert core.traps.total == 0


def test_the_answer_memo_keeps_no_answer_longer_than_an_honest_one():
    """Review R2 finding 3: the byte path memoizes checked answers per (answer, raw path), up to
    4096 of them. A preflight answer that names a configured header again and again passes the
    checks at any length (a hostile component's, up to about 1.1 M characters), so 4096 of them
    would be gigabytes. An answer longer than the largest an honest component gives for this
    configuration is checked and used but not kept; the largest honest ones still are."""
    from mcpgw.edge.compact import LARGEST_HONEST_FORWARD, CompactCodec

    codec = CompactCodec(CFG)
    written = codec.head_bytes("OPTIONS", b"/mcp", [(b"origin", b"http://localhost:3000")])
    assert written is not None
    held = written[1]

    def preflight(allow: str) -> bytes:
        return ("P2" + chr(len(allow)) + allow).encode()

    honest = preflight(", ".join(CFG.allowed_headers))  # no names asked for: every configured one
    assert len(honest) <= codec.largest_answer
    outcome = codec.outcome_bytes(honest, "OPTIONS", b"/mcp", held)
    assert outcome["preflight"]["status"] == 204 and (honest, b"/mcp") in codec._answers
    for n in (40, 5000):
        hostile = preflight(", ".join(["content-type"] * n))
        outcome = codec.outcome_bytes(hostile, "OPTIONS", b"/mcp", held)  # legal: answered
        assert outcome["preflight"]["status"] == 204
        assert len(hostile) > codec.largest_answer and (hostile, b"/mcp") not in codec._answers, n
    # About the longest forward: a canonical path of 256 latin-1 characters on the `other` route.
    path = "/" + "\xe9" * 255
    forward = ("F5001000@:" + chr(len(path)) + path).encode()
    assert len(forward) <= LARGEST_HONEST_FORWARD <= codec.largest_answer
    written = codec.head_bytes("GET", b"/", [(b"user-agent", b"t")])  # what the host holds: no contract header
    assert written is not None
    codec.outcome_bytes(forward, "GET", path.encode("latin-1"), written[1])
    assert (forward, path.encode("latin-1")) in codec._answers


def test_a_compact_answer_longer_than_an_honest_one_is_not_read(component):
    """Review R2 finding 3: the host reads a compact answer no longer than the longest an honest
    component gives for any compact head (`CompactCodec.largest_read`, set on every instance);
    a longer one is refused before it is copied out of the store, counted as invalid-output, and
    Python answers. The packaged component answers honestly, so the bound is lowered here to make
    its answer "too long"."""
    core = WasmCore(component, CFG)
    inst = core._instance()
    if component.call_path != "fast":
        pytest.skip("the public call path copies every answer (no bound)")
    assert inst._compact.max_size == core._codec.largest_read >= 13 + 4 * 0xD7FF
    headers = [(b"host", b"127.0.0.1:4444"), (b"accept", b"application/json, text/event-stream")]
    expected = _python().evaluate_raw("POST", b"/mcp", b"", headers)
    assert core.evaluate_raw("POST", b"/mcp", b"", headers) == expected and core.traps.total == 0
    inst._compact.max_size = 4  # shorter than any answer
    assert core.evaluate_raw("POST", b"/mcp", b"", headers) == expected
    assert core.traps.by_kind["invalid-output"] == 1
    rebuilt = core._instance()  # the failed instance is dropped; a new one gets the bound again
    assert rebuilt is not inst and rebuilt._compact.max_size == core._codec.largest_read


def test_only_contract_headers_enter_the_sandbox(component, monkeypatch):
    """The JSON encoding (components without the compact export)."""
    core = WasmCore(component, CFG)
    core.encoding = "json"
    seen = []
    inst = core._instance()
    real = inst.evaluate_encoded
    monkeypatch.setattr(inst, "evaluate_encoded", lambda head: seen.append(orjson.loads(head)) or real(head))
    headers = _SECRET_HEADERS[:6]
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
    monkeypatch.setattr(inst, "evaluate_compact", lambda head: b"\xff this is not UTF-8")
    calls = []

    def broken_instantiate():
        calls.append(1)
        raise RuntimeError("no memory for a new store")

    monkeypatch.setattr(core.component, "instantiate", broken_instantiate)
    for _ in range(5):  # malformed output, then a rebuild that fails, then back-off
        assert core.evaluate(*head) == python.evaluate(*head)
    assert core.traps.by_kind["invalid-output"] == 1 and core.traps.by_kind["rebuild-failed"] == 1
    assert len(calls) == 1, "a failing rebuild must not be retried on every request"
    assert any("cannot build a fresh instance" in r.getMessage() for r in caplog.records)


def test_answers_are_freed_by_the_next_call(component):
    """`EncodedCall` does not free an answer after copying it out: wasmtime's
    `wasmtime_component_func_call` assigns its result into the slot, which drops the answer the
    slot held. Were that ever not so (a wasmtime-py upgrade), every crossing would leak its
    answer: 100,000 answers of 215 bytes would grow the process by over 20 MB."""
    if component.call_path != "fast":
        pytest.skip("the public call path frees its own answers")
    core = WasmCore(component, CFG)
    inst = core._instance()
    head = core._codec.head_bytes("GET", b"//a/" + b"x" * 200 + b"/", [(b"host", b"127.0.0.1:4444")])
    assert head is not None
    assert len(inst.evaluate_compact(head[0])) > 200  # the canonical path comes back

    def resident_kib() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    for _ in range(5_000):
        inst.evaluate_compact(head[0])
    before = resident_kib()
    for _ in range(100_000):
        inst.evaluate_compact(head[0])
    assert resident_kib() - before < 8 * 1024


def test_a_names_matcher_serves_only_heads_with_exactly_its_names(component):
    """A tuple of header names planned `_COMPILE_AFTER` times gets a matcher, tried first for
    heads with as many headers (`compact._matcher`): it must serve exactly the heads with those
    names in that order, and every other head must go the planned way, with the same answers as
    the Python edge."""
    from mcpgw.edge.compact import _COMPILE_AFTER

    core = WasmCore(component, CFG)
    python = _python()
    codec = core._codec
    base = [
        (b"host", b"127.0.0.1:4444"),
        (b"user-agent", b"t"),
        (b"origin", b" http://localhost:3000"),
        (b"mcp-session-id", b"abc"),
    ]
    for _ in range(_COMPILE_AFTER):
        assert core.evaluate_raw("POST", b"/mcp", b"", base) == python.evaluate_raw("POST", b"/mcp", b"", base)
    assert len(base) in codec._fast
    others = {
        "the same names": base,
        "as lists": [list(h) for h in base],
        "another order": [base[1], base[0], *base[2:]],
        "another name": [(b"accept", b"*/*"), *base[1:]],
        "a name in capitals": [(b"Host", b"127.0.0.1:4444"), *base[1:]],
        "origin twice": [*base[:3], (b"origin", b"http://evil.example")],
        "a field of 256 bytes": [base[0], base[1], (b"origin", b"http://" + b"a" * 249), base[3]],
        "a latin-1 value": [base[0], base[1], (b"origin", b"http://caf\xe9.example"), base[3]],
        "an invalid session id": [*base[:3], (b"mcp-session-id", b"bad id")],
    }
    for why, headers in others.items():
        for method, path in (("POST", b"/mcp"), ("OPTIONS", b"/mcp"), ("GET", b"//servers/a%7e/mcp/")):
            expected = python.evaluate_raw(method, path, b"", headers)
            assert core.evaluate_raw(method, path, b"", headers) == expected, why
    assert codec._fast[len(base)][1](others["another order"]) is None
    assert core.traps.total == 0
