"""The Markdown report and PNG plots of one `make bench` run, from its record. At the top, one
"Bars" table: every bar of bench/bars.py (the one place a threshold is written) next to the
figure this run measured for it, met or not; a bar this run has no figure for says why (its
section skipped or failed) and is not met. Then the figures read beside the bars (noise floor,
edge cache share, controls), then each section's own tables. Rendering one section can fail
without losing the others."""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bars import BAR, BARS


def _cell(rows: list[dict], workload: str, conns: int, target: str) -> dict | None:
    return next(
        (r for r in rows if r["workload"] == workload and r["connections"] == conns and r["target"] == target), None
    )


def _counts(run: dict) -> bool:
    """A repetition counts toward a ratio only with a figure and no error of any kind (a JSON-RPC
    error inside a 2xx included): errors answered fast would flatter the target."""
    return not run.get("failed") and not run.get("errors") and (run.get("rps") or 0) > 0


def paired_ratio(a: dict, b: dict) -> float | None:
    """Median over repetitions of a/b, each repetition's two runs measured back to back: slow drifts
    of a shared machine cancel within a pair, where they would not between separate medians. Pairs
    with a run that does not count are left out; None when no pair is left."""
    pairs = [x["rps"] / y["rps"] for x, y in zip(a["runs"], b["runs"], strict=False) if _counts(x) and _counts(y)]
    return statistics.median(pairs) if pairs else None


def _fmt(ratio: float | None, digits: int = 3) -> str:
    return "failed" if ratio is None else f"{ratio:.{digits}f}x"


def _num(value: float | None, spec: str) -> str:
    return "failed" if value is None else format(value, spec)


def _cache_note(a: dict | None, b: dict | None) -> str:
    """The share of each target's timed requests its edge answered from the outcome cache."""
    shares = [(row or {}).get("edge_cache_hit_share") for row in (a, b)]
    if any(share is None for share in shares):
        return ""
    return f" (edge cache answered {shares[0]:.0%} / {shares[1]:.0%})"


def _not_recorded(record: dict, field: str, section: str, none: str) -> str:
    """Why the record has no `field`: its section skipped or failed, `none` (the section ran and
    recorded None: what was missing), or a record from a run before the field existed."""
    failed = (record.get("failed_sections") or {}).get(section)
    if failed:
        return f"section `{section}` failed ({failed[:120]})"
    if section in (record.get("settings") or {}).get("skip", []):
        return f"section `{section}` skipped (BENCH_SKIP)"
    if field in record:
        return none
    return "not in this record (a run before it was measured)"


def _edge_instruction_ratio(record: dict, head: str) -> str:
    """The uncached crossing by instructions, wasm / python, for one head (load-independent)."""
    counts = (record.get("edge_instructions") or {}).get(head) or {}
    if counts.get("wasm") and counts.get("python"):
        wasm, python = counts["wasm"], counts["python"]
        return f" {wasm / python:.2f}x ({wasm / 1000:.1f}k / {python / 1000:.1f}k)"
    if record.get("edge_instructions"):
        return ": no count for this head"
    return ": " + _not_recorded(record, "edge_instructions", "edge-instructions", "valgrind not installed")


def _bare_notes(record: dict, workload: str, w: dict | None, b: dict | None) -> str:
    """The gateway / bare uvicorn ratio read by each server's CPU per answered request and by
    instructions per request (callgrind, section `request-instructions`)."""
    w_cpu, b_cpu = (w or {}).get("cpu_us_per_request"), (b or {}).get("cpu_us_per_request")
    if w_cpu and b_cpu:
        note = f"; by CPU per request {b_cpu / w_cpu:.3f}x ({w_cpu:.1f} / {b_cpu:.1f} µs)"
    elif w is not None and b is not None and ("cpu_us_per_request" in w or "cpu_us_per_request" in b):
        note = "; by CPU per request: no repetition without an error"
    else:
        note = "; by CPU per request: not in this record (a run before it was measured)"
    counts = (record.get("request_instructions") or {}).get(workload) or {}
    if counts.get("gateway") and counts.get("bare-uvicorn"):
        gw, bare = counts["gateway"], counts["bare-uvicorn"]
        return note + f"; by instructions {bare / gw:.3f}x ({gw / 1000:.1f}k / {bare / 1000:.1f}k)"
    why = _not_recorded(record, "request_instructions", "request-instructions", "valgrind not installed")
    return note + f"; by instructions: {why}"


