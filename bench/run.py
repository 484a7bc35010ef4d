"""`make bench`: every benchmark side by side in one run, then a JSON record, a Markdown report
and PNG plots under bench/results/. Figures are ratios measured in the same run: these machines
are shared and noisy, so only side-by-side numbers mean anything.

Environment: BENCH_DURATION_S (per wrk run, default 2), BENCH_REPS (default 5),
BENCH_CONNECTIONS (default 1,16,64), BENCH_SKIP (comma list of edge,e2e,memory,swap,federation).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import e2e  # noqa: E402 - imported once bench/ is on sys.path
import edge_cost  # noqa: E402 - imported once bench/ is on sys.path
import federation  # noqa: E402 - imported once bench/ is on sys.path
import hot_swap  # noqa: E402 - imported once bench/ is on sys.path
import memory  # noqa: E402 - imported once bench/ is on sys.path
import report  # noqa: E402 - imported once bench/ is on sys.path


def main() -> None:
    duration = float(os.environ.get("BENCH_DURATION_S", "2"))
    reps = int(os.environ.get("BENCH_REPS", "5"))
    connections = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1,16,64").split(",")]
    skip = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    record: dict = {
        "date": stamp,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {"duration_s": duration, "reps": reps, "connections": connections},
    }
    if "edge" not in skip:
        print("== edge boundary cost", flush=True)
        record["edge"] = edge_cost.collect()
        record["guest_instructions"] = edge_cost.print_guest_instructions()
    if "e2e" not in skip:
        print(f"== end to end (wrk, one thread; {reps} alternating repetitions of {duration:g}s)", flush=True)
        record["e2e"] = e2e.run(duration, reps, connections)
    if "memory" not in skip:
        print("== memory", flush=True)
        record["memory"] = [memory.measure("wasm"), memory.measure("python")]
    if "swap" not in skip:
        print("== hot swaps under load", flush=True)
        record["hot_swap"] = hot_swap.measure()
    if "federation" not in skip:
        print("== relaying through an upstream", flush=True)
        record["federation"] = federation.measure(duration, reps)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{stamp}.json").write_text(json.dumps(record, indent=1))
    md = report.write(record, out, stamp)
    print(f"\nwrote bench/results/{stamp}.json and {md.relative_to(HERE.parent)}")
    print(report.summary(record))


if __name__ == "__main__":
    main()
