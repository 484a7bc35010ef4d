"""tools/list through the gateway's ASGI application in this process, no server, no sockets: the
gateway's own work per request, for an instruction count under callgrind (bench/metrics.py).

    valgrind --tool=callgrind --instr-atstart=no python inprocess_requests.py <MCPGW_METRICS> <n>

Sets up an App (Python edge: the count is about what metrics add, not the edge), opens a session,
warms up, then turns callgrind's instrumentation on (callgrind_control) for exactly `n` requests,
each checked to be a 200 answering tools/list."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson

import callgrind
from mcpgw.app import App, create_app
from mcpgw.settings import Settings

INIT = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}},
    }
)
LIST = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
Headers = list[tuple[bytes, bytes]]


def scope(headers: Headers) -> dict[str, Any]:
    base = [(b"host", b"127.0.0.1:4444"), (b"accept", b"application/json, text/event-stream")]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": [*base, (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 4444),
        "extensions": {},
    }


async def call(app: App, headers: Headers, body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(headers), receive, send)
    return sent


def instrument(state: str) -> None:
    """callgrind counts from here (on) or stops (off); returns once callgrind has done it, which is
    what this must wait for (blocking the loop on purpose: nothing else runs meanwhile)."""
    callgrind.instrument(os.getpid(), state)


async def main(metrics: str, n: int) -> None:
    app = create_app(Settings(edge="python", metrics=metrics, max_requests_per_session=0, max_sessions_per_client=0))
    app.engine.start()
    sid = dict((await call(app, [], INIT))[0]["headers"])[b"mcp-session-id"]
    headers = [(b"mcp-session-id", sid), (b"mcp-protocol-version", b"2025-11-25")]
    await call(app, headers, orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    for _ in range(300):
        await call(app, headers, LIST)
    instrument("on")
    for _ in range(n):
        sent = await call(app, headers, LIST)
        if sent[0]["status"] != 200 or b'"tools"' not in sent[1]["body"]:
            raise SystemExit(f"unexpected answer: {sent}")
    instrument("off")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