@dataclass
class Figure:
    """One figure read against a bar (`key` in bench/bars.py), or beside the bars (`key` None)."""

    key: str | None
    case: str  # which case of the bar (a workload, a head, a mode, a way of reading it)
    value: float | None  # what the bar's limit is compared with; None: no figure (not met)
    text: str = ""  # how the figure reads; default: value in the bar's unit

    def shown(self) -> str:
        if self.text:
            return self.text
        if self.value is None:
            return "failed: no repetition without an error"
        unit = BAR[self.key].unit if self.key else ""
        if unit == "x":
            return f"{self.value:.3f}x"
        if unit == "us":
            return f"{self.value:.1f} µs"
        if unit == "failed":
            return f"{self.value:g} failed"
        return f"{self.value:.1f} {unit}"

    def met(self) -> bool | None:
        return None if self.key is None else BAR[self.key].met(self.value)


def _ratio(key: str | None, case: str, a: dict | None, b: dict | None, note: str = "") -> list[Figure]:
    """A paired req/s ratio a/b; nothing when either cell is absent (the bar then says why)."""
    if a is None or b is None:
        return []
    ratio = paired_ratio(a, b)
    text = "" if ratio is None else f"{ratio:.3f}x{note}"
    if ratio is None:
        failed = [f for row in (a, b) for f in row.get("failed_runs", [])]
        errors = a.get("errors", 0) + b.get("errors", 0)
        text = f"failed: {errors} errors" + (f"; {failed[0]}" if failed else "")
    return [Figure(key, case, ratio, text)]


def _edge_figures(record: dict) -> list[Figure]:
    edge = record.get("edge") or []
    out: list[Figure] = []
    for backend, key in (("wasm", "edge-wasm"), ("python", "edge-python")):
        rows = [r for r in edge if r["backend"] == backend]
        if rows:
            worst = max(rows, key=lambda r: r["p50_us"])
            out.append(Figure(key, f"worst: {worst['head']}", worst["p50_us"]))
    by_head = {(r["head"], r["backend"]): r["p50_us"] for r in edge}
    for head in dict.fromkeys(r["head"] for r in edge):
        wasm_p50, python_p50 = by_head.get((head, "wasm")), by_head.get((head, "python"))
        if wasm_p50 is not None and python_p50:
            text = f"{wasm_p50 / python_p50:.2f}x ({wasm_p50:.1f} / {python_p50:.1f} µs)"
            # Judged by p50; beside it, the same crossing read by instructions (load-independent).
            text += f"; by instructions{_edge_instruction_ratio(record, head)}"
            out.append(Figure("edge-ratio", head, wasm_p50 / python_p50, text))
        if head.startswith("browser POST") and wasm_p50 is not None:
            out.append(Figure("edge-browser", head, wasm_p50))
    for head, count in (record.get("guest_instructions") or {}).items():
        out.append(Figure(None, f"guest instructions per call (fuel), {head}", None, f"{count:,}"))
    return out


