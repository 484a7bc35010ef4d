"""The bars `make bench` is held to: this table is the one place a threshold is written. The
report (bench/report.py) reads each bar's limit from here and computes met / not met from the
run's record; docs/benchmarks.md lists the same table (host-python/tests/test_bench_report.py
checks that it does, row for row).

Each bar names where it was set (an issue, or the standing bars of the design) and the `make
bench` section that measures it, so a bar without a figure can say why (section skipped or
failed)."""

from __future__ import annotations

from dataclasses import dataclass

_OPS = {">=": "≥", "<=": "≤", "<": "<", "==": "="}


@dataclass(frozen=True)
class Bar:
    key: str
    what: str  # what is measured, as the report and the docs name it
    op: str  # one of _OPS: figure <op> limit is met
    limit: float
    unit: str  # "x" (a ratio), "us", "KiB", "MiB", "s", or "failed" (a count that must be 0)
    source: str  # the issue (or the design's standing bars) that set it
    section: str  # the `make bench` section (BENCH_SKIP name) that measures it

    def limit_text(self) -> str:
        if self.unit == "failed":
            return f"{self.limit:g} failed"
        unit = {"x": "x", "us": " µs"}.get(self.unit, " " + self.unit)
        return f"{_OPS[self.op]} {self.limit:g}{unit}"

    def met(self, figure: float | None) -> bool:
        """A bar with no figure is not met."""
        if figure is None:
            return False
        if self.op == ">=":
            return figure >= self.limit
        if self.op == "<=":
            return figure <= self.limit
        if self.op == "<":
            return figure < self.limit
        return figure == self.limit


STANDING = "standing (design)"

BARS: tuple[Bar, ...] = (
    # Issue 20: relaying, the request path, the edge crossing.
    Bar(
        "relay",
        "relayed tools/call echo / the SDK upstream served directly, c=16 (virtual server and /mcp; "
        "stateful and stateless upstream)",
        ">=",
        0.9,
        "x",
        "issue 20",
        "federation",
    ),
    Bar(
        "echo-vs-bare",
        "built-in tools/call echo, gateway (wasm) / bare uvicorn answering a fixed JSON body, req/s, c=16",
        ">=",
        0.6,
        "x",
        "issue 20",
        "e2e",
    ),
    Bar(
        "list-vs-bare",
        "tools/list, gateway (wasm) / bare uvicorn answering a fixed JSON body, req/s, c=16",
        ">=",
        0.55,
        "x",
        "issue 20",
        "e2e",
    ),
    Bar(
        "edge-ratio",
        "uncached edge crossing p50, wasm / python, each of the 3 heads",
        "<=",
        1.0,
        "x",
        "issue 20",
        "edge",
    ),
    Bar("edge-browser", "uncached edge crossing p50, wasm, browser POST", "<=", 10, "us", "issue 20", "edge"),
    Bar(
        "nocache",
        "wasm / python req/s with the edge's outcome cache off, c=16, tools/list and tools/call echo",
        ">=",
        0.97,
        "x",
        "issue 20",
        "e2e",
    ),
    # The design's standing bars.
    Bar(
        "sdk",
        "gateway (wasm) / the MCP SDK's server, req/s, c=16, tools/list and tools/call echo",
        ">=",
        4,
        "x",
        STANDING,
        "e2e",
    ),
    Bar(
        "preflight", "preflight, gateway (wasm) / Starlette CORSMiddleware, req/s, c=16", ">=", 1, "x", STANDING, "e2e"
    ),
    Bar(
        "wasm-python",
        "wasm / python req/s, c=16, tools/list, tools/call echo and preflight (edge cache on)",
        ">=",
        0.97,
        "x",
        STANDING,
        "e2e",
    ),
    Bar("idle-stream", "resident memory per idle GET stream with its session", "<", 50, "KiB", STANDING, "memory"),
    Bar(
        "hot-swap", "100 hot swaps + 100 rollbacks under wrk load: failed requests", "==", 0, "failed", STANDING, "swap"
    ),
    # Earlier issues' bars, still held.
    Bar("edge-wasm", "uncached edge crossing p50, wasm, worst of the 3 heads", "<=", 15, "us", "issue 2", "edge"),
    Bar("edge-python", "uncached edge crossing p50, python, worst of the 3 heads", "<=", 10, "us", "issue 2", "edge"),
    Bar(
        "churn",
        "resident memory growth after 10,000 sessions created and deleted",
        "<",
        2,
        "MiB",
        "issue 7",
        "memory",
    ),
    Bar(
        "http-layer",
        "tools/list and tools/call echo with the HTTP layer's checks / uvicorn's plain httptools protocol, c=16",
        ">=",
        0.97,
        "x",
        "issue 14",
        "http",
    ),
    Bar(
        "hostile-rss",
        "hostile-client run with default settings: peak resident memory",
        "<",
        400,
        "MiB",
        "issue 14",
        "hostile",
    ),
    Bar(
        "hostile-control",
        "hostile-client run with default settings: control calls that failed",
        "==",
        0,
        "failed",
        "issue 14",
        "hostile",
    ),
    Bar(
        "plugin-noop",
        "tools/call echo with the no-op plugin on both tool hooks / no plugin, c=16",
        ">=",
        0.95,
        "x",
        "issue 15",
        "plugins",
    ),
    Bar(
        "plugin-three",
        "tools/call echo with tool-guard + redact + rate-limit / no plugin, c=16",
        ">=",
        0.85,
        "x",
        "issue 15",
        "plugins",
    ),
    Bar("auth", "tools/list with JWT auth (RS256, keys cached) / auth off, c=16", ">=", 0.9, "x", "issue 16", "auth"),
    Bar("metrics", "tools/list with metrics on / MCPGW_METRICS=off, c=16", ">=", 0.95, "x", "issue 18", "metrics"),
    Bar(
        "redis-one",
        "tools/list and tools/call echo, one process with Redis / one in memory, c=16",
        ">=",
        0.8,
        "x",
        "issue 17",
        "scaleout",
    ),
    Bar(
        "redis-two",
        "tools/list and tools/call echo, two processes with Redis / one with Redis, c=16",
        ">=",
        1.3,
        "x",
        "issue 17",
        "scaleout",
    ),
    Bar(
        "resume",
        "resume on another process after a SIGKILL: the lost request's error arrives within",
        "<=",
        5,
        "s",
        "issue 17",
        "scaleout",
    ),
)

BAR = {bar.key: bar for bar in BARS}
assert len(BAR) == len(BARS), "bar keys are unique"
