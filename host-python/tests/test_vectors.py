"""Every vector through every path: Python typed, encoded and raw; wasm compact and encoded (each on the
fast path and on wasmtime-py's public call path, which serves when the fast path does not fit the wasmtime
build), compact with the headers packed, raw (ASGI bytes through `WasmCore`, what serves) and typed."""

from __future__ import annotations

import orjson
import pytest

from conftest import CASES, VECTORS_DIR
from mcpgw.edge.compact import _COMPILE_AFTER, evaluate_compact_with
from mcpgw.edge.contract import EdgeConfig, EdgeError, encode_head
from mcpgw.edge.python_core import PythonCore
from mcpgw.edge.vectors import config_outcome, matches

EVAL_CASES = [c for c in CASES if c.request is not None]
CONFIG_CASES = [c for c in CASES if c.request is None]


def test_the_vectors_base_config_is_the_default_edge_config():
    """Vectors run under the gateway's defaults unless they say otherwise (tests/vectors is also
    read by the Rust tests, so it cannot import the constants: this keeps the copy honest)."""
    base = orjson.loads((VECTORS_DIR / "base-config.json").read_bytes())
    assert EdgeConfig.from_mapping(base) == EdgeConfig()


def test_there_are_enough_vectors():
    assert len(CASES) >= 80
    assert len({c.name for c in CASES}) == len(CASES), "vector names must be unique"
    assert all(c.reason.strip() for c in CASES), "every vector needs a reason"


@pytest.fixture(scope="module")
def wasm(component):
    return component.instantiate()


def _python_typed(case):
    core = PythonCore()
    core.configure(case.edge_config)
    return core.evaluate(*case.head)


def _python_encoded(case):
    core = PythonCore()
    assert core.configure_encoded(orjson.dumps(case.config).decode()) == ""
    return orjson.loads(core.evaluate_encoded(encode_head(*case.head)))


def _python_raw(case):
    """The ASGI path: bytes as uvicorn delivers them (only for heads latin-1 can carry)."""
    method, path, query, headers = case.head
    try:
        raw = (
            path.encode("latin-1"),
            query.encode("latin-1"),
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        )
    except UnicodeEncodeError:
        return None
    core = PythonCore()
    core.configure(case.edge_config)
    return core.evaluate_raw(method, *raw)


def _wasm_encoded(wasm, case):
    wasm.configure_encoded(orjson.dumps(case.config).decode())
    return orjson.loads(wasm.evaluate_encoded(encode_head(*case.head)))


def _wasm_public(wasm, case):
    wasm.configure_encoded(orjson.dumps(case.config).decode())
    return orjson.loads(wasm.evaluate_encoded_public(encode_head(*case.head)))


def _wasm_compact(wasm, case, public=False, packed=False):
    """The compact encoding (what serves), host half included: the codec writes the head and
    builds the outcome from the component's decisions."""
    wasm.configure_encoded(orjson.dumps(case.config).decode())
    call = wasm.evaluate_compact_public if public else wasm.evaluate_compact
    method, path, _, headers = case.head
    return evaluate_compact_with(call, case.edge_config, method, path, headers, packed)


_RAW_CORES: dict[bytes, object] = {}


def _wasm_raw(component, case):
    """The ASGI path as the middleware runs it (`WasmCore.evaluate_raw`: the packed head written
    from the bytes), for heads latin-1 can carry; one core per configuration."""
    from mcpgw.edge.wasm_core import WasmCore

    method, path, query, headers = case.head
    try:
        raw = (
            path.encode("latin-1"),
            query.encode("latin-1"),
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        )
    except UnicodeEncodeError:
        return None
    key = orjson.dumps(case.config)
    if key not in _RAW_CORES:
        _RAW_CORES[key] = WasmCore(component, case.edge_config)
    core = _RAW_CORES[key]
    assert core._codec.packed
    got = core.evaluate_raw(method, *raw)
    # Again until the head's names have their matcher (`compact._matcher`), and once through it.
    for _ in range(_COMPILE_AFTER):
        assert core.evaluate_raw(method, *raw) == got
    assert core.traps.total == 0
    return got


def _wasm_typed(wasm, case):
    wasm.configure(case.edge_config)
    return wasm.evaluate_typed(*case.head)


@pytest.mark.parametrize("case", EVAL_CASES, ids=lambda c: c.name)
def test_vector(case, wasm, component):
    outcomes = {
        "python-typed": _python_typed(case),
        "python-encoded": _python_encoded(case),
        "wasm-encoded": _wasm_encoded(wasm, case),
        "wasm-public": _wasm_public(wasm, case),
        "wasm-compact": _wasm_compact(wasm, case),
        "wasm-compact-public": _wasm_compact(wasm, case, public=True),
        "wasm-compact-packed": _wasm_compact(wasm, case, packed=True),
        "wasm-typed": _wasm_typed(wasm, case),
    }
    raw = _python_raw(case)
    if raw is not None:
        outcomes["python-raw"] = raw
        outcomes["wasm-raw"] = _wasm_raw(component, case)
    for path, got in outcomes.items():
        assert matches(case.expect, got), f"{path}: {case.reason}\nexpected {case.expect}\ngot      {got}"
    reference = outcomes["python-typed"]
    for path, got in outcomes.items():
        assert got == reference, f"{path} disagrees with python-typed"


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.name)
def test_config_vector(case, wasm):
    python = config_outcome(PythonCore().configure_encoded, case)
    fresh = wasm.component.instantiate()
    component = config_outcome(fresh.configure_encoded_text, case)
    for got in (python, component):
        assert matches(case.expect, got), f"{case.reason}\nexpected {case.expect}\ngot {got}"
    assert python.keys() == component.keys()
    if "error" in python:
        assert python["error"]["kind"] == component["error"]["kind"]
    if case.edge_config is not None:  # well-typed: the typed configure must agree
        try:
            fresh.configure(case.edge_config)
            typed = {"ok": True}
        except EdgeError as err:
            typed = {"error": {"kind": err.kind}}
        assert typed.keys() == python.keys(), f"typed configure disagrees: {typed} vs {python}"
