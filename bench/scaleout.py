"""Scale-out through Redis (docs/scale-out.md): what shared state costs and what a second process
buys, side by side, alternating order between repetitions.

- tools/list and tools/call `echo` at 16 connections on one session (every connection sends its
  requests in the one session opened per target, each with an id of its own): one process in
  memory, one process with Redis, two processes with Redis (`mcpgw serve --workers 2`: the kernel
  spreads the 16 connections over both, so every process serves the one session, about 8
  connections each). Beside req/s, CPU per answered request of the gateway process(es) and of
  redis-server (from /proc), and the per-turn BATCH script calls per answered request (Redis's
  INFO commandstats, `evalsha`): a process with fewer connections puts fewer requests in each
  call, which is what a second process costs per tools/call (docs/scale-out.md);
- sessions created per second (`initialize` at 16 connections), the same three targets;
- the control: 2026-07-28 `tools/list` (stateless, no Redis on its path) on the same targets, so
  the report shows what a second process buys on this machine at all;
- resume latency after a kill: a `sleep` streaming progress from process A, A SIGKILLed, the
  stream resumed with Last-Event-ID on process B: the time until B answers the lost request's
  error.

The machine has few cores and everything shares them: wrk (one thread), redis-server (one
thread) and the gateway processes. The record states the core count; the 2-process ratio is
bounded by it. Every answer is checked (wrk counts non-2xx and JSON-RPC errors inside a 2xx);
a failed repetition is recorded with its reason and never crashes the report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx

import e2e
import servers
import wrk

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("memory, 1 process", "redis, 1 process", "redis, 2 processes")
WORKLOADS = ("tools/list", "tools/call echo", "initialize", "tools/list 2026")
# 2026-07-28 is stateless: no Redis on its path, so its 2-process / 1 ratio is what this machine
# gives a second process at all (the control for the sessionful ratios).
HEADERS_2026 = {**e2e.JSON_HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
TOOLS_LIST_2026 = (
    '{"jsonrpc":"2.0","id":@ID@,"method":"tools/list","params":{"_meta":{'
    '"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},'
    '"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"0"}}}}'
)
SLEEP = (
    '{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"sleep",'
    '"arguments":{"seconds":60,"ticks":600},"_meta":{"progressToken":1}}}'
)


class Redis:
    """Debian's redis-server on a free loopback port, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `make bench` installs it (.build/redis.stamp)")
        self.port = servers.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = open(ROOT / ".build" / "bench-redis.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT / ".build",
        )
        deadline = time.monotonic() + 30
        while not self._ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start: see .build/bench-redis.log")
            time.sleep(0.05)

    def script_calls(self) -> int:
        """EVALSHA calls Redis has run so far (INFO commandstats): the gateways' per-turn BATCH."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"INFO commandstats\r\n")
            data = b""
            while not data.endswith(b"\r\n\r\n") and (chunk := s.recv(65536)):
                data += chunk
        for line in data.decode().splitlines():
            if line.startswith("cmdstat_evalsha:"):
                return int(line.split("calls=", 1)[1].split(",", 1)[0])
        return 0

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _workers(redis_url: str, count: int) -> servers.Server:
    """`mcpgw serve --workers N`, ready once /health has answered from every worker."""
    gw = servers.gateway("wasm", name=f"gateway-scaleout-{count}w", MCPGW_REDIS_URL=redis_url, MCPGW_WORKERS=str(count))
    seen: set[int] = set()
    deadline = time.monotonic() + 90
    while len(seen) < count:
        if gw.proc.poll() is not None or time.monotonic() > deadline:
            gw.stop()
            raise RuntimeError(f"{count} workers did not all answer: see .build/bench-{gw.name}.log")
        try:
            process = httpx.get(gw.url + "/health", timeout=5).json()["process"]  # a new connection each time
        except (httpx.HTTPError, ValueError, KeyError):
            time.sleep(0.1)
            continue
        seen.add(process["pid"])
    return gw


def _workloads(url: str) -> dict[str, wrk.Workload]:
    session = e2e.open_session(url)
    return {
        "tools/list": wrk.Workload("tools/list", "POST", "/mcp", session, e2e.TOOLS_LIST),
        "tools/call echo": wrk.Workload("tools/call echo", "POST", "/mcp", session, e2e.ECHO),
        "initialize": wrk.Workload("initialize", "POST", "/mcp", e2e.JSON_HEADERS, e2e.INITIALIZE),
        "tools/list 2026": wrk.Workload("tools/list 2026", "POST", "/mcp", HEADERS_2026, TOOLS_LIST_2026),
    }


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far."""
    return sum(servers.cpu_s(pid) for pid in pids)


def _serving_pids(srv: servers.Server) -> list[int]:
    """The process serving requests, or a supervisor's workers (its children)."""
    pid = srv.proc.pid
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    return children or [pid]