def _e2e_figures(record: dict) -> list[Figure]:
    rows = record.get("e2e") or []
    out: list[Figure] = []
    c = 16

    def cell(workload: str, target: str) -> dict | None:
        return _cell(rows, workload, c, target)

    for workload, key in (("tools/call echo", "echo-vs-bare"), ("tools/list", "list-vs-bare")):
        # Judged by req/s; beside it, the same ratio read by each server's CPU per request.
        w, b = cell(workload, "wasm"), cell(workload, "bare-uvicorn")
        out += _ratio(key, workload, w, b, _bare_notes(record, workload, w, b))
        counts = (record.get("request_instructions") or {}).get(workload) or {}
        if (w is None or b is None) and counts.get("gateway") and counts.get("bare-uvicorn"):
            # No req/s figure to show it beside (e2e skipped or failed): the count on its own.
            gw, bare = counts["gateway"], counts["bare-uvicorn"]
            text = f"{bare / gw:.3f}x ({gw / 1000:.1f}k / {bare / 1000:.1f}k)"
            out.append(Figure(None, f"{workload}, gateway / bare uvicorn by instructions per request", None, text))
    for workload in ("tools/list", "tools/call echo"):
        w, p = cell(workload, "wasm-nocache"), cell(workload, "python-nocache")
        out += _ratio("nocache", workload, w, p, _cache_note(w, p))
    for workload in ("tools/list", "tools/call echo"):
        out += _ratio("sdk", workload, cell(workload, "wasm"), cell(workload, "sdk-stateful"))
    out += _ratio("preflight", "preflight", cell("preflight", "wasm"), cell("preflight", "starlette-cors"))
    for workload in ("tools/list", "tools/call echo", "preflight"):
        w, p = cell(workload, "wasm"), cell(workload, "python")
        out += _ratio("wasm-python", workload, w, p, _cache_note(w, p))
        out += _ratio(
            None,
            f"noise floor: {workload}, python / python-control (two identical gateways)",
            p,
            cell(workload, "python-control"),
        )
    for target in ("wasm", "python", "wasm-nocache", "python-nocache"):
        shares = [
            r["edge_cache_hit_share"]
            for r in rows
            if r["target"] == target and r.get("edge_cache_hit_share") is not None
        ]
        if shares:
            low, high = f"{min(shares):.0%}", f"{max(shares):.0%}"
            spread = low if low == high else f"{low} to {high}"
            text = f"{spread} (over {len(shares)} cells)"
            out.append(Figure(None, f"share of timed requests answered from the edge cache, {target}", None, text))
    return out


def _http_figures(record: dict) -> list[Figure]:
    http = record.get("http") or {}
    rows = {(r["workload"], r["target"]): r for r in http.get("rows", [])}
    out: list[Figure] = []
    for workload in ("tools/list", "tools/call echo"):
        on, plain = rows.get((workload, "checks on")), rows.get((workload, "plain uvicorn"))
        out += _ratio("http-layer", f"{workload}, req/s", on, plain)
        if on and plain and on.get("cpu_us_per_request") and plain.get("cpu_us_per_request"):
            ratio = plain["cpu_us_per_request"] / on["cpu_us_per_request"]
            out.append(Figure("http-layer", f"{workload}, read by gateway CPU per request (plain / checks)", ratio))
    counted = http.get("instructions")
    if counted:
        ratio = counted["plain uvicorn"] / counted["checks on"]
        extra = counted["checks on"] - counted["plain uvicorn"]
        text = f"{ratio:.3f}x (+{extra:,.0f} instructions)"
        out.append(
            Figure("http-layer", "tools/call echo, read by instructions (callgrind, plain / checks)", ratio, text)
        )
    return out


def _plugin_figures(record: dict) -> list[Figure]:
    rows = {r["target"]: r for r in (record.get("plugins") or {}).get("rows", [])}
    out: list[Figure] = []
    for target, key in (("noop pre+post", "plugin-noop"), ("tool-guard + redact + rate-limit", "plugin-three")):
        out += _ratio(key, "req/s", rows.get(target), rows.get("no plugin"))
    counted = (record.get("plugins") or {}).get("instructions")
    if counted and counted.get("no plugin"):
        for target, key in (("noop pre+post", "plugin-noop"), ("tool-guard + redact + rate-limit", "plugin-three")):
            if counted.get(target):
                ratio = counted["no plugin"] / counted[target]
                extra = counted[target] - counted["no plugin"]
                text = f"{ratio:.3f}x (+{extra:,.0f} instructions)"
                out.append(Figure(key, "read by instructions (callgrind, no plugin / plugins)", ratio, text))
    return out


