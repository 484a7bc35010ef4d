"""The outcome cache changes nothing but speed: cached and uncached outcomes agree on every vector
and on generated heads, for both backends; it is bounded; a new backend starts it empty; what it
hands out is read-only (an entry is shared by every request with that head); it counts the calls
that do cross into the backend; and the middleware serves from it."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CASES
from mcpgw.edge.backend import Edge, EdgeStatus
from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.middleware import SCOPE_KEY, EdgeMiddleware
from mcpgw.edge.outcome_cache import MAX_KEY_BYTES, OutcomeCache
from mcpgw.edge.python_core import PythonCore
from mcpgw.edge.wasm_core import WasmCore
from mcpgw.settings import Settings
from test_differential import CONFIGS, _as_bytes, head


def _size(raw):
    _, path, query, headers = raw
    return len(path) + len(query) + sum(len(n) + len(v) for n, v in headers)


def _thaw(value):
    """A frozen outcome back in the backends' JSON shape (dicts and lists), to compare."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _mutable_inside(value) -> bool:
    if isinstance(value, (dict, list, set, bytearray)):
        return True
    if isinstance(value, Mapping):
        return any(_mutable_inside(v) for v in value.values())
    if isinstance(value, tuple):
        return any(_mutable_inside(v) for v in value)
    return False


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
        missed = cache.evaluate(backend, *raw, _size(raw))
        assert _thaw(missed) == direct, case.name  # miss
        assert _thaw(cache.evaluate(backend, *raw, _size(raw))) == direct, case.name  # hit (or too big to keep)
        assert not _mutable_inside(missed), case.name
        checked += 1
    assert checked > 400


@settings(max_examples=300, deadline=None)
@given(
    config_index=st.integers(0, len(CONFIGS) - 1),
    request_head=head(),
    extra=st.sampled_from(
        [[], [(b"authorization", b"Bearer a")], [(b"content-length", b"12")], [(b"user-agent", b"x")]]
    ),
)
def test_generated_heads_cached_and_uncached_agree(component, config_index, request_head, extra):
    raw = _as_bytes(request_head)
    if raw is None:
        return
    backends = _backends(component, CONFIGS[config_index])
    for backend in backends.values():
        cache = OutcomeCache(16)
        expected = backend.evaluate_raw(*raw)
        assert _thaw(cache.evaluate(backend, *raw, _size(raw))) == expected
        # Headers the contract never reads do not change the outcome, so they may share the entry.
        method, path, query, headers = raw
        assert _thaw(cache.evaluate(backend, method, path, query, headers + extra, _size(raw))) == expected


def test_bounded_oldest_first_and_per_backend(component):
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


PREFLIGHT = (
    "OPTIONS",
    b"/mcp",
    b"",
    [(b"host", b"127.0.0.1:4444"), (b"origin", b"http://localhost:3000"), (b"access-control-request-method", b"POST")],
)
FORWARD = (
    "POST",
    b"/mcp",
    b"",
    [
        (b"host", b"127.0.0.1:4444"),
        (b"origin", b"http://localhost:3000"),
        (b"accept", b"application/json, text/event-stream"),
    ],
)


@pytest.mark.parametrize("backend_name", ["wasm", "python"])
@pytest.mark.parametrize("max_entries", [64, 0])  # cached, and the cache off: the same read-only shape
def test_outcomes_it_hands_out_are_read_only(component, backend_name, max_entries):
    backend = _backends(component, EdgeConfig())[backend_name]
    cache = OutcomeCache(max_entries)
    forward = cache.evaluate(backend, *FORWARD, _size(FORWARD))
    ctx = forward["forward"]
    preflight = cache.evaluate(backend, *PREFLIGHT, _size(PREFLIGHT))["preflight"]
    attempts = [
        lambda: forward.__setitem__("forward", {}),
        lambda: forward.pop("forward"),
        lambda: ctx.__setitem__("origin_state", "allowed"),
        lambda: ctx.__delitem__("route"),
        lambda: ctx.update(route="other"),
        lambda: ctx["cors_headers"].append(("access-control-allow-origin", "*")),
        lambda: ctx["cors_headers"].__setitem__(0, ("vary", "*")),
        lambda: ctx["cors_headers"][0].__setitem__(1, "*"),
        lambda: preflight.__setitem__("status", 200),
        lambda: preflight["headers"].append(("access-control-allow-origin", "*")),
        lambda: preflight["headers"][0].__setitem__(1, "*"),
    ]
    for attempt in attempts:
        with pytest.raises((TypeError, AttributeError)):
            attempt()
    again = cache.evaluate(backend, *FORWARD, _size(FORWARD))
    if max_entries:
        assert again is forward and cache.hits == 1  # the shared entry, unchanged
    assert _thaw(again) == backend.evaluate_raw(*FORWARD)


def test_crossings_count_every_call_into_the_backend(component):
    wasm = WasmCore(component, EdgeConfig())
    cache = OutcomeCache(4)
    heads = [("POST", b"/mcp", f"q={i}".encode(), [(b"host", b"127.0.0.1")]) for i in range(3)]
    for _ in range(5):
        for h in heads:
            cache.evaluate(wasm, *h, 30)
    assert (cache.crossings, cache.misses, cache.hits) == (3, 3, 12)
    big = ("POST", b"/mcp", b"", [(b"host", b"127.0.0.1"), (b"x-big", b"a" * MAX_KEY_BYTES)])
    for _ in range(2):
        cache.evaluate(wasm, *big, MAX_KEY_BYTES + 20)  # never stored: crosses every time
    assert cache.crossings == 5
    off = OutcomeCache(0)
    for _ in range(5):
        off.evaluate(wasm, *heads[0], 30)
    assert off.crossings == 5 and off.hits == 0
    assert wasm.crossings == cache.crossings + off.crossings  # each one entered the component
    assert cache.stats()["crossings"] == 5


async def test_the_middleware_serves_frozen_outcomes(component):
    seen = []

    async def app(scope, receive, send):
        ctx = scope[SCOPE_KEY]
        seen.append(ctx)
        with pytest.raises(TypeError):
            ctx["origin_state"] = "allowed"  # downstream cannot change what the next request gets
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": ctx["route"].encode()})

    wasm = WasmCore(component, EdgeConfig())
    defaults = Settings()
    middleware = EdgeMiddleware(
        app,
        Edge(wasm, EdgeStatus("wasm", "wasm", "test")),
        max_head_bytes=defaults.max_head_bytes,
        tag_responses=defaults.edge_tag_responses,
        cache_entries=defaults.edge_cache_entries,
    )
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4444") as client:
        headers = {"origin": "http://localhost:3000", "accept": "application/json, text/event-stream"}
        first = await client.post("/mcp/", headers=headers)
        second = await client.post("/mcp/", headers=headers)
        pre = await client.options(
            "/mcp", headers={"origin": "http://localhost:3000", "access-control-request-method": "POST"}
        )
        evil = await client.post("/mcp", headers={"origin": "https://evil.example"})
    for r in (first, second):
        assert r.status_code == 200 and r.text == "mcp"
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert r.headers["vary"] == "Origin"
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert evil.status_code == 403
    assert seen[0] is seen[1] and seen[0]["path"] == "/mcp"  # the second was the cached entry
    assert middleware.cache.stats()["hits"] == 1
    assert middleware.cache.crossings == wasm.crossings == 3
