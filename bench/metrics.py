"""What /metrics costs on the request path: tools/list at 16 connections through a gateway with
metrics on (the default: every request counted, its latency observed, MCP requests counted) and
with MCPGW_METRICS=off, side by side, alternating order between repetitions. Every answer is
checked (wrk counts a JSON-RPC error inside a 200 as an error), and after the runs the gateway
with metrics on must have counted at least every request wrk saw answered.

Besides req/s, each run records the gateway process's CPU time per answered request (user + system,
from /proc): on a machine shared with other work, throughput swings with what else runs, while
the CPU a request costs the gateway does not, so `cpu_us_per_request` is the steadier figure of
what metrics add. Steadier still, and what the report's bar reads when valgrind is there: the
instructions one tools/list costs the gateway's ASGI application in-process (callgrind, counted
for 500 and 1,500 requests and differenced, so set-up cancels), metrics on and off."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

import auth
import callgrind
import e2e
import servers
import wrk

ON, OFF = "metrics on", "metrics off"


def counted(url: str) -> float:
    """tools/list answered, as /metrics counts them (MCP requests by method)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mcpgw_mcp_requests_total" and s.labels.get("method") == "tools/list"
    )


HERE = Path(__file__).resolve().parent


def instructions(metrics: str, n: int) -> int:
    """Instructions callgrind counted for `n` tools/list in-process (bench/inprocess_requests.py),
    in a directory of its own (bench/callgrind.py); one more try if the run fails (a busy machine)."""
    for attempt in (1, 2):
        done = callgrind.run(
            [sys.executable, str(HERE / "inprocess_requests.py"), metrics, str(n)],
            prefix="mcpgw-callgrind-",
            timeout=600,
        )
        found = done.collected()
        if done.returncode == 0 and found is not None:
            return found
        if attempt == 2:
            callgrind.raise_failed(done)
            raise RuntimeError(f"callgrind counted nothing:\n{done.stderr[-2000:]}")
    raise AssertionError("unreachable")


def instructions_per_request() -> dict[str, float] | None:
    """Per tools/list, metrics on (loopback) and off; None without valgrind."""
    if not callgrind.available():
        print("  (valgrind not installed: no instruction count)", flush=True)
        return None
    counts = {}
    for label, setting in (("metrics on", "loopback"), ("metrics off", "off")):
        per_call = callgrind.per_call({n: instructions(setting, n) for n in (callgrind.LOW, callgrind.HIGH)})
        assert per_call is not None
        counts[label] = per_call
    print(
        f"  instructions per tools/list (in-process, callgrind): on {counts['metrics on']:.0f}, "
        f"off {counts['metrics off']:.0f}: off/on {counts['metrics off'] / counts['metrics on']:.3f}",
        flush=True,
    )
    return counts


cpu_s = servers.cpu_s


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> list[dict]:
    targets: dict[str, servers.Server] = {}
    try:
        targets[ON] = servers.gateway("wasm", name="gateway-metrics-on")
        targets[OFF] = servers.gateway("wasm", name="gateway-metrics-off", MCPGW_METRICS="off")
        loads = {}
        for name, srv in targets.items():
            session = auth._session(srv.url, {})
            loads[name] = wrk.Workload("tools/list", "POST", "/mcp", session, e2e.TOOLS_LIST)
            e2e.check(srv.url, loads[name])
            wrk.run(srv.url, loads[name], connections, 1)  # warm-up
        before = counted(targets[ON].url)
        samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
        cpu: dict[str, list[float]] = {name: [] for name in targets}  # CPU us per answered request
        for rep in range(reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for name in order:
                pid = targets[name].proc.pid
                start = cpu_s(pid)
                result = wrk.run(targets[name].url, loads[name], connections, duration_s)
                samples[name].append(result)
                if result.requests:
                    cpu[name].append((cpu_s(pid) - start) * 1e6 / result.requests)
        seen = counted(targets[ON].url) - before
        answered = sum(r.requests for r in samples[ON])
        if seen < answered:
            raise RuntimeError(f"/metrics counted {seen:.0f} tools/list, wrk saw {answered} answered")
        rows = [e2e.summarize("tools/list", connections, name, results, None) for name, results in samples.items()]
        for row in rows:
            spent = sorted(cpu[row["target"]])
            row["cpu_us_per_request"] = round(spent[len(spent) // 2], 1) if spent else None
            figure = "FAILED" if row["rps"] is None else f"{row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms"
            print(
                f"  tools/list c={connections} {row['target']:12} {figure}  errors {row['errors']}  "
                f"gateway CPU {row['cpu_us_per_request']} us/request (median)",
                flush=True,
            )
        print(f"  /metrics counted {seen:.0f} tools/list during the runs (wrk: {answered} answered)", flush=True)
        counts = instructions_per_request()
        if counts is not None:
            for row in rows:
                row["instructions_per_request"] = counts[row["target"]]
        return rows
    finally:
        for srv in targets.values():
            srv.stop()


if __name__ == "__main__":
    print(json.dumps(measure(1, 1), indent=1))