def _auth_metrics_tracing_figures(record: dict) -> list[Figure]:
    out: list[Figure] = []
    auth = {r["target"]: r for r in record.get("auth") or []}
    out += _ratio("auth", "req/s", auth.get("jwt RS256"), auth.get("auth off"))
    metrics = {r["target"]: r for r in record.get("metrics") or []}
    on, off = metrics.get("metrics on"), metrics.get("metrics off")
    out += _ratio("metrics", "req/s", on, off)
    if on and off:
        if on.get("instructions_per_request") and off.get("instructions_per_request"):
            on_ir, off_ir = on["instructions_per_request"], off["instructions_per_request"]
            text = f"{off_ir / on_ir:.3f}x ({off_ir:,.0f} / {on_ir:,.0f})"
            out.append(
                Figure("metrics", "read by instructions per request in-process (off / on)", off_ir / on_ir, text)
            )
        if on.get("cpu_us_per_request") and off.get("cpu_us_per_request"):
            on_cpu, off_cpu = on["cpu_us_per_request"], off["cpu_us_per_request"]
            text = f"{off_cpu / on_cpu:.3f}x ({off_cpu} / {on_cpu} µs)"
            out.append(Figure("metrics", "read by gateway CPU per request (off / on)", off_cpu / on_cpu, text))
    tracing = {r["target"]: r for r in (record.get("tracing") or {}).get("rows", [])}
    for target in ("tracing on", "tracing 10%"):
        out += _ratio(
            None,
            f"tools/list with {target} / off (OTLP to a local stub), c=16 (no bar)",
            tracing.get(target),
            tracing.get("tracing off"),
        )
    return out


def _relay_figures(record: dict) -> list[Figure]:
    out: list[Figure] = []
    for r in record.get("federation") or []:  # relayed through the gateway / the upstream served directly
        case = f"{r['target']}, {r.get('upstream', 'stateful')} upstream"
        if r["vs_direct"] is None:
            why = (r.get("failed_runs") or [f"{r.get('errors', 0)} errors"])[0]
            text = f"failed: {why}"
        else:
            text = f"{r['vs_direct']:.3f}x"
            if r.get("cpu_us") is not None:
                text += f" (CPU/call {r['cpu_us']} µs, upstream {r.get('upstream_cpu_us')} µs)"
        if r["target"].startswith("gateway "):
            out.append(Figure("relay", case, r["vs_direct"], text))
        elif r["target"] != "sdk direct":
            out.append(Figure(None, f"relay, a user's alternative: {case} / direct", None, text))
    return out


def _scaleout_figures(record: dict) -> list[Figure]:
    """One process with Redis against one in memory; two with Redis against one with Redis (same
    state backend: what the second process buys); the resume after a kill."""
    scale = record.get("scaleout") or {}
    rows = scale.get("rows", [])
    conns = scale.get("connections", 16)
    out: list[Figure] = []
    for workload in ("tools/list", "tools/call echo"):
        memory = _cell(rows, workload, conns, "memory, 1 process")
        one = _cell(rows, workload, conns, "redis, 1 process")
        two = _cell(rows, workload, conns, "redis, 2 processes")
        out += _ratio("redis-one", f"{workload}, req/s", one, memory)
        if memory and one and memory.get("gateway_cpu_us") and one.get("gateway_cpu_us"):
            # CPU per answered request is steadier than req/s when other work shares the cores.
            ratio = memory["gateway_cpu_us"] / (one["gateway_cpu_us"] + (one.get("redis_cpu_us") or 0))
            out.append(Figure("redis-one", f"{workload}, read by CPU per request (gateway + redis-server)", ratio))
        out += _ratio("redis-two", f"{workload}, req/s ({scale.get('cpus')} cores, shared)", two, one)
    out += _ratio(
        None,
        "control: stateless 2026-07-28 tools/list (no Redis on its path), 2 processes / 1: what the machine gives "
        "a second process",
        _cell(rows, "tools/list 2026", conns, "redis, 2 processes"),
        _cell(rows, "tools/list 2026", conns, "redis, 1 process"),
    )
    for target in ("memory, 1 process", "redis, 1 process", "redis, 2 processes"):
        init = _cell(rows, "initialize", conns, target)
        if init:
            out.append(Figure(None, f"sessions created per second, {target}", None, _num(init["rps"], ",.0f")))
    resume = scale.get("resume")
    if resume:
        worst = resume.get("max_s")
        if resume["failures"]:
            worst = None  # a trial that failed is a trial past the bound
        trials = f"{len(resume['latencies_s'])}/{resume['trials']} trials"
        text = f"max {resume['max_s']:.2f} s ({trials})" if resume.get("max_s") is not None else f"failed ({trials})"
        if resume["failures"]:
            text += f"; failed: {resume['failures'][0]}"
        out.append(Figure("resume", "the lost request's error on another process", worst, text))
    return out


