"""Scale-out harness: a real `redis-server` on a free loopback port (no persistence), several
`mcpgw serve` processes sharing it, `mcpgw serve --workers N`, and a small round-robin HTTP
proxy that sends every request to a different gateway process in turn (streaming SSE through),
as a load balancer that knows nothing about MCP would.

redis-server is Debian's (`make test` installs it, `.build/redis.stamp`); its absence is a
broken set-up, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn

from conftest import Gateway, stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """`redis-server` on loopback: no RDB snapshots, no AOF (`--save '' --appendonly no`), so a
    restart starts empty, as a Redis that lost its memory would."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: `make test` installs it (Debian's redis-server, .build/redis.stamp)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="mcpgw-redis-")
        self.start()

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the port may linger for a moment after a stop
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.dir,
                    "--logfile",
                    "",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ping():
                    return
                time.sleep(0.05)
            stop_process(self.proc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.2)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis closes every client connection and exits (nothing is saved)."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def config_file(tables: list[str]) -> str:
    fd, name = tempfile.mkstemp(prefix="mcpgw-scaleout-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write("\n\n".join(tables) + "\n")
    return name


def gateways(redis: RedisServer, n: int, tables: list[str] | None = None, **env: str) -> list[Gateway]:
    """`n` gateway processes on their own loopback ports, sharing `redis` (and, with `tables`, one
    upstream config). Started together, then waited for."""
    extra = {"MCPGW_REDIS_URL": redis.url, "MCPGW_EDGE": "wasm", **env}
    if tables:
        extra["MCPGW_CONFIG"] = config_file(tables)
    started = [Gateway(extra) for _ in range(n)]
    try:
        for gw in started:
            gw.wait_ready()
            gw.mode = "wasm"
            gw.config_path = extra.get("MCPGW_CONFIG")  # removed by stop_all
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(gws: list[Gateway]) -> None:
    """Stop the gateways (SIGTERM, then SIGKILL) and remove the config file they shared."""
    for gw in gws:
        gw.stop()
    for path in {getattr(gw, "config_path", None) for gw in gws} - {None}:
        os.unlink(path)


def kill(gw: Gateway) -> None:
    """SIGKILL: no drain, no goodbye to Redis."""
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()


_SUPERVISOR = re.compile(r"mcpgw supervisor \(pid \d+\): (\d+) workers on http://127\.0\.0\.1:(\d+)")


def workers_gateway(redis: RedisServer | None, workers: int, **env: str) -> Gateway:
    """`mcpgw serve --workers N`: not yet waited for (the caller may expect a refusal)."""
    extra = {"MCPGW_EDGE": "wasm", **env}
    if redis is not None:
        extra["MCPGW_REDIS_URL"] = redis.url
    return Gateway(extra, args=["--workers", str(workers)])


def wait_workers(gw: Gateway, timeout: float = 90.0) -> Gateway:
    """Until the supervisor names its port and every worker says it serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = gw.log()
        bound = _SUPERVISOR.search(log)
        if gw.proc.poll() is not None:
            raise RuntimeError(f"supervisor exited with {gw.proc.returncode}:\n{log}")
        if bound and f"all {bound.group(1)} workers serving" in log:
            gw.port = int(bound.group(2))
            gw.url = f"http://127.0.0.1:{gw.port}"
            return gw.wait_ready()
        time.sleep(0.1)
    raise RuntimeError(f"workers did not start:\n{gw.log()}")


# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy's own client sets.
_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
}


class RoundRobinProxy:
    """An HTTP reverse proxy on a free loopback port that sends each request to the next backend
    in turn, whatever the request (no affinity, no MCP knowledge), and streams the answer
    through as it comes (SSE included). When the client goes away, the backend request is
    closed too. `served` records, per request, the method and the backend's index."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = list(backends)
        self.served: list[tuple[str, int]] = []
        self._turn = itertools.count()
        self._client: httpx.AsyncClient | None = None
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, lifespan="off", log_level="warning", loop="asyncio", access_log=False, interface="asgi3"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the round-robin proxy did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def __enter__(self) -> RoundRobinProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        index = next(self._turn) % len(self.backends)
        self.served.append((scope["method"], index))
        url = self.backends[index] + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))
        request = self._client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:  # a backend that is gone: what a load balancer answers
            data = f'{{"error": "backend {index} unreachable: {type(exc).__name__}"}}'.encode()
            start = {"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"application/json")]}
            await send(start)
            await send({"type": "http.response.body", "body": data})
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP],
                }
            )
            relay = asyncio.ensure_future(self._relay(response, send))
            gone = asyncio.ensure_future(self._client_gone(receive))
            await asyncio.wait({relay, gone}, return_when=asyncio.FIRST_COMPLETED)
            for task in (relay, gone):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if relay.done() and not relay.cancelled() and relay.exception() is None:
                await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    @staticmethod
    async def _relay(response: httpx.Response, send: Any) -> None:
        with contextlib.suppress(httpx.HTTPError):  # a backend killed mid-stream: the stream just ends
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

    @staticmethod
    async def _client_gone(receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


def log_of(gws: list[Gateway]) -> str:
    return "\n".join(f"--- gateway {i} (port {gw.port}) ---\n{gw.log()}" for i, gw in enumerate(gws))
