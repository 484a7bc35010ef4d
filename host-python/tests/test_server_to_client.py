"""Server-to-client traffic on the GET stream: requests (ping) answered by POST, and notifications
(list_changed) to every session. The gateway runs in this process (real uvicorn on a loopback
socket, in a thread) so a test can make the server side speak first."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from mcp import Client

from inproc import served, when
from mcp_http import Event, Session, sse_events
from mcpgw.server.jsonrpc import JsonRpcError
from mcpgw.settings import Settings


@pytest.fixture(params=["wasm", "python"])
def inproc(request, component_path):
    with served(Settings(edge=request.param, port=0, shutdown_grace_s=1.0)) as (app, url, loop):

        def submit(coro):
            """Run `coro` on the gateway's loop; a concurrent.futures.Future of its result."""
            return asyncio.run_coroutine_threadsafe(coro, loop)

        def run(coro, timeout: float = 20.0):
            return submit(coro).result(timeout)

        yield SimpleNamespace(url=url, sessions=app.engine.sessions, app=app, submit=submit, run=run, when=when)


def _live(inproc):
    live = inproc.app.live()
    return {k: live[k] for k in ("sessions", "requests", "streams")}


def _messages(events):
    return (e.json() for e in events if isinstance(e, Event) and e.data)


def test_server_ping_and_list_changed_over_the_get_stream_raw(inproc):
    s = Session(inproc.url, "2025-06-18")
    session = inproc.sessions.get(s.id)
    with s.stream("GET") as get:
        messages = _messages(sse_events(get.iter_lines()))
        assert inproc.when(lambda: _live(inproc)["streams"] == 1)
        pending = inproc.submit(session.request("ping", timeout=20))
        ping = next(messages)
        assert ping["method"] == "ping" and isinstance(ping["id"], str)
        answer = s.post({"jsonrpc": "2.0", "id": ping["id"], "result": {}})
        assert answer.status_code == 202
        assert pending.result(20) == {}

        # A client that answers with an error: the server side sees the JSON-RPC error.
        failing = inproc.submit(session.request("ping", timeout=20))
        ping = next(messages)
        s.post({"jsonrpc": "2.0", "id": ping["id"], "error": {"code": -32601, "message": "no"}})
        with pytest.raises(JsonRpcError) as err:
            failing.result(20)
        assert err.value.code == -32601

        assert inproc.run(inproc.sessions.broadcast("notifications/tools/list_changed")) == 1
        assert next(messages) == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        assert s.delete().status_code == 204
    assert inproc.when(lambda: _live(inproc) == {"sessions": 0, "requests": 0, "streams": 0})


async def test_sdk_client_answers_server_ping_and_hears_list_changed(inproc):
    """The real client opens the GET stream after initialize, answers the server's ping on it,
    and hands list_changed to its message handler."""
    heard = asyncio.Event()

    async def on_message(message):
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            heard.set()

    async with Client(inproc.url + "/mcp", mode="legacy", message_handler=on_message):
        assert await asyncio.to_thread(inproc.when, lambda: _live(inproc)["streams"] == 1)
        (session,) = list(inproc.sessions._sessions.values())  # the only live session (white-box)
        assert await asyncio.wrap_future(inproc.submit(session.request("ping", timeout=20))) == {}
        assert (
            await asyncio.wrap_future(inproc.submit(inproc.sessions.broadcast("notifications/tools/list_changed"))) == 1
        )
        await asyncio.wait_for(heard.wait(), 20)
    assert await asyncio.to_thread(inproc.when, lambda: _live(inproc) == {"sessions": 0, "requests": 0, "streams": 0})