def _memory_figures(record: dict) -> list[Figure]:
    out: list[Figure] = []
    for m in record.get("memory") or []:
        out.append(Figure("idle-stream", m["mode"], m["per_stream_kib"]))
        out.append(
            Figure(
                "churn",
                f"{m['mode']}, {m['sessions_churned']:,} sessions",
                m["churn_growth_kib"] / 1024,
                f"{m['churn_growth_kib'] / 1024:.1f} MiB",
            )
        )
    for m in record.get("hostile") or []:
        text = f"{m['peak_mib']:.0f} MiB (baseline {m['baseline_mib']:.0f}, settled {m['settled_mib']:.0f})"
        out.append(Figure("hostile-rss", m["mode"], m["peak_mib"], text))
        text = f"{m['control_failures']} of {m['control_calls']}"
        out.append(Figure("hostile-control", m["mode"], m["control_failures"], text))
    swap = record.get("hot_swap")
    if swap:
        failed_runs = swap.get("failed_runs", [])
        # A wrk run that produced no figure hides its requests: the bar is not met on its word.
        value = None if failed_runs else swap["failed"]
        text = (
            f"{swap['failed']} of {swap['requests']:,} requests ({swap['swaps']} swaps + {swap['rollbacks']} rollbacks)"
        )
        if failed_runs:
            text += f"; {len(failed_runs)} load runs failed: {failed_runs[0]}"
        out.append(Figure("hot-swap", "tools/list, edge cache off", value, text))
    return out


SECTION_FIGURES: tuple[Callable[[dict], list[Figure]], ...] = (
    _relay_figures,
    _e2e_figures,
    _edge_figures,
    _memory_figures,
    _http_figures,
    _plugin_figures,
    _auth_metrics_tracing_figures,
    _scaleout_figures,
)


def figures(record: dict) -> list[Figure]:
    """Every figure the record gives, against its bar or beside the bars. One section's figures
    that cannot be computed (a record from an older or broken run) become one line saying so."""
    out: list[Figure] = []
    for compute in SECTION_FIGURES:
        try:
            out += compute(record)
        except Exception as exc:  # noqa: BLE001 - one section's figures must not lose the others
            out.append(Figure(None, f"figures of {compute.__name__[1:-8]} could not be read", None, repr(exc)))
    return out


def _missing(record: dict, section: str) -> str:
    """Why a bar has no figure."""
    failed = (record.get("failed_sections") or {}).get(section)
    if failed:
        return f"not measured: section `{section}` failed ({failed[:120]})"
    if section in (record.get("settings") or {}).get("skip", []):
        return f"not measured: section `{section}` skipped (BENCH_SKIP)"
    return f"not measured: section `{section}` gave no figure for it"


