"""What relaying costs: tools/call `echo` on the SDK's own server directly, and the same call
through the gateway to that server as an upstream (its virtual server `/servers/sdk/mcp`, and
`/mcp` as `sdk__echo`), and through FastMCP's proxy to the same server (a user's alternative),
side by side, alternating order between repetitions; with the SDK server stateful, then
stateless (no FastMCP proxy there). Beside req/s, the CPU time each process spends per answered
call (`/proc/<pid>/stat` around each run): steadier than req/s when the cores are shared."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict

import httpx

import e2e
import servers
import wrk

ECHO_PREFIXED = e2e.ECHO.replace('"name":"echo"', '"name":"sdk__echo"')


def _session(url: str, path: str) -> dict[str, str]:
    return e2e.open_session(url + path[: -len("/mcp")])  # open_session adds /mcp


def _wait_upstream(url: str) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(url + "/health").json()["upstreams"]["sdk"]["state"] != "ready":
        if time.monotonic() > deadline:
            raise SystemExit("the gateway did not connect to the SDK server")
        time.sleep(0.1)


_cpu_s = servers.cpu_s


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> list[dict]:
    rows = _measure("stateful", duration_s, reps, connections)
    return rows + _measure("stateless", duration_s, reps, connections)


def _measure(mode: str, duration_s: float, reps: int, connections: int) -> list[dict]:
    sdk = servers.sdk(mode)
    fd, config = tempfile.mkstemp(suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(f'[upstreams.sdk]\ntransport = "streamable-http"\nurl = "{sdk.url}/mcp"\n')
    gw = servers.gateway("python", name="gateway-federated", MCPGW_CONFIG=config)
    proxy = None
    try:
        _wait_upstream(gw.url)
        # A stateless server gives no session id: the direct calls carry none.
        sessionless = {**e2e.JSON_HEADERS, "mcp-protocol-version": e2e.SESSION_REVISION}
        targets = {
            "sdk direct": (
                sdk,
                wrk.Workload(
                    "echo", "POST", "/mcp", _session(sdk.url, "/mcp") if mode == "stateful" else sessionless, e2e.ECHO
                ),
            ),
            "gateway /servers/sdk/mcp": (
                gw,
                wrk.Workload("echo", "POST", "/servers/sdk/mcp", _session(gw.url, "/servers/sdk/mcp"), e2e.ECHO),
            ),
            "gateway /mcp sdk__echo": (
                gw,
                wrk.Workload("echo", "POST", "/mcp", _session(gw.url, "/mcp"), ECHO_PREFIXED),
            ),
        }
        if mode == "stateful":
            # A user's alternative: FastMCP's proxy in front of the same upstream (its own virtualenv).
            proxy = servers.fastmcp_proxy(sdk.url + "/mcp")
            targets["FastMCP proxy /mcp"] = (
                proxy,
                wrk.Workload("echo", "POST", "/mcp", _session(proxy.url, "/mcp"), e2e.ECHO),
            )
        for server, load in targets.values():
            e2e.check(server.url, load)
            wrk.run(server.url, load, connections, 1)  # warm-up
        samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}  # (target, upstream) us/call
        for rep in range(reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for name in order:
                server, load = targets[name]
                before = _cpu_s(server.proc.pid), _cpu_s(sdk.proc.pid)
                result = wrk.run(server.url, load, connections, duration_s)
                samples[name].append(result)
                if result.ok:  # CPU per call counted over the calls wrk saw answered (it runs whole seconds)
                    calls = result.requests
                    after = _cpu_s(server.proc.pid), _cpu_s(sdk.proc.pid)
                    cpu[name].append((1e6 * (after[0] - before[0]) / calls, 1e6 * (after[1] - before[1]) / calls))
        direct = samples["sdk direct"]
        rows = []
        for name, results in samples.items():
            good = [r for r in results if r.ok]  # a figure and no error, as every ratio here
            # Paired: repetition i through the gateway against repetition i direct, both with a figure
            # and no error of any kind (report.paired_ratio's rule: errors answered fast would flatter).
            ratios = [r.rps / d.rps for r, d in zip(results, direct, strict=False) if r.ok and d.ok]
            row = {
                "target": name,
                "upstream": mode,
                "connections": connections,
                "rps": statistics.median(r.rps for r in good) if good else None,
                "p50_ms": statistics.median(r.p50_ms for r in good) if good else None,
                "errors": sum(r.errors for r in results),
                "failed_runs": [r.failed for r in results if r.failed],
                "vs_direct": statistics.median(ratios) if ratios else None,
                # CPU per answered call: the target's own (for "sdk direct" the SDK server's) and the SDK server's.
                "cpu_us": round(statistics.median(c[0] for c in cpu[name])) if cpu[name] else None,
                "upstream_cpu_us": round(statistics.median(c[1] for c in cpu[name])) if cpu[name] else None,
                "runs": [asdict(r) for r in results],
            }
            rows.append(row)
            if row["rps"] is None or row["vs_direct"] is None:
                why = "; ".join(row["failed_runs"]) or f"{row['errors']} errors"
                print(f"  tools/call echo c={connections} {mode} {name:26} FAILED: {why}", flush=True)
                continue
            print(
                f"  tools/call echo c={connections} {mode:9} {name:26} {row['rps']:8.0f} req/s"
                f"  p50 {row['p50_ms']:6.2f} ms  x{row['vs_direct']:.2f} of direct  CPU/call {row['cpu_us']} us"
                f" (upstream {row['upstream_cpu_us']} us)  errors {row['errors']}",
                flush=True,
            )
        return rows
    finally:
        if proxy is not None:
            proxy.stop()
        gw.stop()
        sdk.stop()
        os.unlink(config)


if __name__ == "__main__":
    print(
        json.dumps(
            measure(float(os.environ.get("BENCH_DURATION_S", "2")), int(os.environ.get("BENCH_REPS", "5"))), indent=1
        )
    )
