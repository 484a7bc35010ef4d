"""A tools/call leaves nothing behind for the cycle collector (issue 17): every object the gateway
makes for a request is freed by reference counting when the request is done, in memory and with
Redis. A per-request reference cycle (the Router's scope held by the observer's note, which that
scope holds; in Redis mode a POST's SSE stream and the mirror writing it through, each holding
the other) costs a young-generation collection every hundred-odd requests and the collector's
walk of every young object each time. The gateway is served in this process (real uvicorn, in a
thread) so that its garbage can be seen: the collector keeps what it finds (DEBUG_SAVEALL)."""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator

import httpx
import orjson
import pytest

from inproc import served
from mcpgw.settings import Settings
from test_scaleout_core import Redis

REQUESTS = 200
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    server = Redis()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


def gateways_own(found: object) -> bool:
    """Whether an object the collector found is the gateway's (its classes, uvicorn's, the SDK's,
    or an ASGI scope), not the test client's."""
    if isinstance(found, dict):
        return any(isinstance(key, str) and key.startswith("mcpgw.") for key in found)
    module = type(found).__module__
    return module.startswith(("mcpgw", "uvicorn", "starlette", "mcp."))


def garbage_per_request(settings: Settings) -> tuple[float, list[str]]:
    """The gateway's objects the cycle collector finds per tools/call (one session, one kept-alive
    connection, after a warm-up; echo answered as JSON and sleep answered as an SSE stream, in
    turn), and the kinds found."""
    with (
        served(settings, own_http=True) as (_, url, _loop),
        httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client,
    ):
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        body = orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        opened = client.post("/mcp", content=body)
        assert opened.status_code == 200, opened.text
        client.headers["mcp-session-id"] = opened.headers["mcp-session-id"]
        client.headers["mcp-protocol-version"] = "2025-11-25"
        assert client.post("/mcp", content=b'{"jsonrpc":"2.0","method":"notifications/initialized"}').status_code == 202

        def calls(first: int, count: int) -> None:
            for id_ in range(first, first + count):
                params = {"name": "echo", "arguments": {"text": "hello"}}
                body = orjson.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params})
                answer = client.post("/mcp", content=body)
                assert answer.status_code == 200 and answer.json()["result"]["content"][0]["text"] == "hello"
                # every other one with a progress token: answered as an SSE stream (in Redis mode
                # written through to Redis by the stream's mirror)
                params = {"name": "sleep", "arguments": {"seconds": 0, "ticks": 1}, "_meta": {"progressToken": id_}}
                body = orjson.dumps({"jsonrpc": "2.0", "id": -id_, "method": "tools/call", "params": params})
                answer = client.post("/mcp", content=body)
                assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
                assert "notifications/progress" in answer.text and "slept 0s" in answer.text, answer.text

        calls(1, 50)  # warm-up: caches, pools, the connection to Redis
        gc.collect()
        gc.garbage.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            calls(1000, REQUESTS // 2)
            gc.collect()
            found = [o for o in gc.garbage if gateways_own(o)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    kinds = sorted({type(o).__qualname__ for o in found})
    return len(found) / REQUESTS, kinds


def test_a_tools_call_in_memory_leaves_no_cycle_for_the_collector() -> None:
    per_request, kinds = garbage_per_request(Settings(max_requests_per_session=0, max_sessions_per_client=0))
    assert per_request < 0.1, (per_request, kinds)  # (before: the scope and the note, every request)


def test_a_tools_call_with_redis_leaves_no_cycle_for_the_collector(redis: Redis) -> None:
    settings = Settings(redis_url=redis.url, max_requests_per_session=0, max_sessions_per_client=0)
    per_request, kinds = garbage_per_request(settings)
    assert per_request < 0.1, (per_request, kinds)


def test_a_connection_per_request_leaves_no_cycle_for_the_collector() -> None:
    """A client that opens a connection for each request (the gateway's own HTTP protocol, as
    `mcpgw serve` runs it): the protocol, its cycle and its scope are freed when it closes (before:
    its `mcpgw.abort` extension, a bound method of itself, kept 7 objects per connection)."""
    connections = 100
    with served(Settings(), own_http=True) as (_, url, _loop):

        def visit(count: int) -> None:
            for _ in range(count):
                with httpx.Client(base_url=url, timeout=60) as client:
                    assert client.get("/health").status_code == 200

        visit(10)  # warm-up
        gc.collect()
        gc.garbage.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            visit(connections)
            gc.collect()
            found = [o for o in gc.garbage if gateways_own(o)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert len(found) / connections < 0.1, sorted({type(o).__qualname__ for o in found})