def bars(record: dict) -> list[tuple[str, str, str, str, bool]]:
    """(bar, case, figure, limit, met) for every bar of bench/bars.py, in its order: one row per
    figure read against it, or one row saying why there is none (not met)."""
    found = figures(record)
    out: list[tuple[str, str, str, str, bool]] = []
    for bar in BARS:
        mine = [f for f in found if f.key == bar.key]
        label = f"{bar.what} [{bar.source}]"
        if not mine:
            out.append((label, "", _missing(record, bar.section), bar.limit_text(), False))
        for i, f in enumerate(mine):
            out.append((label if i == 0 else "", f.case, f.shown(), bar.limit_text(), bool(f.met())))
    return out


def summary(record: dict) -> str:
    rows = bars(record)
    met = sum(1 for row in rows if row[4])
    unmeasured = sum(1 for row in rows if row[2].startswith("not measured"))
    lines = [
        (
            f"**{met} of {len(rows)} figures meet their bar** ({len(BARS)} bars, bench/bars.py; "
            f"{unmeasured} without a figure in this run)."
        ),
        "",
        "| bar [set by] | case | figure | limit | met |",
        "|---|---|---|---|---|",
    ]
    for name, case, figure, limit, ok in rows:
        lines.append(f"| {name} | {case} | {figure} | {limit} | {'yes' if ok else '**no**'} |")
    beside = [f for f in figures(record) if f.key is None]
    if beside:
        lines += ["", "Read beside the bars (no bar of their own):", "", "| figure | value |", "|---|---|"]
        lines += [f"| {f.case} | {f.shown()} |" for f in beside]
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
        if ax.get_legend_handles_labels()[0]:  # a workload with every target failed has no bar to name
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
        values = [next((r["p50_us"] for r in edge if r["head"] == h and r["backend"] == backend), 0) for h in heads]
        ax.bar([x + i * 0.4 for x in range(len(heads))], values, 0.4, label=backend)
    ax.axhline(BAR["edge-wasm"].limit, color="C0", linestyle=":", linewidth=1)
    ax.axhline(BAR["edge-python"].limit, color="C1", linestyle=":", linewidth=1)
    ax.set_xticks([x + 0.2 for x in range(len(heads))], heads, fontsize=8)
    ax.set_ylabel("p50 us per request")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _edge_section(record: dict, out: Path, stamp: str) -> list[str]:
    if not record.get("edge"):
        if not record.get("edge_instructions"):
            return []
        return ["## Edge boundary cost", "", *_edge_instructions_table(record)]
    md = ["## Edge boundary cost", ""]
    if _plotted(_plot_edge, record, out / f"{stamp}-edge.png", md):
        md += [f"![edge cost]({stamp}-edge.png)", ""]
    md += [
        "| head | backend | p50 us (crossing) | p99 us (crossing) | p50 us (cache hit) |",
        "|---|---|---|---|---|",
    ]
    md += [
        f"| {r['head']} | {r['backend']} | {r['p50_us']:.2f} | {r['p99_us']:.2f} | {r.get('cached_p50_us', 0):.2f} |"
        for r in record["edge"]
    ]
    md += [
        "",
        "Guest instructions per call (fuel, deterministic): "
        + ", ".join(f"{k}: {v:,}" for k, v in record.get("guest_instructions", {}).items()),
        "",
    ]
    return md + _edge_instructions_table(record)


def _edge_instructions_table(record: dict) -> list[str]:
    """The uncached crossing in instructions (bench/edge_instructions.py: callgrind, in-process,
    (1,500 - 500 calls) / 1,000): the reading a shared machine does not disturb."""
    counts = record.get("edge_instructions")
    md = ["### Edge crossing in instructions", ""]
    if not counts:
        why = _not_recorded(record, "edge_instructions", "edge-instructions", "valgrind not installed")
        return [*md, f"Not measured: {why}.", ""]
    md += [
        (
            "Instructions per uncached crossing (callgrind, in-process; load-independent, so this ratio "
            "is the steady reading beside the p50 bar). The wasm crossing's parts: the head written, the "
            "component call, the outcome read."
        ),
        "",
        "| head | wasm | python | wasm/python | wasm's parts: head / call / outcome |",
        "|---|---|---|---|---|",
    ]
    for head, parts in counts.items():
        wasm, python = parts.get("wasm"), parts.get("python")
        ratio = _fmt(wasm / python, 2) if wasm and python else "failed"
        split = " / ".join(_num(parts.get(p), ",.0f") for p in ("head", "call", "outcome"))
        md.append(f"| {head} | {_num(wasm, ',.0f')} | {_num(python, ',.0f')} | {ratio} | {split} |")
    return [*md, ""]


