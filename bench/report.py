"""The Markdown report, PNG plots and the bars of docs/benchmarks.md, from one run's record."""

from __future__ import annotations

from pathlib import Path


def _cell(rows: list[dict], workload: str, conns: int, target: str) -> dict | None:
    return next(
        (r for r in rows if r["workload"] == workload and r["connections"] == conns and r["target"] == target), None
    )


def _counts(run: dict) -> bool:
    """A repetition counts toward a ratio only with a figure and no error of any kind (a JSON-RPC
    error inside a 2xx included): errors answered fast would flatter the target."""
    return not run.get("failed") and not run.get("errors") and run["rps"] > 0


def paired_ratio(a: dict, b: dict) -> float | None:
    """Median over repetitions of a/b, each repetition's two runs measured back to back: slow drifts
    of a shared machine cancel within a pair, where they would not between separate medians. Pairs
    with a run that does not count are left out; None when no pair is left."""
    import statistics

    pairs = [x["rps"] / y["rps"] for x, y in zip(a["runs"], b["runs"], strict=False) if _counts(x) and _counts(y)]
    return statistics.median(pairs) if pairs else None


def _fmt(ratio: float | None, digits: int = 3) -> str:
    return "failed" if ratio is None else f"{ratio:.{digits}f}x"


def _met(ratio: float | None, limit: float) -> bool:
    return ratio is not None and ratio >= limit  # a bar with no figure is not met


def _num(value: float | None, spec: str) -> str:
    return "failed" if value is None else format(value, spec)


