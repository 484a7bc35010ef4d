"""Federation through a real gateway process, in both edge modes, with real upstream processes:
the toy server over stdio and over Streamable HTTP, and the conformance fixture over stdio.

Clients are the mcp SDK's; the upstreams are the SDK's servers.
"""

from __future__ import annotations

import os
import signal

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from mcp_http import ENVELOPE, NOTHING_LIVE, Session, drained, handled, headers2026
from upstream_procs import (
    FIXTURE,
    TOY,
    federated_gateway,
    http_table,
    stdio_table,
    toy_http,
    toy_sse,
    upstream_health,
    wait_upstreams,
)

pytestmark = [
    pytest.mark.timeout(180),
    # roots and resources/subscribe are deprecated for 2026-07-28, current in the 2025-11-25 sessions here
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


@pytest.fixture(scope="module")
def web():
    upstream = toy_http("web")
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def old_web():
    upstream = toy_sse("oldweb")
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module", params=["wasm", "python"])
def gw(request, web, old_web, component_path):
    gateway = federated_gateway(
        request.param,
        [
            stdio_table("toy", TOY, "stdio", "toy", call_timeout_s=3, restart_backoff_s=0.2, health_interval_s=2),
            http_table("web", web.url, prefix="w"),
            http_table("oldweb", old_web.url, transport="sse"),
            stdio_table("fixture", FIXTURE, "--transport", "stdio"),
        ],
    )
    yield gateway
    gateway.stop()


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


# -- the merged catalog ---------------------------------------------------------
async def test_mcp_merges_builtins_and_every_upstream_under_its_prefix(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "add", "sleep", "log"} <= tools  # built-ins keep their names
        assert {"toy__whoami", "toy__add", "w__whoami", "w__add", "fixture__test_simple_text"} <= tools
        assert not {"whoami", "test_simple_text"} & tools  # no upstream name leaks unprefixed
        resources = {r.uri for r in (await client.list_resources()).resources}
        assert {"mcpgw://readme", "toy+toy://note", "w+toy://note"} <= resources
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert {"greet", "toy__hello", "w__hello", "fixture__test_simple_prompt"} <= prompts
    assert drained(gw.url) == NOTHING_LIVE


async def test_calls_reads_and_prompts_route_to_their_owner_without_the_prefix(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as client:
        assert text_of(await client.call_tool("toy__whoami", {})).startswith("toy pid=")
        assert text_of(await client.call_tool("w__whoami", {})).startswith("web pid=")
        assert text_of(await client.call_tool("oldweb__whoami", {})).startswith("oldweb pid=")  # over HTTP+SSE
        assert text_of(await client.call_tool("w__add", {"a": 20, "b": 22})) == "42"
        assert text_of(await client.call_tool("echo", {"text": "built-in"})) == "built-in"
        note = await client.read_resource("w+toy://note")
        assert note.contents[0].text == "a note from web"
        assert note.contents[0].uri == "w+toy://note"  # the URI the client knows, not the upstream's
        prompt = await client.get_prompt("toy__hello", {"who": "Ada"})
        assert prompt.messages[0].content.text == "Hello Ada from toy"
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("nobody__whoami", {})
        assert unknown.value.error.code == -32602


def test_2026_stateless_requests_are_federated_too(gw):
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "w__add", "arguments": {"a": 1, "b": 2}, "_meta": ENVELOPE},
    }
    r = httpx.post(gw.url + "/mcp", json=body, headers=headers2026("tools/call", "w__add"))
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["content"][0]["text"] == "3" and result["resultType"] == "complete"


