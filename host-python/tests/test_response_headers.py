"""The headers the layers add to every response (the edge's CORS headers and `mcpgw-edge` tag, the
observer's `X-Request-Id`), now written by one `send` wrapper (the observer's) instead of one per
layer: each exactly once, in the order they had (CORS, tag, request id), on answers given at once,
SSE responses, the edge's own refusals and preflights; the edge used without the observer still
adds its own. The whole application in this process (httpx's ASGI transport), Python edge."""

from __future__ import annotations

import httpx
import orjson

from mcpgw.app import create_app
from mcpgw.settings import Settings

ORIGIN = "http://localhost:5173"
BASE = {"accept": "application/json, text/event-stream", "content-type": "application/json", "origin": ORIGIN}
ADDED = (b"access-control-allow-origin", b"access-control-expose-headers", b"vary", b"mcpgw-edge", b"x-request-id")


def added(response: httpx.Response) -> list[bytes]:
    """The names of the added headers, in the order the response carries them."""
    return [name.lower() for name, _ in response.headers.raw if name.lower() in ADDED]


def initialize() -> bytes:
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
    )


def call(id_: int, name: str, arguments: dict[str, object]) -> bytes:
    params = {"name": name, "arguments": arguments}
    return orjson.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params})


async def test_added_headers_come_once_each_in_their_order():
    app = create_app(Settings(edge="python", edge_tag_responses=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:4444") as client:
        opened = await client.post("/mcp", content=initialize(), headers=BASE)
        assert opened.status_code == 200, opened.text
        assert added(opened) == list(ADDED)
        session = {**BASE, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}

        # Answered at once in the connection's task (JSON), then twice more: the same head, a
        # cached outcome, its encoded CORS headers reused and not grown.
        for id_ in (1, 2, 3):
            echoed = await client.post("/mcp", content=call(id_, "echo", {"text": "hi"}), headers=session)
            assert echoed.status_code == 200 and echoed.json()["result"]["content"][0]["text"] == "hi"
            assert added(echoed) == list(ADDED)
            assert echoed.headers["vary"] == "Origin" and echoed.headers["access-control-allow-origin"] == ORIGIN

        # A request that logs first: its answer is an SSE stream, the headers there once too.
        logged = await client.post("/mcp", content=call(4, "log", {"message": "m"}), headers=session)
        assert logged.headers["content-type"].startswith("text/event-stream")
        assert "notifications/message" in logged.text and '"id":4' in logged.text
        assert added(logged) == list(ADDED)

        # The client's own request id is returned, once.
        mine = await client.post(
            "/mcp", content=call(5, "echo", {"text": "x"}), headers={**session, "x-request-id": "r-1"}
        )
        assert mine.headers.get_list("x-request-id") == ["r-1"]

        # The edge's own answers: a preflight (its own CORS headers, then the tag and the id) and a
        # denied Origin (only `Vary: Origin` of the CORS headers).
        preflight = await client.options("/mcp", headers={"origin": ORIGIN, "access-control-request-method": "POST"})
        assert preflight.status_code == 204
        assert [n for n in added(preflight) if n in (b"mcpgw-edge", b"x-request-id")] == [
            b"mcpgw-edge",
            b"x-request-id",
        ]
        assert len(added(preflight)) == len(set(added(preflight)))
        denied = await client.post(
            "/mcp", content=call(6, "echo", {"text": "x"}), headers={**session, "origin": "https://evil.example"}
        )
        assert denied.status_code == 403 and added(denied) == [b"vary", b"mcpgw-edge", b"x-request-id"]

    # A denied Host (DNS rebinding on a loopback bind): 421, tagged, with its id.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://evil.example") as client:
        rebound = await client.post("/mcp", content=initialize(), headers=BASE)
        assert rebound.status_code == 421
        assert added(rebound)[-2:] == [b"mcpgw-edge", b"x-request-id"] and len(set(added(rebound))) == len(
            added(rebound)
        )


async def test_the_edge_without_the_observer_adds_its_headers_itself():
    app = create_app(Settings(edge="python", edge_tag_responses=True))
    edge_only = app.middleware  # no observer in front: no list to add to
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=edge_only), base_url="http://127.0.0.1:4444"
    ) as client:
        opened = await client.post("/mcp", content=initialize(), headers=BASE)
        assert opened.status_code == 200
        assert added(opened) == [
            b"access-control-allow-origin",
            b"access-control-expose-headers",
            b"vary",
            b"mcpgw-edge",
        ]