def bars(record: dict) -> list[tuple[str, str, str, bool | None]]:
    """(bar, figure, limit, met) for each bar the record can speak to."""
    out: list[tuple[str, str, str, bool | None]] = []
    edge = record.get("edge", [])
    for backend, limit in (("wasm", 15.0), ("python", 10.0)):
        worst = max((r["p50_us"] for r in edge if r["backend"] == backend), default=None)
        if worst is not None:
            out.append(
                (
                    f"edge boundary cost p50, {backend}, uncached (worst head)",
                    f"{worst:.1f} us",
                    f"<= {limit:g} us",
                    worst <= limit,
                )
            )
    # Issue 20's edge bars: the uncached crossing no slower in wasm than in Python on any head,
    # and the browser POST's wasm p50 at most 10 us.
    by_head = {(r["head"], r["backend"]): r["p50_us"] for r in edge}
    for head in dict.fromkeys(r["head"] for r in edge):
        wasm_p50, python_p50 = by_head.get((head, "wasm")), by_head.get((head, "python"))
        if wasm_p50 is not None and python_p50:
            ratio = wasm_p50 / python_p50
            out.append((f"edge uncached p50 wasm/python, {head}", f"{ratio:.2f}x", "<= 1.0x", ratio <= 1.0))
        if head.startswith("browser POST") and wasm_p50 is not None:
            out.append((f"edge uncached p50 wasm, {head}", f"{wasm_p50:.1f} us", "<= 10 us", wasm_p50 <= 10.0))
    rows = record.get("e2e", [])
    for workload in ("tools/list", "tools/call echo"):
        w, p = _cell(rows, workload, 16, "wasm-nocache"), _cell(rows, workload, 16, "python-nocache")
        if w and p:
            ratio = paired_ratio(w, p)
            out.append(
                (
                    f"{workload} wasm/python req/s with the edge cache off, c=16",
                    _fmt(ratio),
                    ">= 0.97x",
                    _met(ratio, 0.97),
                )
            )
    for workload, limit in (("tools/call echo", 0.6), ("tools/list", 0.55)):
        w, b = _cell(rows, workload, 16, "wasm"), _cell(rows, workload, 16, "bare-uvicorn")
        if w and b:
            ratio = paired_ratio(w, b)
            out.append(
                (
                    f"{workload} gateway(wasm)/bare uvicorn (fixed JSON answer) req/s, c=16",
                    _fmt(ratio, 2),
                    f">= {limit}x",
                    _met(ratio, limit),
                )
            )
    for workload in ("tools/list", "tools/call echo", "preflight"):
        p, q = _cell(rows, workload, 16, "python"), _cell(rows, workload, 16, "python-control")
        if p and q:
            out.append(
                (
                    f"noise floor: {workload} python/python (two identical servers), c=16",
                    _fmt(paired_ratio(p, q)),
                    "(1.000 on a quiet machine)",
                    None,
                )
            )
        w, p = _cell(rows, workload, 16, "wasm"), _cell(rows, workload, 16, "python")
        if w and p:
            ratio = paired_ratio(w, p)
            out.append((f"{workload} wasm/python req/s, c=16", _fmt(ratio), ">= 0.97x", _met(ratio, 0.97)))
    for workload in ("tools/list", "tools/call echo"):
        w, s = _cell(rows, workload, 16, "wasm"), _cell(rows, workload, 16, "sdk-stateful")
        if w and s:
            ratio = paired_ratio(w, s)
            out.append((f"{workload} gateway(wasm)/SDK req/s, c=16", _fmt(ratio, 2), ">= 2x", _met(ratio, 2)))
    w, c = _cell(rows, "preflight", 16, "wasm"), _cell(rows, "preflight", 16, "starlette-cors")
    if w and c:
        ratio = paired_ratio(w, c)
        out.append(("preflight wasm/Starlette CORSMiddleware req/s, c=16", _fmt(ratio, 2), ">= 1x", _met(ratio, 1)))
    http_rows = {(r["workload"], r["target"]): r for r in (record.get("http") or {}).get("rows", [])}
    for workload in ("tools/list", "tools/call echo"):
        on, plain = http_rows.get((workload, "checks on")), http_rows.get((workload, "plain uvicorn"))
        if on and plain:
            ratio = paired_ratio(on, plain)
            cpu_on, cpu_plain = on.get("cpu_us_per_request"), plain.get("cpu_us_per_request")
            cpu = f"; CPU/request {cpu_plain / cpu_on:.3f}x" if cpu_on and cpu_plain else ""
            out.append(
                (
                    f"{workload} with the HTTP layer's checks / plain uvicorn httptools, c=16",
                    _fmt(ratio) + cpu,
                    ">= 0.97x",
                    _met(ratio, 0.97),
                )
            )
    counted = (record.get("http") or {}).get("instructions")
    if counted:
        ratio = counted["plain uvicorn"] / counted["checks on"]
        out.append(
            (
                "tools/call echo instructions, plain uvicorn httptools / the HTTP layer's checks (callgrind)",
                f"{ratio:.3f}x (+{counted['checks on'] - counted['plain uvicorn']:,.0f})",
                ">= 0.97x",
                _met(ratio, 0.97),
            )
        )
    plugin_rows = {r["target"]: r for r in record.get("plugins", {}).get("rows", [])}
    base = plugin_rows.get("no plugin")
    for target, limit in (("noop pre+post", 0.95), ("tool-guard + redact + rate-limit", 0.85)):
        row = plugin_rows.get(target)
        if base and row:
            ratio = paired_ratio(row, base)
            out.append(
                (f"tools/call echo with {target} / no plugin, c=16", _fmt(ratio), f">= {limit}x", _met(ratio, limit))
            )
    auth_rows = {r["target"]: r for r in record.get("auth", [])}
    if "jwt RS256" in auth_rows and "auth off" in auth_rows:
        ratio = paired_ratio(auth_rows["jwt RS256"], auth_rows["auth off"])
        out.append(("tools/list with JWT auth (RS256) / auth off, c=16", _fmt(ratio, 2), ">= 0.9x", _met(ratio, 0.9)))
    metrics_rows = {r["target"]: r for r in record.get("metrics", [])}
    if "metrics on" in metrics_rows and "metrics off" in metrics_rows:
        ratio = paired_ratio(metrics_rows["metrics on"], metrics_rows["metrics off"])
        out.append(("tools/list with metrics on / off, c=16", _fmt(ratio), ">= 0.95x", _met(ratio, 0.95)))
        on_cpu, off_cpu = (
            metrics_rows["metrics on"].get("cpu_us_per_request"),
            metrics_rows["metrics off"].get("cpu_us_per_request"),
        )
        on_ir = metrics_rows["metrics on"].get("instructions_per_request")
        off_ir = metrics_rows["metrics off"].get("instructions_per_request")
        if on_ir and off_ir:  # deterministic: callgrind's count, the same on a busy machine
            ir_ratio = off_ir / on_ir
            out.append(
                (
                    f"tools/list instructions per request in-process, off / on ({off_ir:.0f} / {on_ir:.0f})",
                    _fmt(ir_ratio),
                    ">= 0.95x",
                    _met(ir_ratio, 0.95),
                )
            )
        if on_cpu and off_cpu:  # the steadier figure on a shared machine: gateway CPU per request
            cpu_ratio = off_cpu / on_cpu
            out.append(
                (
                    f"tools/list gateway CPU per request, off / on ({off_cpu} / {on_cpu} us), c=16",
                    _fmt(cpu_ratio),
                    ">= 0.95x",
                    _met(cpu_ratio, 0.95),
                )
            )
    tracing_rows = {r["target"]: r for r in (record.get("tracing") or {}).get("rows", [])}
    for target in ("tracing on", "tracing 10%"):
        if target in tracing_rows and "tracing off" in tracing_rows:
            ratio = paired_ratio(tracing_rows[target], tracing_rows["tracing off"])
            out.append((f"tools/list with {target} / off (OTLP to a local stub), c=16", _fmt(ratio), "(no bar)", None))
    for r in record.get("federation") or []:  # relayed through the gateway / the upstream served directly
        if r["target"].startswith("gateway "):
            name = f"relayed tools/call echo, {r['target']}, {r.get('upstream', 'stateful')} upstream / direct, c=16"
            out.append((name, _fmt(r["vs_direct"], 2), ">= 0.9x", _met(r["vs_direct"], 0.9)))
    out += _scaleout_bars(record.get("scaleout") or {})
    for m in record.get("hostile") or []:
        out.append(
            (
                f"hostile-client run ({m['mode']}): peak RSS, control calls failed",
                (
                    f"{m['peak_mib']:.0f} MiB (baseline {m['baseline_mib']:.0f}, after {m['settled_mib']:.0f}); "
                    f"{m['control_failures']}"
                ),
                f"< {m['ceiling_mib']} MiB; 0",
                m["peak_mib"] < m["ceiling_mib"] and m["control_failures"] == 0,
            )
        )
    swap = record.get("hot_swap")
    if swap:
        out.append(
            (
                (
                    f"hot swaps under load ({swap['swaps']} swaps + {swap['rollbacks']} rollbacks, "
                    f"{swap['requests']} requests)"
                ),
                f"{swap['failed']} failed",
                "0 failed",
                swap["failed"] == 0,
            )
        )
    for m in record.get("memory", []):
        out.append(
            (
                f"idle GET stream + session, {m['mode']}",
                f"{m['per_stream_kib']:.1f} KiB",
                "< 50 KiB",
                m["per_stream_kib"] < 50,
            )
        )
        out.append(
            (
                f"RSS growth after {m['sessions_churned']} sessions created+deleted, {m['mode']}",
                f"{m['churn_growth_kib'] / 1024:.1f} MiB",
                "no growth (< 2 MiB)",
                m["churn_growth_kib"] < 2048,
            )
        )
    return out