# -- virtual servers -------------------------------------------------------------
async def test_a_virtual_server_is_the_upstream_with_names_unchanged(gw):
    async with Client(gw.url + "/servers/web/mcp", mode="legacy") as client:
        init = client.session.initialize_result
        assert init.server_info.name == "web-server"  # the upstream's identity, not the gateway's
        assert init.instructions == "The web test upstream."
        assert init.meta["io.mcpgw/gateway"]["upstream"] == "web"  # what the gateway adds
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools >= {"whoami", "add", "slow", "crash", "grow"} and "echo" not in tools
        assert text_of(await client.call_tool("whoami", {})).startswith("web pid=")
        assert (await client.read_resource("toy://note")).contents[0].text == "a note from web"


def test_sessions_belong_to_one_endpoint_and_unknown_servers_are_404(gw):
    session = Session(gw.url)  # on /mcp
    r = httpx.post(
        gw.url + "/servers/web/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=session.headers
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == -32001
    r = httpx.post(
        gw.url + "/servers/nope/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=session.headers
    )
    assert r.status_code == 404 and "Unknown server" in r.json()["error"]["message"]
    session.delete()


# -- relay: upstream to client ----------------------------------------------------
async def test_progress_and_logs_reach_the_client_on_the_request_stream(gw):
    progress, logs = [], []

    async def on_progress(value, total, message):
        progress.append(value)

    async def on_log(params):
        logs.append(params.data)

    async with Client(gw.url + "/mcp", mode="legacy", logging_callback=on_log) as client:
        result = await client.call_tool("toy__slow", {"seconds": 0.3}, progress_callback=on_progress)
        assert text_of(result) == "slept 0.3"
        assert progress == [1, 2, 3]
        result = await client.call_tool("fixture__test_tool_with_logging", {})
        assert not result.is_error
        assert len(await handled(logs, 3)) == 3  # the fixture logs three times during the call
    async with Client(gw.url + "/servers/fixture/mcp", mode="legacy") as client:
        seen = []
        result = await client.call_tool(
            "test_tool_with_progress", {}, progress_callback=lambda v, t, m: _append(seen, v)
        )
        assert seen == [0, 50, 100]


async def _append(items, value):
    items.append(value)


async def test_sampling_elicitation_and_roots_go_to_the_client_and_back(gw):
    async def sampling(ctx, params):
        return types.CreateMessageResult(
            role="assistant", model="test-model", content=types.TextContent(type="text", text="four")
        )

    async def elicitation(ctx, params):
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async def roots(ctx):
        return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])

    async with Client(
        gw.url + "/mcp",
        mode="legacy",
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
    ) as client:
        result = await client.call_tool("fixture__test_sampling", {"prompt": "2+2?"})
        assert text_of(result) == "LLM response: four"
        result = await client.call_tool("fixture__test_elicitation", {"message": "who are you?"})
        assert "action=accept" in text_of(result) and "ada@example.com" in text_of(result)
        assert text_of(await client.call_tool("toy__roots", {})) == "file:///work"
        await client.session.send_roots_list_changed()  # to every upstream connection of the session
        for _ in range(100):
            if text_of(await client.call_tool("toy__roots_changed", {})) == "1":
                break
            await anyio.sleep(0.05)
        assert text_of(await client.call_tool("toy__roots_changed", {})) == "1"


async def test_a_client_without_sampling_is_not_offered_to_upstreams(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as client:
        result = await client.call_tool("fixture__test_sampling", {"prompt": "2+2?"})
        assert result.is_error and "does not support sampling" in text_of(result)


async def test_resource_updates_arrive_with_the_uri_the_client_knows(gw):
    updates = []

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)

    async with Client(gw.url + "/mcp", mode="legacy", message_handler=on_message) as client:
        await client.session.subscribe_resource("fixture+test://watched-resource")  # relayed to the fixture
        assert text_of(await client.call_tool("w__touch", {})) == "touched"
        assert updates == ["w+toy://note"]


