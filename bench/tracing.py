"""What OpenTelemetry tracing costs on the request path: tools/list at 16 connections through a
gateway exporting every span (OTLP/HTTP, batched) to a local collector stub, through one sampling
one trace in ten (OTEL_TRACES_SAMPLER=parentbased_traceidratio, 0.1), and through one with tracing
off, side by side, alternating order between repetitions; every answer is checked. No bar (issue
18 asks for the figure). The stubs decode each export (OTLP protobuf) and count the spans; the
report says how many `tools/list` server spans arrived for the requests answered (the SDK's batch
queue drops spans when the exporter falls behind: that is counted, not hidden)."""

from __future__ import annotations

import json
import time

import auth
import e2e
import servers
import wrk
from otlp_stub import CollectorStub

ON, SAMPLED, OFF = "tracing on", "tracing 10%", "tracing off"


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> dict:
    collectors = {ON: CollectorStub(), SAMPLED: CollectorStub()}  # one each: their spans are counted apart
    targets: dict[str, servers.Server] = {}
    try:
        targets[ON] = servers.gateway("wasm", name="gateway-tracing-on", OTEL_EXPORTER_OTLP_ENDPOINT=collectors[ON].url)
        targets[SAMPLED] = servers.gateway(  # the operator's knob: one trace in ten recorded and exported
            "wasm",
            name="gateway-tracing-sampled",
            OTEL_EXPORTER_OTLP_ENDPOINT=collectors[SAMPLED].url,
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG="0.1",
        )
        targets[OFF] = servers.gateway("wasm", name="gateway-tracing-off", MCPGW_TRACING="off")
        health = {name: srv_health(srv)["enabled"] for name, srv in targets.items()}
        if health != {ON: True, SAMPLED: True, OFF: False}:
            raise RuntimeError(f"tracing is not as asked: {health}")
        loads = {}
        for name, srv in targets.items():
            session = auth._session(srv.url, {})
            loads[name] = wrk.Workload("tools/list", "POST", "/mcp", session, e2e.TOOLS_LIST)
            e2e.check(srv.url, loads[name])
            wrk.run(srv.url, loads[name], connections, 1)  # warm-up
        time.sleep(6)  # the check's and warm-up's spans are exported (a batch leaves every 5 s)
        before = {name: c.count("tools/list") for name, c in collectors.items()}
        samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
        for rep in range(reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for name in order:
                samples[name].append(wrk.run(targets[name].url, loads[name], connections, duration_s))
        answered = {name: sum(r.requests for r in samples[name]) for name in (ON, SAMPLED)}
        for name in (ON, SAMPLED):
            targets.pop(name).stop()  # its shutdown exports what is still queued
        received = {name: c.count("tools/list") - before[name] for name, c in collectors.items()}
        rows = [e2e.summarize("tools/list", connections, name, results, None) for name, results in samples.items()]
        for row in rows:
            figure = "FAILED" if row["rps"] is None else f"{row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms"
            print(f"  tools/list c={connections} {row['target']:12} {figure}  errors {row['errors']}", flush=True)
        for name in (ON, SAMPLED):
            print(
                f"  {name}: the collector stub received {received[name]} tools/list server spans for "
                f"{answered[name]} answered ({collectors[name].exports} exports)",
                flush=True,
            )
        return {"rows": rows, "answered": answered, "spans_received": received}
    finally:
        for srv in targets.values():
            srv.stop()
        for collector in collectors.values():
            collector.stop()


def srv_health(srv: servers.Server) -> dict:
    import httpx

    return httpx.get(srv.url + "/health", timeout=10).json()["tracing"]


if __name__ == "__main__":
    print(json.dumps(measure(1, 1), indent=1))
