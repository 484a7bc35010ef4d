"""Instructions one request costs a real gateway process (uvicorn, one keep-alive connection),
counted by callgrind: the steady figure for a per-request cost of a few percent, which wrk on a
shared 2-core machine cannot resolve (bench/http_layer.py, bench/plugins.py).

The server runs under `valgrind --tool=callgrind --instr-atstart=no`; this process opens a
session, warms up, switches instrumentation on (`callgrind_control -i on`) for exactly `n`
requests on one connection, each answer checked, and off again; the count is the server's work
for those requests (its idle waits between them cost nothing). Each count runs the server anew.

    python bench/server_instructions.py [n]   # the HTTP layer: checks on / plain uvicorn
    python bench/server_instructions.py --bare [n]   # the gateway / the bare-uvicorn ceiling
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

import callgrind
import e2e
import servers

available = callgrind.available


def per_request(
    argv: list[str],
    env: dict[str, str],
    body: str = e2e.ECHO,
    n: int = 1000,
    check: str = "hello",
    session: bool = True,
    headers: dict[str, str] | None = None,
) -> float:
    """Instructions per request of `body` (a JSON-RPC template with @ID@) through the server that
    `argv` starts with `env` (MCPGW_* as servers.gateway sets them; the port is added here, and
    replaces "{port}" in `argv`). `session`: open an MCP session first (not for bare uvicorn).
    `headers`: sent on every request (the session's too), e.g. Authorization."""
    port = servers.free_port()
    argv = [arg.replace("{port}", str(port)) for arg in argv]
    with tempfile.TemporaryDirectory(prefix="mcpgw-callgrind-") as where:
        out_file = f"{where}/callgrind.out"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        full_env.update(env)
        full_env.update({"MCPGW_HOST": "127.0.0.1", "MCPGW_PORT": str(port), "MCPGW_LOG_LEVEL": "warning"})
        log = open(f"{where}/server.log", "wb")  # noqa: SIM115 - closed below
        proc = callgrind.start(argv, full_env, where, log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 600
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(Path(f"{where}/server.log").read_text()[-3000:])
                try:
                    httpx.get(url + "/health", timeout=5)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server under valgrind did not start") from None
                    time.sleep(0.5)
            sent = e2e.open_session(url, headers) if session else {**e2e.JSON_HEADERS, **(headers or {})}
            with httpx.Client(base_url=url, headers=sent, timeout=60) as client:
                # Warm-up of 300: caches, the plugin pools, the outcome cache.
                callgrind.count_requests(proc.pid, lambda c: client.post("/mcp", content=c), body, check, 300, n)
        finally:
            callgrind.stop(proc)
            log.close()
        return callgrind.file_totals(out_file) / n


def gateway_argv() -> list[str]:
    return [sys.executable, "-m", "mcpgw.cli", "serve"]


GATEWAY_ENV = {
    "MCPGW_EDGE": "wasm",
    "MCPGW_MAX_SESSIONS": "10000000",
    "MCPGW_SESSION_IDLE_TIMEOUT_S": "3600",
    "MCPGW_MAX_SESSIONS_PER_CLIENT": "0",
    "MCPGW_MAX_REQUESTS_PER_SESSION": "0",
}


def http_layer(n: int = 1000) -> dict[str, float]:
    """tools/call echo through `mcpgw serve` (the HTTP layer's checks, connection cap at 256) and
    through the same gateway on uvicorn's plain httptools protocol (bench/plain_http_server.py)."""
    plain = [sys.executable, str(servers.ROOT / "bench" / "plain_http_server.py")]
    return {
        "checks on": per_request(gateway_argv(), {**GATEWAY_ENV, "MCPGW_MAX_CONNECTIONS_PER_CLIENT": "256"}, n=n),
        "plain uvicorn": per_request(plain, GATEWAY_ENV, n=n),
    }


def against_bare(n: int = 500) -> dict[str, dict[str, float]]:
    """{workload: {"gateway": .., "bare-uvicorn": ..}}: instructions per tools/call echo and per
    tools/list through `mcpgw serve` (wasm edge, one session) and through the bare-uvicorn ceiling
    (bench/bare_uvicorn.py) sending the gateway's own answers, the same way each (the bare-uvicorn
    bars of issue 20, read by instructions)."""
    gateway = servers.gateway("wasm", name="gateway-answers")
    try:
        answers = e2e.gateway_answers(gateway.url)
    finally:
        gateway.stop()
    path = servers.ROOT / ".build" / "bench-bare-uvicorn-instructions-answers.json"
    path.write_text(json.dumps(answers))
    bare = [sys.executable, str(servers.ROOT / "bench" / "bare_uvicorn.py"), "{port}", str(path)]
    counts: dict[str, dict[str, float]] = {}
    for workload, body, check in (("tools/call echo", e2e.ECHO, "hello"), ("tools/list", e2e.TOOLS_LIST, '"echo"')):
        counts[workload] = {
            "gateway": per_request(gateway_argv(), GATEWAY_ENV, body, n, check),
            "bare-uvicorn": per_request(bare, {}, body, n, check, session=False),
        }
        gw, ceiling = counts[workload]["gateway"], counts[workload]["bare-uvicorn"]
        print(
            f"  instructions per {workload} (callgrind): gateway {gw:,.0f}, bare uvicorn {ceiling:,.0f}: "
            f"{ceiling / gw:.3f}x",
            flush=True,
        )
    return counts


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare"]:
        against_bare(int(sys.argv[2]) if len(sys.argv) > 2 else 500)
        sys.exit(0)
    counts = http_layer(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
    on, off = counts["checks on"], counts["plain uvicorn"]
    print(f"instructions per tools/call echo: checks on {on:,.0f}, plain uvicorn {off:,.0f}: {off / on:.4f}x")