# -- relay: client to upstream ------------------------------------------------------
async def test_cancelling_a_call_cancels_it_upstream(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as client:
        before = int(text_of(await client.call_tool("toy__cancellations", {})))
        with anyio.move_on_after(0.5):  # the SDK sends notifications/cancelled when a call is abandoned
            await client.call_tool("toy__slow", {"seconds": 2.5})
        for _ in range(100):
            after = int(text_of(await client.call_tool("toy__cancellations", {})))
            if after > before:
                break
            await anyio.sleep(0.05)
        assert after == before + 1
    assert drained(gw.url) == NOTHING_LIVE


async def test_list_changed_from_an_upstream_refreshes_the_catalog_and_tells_clients(gw):
    changed = anyio.Event()

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    name = f"sprout{os.getpid()}{gw.mode}"
    async with Client(gw.url + "/mcp", mode="legacy", message_handler=on_message) as client:
        # The gateway tells the sessions that listed (a client that has not listed has nothing stale).
        # Listing first makes the notification due: without it, the SDK's own list after the call
        # (for the output schema) could come after the catalog's re-read, see the new tool, and be
        # rightly told nothing.
        assert f"w__{name}" not in {t.name for t in (await client.list_tools()).tools}
        assert text_of(await client.call_tool("w__grow", {"name": name})) == f"added {name}"
        with anyio.fail_after(30):
            await changed.wait()
        tools = {t.name for t in (await client.list_tools()).tools}
        assert f"w__{name}" in tools
        assert text_of(await client.call_tool(f"w__{name}", {})) == f"I am {name}"


# -- faults ---------------------------------------------------------------------------
async def test_an_upstream_that_dies_mid_call_gives_an_error_and_comes_back(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as client:
        first = text_of(await client.call_tool("toy__whoami", {}))
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("toy__crash", {})
        assert crashed.value.error.code == -32603
        assert "closed the connection" in crashed.value.error.message  # not a timeout
        again = text_of(await client.call_tool("toy__whoami", {}))
        assert again.startswith("toy pid=") and again != first  # a fresh process for this session
    assert drained(gw.url) == NOTHING_LIVE


async def test_a_slow_upstream_hits_the_call_timeout(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as client:
        with pytest.raises(MCPError) as slow:
            await client.call_tool("toy__slow", {"seconds": 30})
        assert slow.value.error.code == -32603
        assert "did not answer tools/call within 3 s" in slow.value.error.message
        assert text_of(await client.call_tool("toy__add", {"a": 1, "b": 1})) == "2"  # the link still works


def test_a_stdio_upstream_that_exits_is_restarted_with_backoff_and_health_says_so(gw):
    # Stateless requests use the upstream's catalog connection: its process is the one to kill.
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "toy__whoami", "arguments": {}, "_meta": ENVELOPE},
    }
    pid = int(
        httpx.post(gw.url + "/mcp", json=body, headers=headers2026("tools/call", "toy__whoami"))
        .json()["result"]["content"][0]["text"]
        .split("pid=")[1]
    )
    restarts = upstream_health(gw.url)["toy"]["restarts"]
    os.kill(pid, signal.SIGKILL)
    health = wait_upstreams(gw.url, only="toy", predicate=lambda u: u["restarts"] > restarts)
    assert health["toy"]["restarts"] == restarts + 1
    health = wait_upstreams(gw.url)
    assert health["toy"]["state"] == "ready" and health["toy"]["tools"] >= 5
    assert health["web"]["state"] == "ready" and health["web"]["transport"] == "streamable-http"
    assert health["oldweb"]["state"] == "ready" and health["oldweb"]["transport"] == "sse"
    r = httpx.post(gw.url + "/mcp", json=body, headers=headers2026("tools/call", "toy__whoami"))
    assert int(r.json()["result"]["content"][0]["text"].split("pid=")[1]) != pid


async def test_an_http_upstream_that_dies_mid_call_gives_an_error_and_health_shows_it_down(component_path):
    doomed = toy_http("doomed")
    gateway = federated_gateway(
        "python", [http_table("doomed", doomed.url, health_interval_s=0.5, restart_backoff_s=0.2)]
    )
    try:
        async with Client(gateway.url + "/mcp", mode="legacy") as client:
            with pytest.raises(MCPError):  # the SDK transport reports the stream that ended
                await client.call_tool("doomed__crash", {})
            health = wait_upstreams(gateway.url, predicate=lambda u: u["state"] == "restarting")
            assert health["doomed"]["state"] == "restarting" and health["doomed"]["error"]
            with pytest.raises(MCPError) as down:  # its own connection learns of the death now
                await client.call_tool("doomed__whoami", {})
            assert down.value.error.code == -32603 and "Upstream 'doomed'" in down.value.error.message
            with pytest.raises(MCPError) as down:  # and is not reopened while the upstream is down
                await client.call_tool("doomed__whoami", {})
            assert "Upstream 'doomed' is unavailable" in down.value.error.message
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "doomed__whoami" not in tools and "echo" in tools  # gone until it is back
        refused = httpx.post(  # noqa: ASYNC210 - the gateway is another process: blocking only pauses this test's own client
            gateway.url + "/servers/doomed/mcp",
            headers={"accept": "application/json, text/event-stream"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            },
        )
        assert refused.status_code == 503 and "Upstream 'doomed' is unavailable" in refused.json()["error"]["message"]
        assert drained(gateway.url) == NOTHING_LIVE
    finally:
        gateway.stop()
        doomed.stop()


async def test_past_max_connections_sessions_share_the_catalog_connection(component_path):
    gateway = federated_gateway("python", [stdio_table("toy", TOY, "stdio", "toy", max_connections=1)])
    try:
        async with (
            Client(gateway.url + "/mcp", mode="legacy") as first,
            Client(gateway.url + "/mcp", mode="legacy") as second,
        ):
            own = text_of(await first.call_tool("toy__whoami", {}))
            shared = text_of(await second.call_tool("toy__whoami", {}))
            assert own != shared  # the first has its own process; the second uses the catalog's
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "toy__whoami", "arguments": {}, "_meta": ENVELOPE},
            }
            # The gateway is another process: blocking calls only pause this test's own clients.
            catalog = httpx.post(gateway.url + "/mcp", json=body, headers=headers2026("tools/call", "toy__whoami"))  # noqa: ASYNC210
            assert catalog.json()["result"]["content"][0]["text"] == shared
            assert httpx.get(gateway.url + "/health").json()["live"]["upstream_links"] == 1  # noqa: ASYNC210
        assert drained(gateway.url) == NOTHING_LIVE
    finally:
        gateway.stop()