def _e2e_section(record: dict, out: Path, stamp: str) -> list[str]:
    if not record.get("e2e"):
        return []
    md: list[str] = []
    md += [
        "## End to end",
        "",
        (
            f"wrk (Debian), one thread, {record['settings']['reps']} alternating repetitions of "
            f"{record['settings']['duration_s']:g} s per cell, medians; one server worker each (uvicorn, uvloop, "
            "httptools); tools workloads on one shared 2025-11-25 session with a unique id per request."
        ),
        "",
    ]
    if _plotted(_plot_throughput, record, out / f"{stamp}-throughput.png", md):
        md += [f"![throughput]({stamp}-throughput.png)", ""]
    md += [
        (
            "| workload | conns | target | req/s | p50 ms | p99 ms | errors | failed runs | edge cache hits "
            "| CPU µs/request |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['workload']} | {r['connections']} | {r['target']} | {_num(r['rps'], '.0f')} | "
        f"{_num(r['p50_ms'], '.2f')} | {_num(r['p99_ms'], '.2f')} | {r['errors']} | "
        f"{len(r.get('failed_runs', []))} | "
        f"{'' if r.get('edge_cache_hit_share') is None else format(r['edge_cache_hit_share'], '.0%')} | "
        f"{'' if r.get('cpu_us_per_request') is None else format(r['cpu_us_per_request'], '.1f')} |"
        for r in record["e2e"]
    ]
    md += [
        "",
        (
            "CPU µs/request: the server process's CPU time (user + system, /proc/<pid>/stat around each run) per "
            "answered request, median of the repetitions without an error: the steadier figure on a shared "
            "machine (the bare-uvicorn bars read it beside req/s, and the instructions per request of section "
            "`request-instructions`: callgrind, one keep-alive client, each server under valgrind)."
        ),
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
    return md


def _memory_section(record: dict, out: Path, stamp: str) -> list[str]:
    if not (record.get("memory")):
        return []
    md: list[str] = []
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
    return md


def _store_section(record: dict, out: Path, stamp: str) -> list[str]:
    if not (record.get("store")):
        return []
    md: list[str] = []
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
    return md


def _hostile_section(record: dict, out: Path, stamp: str) -> list[str]:
    if not (record.get("hostile")):
        return []
    md: list[str] = []
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
    return md


def _plugins_section(record: dict, out: Path, stamp: str) -> list[str]:
    if not (record.get("plugins")):
        return []
    md: list[str] = []
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
    return md


def _federation_section(record: dict, out: Path, stamp: str) -> list[str]:
    if not (record.get("federation")):
        return []
    md: list[str] = []
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
    md += [
        f"- {r['target']} ({r.get('upstream', 'stateful')} upstream): failed runs: {'; '.join(r['failed_runs'])}"
        for r in record["federation"]
        if r.get("failed_runs")
    ]
    md.append("")
    return md


def _plotted(plot: Callable[[dict, Path], bool], record: dict, path: Path, md: list[str]) -> bool:
    """A plot that cannot be drawn is a line in the report, not a lost report."""
    try:
        return plot(record, path)
    except Exception as exc:  # noqa: BLE001 - the tables below still carry every figure
        md += [f"(plot not drawn: {type(exc).__name__}: {exc})", ""]
        return False


def _runs_section(record: dict, out: Path, stamp: str) -> list[str]:
    """The paired runs with no table of their own (their ratios are in the Bars table)."""
    groups = [
        ("the HTTP layer's checks", (record.get("http") or {}).get("rows") or []),
        ("authentication", record.get("auth") or []),
        ("Prometheus metrics", record.get("metrics") or []),
        ("OpenTelemetry tracing", (record.get("tracing") or {}).get("rows") or []),
    ]
    if not any(rows for _, rows in groups):
        return []
    md = [
        "## Other paired runs",
        "",
        (
            "Each at 16 connections, targets alternating; CPU µs/req is the gateway's (`/proc/<pid>/stat`), where the "
            "section measures it."
        ),
        "",
        "| section | workload | target | req/s | p50 ms | CPU µs/req | errors | failed runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in groups:
        md += [
            f"| {name} | {r['workload']} | {r['target']} | {_num(r['rps'], '.0f')} | {_num(r['p50_ms'], '.2f')} | "
            f"{'' if r.get('cpu_us_per_request') is None else format(r['cpu_us_per_request'], '.0f')} | "
            f"{r['errors']} | {len(r.get('failed_runs', []))} |"
            for r in rows
        ]
    tracing = record.get("tracing") or {}
    for target, answered in (tracing.get("answered") or {}).items():
        spans = (tracing.get("spans_received") or {}).get(target)
        md += ["", f"{target}: the collector stub received {spans} tools/list server spans for {answered} answered."]
    swap = record.get("hot_swap")
    if swap:
        md += [
            "",
            (
                f"Hot swaps: {swap['swaps']} swaps + {swap['rollbacks']} rollbacks under load, {swap['requests']:,} "
                f"requests, {swap['failed']} failed, {swap['crossings']:,} crossings into the component (cache off); "
                f"swap p50 {swap['swap_p50_ms']:.0f} ms, max {swap['swap_max_ms']:.0f} ms."
            ),
        ]
    md.append("")
    return md


SECTIONS: tuple[Callable[[dict, Path, str], list[str]], ...] = (
    _edge_section,
    _e2e_section,
    _memory_section,
    _store_section,
    _hostile_section,
    _plugins_section,
    _federation_section,
    lambda record, out, stamp: _scaleout_section(record.get("scaleout") or {}),
    _runs_section,
)


def write(record: dict, out: Path, stamp: str) -> Path:
    """The Markdown report (and its plots); a section that cannot be rendered says so in place."""
    machine = record.get("machine", {})
    settings = record.get("settings", {})
    md = [
        f"# mcpgw benchmark {stamp}",
        "",
        (
            f"{machine.get('cpus')} CPUs, {machine.get('platform')}, Python {machine.get('python')}; "
            f"{settings.get('reps')} repetitions of {settings.get('duration_s')} s per cell, connections "
            f"{settings.get('connections')}"
            + (f", skipped: {', '.join(settings['skip'])}" if settings.get("skip") else "")
            + ". Every figure in a table was measured side by side in this one run; ratios are what carry over "
            "to other machines."
        ),
        "",
        "## Bars",
        "",
    ]
    try:
        md += [summary(record), ""]
    except Exception:  # noqa: BLE001 - the sections below still carry every figure
        md += ["The Bars table could not be computed:", "", "```", traceback.format_exc(), "```", ""]
    for name, reason in (record.get("failed_sections") or {}).items():
        md += [f"**Section `{name}` failed:** {reason}", ""]
    for render in SECTIONS:
        try:
            md += render(record, out, stamp)
        except Exception as exc:  # noqa: BLE001 - one section's rendering must not lose the report
            md += [f"**A section could not be rendered** ({getattr(render, '__name__', '?')}): {exc!r}", ""]
    path = out / f"{stamp}.md"
    path.write_text("\n".join(md))
    return path


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


if __name__ == "__main__":  # render a run's report again from its record: python bench/report.py RECORD.json
    import json
    import sys

    source = Path(sys.argv[1])
    data = json.loads(source.read_text())
    print(summary(data))
    print(f"\nwrote {write(data, source.parent, source.stem)}")
