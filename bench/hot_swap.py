"""Hot swaps under load: wrk keeps 16 connections busy with tools/list while the admin API swaps
the component in and rolls it back, again and again. docs/benchmarks.md: 100 swaps, zero failed requests.

wrk repeats one head, so the gateway runs with the outcome cache off: every request crosses into
whichever version is active (not one crossing per version), and the crossing count from /health
shows it."""

from __future__ import annotations

import threading
import time

import httpx

import e2e
import servers
import wrk
from mcpgw.edge.backend import PACKAGED_COMPONENT

TOKEN = "bench-admin-token-0123456789abcdef"


def measure(swaps: int = 100, connections: int = 16) -> dict:
    srv = servers.gateway("wasm", MCPGW_ADMIN_TOKEN=TOKEN, MCPGW_EDGE_CACHE_ENTRIES="0")
    component = PACKAGED_COMPONENT.read_bytes()
    auth = {"authorization": f"Bearer {TOKEN}"}
    runs: list[wrk.Result] = []
    done = threading.Event()

    def load(workload: wrk.Workload) -> None:
        while not done.is_set():
            runs.append(wrk.run(srv.url, workload, connections, 2))

    try:
        workload = e2e.workloads_for("gateway", srv.url)["tools/list"]
        e2e.check(srv.url, workload)  # a right answer once before the load counts anything
        loader = threading.Thread(target=load, args=(workload,))
        loader.start()
        swap_ms: list[float] = []
        with httpx.Client(base_url=srv.url, headers=auth, timeout=60) as admin:
            for _ in range(swaps):
                t0 = time.perf_counter()
                swapped = admin.post("/admin/edge/swap", content=component)
                swap_ms.append((time.perf_counter() - t0) * 1000)
                assert swapped.status_code == 200, swapped.text
                rolled = admin.post("/admin/edge/rollback")
                assert rolled.status_code == 200, rolled.text
        done.set()
        loader.join()
        crossings = httpx.get(srv.url + "/health").json()["edge"]["cache"]["crossings"]
    finally:
        done.set()
        srv.stop()
    swap_ms.sort()
    result = {
        "swaps": swaps,
        "rollbacks": swaps,
        "requests": sum(r.requests for r in runs),
        "failed": sum(r.errors for r in runs),
        # A load run that produced no figure (wrk died, nothing answered) hides how many requests
        # failed: named here, and the report does not count the bar as met on its word.
        "failed_runs": [r.failed for r in runs if r.failed],
        "crossings": crossings,
        "swap_p50_ms": swap_ms[len(swap_ms) // 2],
        "swap_max_ms": swap_ms[-1],
    }
    # Crossings also include the session set-up, /health and the admin calls, hence >=.
    assert crossings >= result["requests"], f"only {crossings} crossings for {result['requests']} requests"
    print(
        f"  {swaps} swaps + {swaps} rollbacks under load: {result['requests']} requests, "
        f"{result['failed']} failed, {crossings} crossings into the component (cache off); "
        f"swap (verify + activate) p50 {result['swap_p50_ms']:.0f} ms",
        flush=True,
    )
    return result
