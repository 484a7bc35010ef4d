"""Resident memory of the gateway: idle, holding 1,000 idle GET streams (each with its session),
and after 10,000 sessions created and deleted. docs/benchmarks.md: under 50 KiB per idle stream, no
growth from session churn. Streams are held by raw asyncio connections (one socket each)."""

from __future__ import annotations

import asyncio
import json

import servers

INIT = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"},
        },
    }
).encode()


async def _request(reader, writer, method: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, bytes]:
    head = [f"{method} /mcp HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    response_headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        response_headers[name.strip().lower()] = value.strip()
    length = int(response_headers.get("content-length", "0"))
    payload = await reader.readexactly(length) if length else b""
    return int(status_line.split()[1]), response_headers, payload


async def _session(port: int) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status, headers, _ = await _request(
        reader,
        writer,
        "POST",
        {"content-type": "application/json", "accept": "application/json, text/event-stream"},
        INIT,
    )
    assert status == 200, status
    return headers["mcp-session-id"], reader, writer


def _session_headers(sid: str) -> dict[str, str]:
    return {
        "mcp-session-id": sid,
        "mcp-protocol-version": "2025-11-25",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }


async def hold_streams(port: int, count: int):
    """Open `count` sessions, each with a GET stream read up to its priming event; return them."""
    held = []
    for _ in range(count):
        sid, reader, writer = await _session(port)
        writer.write(
            (
                "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in _session_headers(sid).items())
                + "\r\n"
            ).encode()
        )
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await reader.readuntil(b"data: \n\n")  # headers, chunk size, priming event
        held.append((sid, reader, writer))
    return held


async def churn(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            status, headers, _ = await _request(
                reader,
                writer,
                "POST",
                {"content-type": "application/json", "accept": "application/json, text/event-stream"},
                INIT,
            )
            assert status == 200
            status, _, _ = await _request(reader, writer, "DELETE", _session_headers(headers["mcp-session-id"]))
            assert status == 204, status
    finally:
        writer.close()


def measure(mode: str, streams: int = 1000, sessions: int = 10_000) -> dict:
    srv = servers.gateway(mode, MCPGW_SSE_KEEPALIVE_S="15")
    try:
        asyncio.run(churn(srv.port, 200))  # warm: first-use allocations are not growth
        idle = srv.rss_kib()

        async def with_streams():
            held = await hold_streams(srv.port, streams)
            rss = srv.rss_kib()
            for _, _, writer in held:
                writer.close()
            return rss

        holding = asyncio.run(with_streams())
        asyncio.run(churn(srv.port, 1000))
        before = srv.rss_kib()
        asyncio.run(churn(srv.port, sessions))
        after = srv.rss_kib()
    finally:
        srv.stop()
    result = {
        "mode": mode,
        "idle_kib": idle,
        "streams": streams,
        "with_streams_kib": holding,
        "per_stream_kib": (holding - idle) / streams,
        "sessions_churned": sessions,
        "before_churn_kib": before,
        "after_churn_kib": after,
        "churn_growth_kib": after - before,
    }
    print(
        f"  {mode:7} idle {idle / 1024:6.1f} MiB  +{streams} GET streams {holding / 1024:6.1f} MiB "
        f"({result['per_stream_kib']:.1f} KiB each, session included)  "
        f"{sessions} sessions created+deleted: {before / 1024:.1f} -> {after / 1024:.1f} MiB",
        flush=True,
    )
    return result


def store_full(mode: str, sessions: int = 8, calls: int = 2) -> dict:
    """RSS with the event store full at its budget: `sessions` sessions each run `calls` tools/call
    `log` of 20 x 1 MiB messages, read in full; their finished streams stay retained for resumption
    until the byte budgets (MCPGW_EVENT_STORE_MAX_*, defaults) evict them."""
    import httpx

    srv = servers.gateway(mode)
    try:
        asyncio.run(churn(srv.port, 200))
        idle = srv.rss_kib()
        produced = 0
        with httpx.Client(timeout=120) as http:
            for _ in range(sessions):
                json_and_sse = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
                r = http.post(srv.url + "/mcp", content=INIT, headers=json_and_sse)
                sid = r.headers["mcp-session-id"]
                for i in range(calls):
                    call = {
                        "jsonrpc": "2.0",
                        "id": i + 1,
                        "method": "tools/call",
                        "params": {"name": "log", "arguments": {"message": "x" * (1 << 20), "count": 20}},
                    }
                    r = http.post(srv.url + "/mcp", json=call, headers=_session_headers(sid))
                    assert r.status_code == 200 and f'"id":{i + 1}' in r.text, r.text[-300:]
                    produced += len(r.content)
        full = srv.rss_kib()
        events = httpx.get(srv.url + "/health").json().get("limits", {}).get("events", {})
    finally:
        srv.stop()
    result = {
        "mode": mode,
        "idle_kib": idle,
        "produced_bytes": produced,
        "store_full_kib": full,
        "retained_bytes": events.get("bytes"),
        "budget_bytes": events.get("max_bytes", events.get("budget")),
    }
    retained = result["retained_bytes"]
    print(
        f"  {mode:7} event store full: produced {produced / (1 << 20):.0f} MiB of events, retained "
        f"{'?' if retained is None else f'{retained / (1 << 20):.1f}'} MiB; RSS {idle / 1024:.1f} -> "
        f"{full / 1024:.1f} MiB",
        flush=True,
    )
    return result


def hostile(mode: str = "wasm", settle_s: float = 30.0) -> dict:
    """RSS through the hostile-client run of host-python/tests/test_hostile_client.py, whose client
    this reuses (one workload, one set of figures): a gateway with default settings (the per-address
    caps on, unlike the throughput gateways), a control client calling tools/list from 127.0.0.1,
    and from 127.0.0.2 in turn: retention flooded with 300 x 1 MiB log messages, sessions until
    refused, 400 stalled heads, an 80 MiB header. RSS before (baseline), its peak (sampled every
    50 ms), right after, and after `settle_s` seconds idle."""
    import sys
    import time

    sys.path.insert(0, str(servers.ROOT / "host-python" / "tests"))
    import test_hostile_client as h  # the test's own hostile client, found on its path

    port = servers.free_port()
    srv = servers.Server(
        f"gateway-hostile-{mode}",
        [sys.executable, "-m", "mcpgw.cli", "serve"],
        {"MCPGW_EDGE": mode, "MCPGW_HOST": "127.0.0.1", "MCPGW_PORT": str(port), "MCPGW_LOG_LEVEL": "warning"},
        port=port,
    ).wait_ready("/health")
    try:
        pid = srv.proc.pid
        with h.Control(srv.url) as control, h.Watch(pid) as watch:
            time.sleep(1)
            baseline = h.rss_mib(pid)
            h.flood_retention(srv.url)
            sessions = h.sessions_until_refused(srv.url)
            refused, held = h.stalled_until_refused(srv.port)
            for sock in held:
                sock.close()
            h.wait_served_again(srv.url)
            answer = h.huge_header(srv.port)
        after = h.rss_mib(pid)
        time.sleep(settle_s)
        settled = h.rss_mib(pid)
    finally:
        srv.stop()
    result = {
        "mode": mode,
        "baseline_mib": baseline,
        "peak_mib": watch.peak,
        "after_mib": after,
        "settled_mib": settled,
        "settle_s": settle_s,
        "ceiling_mib": h.RSS_CEILING_MIB,
        "sessions_before_refusal": sessions,
        "stalled_refused_of_400": refused,
        "huge_header_answer": answer[:12].decode(errors="replace"),
        "control_calls": control.calls,
        "control_failures": len(control.failures),
    }
    print(
        f"  {mode:7} hostile run: RSS baseline {baseline:.1f} MiB, peak {watch.peak:.1f} MiB (ceiling "
        f"{h.RSS_CEILING_MIB}), right after {after:.1f} MiB, {settle_s:g} s later {settled:.1f} MiB; "
        f"{control.calls} control calls, {len(control.failures)} failed",
        flush=True,
    )
    return result
