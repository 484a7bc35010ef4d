"""`make bench`: every benchmark side by side in one run, then a JSON record, a Markdown report
and PNG plots under bench/results/. Figures are ratios measured in the same run: these machines
are shared and noisy, so only side-by-side numbers mean anything.

The bars and their limits are bench/bars.py; the report's "Bars" table reads each against this
run's figure. To render a report again from a record: `python bench/report.py RECORD.json`.

Environment: BENCH_DURATION_S (per wrk run, default 2; wrk runs whole seconds, at least 1), BENCH_REPS (default 5),
BENCH_CONNECTIONS (default 1,16,64), BENCH_SKIP (comma list of edge,edge-instructions,e2e,request-instructions,http,
memory,store,hostile,swap,federation,plugins,auth,metrics,scaleout,tracing).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import auth  # noqa: E402 - imported once bench/ is on sys.path
import e2e  # noqa: E402 - imported once bench/ is on sys.path
import edge_cost  # noqa: E402 - imported once bench/ is on sys.path
import edge_instructions  # noqa: E402 - imported once bench/ is on sys.path
import federation  # noqa: E402 - imported once bench/ is on sys.path
import hot_swap  # noqa: E402 - imported once bench/ is on sys.path
import http_layer  # noqa: E402 - imported once bench/ is on sys.path
import memory  # noqa: E402 - imported once bench/ is on sys.path
import metrics  # noqa: E402 - imported once bench/ is on sys.path
import plugins  # noqa: E402 - imported once bench/ is on sys.path
import report  # noqa: E402 - imported once bench/ is on sys.path
import scaleout  # noqa: E402 - imported once bench/ is on sys.path
import server_instructions  # noqa: E402 - imported once bench/ is on sys.path
import tracing  # noqa: E402 - imported once bench/ is on sys.path


def _edge_instructions() -> dict[str, dict[str, float]] | None:
    """{head: {part: instructions per uncached crossing}}; None without valgrind (the report says so)."""
    found = edge_instructions.measure()
    if found:
        edge_instructions.report(found)
    return found


def _request_instructions() -> dict[str, dict[str, float]] | None:
    """The bare-uvicorn bars read by instructions; None without valgrind (the report says so)."""
    if not server_instructions.available():
        print("  (valgrind not installed: no instruction count)", flush=True)
        return None
    return server_instructions.against_bare()


def main() -> None:
    duration = float(os.environ.get("BENCH_DURATION_S", "2"))
    reps = int(os.environ.get("BENCH_REPS", "5"))
    connections = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1,16,64").split(",")]
    skip = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    record: dict = {
        "date": stamp,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {"duration_s": duration, "reps": reps, "connections": connections, "skip": sorted(skip)},
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    record["failed_sections"] = {}

    def section(name: str, title: str, measure: Callable[[], None]) -> None:
        """Run one part; a part that fails is recorded with its reason and the run goes on (the
        record is written after every part, so nothing measured is lost)."""
        if name in skip:
            return
        print(f"== {title}", flush=True)
        try:
            measure()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of one part (a missing tool's exit too) is reported, never fatal to the run
            record["failed_sections"][name] = f"{type(exc).__name__}: {exc}"
            print(f"   FAILED: {record['failed_sections'][name]}", flush=True)
        (out / f"{stamp}.json").write_text(json.dumps(record, indent=1))

    def edge() -> None:
        record["edge"] = edge_cost.collect()
        record["guest_instructions"] = edge_cost.print_guest_instructions()

    section("edge", "edge boundary cost", edge)
    section(
        "edge-instructions",
        "edge crossing in instructions (callgrind, in-process)",
        lambda: record.__setitem__("edge_instructions", _edge_instructions()),
    )
    section(
        "e2e",
        f"end to end (wrk, one thread; {reps} alternating repetitions of {duration:g}s)",
        lambda: record.__setitem__("e2e", e2e.run(duration, reps, connections)),
    )
    section(
        "request-instructions",
        "instructions per request, gateway and bare uvicorn (callgrind, one keep-alive client)",
        lambda: record.__setitem__("request_instructions", _request_instructions()),
    )
    section(
        "memory", "memory", lambda: record.__setitem__("memory", [memory.measure("wasm"), memory.measure("python")])
    )
    section(
        "store", "memory with the event store full", lambda: record.__setitem__("store", [memory.store_full("wasm")])
    )
    section(
        "http",
        "the HTTP layer's checks against hostile clients",
        lambda: record.__setitem__("http", http_layer.measure(duration, reps)),
    )
    section(
        "hostile",
        "memory through the hostile-client run",
        lambda: record.__setitem__("hostile", [memory.hostile("wasm")]),
    )
    section("swap", "hot swaps under load", lambda: record.__setitem__("hot_swap", hot_swap.measure()))
    section(
        "federation",
        "relaying through an upstream",
        lambda: record.__setitem__("federation", federation.measure(duration, reps)),
    )
    section(
        "plugins",
        "plugins on the tool-call path",
        lambda: record.__setitem__("plugins", plugins.measure(duration, reps)),
    )
    section(
        "auth", "authentication on the request path", lambda: record.__setitem__("auth", auth.measure(duration, reps))
    )
    section(
        "metrics",
        "Prometheus metrics on the request path",
        lambda: record.__setitem__("metrics", metrics.measure(duration, reps)),
    )
    section(
        "tracing",
        "OpenTelemetry tracing on the request path (exporting to a local collector stub)",
        lambda: record.__setitem__("tracing", tracing.measure(duration, reps)),
    )
    section(
        "scaleout",
        "scale-out through Redis (one process in memory, one and two with Redis)",
        lambda: record.__setitem__("scaleout", scaleout.measure(duration, reps)),
    )
    md = report.write(record, out, stamp)
    print(f"\nwrote bench/results/{stamp}.json and {md.relative_to(HERE.parent)}")
    print(report.summary(record))
    if record["failed_sections"]:
        print(f"sections that failed: {', '.join(record['failed_sections'])} (the report says why)")


if __name__ == "__main__":
    main()
