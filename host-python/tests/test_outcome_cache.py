"""The outcome cache changes nothing but speed: cached and uncached outcomes agree on every vector
and on generated heads, for both backends; it is bounded; a new backend starts it empty."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CASES
from mcpgw.edge.outcome_cache import MAX_KEY_BYTES, OutcomeCache
from mcpgw.edge.python_core import PythonCore
from mcpgw.edge.wasm_core import WasmCore
from test_differential import CONFIGS, _as_bytes, head


def _size(raw):
    _, path, query, headers = raw
    return len(path) + len(query) + sum(len(n) + len(v) for n, v in headers)


def _backends(component, config):
    python = PythonCore()
    python.configure(config)
    return {"wasm": WasmCore(component, config), "python": python}


@pytest.mark.parametrize("backend_name", ["wasm", "python"])
def test_every_vector_cached_and_uncached_agree(component, backend_name):
    by_config: dict[str, tuple] = {}
    checked = 0
    for case in CASES:
        if case.request is None or case.edge_config is None:
            continue  # configuration-only cases
        raw = _as_bytes(case.head)
        if raw is None:
            continue
        key = repr(case.config)
        if key not in by_config:
            by_config[key] = (_backends(component, case.edge_config)[backend_name], OutcomeCache(64))
        backend, cache = by_config[key]
        direct = backend.evaluate_raw(*raw)
        assert cache.evaluate(backend, *raw, _size(raw)) == direct, case.name  # miss
        assert cache.evaluate(backend, *raw, _size(raw)) == direct, case.name  # hit (or too big to keep)
        checked += 1
    assert checked > 400


@settings(max_examples=300, deadline=None)
@given(config_index=st.integers(0, len(CONFIGS) - 1), request_head=head(), extra=st.sampled_from([
    [], [(b"authorization", b"Bearer a")], [(b"content-length", b"12")], [(b"user-agent", b"x")]]))
def test_generated_heads_cached_and_uncached_agree(component, config_index, request_head, extra):
    raw = _as_bytes(request_head)
    if raw is None:
        return
    backends = _backends(component, CONFIGS[config_index])
    for backend in backends.values():
        cache = OutcomeCache(16)
        expected = backend.evaluate_raw(*raw)
        assert cache.evaluate(backend, *raw, _size(raw)) == expected
        # Headers the contract never reads do not change the outcome, so they may share the entry.
        method, path, query, headers = raw
        assert cache.evaluate(backend, method, path, query, headers + extra, _size(raw)) == expected


def test_bounded_oldest_first_and_per_backend(component):
    from mcpgw.edge.contract import EdgeConfig

    python = PythonCore()
    python.configure(EdgeConfig())
    cache = OutcomeCache(3)
    heads = [("POST", b"/mcp", f"q={i}".encode(), [(b"host", b"127.0.0.1")]) for i in range(5)]
    for h in heads:
        cache.evaluate(python, *h, 30)
    assert cache.stats()["entries"] == 3 and cache.misses == 5
    cache.evaluate(python, *heads[4], 30)
    assert cache.hits == 1
    cache.evaluate(python, *heads[0], 30)  # evicted earlier: a miss
    assert cache.misses == 6
    # A different backend object (a swap) starts from nothing.
    other = PythonCore()
    other.configure(EdgeConfig(allowed_origins=["https://only.example"]))
    origin_head = ("POST", b"/mcp", b"", [(b"host", b"127.0.0.1"), (b"origin", b"http://localhost:3000")])
    assert cache.evaluate(python, *origin_head, 60)["forward"]["origin_state"] == "allowed"
    assert cache.evaluate(other, *origin_head, 60)["forward"]["origin_state"] == "denied"
    # Heads over the key limit are evaluated every time, never stored.
    big = ("POST", b"/mcp", b"", [(b"host", b"127.0.0.1"), (b"x-big", b"a" * MAX_KEY_BYTES)])
    before = cache.stats()["entries"]
    cache.evaluate(python, *big, MAX_KEY_BYTES + 20)
    assert cache.stats()["entries"] == before
