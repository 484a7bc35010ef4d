"""Single JSON requests answered in the connection's own task (issue 20): a request that will send
nothing before its result (no progress token; a method or quiet tool the dispatcher answers from
memory) runs inside uvicorn's task for the HTTP request, with no task of its own, and keeps the
semantics of one: it counts as running, its id is taken while it runs, a notifications/cancelled
or the shutdown drain ends it with today's answers, and the connection goes on. The catalog's
lists come from bytes serialised once per catalog version.

The gateway runs in this process (real uvicorn on a loopback socket, in a thread), so a test can
add tools to its catalog and see which task runs them. Python edge: the edge is not the subject."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from inproc import served, when
from mcp_http import Session, rpc
from mcpgw.server.catalog import Tool
from mcpgw.server.context import CallContext
from mcpgw.settings import Settings

pytestmark = pytest.mark.timeout(120)
ANY_ARGS = {"type": "object"}


@pytest.fixture
def inproc():
    with served(Settings(edge="python", port=0, shutdown_grace_s=1.0)) as (app, url, loop):
        catalog = app.gateway.dispatcher.catalog  # /mcp's built-ins (no upstream configured)
        seen: dict[str, str] = {}  # tool name -> the coroutine of the task that ran it
        release = asyncio.Event()

        def add(name: str, quiet: bool, blocks: bool = False) -> None:
            async def run(args: dict[str, Any], ctx: CallContext) -> str:
                task = asyncio.current_task()
                assert task is not None
                seen[name] = task.get_coro().__qualname__  # type: ignore[union-attr]
                if blocks:
                    await release.wait()
                return name

            catalog.tools[name] = Tool(name, f"test tool {name}", ANY_ARGS, run, quiet=quiet)
            catalog.changed()

        yield SimpleNamespace(
            url=url,
            app=app,
            catalog=catalog,
            seen=seen,
            add=add,
            release=lambda: loop.call_soon_threadsafe(release.set),
            run=lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(30),
            running=lambda: app.engine.live()["requests"],
            when=when,
        )


def call(name: str, id_: Any = 1, **extra: Any) -> dict[str, Any]:
    return rpc("tools/call", id_, name=name, arguments={}, **extra)


def test_a_quiet_call_runs_in_the_connections_task_and_a_streaming_one_in_its_own(inproc):
    inproc.add("quiet", quiet=True)
    inproc.add("loud", quiet=False)
    s = Session(inproc.url)
    assert s.post(call("quiet", 1)).json()["result"]["content"][0]["text"] == "quiet"
    assert s.post(call("loud", 2)).json()["result"]["content"][0]["text"] == "loud"
    # A quiet tool runs inside uvicorn's task for the HTTP request; any other in the engine's
    # (whose coroutine is the dispatch itself: `_answer` hands it over without one of its own).
    assert inproc.seen["quiet"] == "RequestResponseCycle.run_asgi"
    assert inproc.seen["loud"] == "SessionEngine._dispatch"
    # With a progress token even a quiet tool gets a task of its own (it may report progress).
    inproc.seen.clear()
    r = s.post(call("quiet", 3, _meta={"progressToken": "p"}))
    assert r.json()["result"]["content"][0]["text"] == "quiet"
    assert inproc.seen["quiet"] == "SessionEngine._dispatch"


def test_answered_at_once_it_counts_as_running_holds_its_id_and_is_cancelled_by_the_client(inproc):
    inproc.add("wait", quiet=True, blocks=True)
    s = Session(inproc.url)
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(s.post(call("wait", 7))))
    worker.start()
    assert inproc.when(lambda: inproc.running() == 1 and "wait" in inproc.seen)
    assert inproc.seen["wait"] == "RequestResponseCycle.run_asgi"
    with httpx.Client(timeout=30) as other:
        # Its id is taken while it runs, as for a request with a task of its own.
        taken = other.post(s.url, json=call("echo", 7), headers=s.headers).json()
        assert taken["error"]["code"] == -32600 and "already in use" in taken["error"]["message"]
        cancel = rpc("notifications/cancelled", None, requestId=7, reason="test")
        assert other.post(s.url, json=cancel, headers=s.headers).status_code == 202
    worker.join(30)
    # JSON needs an answer even for a cancelled request: today's -32800 for a JSON response.
    assert answers and answers[0].status_code == 200
    assert answers[0].json() == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32800, "message": "Request cancelled"}}
    assert inproc.running() == 0
    # The connection's task went on after its cancellation: the same client, the same id, answered.
    again = s.post(rpc("tools/call", 7, name="echo", arguments={"text": "after"}))
    assert again.json()["result"]["content"][0]["text"] == "after"


def test_the_shutdown_drain_answers_a_request_running_in_a_connections_task(inproc):
    inproc.add("wait", quiet=True, blocks=True)
    s = Session(inproc.url)
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(s.post(call("wait", 1))))
    worker.start()
    assert inproc.when(lambda: inproc.running() == 1 and "wait" in inproc.seen)
    inproc.run(inproc.app.engine.shutdown(0.2))  # the grace runs out: cancelled and answered
    worker.join(30)
    assert answers and answers[0].json()["error"] == {"code": -32603, "message": "Server shutting down"}


def test_lists_are_the_catalogs_bytes_of_its_current_version(inproc):
    s = Session(inproc.url)
    first = s.post(rpc("tools/list", 1))
    assert first.json()["result"]["tools"] == inproc.catalog.tool_list()
    # The same bytes a dict answer would serialise to (the bare-uvicorn bench sends these).
    assert first.content == orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": inproc.catalog.tool_list()}})
    for method, key in (("prompts/list", "prompts"), ("resources/list", "resources")):
        assert s.post(rpc(method, 2)).json()["result"][key] == inproc.catalog.listing(method)
    # A change to the catalog (changed()) is served at once: no stale bytes.
    inproc.add("fresh", quiet=True)
    names = [t["name"] for t in s.post(rpc("tools/list", 3)).json()["result"]["tools"]]
    assert names[-1] == "fresh" and names[:4] == ["echo", "add", "sleep", "log"]
    # 2026-07-28 stamps its list results as before (the bytes sit inside the stamped result).
    stateless = httpx.post(
        inproc.url + "/mcp",
        json=rpc(
            "tools/list",
            4,
            _meta={
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        ),
        headers={
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/list",
        },
    ).json()["result"]
    assert [t["name"] for t in stateless["tools"]] == names
    assert stateless["resultType"] == "complete" and stateless["ttlMs"] == 0


def test_a_post_finds_a_session_held_here_without_the_registrys_coroutine_and_only_its_own(inproc):
    """`SessionEngine.find_held` (the POST's session lookup without a coroutine) finds a session
    held in memory for its own transport, endpoint and caller only; anything else (unknown here, a
    shared session, another transport, endpoint or caller) is left to the awaited `find`."""
    s = Session(inproc.url)
    engine = inproc.app.engine
    session = engine.find_held(s.id, "streamable-http", None, principal=None)
    assert session is not None and session.id == s.id
    assert engine.find_held("nosuch", "streamable-http", None, principal=None) is None
    assert engine.find_held(s.id, "sse", None, principal=None) is None
    assert engine.find_held(s.id, "streamable-http", "other", principal=None) is None
    session.shared = True  # its record in shared state: `find` must look (and may refresh it)
    try:
        assert engine.find_held(s.id, "streamable-http", None, principal=None) is None
        # ...and the POST still finds it through `find` (the in-memory registry holds it).
        assert s.post(rpc("tools/list", 1)).status_code == 200
    finally:
        session.shared = False
    assert (
        s.post(rpc("tools/call", 2, name="echo", arguments={"text": "held"})).json()["result"]["content"][0]["text"]
        == "held"
    )
