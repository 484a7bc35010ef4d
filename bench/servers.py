"""Processes under test, each on its own loopback port: the gateway in either edge mode, the
SDK reference server, Starlette's CORS middleware. Started once per run, stopped at the end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SDK_PYTHON = ROOT / ".build" / "bench-sdk-venv" / "bin" / "python"
FASTMCP_PYTHON = ROOT / ".build" / "bench-fastmcp-venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (utime and stime, fields 14 and 15 of
    /proc/PID/stat); 0.0 for a process that is gone. The one reading every section's CPU figures use."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        full_env.update(env or {})
        self.log = open(ROOT / ".build" / f"bench-{name}.log", "wb")  # noqa: SIM115 - held open for the process's lifetime, closed in stop()
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, probe: str = "/mcp", timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see .build/bench-{self.name}.log")
            try:
                httpx.get(self.url + probe, timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def gateway(mode: str, name: str = "", **env: str) -> Server:
    """`mcpgw serve` in one edge mode; session limits raised so `initialize` load is not refused."""
    port = free_port()
    return Server(
        name or f"gateway-{mode}",
        [sys.executable, "-m", "mcpgw.cli", "serve"],
        {
            "MCPGW_EDGE": mode,
            "MCPGW_HOST": "127.0.0.1",
            "MCPGW_PORT": str(port),
            "MCPGW_LOG_LEVEL": "warning",
            "MCPGW_MAX_SESSIONS": "10000000",
            "MCPGW_SESSION_IDLE_TIMEOUT_S": "3600",
            # Every load here comes from one address (loopback): the per-address caps, which protect
            # a gateway from one hostile client, would refuse the benchmark's own sessions and streams.
            "MCPGW_MAX_SESSIONS_PER_CLIENT": "0",
            "MCPGW_MAX_CONNECTIONS_PER_CLIENT": "0",
            # The tools workloads share one session across up to 64 connections.
            "MCPGW_MAX_REQUESTS_PER_SESSION": "0",
            **env,
        },
        port=port,
    ).wait_ready("/health")


def sdk(mode: str) -> Server:
    if not SDK_PYTHON.exists():
        raise SystemExit(f"{SDK_PYTHON} is missing: `make bench` creates the SDK's virtualenv")
    server = Server(f"sdk-{mode}", [str(SDK_PYTHON), str(ROOT / "bench" / "sdk_server.py"), "{port}", mode])
    # A stateless server answers GET /mcp with an event stream that never ends: probe a path it lacks.
    return server.wait_ready("/mcp" if mode == "stateful" else "/absent")


def fastmcp_proxy(upstream: str) -> Server:
    """FastMCP's proxy in front of `upstream` (bench/fastmcp_proxy.py, its own virtualenv)."""
    if not FASTMCP_PYTHON.exists():
        raise SystemExit(f"{FASTMCP_PYTHON} is missing: `make bench` creates FastMCP's virtualenv")
    argv = [str(FASTMCP_PYTHON), str(ROOT / "bench" / "fastmcp_proxy.py"), "{port}", upstream]
    return Server("fastmcp-proxy", argv).wait_ready()


def bare_uvicorn(answers: dict[str, str]) -> Server:
    """The HTTP stack's ceiling (bench/bare_uvicorn.py): a fixed JSON answer per call, nothing else.
    `answers` maps "tools/list" and "tools/call" to the body to send."""
    path = ROOT / ".build" / "bench-bare-uvicorn-answers.json"
    path.write_text(json.dumps(answers))
    argv = [sys.executable, str(ROOT / "bench" / "bare_uvicorn.py"), "{port}", str(path)]
    return Server("bare-uvicorn", argv).wait_ready()


def cors() -> Server:
    return Server("starlette-cors", [sys.executable, str(ROOT / "bench" / "cors_server.py"), "{port}"]).wait_ready()
