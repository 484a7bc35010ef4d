"""Per-request edge cost from Python, both backends, side by side in one run.

Measures what the middleware pays per request: ASGI head (bytes, as uvicorn
delivers it) -> edge.evaluate_raw(...) -> outcome dict (the boundary crossing, uncached), the
same crossing with the CPU caches evicted before each call (what a request pays end to end,
where its other work evicts them), and the same head answered from the outcome cache (what a
repeated head costs). Rounds alternate between backends so
machine noise hits both alike; prints p50/p99 per head and the wasm/python ratio.
docs/benchmarks.md bars: wasm p50 <= 15 us, python p50 <= 10 us.
"""

from __future__ import annotations

import argparse
import gc
import time

import orjson

from mcpgw.edge.backend import load_edge
from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.outcome_cache import OutcomeCache
from mcpgw.settings import Settings

BROWSER_POST = (
    "POST",
    b"/mcp",
    b"",
    [
        (b"host", b"127.0.0.1:4444"),
        (b"connection", b"keep-alive"),
        (b"content-length", b"87"),
        (b"sec-ch-ua-platform", b'"Linux"'),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
        (b"mcp-session-id", b"Vq3n0bq2oQ0rPzJ7s1k9cM8wYpX4hT6uLf2eR5aD1gE"),
        (b"mcp-protocol-version", b"2025-06-18"),
        (b"origin", b"http://localhost:5173"),
        (b"referer", b"http://localhost:5173/"),
        (b"accept-encoding", b"gzip, deflate, br, zstd"),
    ],
)
CLI_POST = (
    "POST",
    b"/mcp",
    b"",
    [
        (b"host", b"127.0.0.1:4444"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
        (b"mcp-protocol-version", b"2025-11-25"),
        (b"mcp-session-id", b"Vq3n0bq2oQ0rPzJ7s1k9cM8wYpX4hT6uLf2eR5aD1gE"),
    ],
)
PREFLIGHT = (
    "OPTIONS",
    b"/mcp",
    b"",
    [
        (b"host", b"127.0.0.1:4444"),
        (b"origin", b"http://localhost:5173"),
        (b"access-control-request-method", b"POST"),
        (b"access-control-request-headers", b"content-type,mcp-protocol-version,mcp-session-id"),
        (b"user-agent", b"Mozilla/5.0"),
        (b"accept", b"*/*"),
        (b"sec-fetch-mode", b"cors"),
    ],
)
HEADS = {
    "browser POST (12 headers)": BROWSER_POST,
    "CLI POST (5 headers)": CLI_POST,
    "preflight (7 headers)": PREFLIGHT,
}


# Written between cold-cache calls: more than the last-level cache of the machines we run on, one
# write per 64-byte line, as a request's other work evicts the caches before the edge runs again.
EVICT = bytearray(4 << 20)
EVICT_LINES = b"\x01" * (len(EVICT) // 64)


def measure(evaluate, head, n: int, cold: bool = False) -> list[int]:
    """Nanoseconds per call of `evaluate` on `head`, n calls; with `cold`, the caches are evicted
    before each call (the evicting is not timed)."""
    method, raw_path, query, headers = head
    out = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            if cold:
                EVICT[::64] = EVICT_LINES
            t0 = clock()
            evaluate(method, raw_path, query, headers)
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


def pct(samples: list[int], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(p * len(s)))] / 1000.0


def collect(calls: int = 5000, rounds: int = 6) -> list[dict]:
    """p50/p99 per head and backend, rounds alternating between backends."""
    cfg = EdgeConfig()
    defaults = Settings()  # the gateway's defaults
    limits = {
        "fuel": defaults.edge_fuel,
        "memory_bytes": defaults.edge_memory_mb * 1024 * 1024,
        "allowed_sha256": frozenset(defaults.edge_allowed_sha256),
    }
    backends = {"wasm": load_edge("wasm", cfg, None, **limits), "python": load_edge("python", cfg, None, **limits)}
    # The same component through the JSON encoding (section 14), the path every request took
    # before the compact one (section 16): the before/after of issue 20 side by side.
    backends["wasm-json"] = load_edge("wasm", cfg, None, **limits)
    backends["wasm-json"].backend.encoding = "json"
    assert backends["wasm"].backend.encoding == "compact"
    rows = []
    print(f"edge boundary cost per request ({rounds} alternating rounds x {calls} calls)")
    print(f"{'head':28} {'backend':8} {'p50 us':>8} {'p99 us':>8}")
    for label, head in HEADS.items():
        samples: dict[str, list[int]] = {name: [] for name in backends}
        crossed = {name: backends[name].backend.crossings for name in ("wasm", "wasm-json")}
        for edge in backends.values():
            measure(edge.evaluate_raw, head, 500)  # warm-up
        for r in range(rounds):
            order = list(backends) if r % 2 == 0 else list(reversed(backends))
            for name in order:
                samples[name].extend(measure(backends[name].evaluate_raw, head, calls))
        # The uncached figures are crossings: every wasm call entered the component.
        for name in crossed:
            assert backends[name].backend.crossings - crossed[name] == 500 + rounds * calls
        # The same crossings with cold caches (what a request pays end to end with the cache off).
        cold: dict[str, list[int]] = {name: [] for name in backends}
        for r in range(rounds):
            order = list(backends) if r % 2 == 0 else list(reversed(backends))
            for name in order:
                cold[name].extend(measure(backends[name].evaluate_raw, head, max(1, calls // 10), cold=True))
        cached = {}
        for name, edge in backends.items():
            cache = OutcomeCache(defaults.edge_cache_entries)
            size = len(head[1]) + len(head[2]) + sum(len(n) + len(v) for n, v in head[3])

            def hit(method, raw_path, query, headers, edge=edge, cache=cache, size=size):
                return cache.evaluate(edge, method, raw_path, query, headers, size)

            hit(*head)  # the miss that fills the entry
            cached[name] = measure(hit, head, calls)
            assert cache.crossings == 1 and cache.hits == calls  # the cached figures are hits only
        for name in backends:
            row = {
                "head": label,
                "backend": name,
                "p50_us": pct(samples[name], 0.50),
                "p99_us": pct(samples[name], 0.99),
                "cached_p50_us": pct(cached[name], 0.50),
                "cold_p50_us": pct(cold[name], 0.50),
            }
            rows.append(row)
            print(
                f"{label:28} {name:8} {row['p50_us']:8.2f} {row['p99_us']:8.2f}   "
                f"cached hit p50 {row['cached_p50_us']:.2f}   cold caches p50 {row['cold_p50_us']:.2f}"
            )
        p50 = {r["backend"]: r["p50_us"] for r in rows if r["head"] == label}
        cold50 = {r["backend"]: r["cold_p50_us"] for r in rows if r["head"] == label}
        print(
            f"{'':28} {'ratio':8} {p50['wasm'] / p50['python']:8.2f}x (wasm p50 / python p50, uncached; "
            f"wasm-json {p50['wasm-json'] / p50['python']:.2f}x; cold caches {cold50['wasm'] / cold50['python']:.2f}x)",
            flush=True,
        )
    print(
        "bars (docs/benchmarks.md): wasm p50 <= 15 us, python p50 <= 10 us; "
        "issue 20: wasm/python <= 1.0x on every head, browser POST wasm p50 <= 10 us"
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000, help="calls per round per backend and head")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    collect(args.calls, args.rounds)
    print_guest_instructions()


def print_guest_instructions() -> dict[str, int]:
    """Wasm instructions the guest executes per head, counted by fuel: the same on
    any machine under any load, so a change to the guest shows up exactly."""
    from mcpgw.edge.backend import PACKAGED_COMPONENT
    from mcpgw.edge.compact import CompactCodec, lookup_raw
    from mcpgw.edge.python_core import CONTRACT_HEADERS
    from mcpgw.edge.wasm_core import WasmComponent

    inst = WasmComponent.from_file(PACKAGED_COMPONENT, fuel=10**9, memory_bytes=64 * 1024 * 1024).instantiate()
    cfg = EdgeConfig()
    inst.configure_encoded(cfg.to_json())
    codec = CompactCodec(cfg)
    print(
        "guest work per call (fuel = wasm instructions, deterministic): compact encoding with the headers "
        "packed (serves), letter by letter, JSON encoding"
    )
    counts = {}
    for label, (method, raw_path, query, headers) in HEADS.items():
        pairs = [
            (CONTRACT_HEADERS[n.lower()], v.decode("latin-1")) for n, v in headers if n.lower() in CONTRACT_HEADERS
        ]
        head = orjson.dumps([method, raw_path.decode("latin-1"), query.decode("latin-1"), pairs])
        compact = codec.head(method, raw_path.decode("latin-1"), lookup_raw(headers))
        assert compact is not None
        codec.packed = True
        packed = codec.head_bytes(method, raw_path, headers)
        codec.packed = False
        assert packed is not None
        used = {}
        for key, export, data in (
            ("packed", "evaluate-compact", packed[0]),
            ("letters", "evaluate-compact", compact),
            ("json", "evaluate-encoded", head),
        ):
            inst.store.set_fuel(10**9)
            inst.funcs[export](inst.store, data.decode())
            used[key] = 10**9 - inst.store.get_fuel()
        counts[label] = used["packed"]
        print(
            f"  {label:28} {len(packed[0]):4} B in {used['packed']:>7,} instructions; "
            f"letters {len(compact):4} B in {used['letters']:>7,}; JSON {len(head):4} B in {used['json']:>7,}"
        )
    return counts


if __name__ == "__main__":
    main()
