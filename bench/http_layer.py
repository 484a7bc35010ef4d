"""What the HTTP layer's checks against hostile clients cost (issue 14: head and body deadlines,
the head size counted as it arrives, connections per client address, half-close and pipelining
fixes; host-python/mcpgw/http_server.py): `tools/list` and `tools/call echo` at 16 connections
through `mcpgw serve` with its protocol layer (the per-address connection cap at its default) and
through the same gateway on uvicorn's plain httptools protocol (bench/plain_http_server.py, a
bench-only start script), side by side, alternating order between repetitions, every answer
checked. Bar: the checks cost at most 3% (>= 0.97x).

Besides req/s, each run records the gateway process's CPU time per answered request (user +
system, from /proc/<pid>/stat): on a machine shared with other work, throughput swings with what
else runs while the CPU a request costs the gateway does not, so that ratio is the steadier one.
And callgrind's count of the instructions one tools/call echo costs each server (one keep-alive
connection, 1,000 requests; bench/server_instructions.py): the figure that resolves a few percent."""

from __future__ import annotations

import json
import sys

import e2e
import server_instructions
import servers
import wrk

TARGETS = ("checks on", "plain uvicorn")


cpu_s = servers.cpu_s


def _plain() -> servers.Server:
    """The gateway as servers.gateway() starts it, on uvicorn's own protocol."""
    port = servers.free_port()
    env = {
        "MCPGW_EDGE": "wasm",
        "MCPGW_HOST": "127.0.0.1",
        "MCPGW_PORT": str(port),
        "MCPGW_LOG_LEVEL": "warning",
        "MCPGW_MAX_SESSIONS": "10000000",
        "MCPGW_SESSION_IDLE_TIMEOUT_S": "3600",
        "MCPGW_MAX_SESSIONS_PER_CLIENT": "0",
        "MCPGW_MAX_REQUESTS_PER_SESSION": "0",
    }
    argv = [sys.executable, str(servers.ROOT / "bench" / "plain_http_server.py")]
    return servers.Server("gateway-plain-uvicorn", argv, env, port=port).wait_ready("/health")


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> dict:
    targets: dict[str, servers.Server] = {}
    try:
        # The connection cap at its default (256): 16 connections from one address stay under it.
        targets["checks on"] = servers.gateway(
            "wasm", name="gateway-http-checks", MCPGW_MAX_CONNECTIONS_PER_CLIENT="256"
        )
        targets["plain uvicorn"] = _plain()
        rows = []
        per_target = {name: e2e.workloads_for("gateway", srv.url) for name, srv in targets.items()}
        for workload in ("tools/list", "tools/call echo"):
            loads = {name: per_target[name][workload] for name in targets}
            for name, srv in targets.items():
                e2e.check(srv.url, loads[name])
                wrk.run(srv.url, loads[name], connections, 1)  # warm-up
            samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
            cpu: dict[str, list[float]] = {name: [] for name in targets}  # µs of gateway CPU per request
            for rep in range(reps):
                order = list(targets) if rep % 2 == 0 else list(reversed(targets))
                for name in order:
                    pid = targets[name].proc.pid
                    before = cpu_s(pid)
                    result = wrk.run(targets[name].url, loads[name], connections, duration_s)
                    samples[name].append(result)
                    if result.ok:
                        cpu[name].append((cpu_s(pid) - before) * 1e6 / result.requests)
            for name, results in samples.items():
                row = e2e.summarize(workload, connections, name, results, None)
                row["cpu_us_per_request"] = sorted(cpu[name])[len(cpu[name]) // 2] if cpu[name] else None
                rows.append(row)
                figure = "FAILED" if row["rps"] is None else f"{row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms"
                per = row["cpu_us_per_request"]
                print(
                    f"  {workload:16} c={connections} {name:14} {figure}  "
                    f"{'?' if per is None else f'{per:.0f}'} µs CPU/request  errors {row['errors']}",
                    flush=True,
                )
    finally:
        for srv in targets.values():
            srv.stop()
    instructions = None
    if server_instructions.available():
        instructions = server_instructions.http_layer()
        on, plain = instructions["checks on"], instructions["plain uvicorn"]
        print(
            f"  instructions per tools/call echo (callgrind): checks on {on:,.0f}, plain uvicorn {plain:,.0f}: "
            f"{plain / on:.3f}x (+{on - plain:,.0f})",
            flush=True,
        )
    return {"rows": rows, "instructions": instructions}


if __name__ == "__main__":
    print(json.dumps(measure(1, 1), indent=1))