def summary(record: dict) -> str:
    lines = ["| bar | figure | limit | met |", "|---|---|---|---|"]
    for name, figure, limit, met in bars(record):
        lines.append(f"| {name} | {figure} | {limit} | {'-' if met is None else 'yes' if met else 'no'} |")
    return "\n".join(lines)


def _plot_throughput(record: dict, path: Path) -> bool:
    rows = record.get("e2e", [])
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = ["initialize", "tools/list", "tools/call echo", "preflight"]
    conns = sorted({r["connections"] for r in rows})
    targets = ["wasm", "python", "python-control", "sdk-stateful", "starlette-cors"]
    fig, axes = plt.subplots(1, len(workloads), figsize=(4 * len(workloads), 3.6), sharey=False)
    for ax, workload in zip(axes, workloads, strict=False):
        width = 0.8 / len(targets)
        for i, target in enumerate(targets):
            values = [
                (_cell(rows, workload, c, target) or {}).get("rps") or 0 for c in conns
            ]  # failed: 0 (the table says why)
            if any(values):
                ax.bar([x + i * width for x in range(len(conns))], values, width, label=target, color=f"C{i}")
        ax.set_title(workload)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(conns))], [f"c={c}" for c in conns])
        ax.set_ylabel("req/s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_edge(record: dict, path: Path) -> bool:
    edge = record.get("edge", [])
    if not edge:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(dict.fromkeys(r["head"] for r in edge))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, backend in enumerate(("wasm", "python")):
        values = [next(r["p50_us"] for r in edge if r["head"] == h and r["backend"] == backend) for h in heads]
        ax.bar([x + i * 0.4 for x in range(len(heads))], values, 0.4, label=backend)
    ax.axhline(15, color="C0", linestyle=":", linewidth=1)
    ax.axhline(10, color="C1", linestyle=":", linewidth=1)
    ax.set_xticks([x + 0.2 for x in range(len(heads))], heads, fontsize=8)
    ax.set_ylabel("p50 us per request")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(record: dict, out: Path, stamp: str) -> Path:
    md = [
        f"# mcpgw benchmark {stamp}",
        "",
        (
            f"{record['machine']['cpus']} CPUs, {record['machine']['platform']}, Python {record['machine']['python']}. "
            f"Every figure in a table was measured side by side in this one run; ratios are what carry over to "
            f"other machines."
        ),
        "",
        "## Bars (docs/benchmarks.md)",
        "",
        summary(record),
        "",
    ]
    for name, reason in record.get("failed_sections", {}).items():
        md += [f"**Section `{name}` failed:** {reason}", ""]
    if _plot_edge(record, out / f"{stamp}-edge.png"):
        md += [
            "## Edge boundary cost",
            "",
            f"![edge cost]({stamp}-edge.png)",
            "",
            "| head | backend | p50 us (crossing) | p99 us (crossing) | p50 us (cache hit) |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {r['head']} | {r['backend']} | {r['p50_us']:.2f} | {r['p99_us']:.2f} "
            f"| {r.get('cached_p50_us', 0):.2f} |"
            for r in record["edge"]
        ]
        md += [
            "",
            "Guest instructions per call (fuel, deterministic): "
            + ", ".join(f"{k}: {v:,}" for k, v in record.get("guest_instructions", {}).items()),
            "",
        ]
    if _plot_throughput(record, out / f"{stamp}-throughput.png"):
        md += [
            "## End to end",
            "",
            (
                f"wrk (Debian), one thread, {record['settings']['reps']} alternating repetitions of "
                f"{record['settings']['duration_s']:g} s per cell, medians; one server worker each (uvicorn, uvloop, "
                "httptools); tools workloads on one shared 2025-11-25 session with a unique id per request."
            ),
            "",
            f"![throughput]({stamp}-throughput.png)",
            "",
            "| workload | conns | target | req/s | p50 ms | p99 ms | errors | failed runs | edge cache hits |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r['workload']} | {r['connections']} | {r['target']} | {_num(r['rps'], '.0f')} | "
            f"{_num(r['p50_ms'], '.2f')} | {_num(r['p99_ms'], '.2f')} | {r['errors']} | "
            f"{len(r.get('failed_runs', []))} | "
            f"{'' if r.get('edge_cache_hit_share') is None else format(r['edge_cache_hit_share'], '.0%')} |"
            for r in record["e2e"]
        ]
        md += [
            "",
            "Paired ratios (median over repetitions of back-to-back runs):",
            "",
            (
                "| workload | conns | wasm/python | python/python-control | wasm/SDK | wasm/Starlette CORS "
                "| wasm/bare uvicorn | wasm/python, edge cache off |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        rows = record["e2e"]
        for workload in ("initialize", "tools/list", "tools/call echo", "preflight"):
            for conns in record["settings"]["connections"]:
                w = _cell(rows, workload, conns, "wasm")
                if w is None:
                    continue
                cells = []
                for first, other in (
                    ("wasm", "python"),
                    ("python", "python-control"),
                    ("wasm", "sdk-stateful"),
                    ("wasm", "starlette-cors"),
                    ("wasm", "bare-uvicorn"),
                    ("wasm-nocache", "python-nocache"),
                ):
                    f, o = _cell(rows, workload, conns, first), _cell(rows, workload, conns, other)
                    cells.append(_fmt(paired_ratio(f, o)) if f and o else "")
                md.append(f"| {workload} | {conns} | " + " | ".join(cells) + " |")
        md.append("")
    if record.get("memory"):
        md += [
            "## Memory (resident set)",
            "",
            "| mode | idle MiB | + streams | per stream KiB | churn before/after MiB |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {m['mode']} | {m['idle_kib'] / 1024:.1f} | {m['streams']}: {m['with_streams_kib'] / 1024:.1f} MiB | "
            f"{m['per_stream_kib']:.1f} | {m['before_churn_kib'] / 1024:.1f} / {m['after_churn_kib'] / 1024:.1f} "
            f"({m['sessions_churned']} sessions) |"
            for m in record["memory"]
        ]
        md.append("")
    if record.get("store"):
        md += [
            "## Memory with the event store full at its budget",
            "",
            "| mode | idle MiB | events produced MiB | retained MiB (budget) | RSS MiB |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {m['mode']} | {m['idle_kib'] / 1024:.1f} | {m['produced_bytes'] / 2**20:.0f} | "
            f"{(m['retained_bytes'] or 0) / 2**20:.1f} ({(m['budget_bytes'] or 0) / 2**20:.0f}) | "
            f"{m['store_full_kib'] / 1024:.1f} |"
            for m in record["store"]
        ]
        md.append("")
    if record.get("hostile"):
        md += [
            "## Memory through the hostile-client run",
            "",
            (
                "A gateway with default settings; from 127.0.0.2: retention flooded (300 x 1 MiB), sessions "
                "until refused, 400 stalled heads, an 80 MiB header; a control client on 127.0.0.1 throughout "
                "(host-python/tests/test_hostile_client.py's client)."
            ),
            "",
            "| mode | baseline MiB | peak MiB (ceiling) | right after MiB | settled MiB | control calls (failed) |",
            "|---|---|---|---|---|---|",
        ]
        md += [
            f"| {m['mode']} | {m['baseline_mib']:.1f} | {m['peak_mib']:.1f} ({m['ceiling_mib']}) | "
            f"{m['after_mib']:.1f} | {m['settled_mib']:.1f} (+{m['settle_s']:g} s) | "
            f"{m['control_calls']} ({m['control_failures']}) |"
            for m in record["hostile"]
        ]
        md.append("")
    if record.get("plugins"):
        md += [
            "## Plugins on the tool-call path",
            "",
            "tools/call `echo` at 16 connections (wasm edge), paired against the same gateway with no plugin.",
            "",
            "| plugins | req/s | p50 ms | x of no plugin (paired) | errors |",
            "|---|---|---|---|---|",
        ]
        rows = record["plugins"]["rows"]
        base = next((r for r in rows if r["target"] == "no plugin"), None)
        for r in rows:
            ratio = paired_ratio(r, base) if base else None
            md.append(
                f"| {r['target']} | {_num(r['rps'], '.0f')} | {_num(r['p50_ms'], '.2f')} | {_fmt(ratio, 2)} | "
                f"{r['errors']} |"
            )
        md += ["", "| echo of | no plugin ms | tool-guard + redact + rate-limit ms |", "|---|---|---|"]
        md += [
            f"| {e['bytes'] // 1024} KB | {e['no plugin']:.2f} | {e['tool-guard + redact + rate-limit']:.2f} |"
            for e in record["plugins"]["redaction"]
        ]
        md.append("")
    if record.get("federation"):
        md += [
            "## Relaying through an upstream",
            "",
            (
                "tools/call `echo` on the SDK's server directly, and through the gateway (python edge) to that "
                "server as a Streamable HTTP upstream, the server stateful, then stateless; one session each (none "
                "direct to the stateless one), so one upstream session carries every relayed call. FastMCP's "
                "proxy (pinned, its own virtualenv) in front of the same server is a user's "
                "alternative."
            ),
            "",
            (
                "CPU per call: what the target's process spent per answered call (`/proc/<pid>/stat`), and what the "
                "SDK server spent meanwhile; with the cores shared, the steadier figure."
            ),
            "",
            "| upstream | target | conns | req/s | p50 ms | x of direct | CPU us/call | upstream CPU us | errors |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r.get('upstream', 'stateful')} | {r['target']} | {r['connections']} | {_num(r['rps'], '.0f')} | "
            f"{_num(r['p50_ms'], '.2f')} | {_num(r['vs_direct'], '.2f')} | {_num(r.get('cpu_us'), '.0f')} | "
            f"{_num(r.get('upstream_cpu_us'), '.0f')} | {r['errors']} |"
            for r in record["federation"]
        ]
        md.append("")
    md += _scaleout_section(record.get("scaleout") or {})
    path = out / f"{stamp}.md"
    path.write_text("\n".join(md))
    return path


def _scaleout_bars(scale: dict) -> list[tuple[str, str, str, bool | None]]:
    """Scale-out through Redis: one process with Redis against one in memory, two with Redis
    against one with Redis (same state backend: what the second process buys)."""
    out: list[tuple[str, str, str, bool | None]] = []
    rows = scale.get("rows", [])
    conns = scale.get("connections", 16)
    for workload in ("tools/list", "tools/call echo"):
        memory = _cell(rows, workload, conns, "memory, 1 process")
        one = _cell(rows, workload, conns, "redis, 1 process")
        two = _cell(rows, workload, conns, "redis, 2 processes")
        if memory and one:
            ratio = paired_ratio(one, memory)
            name = f"{workload}, 1 process with Redis / in memory, c={conns}"
            out.append((name, _fmt(ratio, 2), ">= 0.8x", _met(ratio, 0.8)))
            if memory.get("gateway_cpu_us") and one.get("gateway_cpu_us"):
                # CPU per answered request is steadier than req/s when other work shares the cores.
                cpu_ratio = memory["gateway_cpu_us"] / (one["gateway_cpu_us"] + (one.get("redis_cpu_us") or 0))
                name = f"{workload}, by CPU per request: in memory / with Redis (gateway + redis-server), c={conns}"
                out.append((name, _fmt(cpu_ratio, 2), "(the 0.8x bar, read by CPU)", None))
        if one and two:
            ratio = paired_ratio(two, one)
            name = f"{workload}, 2 processes / 1, both with Redis, c={conns} ({scale.get('cpus')} cores, shared)"
            out.append((name, _fmt(ratio, 2), ">= 1.3x", _met(ratio, 1.3)))
    control_one = _cell(rows, "tools/list 2026", conns, "redis, 1 process")
    control_two = _cell(rows, "tools/list 2026", conns, "redis, 2 processes")
    if control_one and control_two:
        ratio = paired_ratio(control_two, control_one)
        name = f"control: stateless 2026-07-28 tools/list (no Redis on the path), 2 processes / 1, c={conns}"
        out.append((name, _fmt(ratio, 2), "(what the machine gives a second process)", None))
    resume = scale.get("resume")
    if resume:
        worst = resume.get("max_s")
        trials = f"{len(resume['latencies_s'])}/{resume['trials']} trials"
        name = f"resume on another process after a SIGKILL: the lost request answered ({trials})"
        met = worst is not None and not resume["failures"] and worst <= resume["bound_s"]
        out.append((name, "failed" if worst is None else f"max {worst:.2f} s", f"<= {resume['bound_s']:g} s", met))
    return out


def _scaleout_section(scale: dict) -> list[str]:
    if not scale:
        return []
    md = [
        "## Scale-out through Redis",
        "",
        f"One session, {scale.get('connections')} connections (wrk, one thread); {scale.get('core_split')}.",
        "",
        "| workload | target | req/s | p50 ms | x of memory (paired) | gateway CPU µs/req | redis CPU µs/req | errs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = scale.get("rows", [])
    for r in rows:
        memory = _cell(rows, r["workload"], r["connections"], "memory, 1 process")
        ratio = paired_ratio(r, memory) if memory else None
        md.append(
            f"| {r['workload']} | {r['target']} | {_num(r['rps'], '.0f')} | {_num(r['p50_ms'], '.2f')} | "
            f"{_fmt(ratio, 2)} | {_num(r.get('gateway_cpu_us'), '.0f')} | {_num(r.get('redis_cpu_us'), '.0f')} | "
            f"{r['errors']} |"
        )
    if scale.get("rows_failed"):
        md += ["", f"Throughput failed: {scale['rows_failed']}"]
    resume = scale.get("resume") or {}
    if resume:
        figures = ", ".join(f"{s:.2f}" for s in resume["latencies_s"]) or "none"
        md += ["", f"Resume after a SIGKILL (seconds until the lost request's error on another process): {figures}."]
        md += [f"- failed trial: {f}" for f in resume["failures"]]
    md.append("")
    return md