def throughput(redis: Redis, duration_s: float, reps: int, connections: int) -> list[dict]:
    """Each target's rows, with CPU per answered request beside req/s: on a shared machine the
    gateway's (and redis-server's) CPU time per request is steadier than what rate it reaches."""
    targets: dict[str, servers.Server] = {}
    try:
        targets["memory, 1 process"] = servers.gateway("wasm", name="gateway-scaleout-memory")
        targets["redis, 1 process"] = servers.gateway("wasm", name="gateway-scaleout-redis", MCPGW_REDIS_URL=redis.url)
        targets["redis, 2 processes"] = _workers(redis.url, 2)
        loads = {name: _workloads(srv.url) for name, srv in targets.items()}
        for name, per_target in loads.items():
            for load in per_target.values():
                e2e.check(targets[name].url, load)
                wrk.run(targets[name].url, load, connections, 1)  # warm-up
        rows = []
        for workload in WORKLOADS:
            samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
            cpu: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}  # gw, redis us; calls
            for rep in range(reps):
                order = list(targets) if rep % 2 == 0 else list(reversed(targets))
                for name in order:
                    pids = _serving_pids(targets[name])
                    gw0, redis0, calls0 = _cpu_s(pids), _cpu_s([redis.proc.pid]), redis.script_calls()
                    result = wrk.run(targets[name].url, loads[name][workload], connections, duration_s)
                    samples[name].append(result)
                    if result.ok:
                        per = 1e6 / result.requests
                        gw_us = (_cpu_s(pids) - gw0) * per
                        redis_us = (_cpu_s([redis.proc.pid]) - redis0) * per
                        cpu[name].append((gw_us, redis_us, (redis.script_calls() - calls0) / result.requests))
            for name, results in samples.items():
                row = e2e.summarize(workload, connections, name, results, None)
                row["gateway_cpu_us"] = statistics.median(c[0] for c in cpu[name]) if cpu[name] else None
                row["redis_cpu_us"] = statistics.median(c[1] for c in cpu[name]) if cpu[name] else None
                row["batch_calls_per_req"] = statistics.median(c[2] for c in cpu[name]) if cpu[name] else None
                rows.append(row)
                figure = (
                    "FAILED: " + "; ".join(row["failed_runs"])
                    if row["rps"] is None
                    else f"{row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms"
                )
                if row["gateway_cpu_us"] is not None:
                    figure += f"  CPU/req gateway {row['gateway_cpu_us']:5.0f} us redis {row['redis_cpu_us']:4.0f} us"
                    figure += f"  BATCH calls/req {row['batch_calls_per_req']:.2f}"
                print(f"  {workload:15} c={connections} {name:19} {figure}  errors {row['errors']}", flush=True)
        return rows
    finally:
        for srv in targets.values():
            srv.stop()


def _resume_once(a: servers.Server, b: servers.Server, bound_s: float) -> float:
    """Seconds from A's SIGKILL until B, resuming A's stream, answers the lost request."""
    session = e2e.open_session(a.url)
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", a.url + "/mcp", headers=session, content=SLEEP) as r,
    ):
        first = None
        for line in r.iter_lines():
            if line.startswith("id:"):
                first = line[3:].strip()
                break
    if first is None:
        raise RuntimeError("A sent no event id before the kill")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    killed = time.monotonic()
    with (
        httpx.Client(timeout=bound_s + 30) as http,
        http.stream("GET", b.url + "/mcp", headers={**session, "last-event-id": first}) as r,
    ):
        if r.status_code != 200:
            raise RuntimeError(f"resume on B: HTTP {r.status_code} {r.read()[:200]!r}")
        for line in r.iter_lines():
            if line.startswith("data:") and '"id":11' in line:
                if '"error"' not in line:
                    raise RuntimeError(f"the lost request was answered without an error: {line[:200]}")
                return time.monotonic() - killed
    raise RuntimeError("B's stream ended without the lost request's answer")


def resume_after_kill(redis_url: str, trials: int = 3, bound_s: float = 5.0) -> dict:
    b = servers.gateway("wasm", name="gateway-scaleout-b", MCPGW_REDIS_URL=redis_url)
    latencies: list[float] = []
    failures: list[str] = []
    try:
        for _ in range(trials):
            a = servers.gateway("wasm", name="gateway-scaleout-a", MCPGW_REDIS_URL=redis_url)
            try:
                latencies.append(_resume_once(a, b, bound_s))
            except Exception as exc:  # noqa: BLE001 - a failed trial is recorded, never fatal to the report
                failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                a.stop()
    finally:
        b.stop()
    result = {
        "trials": trials,
        "latencies_s": latencies,
        "median_s": statistics.median(latencies) if latencies else None,
        "max_s": max(latencies) if latencies else None,
        "bound_s": bound_s,
        "failures": failures,
    }
    figure = f"median {result['median_s']:.2f} s, max {result['max_s']:.2f} s" if latencies else "FAILED"
    print(
        f"  resume after a kill: {figure} over {len(latencies)}/{trials} trials",
        flush=True,
    )
    for failure in failures:
        print(f"    failed trial: {failure}", flush=True)
    return result


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> dict:
    redis = Redis()
    record: dict = {
        "cpus": os.cpu_count(),
        "core_split": (
            f"{os.cpu_count()} cores shared by wrk (1 thread), redis-server (1 thread) and the gateway process(es); "
            "nothing pinned"
        ),
        "connections": connections,
    }
    try:
        try:
            record["rows"] = throughput(redis, duration_s, reps, connections)
        except Exception as exc:  # noqa: BLE001 - the resume part still runs; the failure is in the record
            record["rows_failed"] = f"{type(exc).__name__}: {exc}"
            print(f"   throughput FAILED: {record['rows_failed']}", flush=True)
        record["resume"] = resume_after_kill(redis.url)
    finally:
        redis.stop()
    return record


if __name__ == "__main__":
    duration, reps = float(os.environ.get("BENCH_DURATION_S", "2")), int(os.environ.get("BENCH_REPS", "3"))
    print(json.dumps(measure(duration, reps), indent=1))