# -- every transport reaches the same federation ------------------------------------
async def test_legacy_sse_reaches_virtual_servers_and_relays_server_to_client_requests(gw):
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    async def sampling(ctx, params):
        return types.CreateMessageResult(role="assistant", model="m", content=types.TextContent(type="text", text="ok"))

    async with (
        sse_client(gw.url + "/servers/fixture/sse") as (read, write),
        ClientSession(read, write, sampling_callback=sampling) as session,
    ):
        init = await session.initialize()
        assert init.server_info.name == "mcpgw-conformance-fixture"
        result = await session.call_tool("test_sampling", {"prompt": "hi"})
        assert text_of(result) == "LLM response: ok"
    assert drained(gw.url) == NOTHING_LIVE


def test_websocket_reaches_the_merged_catalog_and_virtual_servers(gw):
    import json

    from websockets.sync.client import connect

    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ws", "version": "0"}},
    }
    for path, tool in (("/ws", "w__whoami"), ("/servers/web/ws", "whoami")):
        with connect(gw.url.replace("http://", "ws://") + path, subprotocols=["mcp"]) as ws:
            ws.send(json.dumps(init))
            json.loads(ws.recv(timeout=30))
            ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            ws.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
                )
            )
            answer = json.loads(ws.recv(timeout=60))
            assert answer["result"]["content"][0]["text"].startswith("web pid="), answer
    assert drained(gw.url) == NOTHING_LIVE
