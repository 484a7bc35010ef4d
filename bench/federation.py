"""What relaying costs: tools/call `echo` on the SDK's own server directly, and the same call
through the gateway to that server as an upstream (its virtual server `/servers/sdk/mcp`, and
`/mcp` as `sdk__echo`), and through FastMCP's proxy to the same server (a user's alternative),
side by side, alternating order between repetitions."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

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


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> list[dict]:
    sdk = servers.sdk("stateful")
    fd, config = tempfile.mkstemp(suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(f'[upstreams.sdk]\ntransport = "streamable-http"\nurl = "{sdk.url}/mcp"\n')
    gw = servers.gateway("python", name="gateway-federated", MCPGW_CONFIG=config)
    proxy = None
    try:
        _wait_upstream(gw.url)
        # A user's alternative: FastMCP's proxy in front of the same upstream (its own virtualenv).
        proxy = servers.fastmcp_proxy(sdk.url + "/mcp")
        targets = {
            "sdk direct": (sdk.url, wrk.Workload("echo", "POST", "/mcp", _session(sdk.url, "/mcp"), e2e.ECHO)),
            "gateway /servers/sdk/mcp": (
                gw.url,
                wrk.Workload("echo", "POST", "/servers/sdk/mcp", _session(gw.url, "/servers/sdk/mcp"), e2e.ECHO),
            ),
            "gateway /mcp sdk__echo": (
                gw.url,
                wrk.Workload("echo", "POST", "/mcp", _session(gw.url, "/mcp"), ECHO_PREFIXED),
            ),
            "FastMCP proxy /mcp": (
                proxy.url,
                wrk.Workload("echo", "POST", "/mcp", _session(proxy.url, "/mcp"), e2e.ECHO),
            ),
        }
        for url, load in targets.values():
            e2e.check(url, load)
            wrk.run(url, load, connections, 1)  # warm-up
        samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
        for rep in range(reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for name in order:
                url, load = targets[name]
                samples[name].append(wrk.run(url, load, connections, duration_s))
        direct = samples["sdk direct"]
        rows = []
        for name, results in samples.items():
            good = [r for r in results if not r.failed]
            # Paired: repetition i through the gateway against repetition i direct, both with a figure.
            ratios = [r.rps / d.rps for r, d in zip(results, direct, strict=False) if not r.failed and not d.failed]
            row = {
                "target": name,
                "connections": connections,
                "rps": statistics.median(r.rps for r in good) if good else None,
                "p50_ms": statistics.median(r.p50_ms for r in good) if good else None,
                "errors": sum(r.errors for r in results),
                "failed_runs": [r.failed for r in results if r.failed],
                "vs_direct": statistics.median(ratios) if ratios else None,
            }
            rows.append(row)
            if row["rps"] is None or row["vs_direct"] is None:
                print(f"  tools/call echo c={connections} {name:26} FAILED: {'; '.join(row['failed_runs'])}")
                continue
            print(
                f"  tools/call echo c={connections} {name:26} {row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms"
                f"  x{row['vs_direct']:.2f} of direct  errors {row['errors']}",
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
