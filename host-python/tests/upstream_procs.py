"""Real upstream MCP server processes for the federation tests, and a gateway configured with them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from conftest import REPO, Gateway, stop_process

UPSTREAMS = Path(__file__).resolve().parent / "upstreams"
TOY = UPSTREAMS / "toy_server.py"
FIXTURE = REPO / "tests" / "e2e" / "conformance" / "fixture_server.py"
_BOUND = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class HttpUpstream:
    """An upstream serving Streamable HTTP on a port it picked itself (port 0, read from its log)."""

    def __init__(self, argv: list[str], path: str = "/mcp", env: dict[str, str] | None = None):
        self.argv, self.path, self.env = argv, path, {**os.environ, **(env or {})}
        self._start(argv)

    def _start(self, argv: list[str]) -> None:
        fd, name = tempfile.mkstemp(prefix="mcpgw-upstream-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log = open(self.log_path, "w+b")  # noqa: SIM115 - held open for the process's lifetime, closed in stop()
        self.proc = subprocess.Popen([sys.executable, *argv], stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while True:
            bound = _BOUND.search(self.log_path.read_text(errors="replace"))
            if bound:
                self.port = int(bound.group(1))
                self.url = f"http://127.0.0.1:{self.port}{self.path}"
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"upstream {argv} did not start:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.05)

    def restart(self) -> None:
        """Kill the process and start it again on the same port: same URL, none of its sessions."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)
        argv = [str(self.port) if a == "0" else a for a in self.argv]  # the port it had picked
        deadline = time.monotonic() + 30
        while True:  # the port may linger for a moment after the kill
            try:
                self._start(argv)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def toy_http(name: str, **env: str) -> HttpUpstream:
    return HttpUpstream([str(TOY), "http", name, "0"], env=env)


def toy_sse(name: str) -> HttpUpstream:
    return HttpUpstream([str(TOY), "sse", name, "0"], path="/sse")


def fixture_http() -> HttpUpstream:
    return HttpUpstream([str(FIXTURE), "--transport", "streamable-http", "--host", "127.0.0.1", "--port", "0"])


def stdio_table(id_: str, script: Path, *args: str, **extra: object) -> str:
    lines = [
        f"[upstreams.{id_}]",
        'transport = "stdio"',
        f'command = "{sys.executable}"',
        "args = [" + ", ".join(f'"{a}"' for a in (str(script), *args)) + "]",
    ]
    return "\n".join(lines + [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in extra.items()])


def http_table(id_: str, url: str, transport: str = "streamable-http", **extra: object) -> str:
    lines = [f"[upstreams.{id_}]", f'transport = "{transport}"', f'url = "{url}"']
    return "\n".join(lines + [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in extra.items()])


def federated_gateway(mode: str, tables: list[str], **env: str) -> Gateway:
    """A gateway whose config lists `tables`, ready once every upstream is."""
    fd, name = tempfile.mkstemp(prefix="mcpgw-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write("\n\n".join(tables) + "\n")
    gw = Gateway({"MCPGW_EDGE": mode, "MCPGW_CONFIG": name, **env}).wait_ready()
    gw.mode = mode
    gw.config_path = Path(name)
    wait_upstreams(gw.url)
    return gw


def upstream_health(url: str) -> dict:
    return httpx.get(url + "/health").json()["upstreams"]


def wait_upstreams(
    url: str, timeout: float = 60.0, predicate=lambda u: u["state"] == "ready", only: str | None = None
) -> dict:
    """Poll /health until every upstream (or just `only`) satisfies `predicate` (a deadline, not a
    timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        health = upstream_health(url)
        watched = [health[only]] if only else health.values()
        if all(predicate(u) for u in watched) or time.monotonic() > deadline:
            return health
        time.sleep(0.1)
