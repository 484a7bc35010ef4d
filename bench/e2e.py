"""End-to-end throughput and latency: the gateway in wasm and python mode, the SDK's own server,
Starlette's CORS middleware, side by side: every (workload, connections) cell runs each target in
turn, the order alternating between repetitions so machine noise hits all of them alike."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict

import httpx

import servers
import wrk

SESSION_REVISION = "2025-11-25"
ORIGIN = "http://localhost:5173"
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
INITIALIZE = (
    '{"jsonrpc":"2.0","id":@ID@,"method":"initialize","params":{"protocolVersion":"' + SESSION_REVISION + '",'
    '"capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}'
)
TOOLS_LIST = '{"jsonrpc":"2.0","id":@ID@,"method":"tools/list","params":{}}'
ECHO = '{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
PREFLIGHT = {
    "origin": ORIGIN,
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type,mcp-protocol-version,mcp-session-id",
}


def open_session(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """One shared session for the tools workloads (the SDK's fastest mode, per docs/benchmarks.md);
    `extra` headers (e.g. Authorization) on every request of it."""
    first = {**JSON_HEADERS, **(extra or {})}
    r = httpx.post(url + "/mcp", headers=first, content=INITIALIZE.replace("@ID@", "0"))
    r.raise_for_status()
    headers = {**first, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": SESSION_REVISION}
    httpx.post(url + "/mcp", headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


def workloads_for(kind: str, url: str) -> dict[str, wrk.Workload]:
    """What each target serves: `gateway` everything, `sdk` the MCP calls, `cors` the preflight."""
    loads: dict[str, wrk.Workload] = {}
    if kind in ("gateway", "sdk", "nocache"):
        session = open_session(url)
        if kind != "nocache":
            loads["initialize"] = wrk.Workload("initialize", "POST", "/mcp", JSON_HEADERS, INITIALIZE)
        loads["tools/list"] = wrk.Workload("tools/list", "POST", "/mcp", session, TOOLS_LIST)
        loads["tools/call echo"] = wrk.Workload("tools/call echo", "POST", "/mcp", session, ECHO)
    if kind == "bare":  # the HTTP stack's ceiling: no session, a fixed answer per call
        loads["tools/list"] = wrk.Workload("tools/list", "POST", "/mcp", JSON_HEADERS, TOOLS_LIST)
        loads["tools/call echo"] = wrk.Workload("tools/call echo", "POST", "/mcp", JSON_HEADERS, ECHO)
    if kind in ("gateway", "cors"):
        loads["preflight"] = wrk.Workload("preflight", "OPTIONS", "/mcp", PREFLIGHT)
    return loads


def gateway_answers(url: str) -> dict[str, str]:
    """The gateway's answers to the bench's tools/list and tools/call echo (id "0"): the bodies the
    bare-uvicorn ceiling sends."""
    session = open_session(url)
    answers = {}
    for key, template in (("tools/list", TOOLS_LIST), ("tools/call", ECHO)):
        r = httpx.post(url + "/mcp", headers=session, content=template.replace("@ID@", '"0"'))
        r.raise_for_status()
        answers[key] = r.text
    return answers


def check(url: str, load: wrk.Workload) -> None:
    """Each workload must get a right answer once before it is timed."""
    r = httpx.request(
        load.method, url + load.path, headers=load.headers, content=load.body.replace("@ID@", '"check"') or None
    )
    assert r.status_code in (200, 204), (url, load.name, r.status_code, r.text)
    if load.method == "POST" and load.name != "initialize":
        assert "result" in r.json(), r.text  # a JSON-RPC answer with a result, never an error
    if load.name == "tools/call echo":
        assert "hello" in r.text, r.text
    if load.name == "tools/list":
        assert '"echo"' in r.text, r.text


def edge_cache(url: str) -> dict[str, int] | None:
    """The gateway's edge cache counters (None for targets that are not the gateway)."""
    try:
        cache = httpx.get(url + "/health", timeout=10).json()["edge"]["cache"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return {"hits": int(cache.get("hits", 0)), "crossings": int(cache.get("crossings", 0))}


def summarize(workload: str, conns: int, target: str, results: list[wrk.Result], cache: dict[str, int] | None) -> dict:
    """One row: medians over the repetitions that produced a figure with no error (the rule of
    report.paired_ratio: errors answered fast would flatter the target); failed ones are counted
    and named, never averaged in as zeros, and errors are summed over every repetition."""
    good = [r for r in results if r.ok]
    row: dict = {
        "workload": workload,
        "connections": conns,
        "target": target,
        "rps": statistics.median(r.rps for r in good) if good else None,
        "p50_ms": statistics.median(r.p50_ms for r in good) if good else None,
        "p99_ms": statistics.median(r.p99_ms for r in good) if good else None,
        "errors": sum(r.errors for r in results),
        "failed_runs": [r.failed for r in results if r.failed],
        "runs": [asdict(r) for r in results],
    }
    if cache is not None:
        answered = cache["hits"] + cache["crossings"]
        # What share of the timed requests the edge answered from its cache rather than the backend.
        row["edge_cache_hit_share"] = cache["hits"] / answered if answered else None
    return row


def run(duration_s: float, reps: int, connections: list[int]) -> list[dict]:
    targets = {
        "wasm": ("gateway", servers.gateway("wasm")),
        "python": ("gateway", servers.gateway("python")),
        # A second, identical python-mode gateway: how far apart two equal servers measure is
        # the noise floor any wasm/python ratio has to be read against.
        "python-control": ("gateway", servers.gateway("python", name="gateway-python-control")),
        "sdk-stateful": ("sdk", servers.sdk("stateful")),
        "starlette-cors": ("cors", servers.cors()),
        # The edge's outcome cache off: every request crosses into the backend, so wasm/python
        # here is the component's own cost end to end (issue 20: >= 0.97x).
        "wasm-nocache": ("nocache", servers.gateway("wasm", name="gateway-wasm-nocache", MCPGW_EDGE_CACHE_ENTRIES="0")),
        "python-nocache": (
            "nocache",
            servers.gateway("python", name="gateway-python-nocache", MCPGW_EDGE_CACHE_ENTRIES="0"),
        ),
    }
    rows: list[dict] = []
    try:
        # The ceiling of the HTTP stack the gateway runs on: uvicorn (uvloop, httptools) and an
        # ASGI app that answers a fixed JSON body, the wasm gateway's own answers to the same calls.
        targets["bare-uvicorn"] = ("bare", servers.bare_uvicorn(gateway_answers(targets["wasm"][1].url)))
        # The order each repetition runs the targets in (reversed every other one): a ratio pairs
        # two targets' runs, and a pair is back to back only when nothing runs between them, so
        # each bar's two sit side by side: python-control / python (the noise floor), python /
        # wasm, wasm / bare-uvicorn. With six targets between wasm and bare-uvicorn, each pair
        # held up to 12 s of a shared machine's drift: one run read echo 0.82x, tools/list 0.25x.
        order = ["python-control", "python", "wasm", "bare-uvicorn"]
        targets = {**{n: targets[n] for n in order}, **targets}
        loads = {name: workloads_for(kind, srv.url) for name, (kind, srv) in targets.items()}
        for name, per_target in loads.items():
            for load in per_target.values():
                check(targets[name][1].url, load)
                wrk.run(targets[name][1].url, load, 16, 1)  # warm-up
        workload_names = ["initialize", "tools/list", "tools/call echo", "preflight"]
        for conns in connections:
            for workload in workload_names:
                names = [n for n in targets if workload in loads[n]]
                samples: dict[str, list[wrk.Result]] = {n: [] for n in names}
                # Each server's CPU time (user + system, /proc/<pid>/stat) per answered request of
                # each repetition without an error: steadier than req/s on a shared machine.
                cpu: dict[str, list[float]] = {n: [] for n in names}
                caches: dict[str, dict[str, int] | None] = {}
                before = {n: edge_cache(targets[n][1].url) for n in names if targets[n][0] in ("gateway", "nocache")}
                for rep in range(reps):
                    order = names if rep % 2 == 0 else list(reversed(names))
                    for n in order:
                        pid = targets[n][1].proc.pid
                        start = servers.cpu_s(pid)
                        result = wrk.run(targets[n][1].url, loads[n][workload], conns, duration_s)
                        samples[n].append(result)
                        if result.ok:
                            cpu[n].append((servers.cpu_s(pid) - start) * 1e6 / result.requests)
                for n, start in before.items():
                    end = edge_cache(targets[n][1].url)
                    caches[n] = None if start is None or end is None else {k: end[k] - start[k] for k in start}
                for n in names:
                    row = summarize(workload, conns, n, samples[n], caches.get(n))
                    row["cpu_us_per_request"] = round(statistics.median(cpu[n]), 1) if cpu[n] else None
                    rows.append(row)
                    if row["rps"] is None:
                        why = "; ".join(row["failed_runs"]) or f"{row['errors']} errors"
                        print(f"  {workload:16} c={conns:<3} {n:15} FAILED: {why}", flush=True)
                        continue
                    share = row.get("edge_cache_hit_share")
                    print(
                        f"  {workload:16} c={conns:<3} {n:15} {row['rps']:9.0f} req/s  "
                        f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}"
                        + (f"  failed runs {len(row['failed_runs'])}" if row["failed_runs"] else "")
                        + (f"  edge cache {share:.0%}" if share is not None else "")
                        + (f"  CPU {row['cpu_us_per_request']:.1f} µs/request" if row["cpu_us_per_request"] else ""),
                        flush=True,
                    )
    finally:
        for _, srv in targets.values():
            srv.stop()
    return rows


if __name__ == "__main__":
    print(json.dumps(run(2, 1, [16]), indent=1))
