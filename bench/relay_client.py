"""The gateway's own Streamable HTTP client against the SDK's, side by side in one run (issue 20):
tools/call `echo` on the SDK's server directly, and through two gateway processes relaying to that
same server, one with the upstream's default client (`client = "auto"`: the gateway's own,
federation/shttp_client.py) and one with `client = "sdk"` (the SDK's transport over httpx), each on
the virtual server and on `/mcp`; stateful then stateless upstream. Per target: req/s (wrk, c=16,
alternating order), the ratio to direct (paired by repetition), and CPU per answered call of the
gateway and of the upstream from /proc. With valgrind, also instructions per relayed call in the
gateway process (callgrind, one keep-alive client, n calls one after another), stateful and
stateless upstream.

    python bench/relay_client.py            # BENCH_DURATION_S (3), BENCH_REPS (5), RELAY_CALLGRIND_N (200)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

import callgrind
import e2e
import servers
import wrk

ECHO_PREFIXED = e2e.ECHO.replace('"name":"echo"', '"name":"sdk__echo"')
CLIENTS = ("auto", "sdk")


def _config(url: str, client: str) -> str:
    fd, path = tempfile.mkstemp(suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(f'[upstreams.sdk]\ntransport = "streamable-http"\nurl = "{url}/mcp"\nclient = "{client}"\n')
    return path


def _wait_upstream(url: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        up = httpx.get(url + "/health").json()["upstreams"]["sdk"]
        if up["state"] == "ready":
            return str(up["client"])
        if time.monotonic() > deadline:
            raise SystemExit("the gateway did not connect to the SDK server")
        time.sleep(0.1)


_cpu_s = servers.cpu_s


def throughput(mode: str, duration_s: float, reps: int, connections: int = 16) -> list[dict]:
    sdk = servers.sdk(mode)
    configs = {c: _config(sdk.url, c) for c in CLIENTS}
    gateways = {c: servers.gateway("python", name=f"gateway-relay-{c}", MCPGW_CONFIG=configs[c]) for c in CLIENTS}
    try:
        sessionless = {**e2e.JSON_HEADERS, "mcp-protocol-version": e2e.SESSION_REVISION}
        direct_headers = e2e.open_session(sdk.url) if mode == "stateful" else sessionless
        targets = {"sdk direct": (sdk, wrk.Workload("echo", "POST", "/mcp", direct_headers, e2e.ECHO))}
        for gw in gateways.values():
            used = _wait_upstream(gw.url)
            targets[f"{used} client, virtual"] = (
                gw,
                wrk.Workload("echo", "POST", "/servers/sdk/mcp", e2e.open_session(gw.url + "/servers/sdk"), e2e.ECHO),
            )
            targets[f"{used} client, /mcp"] = (
                gw,
                wrk.Workload("echo", "POST", "/mcp", e2e.open_session(gw.url), ECHO_PREFIXED),
            )
        for server, load in targets.values():
            e2e.check(server.url, load)
            wrk.run(server.url, load, connections, 1)  # warm-up
        samples: dict[str, list] = {name: [] for name in targets}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for rep in range(reps):
            for name in list(targets) if rep % 2 == 0 else list(reversed(targets)):
                server, load = targets[name]
                before = _cpu_s(server.proc.pid), _cpu_s(sdk.proc.pid)
                result = wrk.run(server.url, load, connections, duration_s)
                samples[name].append(result)
                if not result.failed and result.rps > 0:
                    calls = result.rps * duration_s
                    after = _cpu_s(server.proc.pid), _cpu_s(sdk.proc.pid)
                    cpu[name].append((1e6 * (after[0] - before[0]) / calls, 1e6 * (after[1] - before[1]) / calls))
        rows = []
        direct = samples["sdk direct"]
        for name, results in samples.items():
            ratios = [r.rps / d.rps for r, d in zip(results, direct, strict=False) if not r.failed and not d.failed]
            good = [r.rps for r in results if not r.failed]
            row = {
                "upstream": mode,
                "target": name,
                "rps": round(statistics.median(good)) if good else None,
                "vs_direct": round(statistics.median(ratios), 3) if ratios else None,
                "ratios": [round(r, 2) for r in ratios],
                "errors": sum(r.errors for r in results),
                "failed": [r.failed for r in results if r.failed],
                "cpu_us": round(statistics.median(c[0] for c in cpu[name])) if cpu[name] else None,
                "upstream_cpu_us": round(statistics.median(c[1] for c in cpu[name])) if cpu[name] else None,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        return rows
    finally:
        for gw in gateways.values():
            gw.stop()
        sdk.stop()
        for path in configs.values():
            os.unlink(path)


def instructions(mode: str, client: str, n: int) -> float:
    """Instructions per relayed tools/call echo (virtual server) in the gateway process, callgrind."""
    sdk = servers.sdk(mode)
    config = _config(sdk.url, client)
    port = servers.free_port()
    where = tempfile.mkdtemp(prefix="mcpgw-relay-callgrind-")
    out_file = f"{where}/callgrind.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
    env.update(
        {
            "MCPGW_EDGE": "python",
            "MCPGW_HOST": "127.0.0.1",
            "MCPGW_PORT": str(port),
            "MCPGW_LOG_LEVEL": "warning",
            "MCPGW_CONFIG": config,
        }
    )
    log = open(f"{where}/server.log", "wb")  # noqa: SIM115 - closed below
    argv = [sys.executable, "-m", "mcpgw.cli", "serve"]
    proc = callgrind.start(argv, env, where, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(url + "/health", timeout=5).json()["upstreams"]["sdk"]["state"] == "ready":
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(Path(f"{where}/server.log").read_text()[-3000:])
            time.sleep(0.5)
        headers = e2e.open_session(url + "/servers/sdk")
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            path = "/servers/sdk/mcp"
            callgrind.count_requests(proc.pid, lambda c: http.post(path, content=c), e2e.ECHO, "hello", 50, n)
    finally:
        callgrind.stop(proc)
        log.close()
        sdk.stop()
        os.unlink(config)
    return callgrind.file_totals(out_file) / n


if __name__ == "__main__":
    duration, reps = float(os.environ.get("BENCH_DURATION_S", "3")), int(os.environ.get("BENCH_REPS", "5"))
    n = int(os.environ.get("RELAY_CALLGRIND_N", "200"))
    if n and callgrind.available():
        for mode in ("stateful", "stateless"):
            for client in CLIENTS:
                count = round(instructions(mode, client, n))
                row = {"upstream": mode, "client": client, "instructions_per_relayed_call": count}
                print(json.dumps(row), flush=True)
    for mode in ("stateful", "stateless"):
        throughput(mode, duration, reps)
