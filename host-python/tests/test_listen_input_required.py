"""MCP 2026-07-28 `subscriptions/listen` and `InputRequiredResult` through a real gateway
process, in both edge modes, with the mcp SDK's client as the reference peer: built in (the
`ask` tool, the gateway's own listen streams) and relayed from real upstream processes (the
toy server over stdio and over Streamable HTTP, whose 2025 sessions send elicitation/create and
roots/list, and say tools/list_changed).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged
from mcp.shared.exceptions import MCPError

from mcp_http import ENVELOPE, headers2026, read_sse, rpc2026, sse_events
from mcpgw.server.input_required import RequestStates
from mcpgw.server.jsonrpc import JsonRpcError
from upstream_procs import TOY, UPSTREAMS, federated_gateway, http_table, stdio_table, toy_http

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

ASKING = UPSTREAMS / "asking_server.py"
ELICITING = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}


@pytest.fixture(scope="module")
def web():
    upstream = toy_http("web")
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module", params=["wasm", "python"])
def gw(request, web, component_path):
    gateway = federated_gateway(
        request.param,
        [
            stdio_table("toy", TOY, "stdio", "toy"),
            http_table("web", web.url, prefix="w"),
            stdio_table("asking", ASKING, "stdio"),
        ],
        MCPGW_MAX_LISTENS_PER_CLIENT="2",
    )
    yield gateway
    gateway.stop()


class Asked:
    """The client's side of the questions: what it was asked, what it answers."""

    def __init__(self) -> None:
        self.elicited: list[str] = []
        self.roots_asked = 0

    async def elicit(self, ctx, params) -> types.ElicitResult:
        self.elicited.append(params.message)
        return types.ElicitResult(action="accept", content={"answer": "blue", "ok": True})

    async def roots(self, ctx) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project")])


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def answer(response: httpx.Response) -> dict:
    if response.headers["content-type"].startswith("text/event-stream"):
        return [e.json() for e in read_sse(response) if e.data][-1]
    return response.json()


async def eventually(check, timeout: float = 30.0) -> None:
    """Until `check()` is true (a deadline, not a timing assertion)."""
    with anyio.fail_after(timeout):
        while True:
            if await check():
                return
            await anyio.sleep(0.1)


def call(gw, path: str, name: str, arguments: dict, meta: dict = ELICITING, **retry) -> httpx.Response:
    body = rpc2026("tools/call", 1, name=name, arguments=arguments, **retry)
    body["params"]["_meta"] = meta
    return httpx.post(gw.url + path, json=body, headers=headers2026("tools/call", name), timeout=60)


# -- InputRequiredResult, built in ---------------------------------------------------------
async def test_builtin_ask_answers_input_required_and_the_sdk_client_retries_with_the_answer(gw):
    asked = Asked()
    async with Client(gw.url + "/mcp", mode="2026-07-28", elicitation_callback=asked.elicit) as client:
        result = await client.call_tool("ask", {"question": "Favourite colour?"})
    assert text_of(result) == "answered: blue"
    assert asked.elicited == ["Favourite colour?"]


async def test_builtin_ask_on_a_session_sends_elicitation_create_instead(gw):
    asked = Asked()
    async with Client(gw.url + "/mcp", mode="legacy", elicitation_callback=asked.elicit) as client:
        result = await client.call_tool("ask", {"question": "Still there?"})
    assert text_of(result) == "answered: blue"
    assert asked.elicited == ["Still there?"]


def test_the_wire_shape_and_a_request_state_that_is_forged_moved_or_missing_is_refused(gw):
    first = answer(call(gw, "/mcp", "ask", {"question": "Q?"}))["result"]
    assert first["resultType"] == "input_required"
    assert first["inputRequests"]["answer"]["method"] == "elicitation/create"
    assert first["inputRequests"]["answer"]["params"]["message"] == "Q?"
    state = first["requestState"]
    reply = {"answer": {"action": "accept", "content": {"answer": "42"}}}

    done = answer(call(gw, "/mcp", "ask", {"question": "Q?"}, inputResponses=reply, requestState=state))
    assert done["result"]["resultType"] == "complete"
    assert done["result"]["content"][0]["text"] == "answered: 42"

    body, _, tag = state.partition(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + tag
    for arguments, kwargs, why in (
        ({"question": "Q?"}, {"requestState": forged}, "not one this gateway issued"),
        ({"question": "Other?"}, {"requestState": state}, "issued for another request"),
        ({"question": "Q?"}, {}, "without the requestState"),
    ):
        refused = call(gw, "/mcp", "ask", arguments, inputResponses=reply, **kwargs)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == -32602
        assert why in refused.json()["error"]["message"]


def test_a_client_without_elicitation_gets_a_tool_error_not_a_question(gw):
    result = answer(call(gw, "/mcp", "ask", {"question": "Q?"}, meta=ENVELOPE))["result"]
    assert result["resultType"] == "complete" and result["isError"] is True
    assert "no elicitation capability" in result["content"][0]["text"]


def test_request_states_expire_and_bind_the_caller():
    states = RequestStates(b"k" * 32, ttl_s=600)
    params = {"name": "ask", "arguments": {"question": "Q?"}}
    state = states.issue("tools/call", params, "jwt\x1fiss\x1falice", None)
    assert states.verify("tools/call", {**params, "requestState": state}, "jwt\x1fiss\x1falice") is not None
    with pytest.raises(JsonRpcError, match="another request or caller"):
        states.verify("tools/call", {**params, "requestState": state}, "jwt\x1fiss\x1fmallory")
    with pytest.raises(JsonRpcError, match="not one this gateway issued"):  # another gateway's key
        RequestStates(b"x" * 32).verify("tools/call", {**params, "requestState": state}, "jwt\x1fiss\x1falice")
    stale = RequestStates(b"k" * 32, ttl_s=-1).issue("tools/call", params, "", None)
    with pytest.raises(JsonRpcError, match="expired"):
        states.verify("tools/call", {**params, "requestState": stale}, "")


# -- InputRequiredResult, relayed from an upstream's own requests ------------------------------
@pytest.mark.parametrize(
    "path,prefix", [("/servers/toy/mcp", ""), ("/mcp", "toy__"), ("/servers/web/mcp", ""), ("/mcp", "w__")]
)
async def test_an_upstream_elicitation_and_roots_request_reach_a_2026_client_as_input_required(gw, path, prefix):
    asked = Asked()
    async with Client(
        gw.url + path, mode="2026-07-28", elicitation_callback=asked.elicit, list_roots_callback=asked.roots
    ) as client:
        # The toy's withdraw tool elicits (and would withdraw its question after 60 s).
        assert text_of(await client.call_tool(prefix + "withdraw", {"seconds": 60})) == "answered accept"
        assert text_of(await client.call_tool(prefix + "roots", {})) == "file:///work/project"
        assert text_of(await client.call_tool(prefix + "roots", {})) == "file:///work/project"  # a pooled link
    assert asked.elicited == ["Still there?"]
    assert asked.roots_asked == 2


@pytest.mark.parametrize("path,prefix", [("/servers/asking/mcp", ""), ("/mcp", "asking__")])
async def test_several_rounds_of_questions_and_a_prompt_that_asks(gw, path, prefix):
    answers = {"Your name?": {"name": "Ada"}, "Your colour?": {"colour": "teal"}, "Whom to greet?": {"name": "Alan"}}
    asked: list[str] = []

    async def elicit(ctx, params) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content=answers[params.message])

    async def sample(ctx, params) -> types.CreateMessageResult:
        asked.append("sampling")
        return types.CreateMessageResult(
            role="assistant", model="test-model", content=types.TextContent(type="text", text="sampled")
        )

    async with Client(
        gw.url + path, mode="2026-07-28", elicitation_callback=elicit, sampling_callback=sample
    ) as client:
        # Three InputRequiredResults (two elicitations, then sampling) before the result.
        assert text_of(await client.call_tool(prefix + "interview", {})) == "Ada likes teal; sampled"
        prompt = await client.get_prompt(prefix + "greeting")
    assert asked == ["Your name?", "Your colour?", "sampling", "Whom to greet?"]
    assert prompt.messages[0].content.text == "Please greet Alan."


@pytest.mark.parametrize("path,prefix", [("/servers/toy/mcp", ""), ("/mcp", "toy__")])
async def test_a_2026_client_is_listed_the_tools_its_declared_capabilities_open(gw, path, prefix):
    """The toy lists `sampler` only to clients that declared sampling (as the everything server
    does with its sampling, elicitation and roots tools): a 2026-07-28 client declaring it sees it
    on both endpoints and can call it; one that declared nothing does not see it."""

    async def sample(ctx, params) -> types.CreateMessageResult:
        return types.CreateMessageResult(role="assistant", model="m", content=types.TextContent(type="text", text="x"))

    async with Client(gw.url + path, mode="2026-07-28", sampling_callback=sample) as sampler:
        names = {t.name for t in (await sampler.list_tools()).tools}
        assert prefix + "sampler" in names
        assert text_of(await sampler.call_tool(prefix + "sampler", {})) == "only for samplers"
    async with Client(gw.url + path, mode="2026-07-28") as plain:
        names = {t.name for t in (await plain.list_tools()).tools}
        assert prefix + "whoami" in names and prefix + "sampler" not in names


def test_a_relayed_retry_whose_call_is_gone_is_refused_clearly(gw):
    first = answer(call(gw, "/servers/toy/mcp", "withdraw", {"seconds": 60}))["result"]
    assert first["resultType"] == "input_required"
    (key,) = first["inputRequests"]
    reply = {key: {"action": "accept", "content": {"ok": True}}}
    state = first["requestState"]
    done = answer(call(gw, "/servers/toy/mcp", "withdraw", {"seconds": 60}, inputResponses=reply, requestState=state))
    assert done["result"]["content"][0]["text"] == "answered accept"
    again = call(gw, "/servers/toy/mcp", "withdraw", {"seconds": 60}, inputResponses=reply, requestState=state)
    assert again.status_code == 400
    assert "no longer held here" in again.json()["error"]["message"]


# -- subscriptions/listen ------------------------------------------------------------------
@pytest.mark.parametrize("path,grow", [("/servers/toy/mcp", "grow"), ("/mcp", "toy__grow")])
async def test_an_upstream_list_changed_reaches_a_listen_stream(gw, path, grow):
    async with Client(gw.url + path, mode="2026-07-28") as client:
        async with client.listen(tools_list_changed=True, prompts_list_changed=False) as sub:
            assert sub.honored.tools_list_changed is True
            assert not sub.honored.prompts_list_changed
            await client.call_tool(grow, {"name": f"grown_{gw.mode}_{grow}"})
            with anyio.fail_after(30):
                event = await anext(aiter(sub))
            assert event == ToolsListChanged()
        names = {t.name for t in (await client.list_tools()).tools}
        assert any(n.endswith(f"grown_{gw.mode}_{grow}") for n in names)


@pytest.mark.parametrize(
    "path,uri,prefix", [("/servers/toy/mcp", "toy://note", ""), ("/mcp", "toy+toy://note", "toy__")]
)
async def test_an_upstream_resource_update_reaches_the_listen_stream_that_named_it(gw, path, uri, prefix):
    async with Client(gw.url + path, mode="2026-07-28") as client:

        async def subscribed(expected: bool) -> bool:
            state = json.loads(text_of(await client.call_tool(prefix + "state", {})))
            return ("toy://note" in state["subscribed"]) == expected

        async with client.listen(resource_subscriptions=[uri]) as sub:
            assert sub.honored.resource_subscriptions == [uri]
            # The catalog connection subscribes upstream once the stream is open; the toy's announce
            # tool tells its subscribed sessions (the catalog connection's among them).
            await eventually(lambda: subscribed(True))
            await client.call_tool(prefix + "announce", {"uri": "toy://note"})
            with anyio.fail_after(30):
                event = await anext(aiter(sub))
            assert event == ResourceUpdated(uri=uri)
        await eventually(lambda: subscribed(False))  # the last stream naming it ended: unsubscribed


def test_a_listen_stream_idle_past_its_deadline_ends_with_its_result(component_path):
    gateway = federated_gateway("python", [], MCPGW_LISTEN_IDLE_TIMEOUT_S="1")
    try:
        body = rpc2026("subscriptions/listen", 7, notifications={"toolsListChanged": True, "promptsListChanged": 1})
        stream = httpx.post(gateway.url + "/mcp", json=body, headers=headers2026("subscriptions/listen"), timeout=60)
        messages = [e.json() for e in read_sse(stream) if e.data]
        health = httpx.get(gateway.url + "/health").json()["limits"]["listen"]
    finally:
        gateway.stop()
    ack = messages[0]
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"]["notifications"] == {"toolsListChanged": True}  # only what was asked with true
    assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 7
    # Idle for MCPGW_LISTEN_IDLE_TIMEOUT_S: the stream ends with its result, the same _meta.
    assert messages[-1]["id"] == 7
    assert messages[-1]["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 7
    assert health == {"max_listens_per_client": 16, "listen_idle_timeout_s": 1.0, "streams": 0, "refused": 0}


def test_listen_needs_a_filter(gw):
    body = rpc2026("subscriptions/listen", 1)
    refused = httpx.post(gw.url + "/mcp", json=body, headers=headers2026("subscriptions/listen"), timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == -32602


async def test_the_sdk_client_sees_its_listen_refused_past_the_cap(gw):
    async with (
        Client(gw.url + "/mcp", mode="2026-07-28") as client,
        client.listen(tools_list_changed=True),
        client.listen(prompts_list_changed=True),
    ):
        with pytest.raises(MCPError) as refused:
            async with client.listen(resources_list_changed=True):
                pass
        assert refused.value.error.code == -32029
    async with httpx.AsyncClient() as http:
        assert (await http.get(gw.url + "/health")).json()["limits"]["listen"]["refused"] >= 1


def test_a_built_in_state_verifies_on_another_process_only_with_the_same_configured_key(component_path):
    """Scale-out: a built-in tool's retry may reach another gateway process; it verifies there when
    every process has MCPGW_REQUEST_STATE_KEY (the default key is random per process)."""
    key = "k" * 40
    issuer = federated_gateway("python", [], MCPGW_REQUEST_STATE_KEY=key)
    same = federated_gateway("python", [], MCPGW_REQUEST_STATE_KEY=key)
    other = federated_gateway("python", [])
    try:
        first = answer(call(issuer, "/mcp", "ask", {"question": "Q?"}))["result"]
        reply = {"answer": {"action": "accept", "content": {"answer": "yes"}}}
        retry = {"inputResponses": reply, "requestState": first["requestState"]}
        done = answer(call(same, "/mcp", "ask", {"question": "Q?"}, **retry))
        refused = call(other, "/mcp", "ask", {"question": "Q?"}, **retry)
    finally:
        for gateway in (issuer, same, other):
            gateway.stop()
    assert done["result"]["content"][0]["text"] == "answered: yes"
    assert refused.status_code == 400 and "not one this gateway issued" in refused.json()["error"]["message"]


def test_a_listen_stream_ends_with_its_result_when_the_gateway_shuts_down_not_after_the_grace(component_path):
    gateway = federated_gateway("python", [], MCPGW_SHUTDOWN_GRACE_S="60")
    body = rpc2026("subscriptions/listen", 9, notifications={"promptsListChanged": True})
    messages = []
    try:
        with httpx.stream(
            "POST", gateway.url + "/mcp", json=body, headers=headers2026("subscriptions/listen"), timeout=120
        ) as stream:
            events = (e for e in sse_events(stream.iter_lines()) if not isinstance(e, str) and e.data)
            messages.append(next(events).json())  # the acknowledgement: the stream is open
            started = time.monotonic()
            gateway.proc.send_signal(signal.SIGTERM)
            messages += [e.json() for e in events]
            ended_after = time.monotonic() - started
    finally:
        gateway.stop()
    assert messages[0]["method"] == "notifications/subscriptions/acknowledged"
    assert messages[-1]["id"] == 9
    assert messages[-1]["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 9
    assert ended_after < 50  # told at once by the drain, not cancelled after MCPGW_SHUTDOWN_GRACE_S (60)


# -- bounds and malformed retries of relayed calls -----------------------------------------------
ASKS_BOTH = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}, "sampling": {}}}
ANSWERS = {
    "elicitation/create": {"action": "accept", "content": {"name": "Ada"}},
    "sampling/createMessage": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "sampled"}},
}


def health_of(gateway) -> dict:
    return httpx.get(gateway.url + "/health", timeout=30).json()["limits"]["input_required"]


def at_once(n: int, request) -> list:
    """`n` requests in flight together (threads: each its own connection)."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: request(), range(n)))


@pytest.mark.parametrize("stagger", [0.0, 0.3])
@pytest.mark.parametrize("path,prefix", [("/servers/asking/mcp", ""), ("/mcp", "asking__")])
async def test_two_upstream_questions_close_together_are_both_answered(gw, path, prefix, stagger):
    """The upstream asks an elicitation and (at once, or a little later while it is unanswered)
    a sampling request: the SDK client is asked both, in one round or two, and gets the result."""

    async def elicit(ctx, params) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def sample(ctx, params) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", model="m", content=types.TextContent(type="text", text="sampled")
        )

    async with Client(gw.url + path, mode="2026-07-28", elicitation_callback=elicit, sampling_callback=sample) as c:
        assert text_of(await c.call_tool(prefix + "pair", {"stagger": stagger})) == "Ada; sampled"


def test_a_question_asked_after_the_input_required_went_out_comes_in_the_next_round(gw):
    """The second question reaches the gateway while the client holds the first round: the retry
    answering what it was sent is not refused for the question it never saw; that one is the next
    round's."""
    path, arguments = "/servers/asking/mcp", {"stagger": 0.5}
    reply = answer(call(gw, path, "pair", arguments, meta=ASKS_BOTH))["result"]
    assert reply["resultType"] == "input_required"
    time.sleep(2)  # the client is slow: the upstream's second question arrives meanwhile
    asked: list[str] = []
    for _ in range(4):
        if reply.get("resultType") != "input_required":
            break
        asked += sorted(reply["inputRequests"])
        responses = {key: ANSWERS[r["method"]] for key, r in reply["inputRequests"].items()}
        retry = call(
            gw, path, "pair", arguments, ASKS_BOTH, inputResponses=responses, requestState=reply["requestState"]
        )
        assert retry.status_code == 200, retry.text
        reply = answer(retry)["result"]
    assert reply["content"][0]["text"] == "Ada; sampled"
    assert sorted(k.split("-")[0] for k in asked) == ["elicit", "sample"]


def test_the_same_state_sent_twice_continues_the_call_once(gw):
    path, arguments = "/servers/asking/mcp", {"stagger": 5}
    first = answer(call(gw, path, "pair", arguments, meta=ASKS_BOTH))["result"]
    assert list(first["inputRequests"]) == ["elicit-1"]  # the sampling request comes 5 s later
    retry = {"inputResponses": {"elicit-1": ANSWERS["elicitation/create"]}, "requestState": first["requestState"]}
    with ThreadPoolExecutor(2) as pool:  # both sent while the first one waits for the next question
        one = pool.submit(call, gw, path, "pair", arguments, ASKS_BOTH, **retry)
        time.sleep(0.5)
        two = pool.submit(call, gw, path, "pair", arguments, ASKS_BOTH, **retry)
        replies = [one.result(), two.result()]
    refused = [r for r in replies if r.status_code == 400]
    (continued,) = [answer(r)["result"] for r in replies if r.status_code == 200]
    assert len(refused) == 1 and refused[0].json()["error"]["code"] == -32602
    assert "another request is continuing that call" in refused[0].json()["error"]["message"]
    assert list(continued["inputRequests"]) == ["sample-2"]
    last = {
        "inputResponses": {"sample-2": ANSWERS["sampling/createMessage"]},
        "requestState": continued["requestState"],
    }
    assert (
        answer(call(gw, path, "pair", arguments, ASKS_BOTH, **last))["result"]["content"][0]["text"] == "Ada; sampled"
    )


def test_malformed_answers_and_an_earlier_rounds_state_are_refused_and_the_call_still_expires(component_path):
    """A retry whose answers are malformed is refused (-32602) before anything changes: the call
    stays parked as it was, a proper retry continues it, and left alone it expires after
    MCPGW_INPUT_WAIT_S (its upstream connection closed). An earlier round's state is refused."""
    gateway = federated_gateway("python", [stdio_table("asking", ASKING, "stdio")], MCPGW_INPUT_WAIT_S="3")
    path = "/servers/asking/mcp"
    try:
        first = answer(call(gateway, path, "interview", {}, meta=ASKS_BOTH))["result"]
        assert list(first["inputRequests"]) == ["elicit-1"]
        state = first["requestState"]
        for bad in ({"error": {"code": "x"}}, {"error": {"code": 2**40}}, {"error": "no"}, "yes", None):
            refused = call(
                gateway, path, "interview", {}, ASKS_BOTH, inputResponses={"elicit-1": bad}, requestState=state
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["code"] == -32602 and "elicit-1" in refused.json()["error"]["message"]
        name = {"elicit-1": {"action": "accept", "content": {"name": "Ada"}}}
        second = answer(call(gateway, path, "interview", {}, ASKS_BOTH, inputResponses=name, requestState=state))
        assert second["result"]["inputRequests"]["elicit-2"]["params"]["message"] == "Your colour?"
        earlier = call(gateway, path, "interview", {}, ASKS_BOTH, inputResponses=name, requestState=state)
        assert earlier.status_code == 400 and "an earlier round's" in earlier.json()["error"]["message"]
        bad = {"elicit-2": {"error": {"code": None}}}
        state2 = second["result"]["requestState"]
        refused = call(gateway, path, "interview", {}, ASKS_BOTH, inputResponses=bad, requestState=state2)
        assert refused.status_code == 400
        assert health_of(gateway)["calls"] == 1
        # Left alone after the refused retry: it expires (MCPGW_INPUT_WAIT_S), its link released.
        deadline = time.monotonic() + 60
        while health_of(gateway)["calls"] and time.monotonic() < deadline:
            time.sleep(0.2)
        health = health_of(gateway)
    finally:
        gateway.stop()
    assert health["calls"] == 0 and health["links_in_use"] == 0 and health["input_wait_s"] == 3.0


def test_calls_waiting_for_one_clients_input_are_capped_when_they_come_at_once(web, component_path):
    """Each call waiting for the client's input holds an upstream connection (for stdio, a
    process): one client address may have MCPGW_MAX_INPUT_WAITS_PER_CLIENT at once, counted
    before the connection is opened, so concurrent first calls do not pass it. And a client's
    capability contents make one pool profile (capability names and known sub-flags)."""
    gateway = federated_gateway(
        "python", [http_table("web", web.url, prefix="w", max_connections=40)], MCPGW_MAX_INPUT_WAITS_PER_CLIENT="4"
    )
    try:
        for junk in range(6):  # lists read on a pooled link: one profile however the contents vary
            meta = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {"sampling": {"n": junk, "tools": {}}}}
            body = rpc2026("tools/list", 1, meta=meta)
            listed = httpx.post(gateway.url + "/mcp", json=body, headers=headers2026("tools/list"), timeout=60)
            assert "w__sampler" in {t["name"] for t in answer(listed)["result"]["tools"]}
        pooled = health_of(gateway)
        replies = at_once(10, lambda: answer(call(gateway, "/servers/web/mcp", "withdraw", {"seconds": 120})))
        health = health_of(gateway)
    finally:
        gateway.stop()
    assert pooled["links_in_use"] + pooled["links_idle"] == 1
    assert sum(r.get("result", {}).get("resultType") == "input_required" for r in replies) == 4
    refused = [r["error"] for r in replies if "error" in r]
    assert len(refused) == 6 and all(e["code"] == -32029 and "waiting for its input" in e["message"] for e in refused)
    assert health["calls"] == 4 and health["refused"] == 6 and health["max_input_waits_per_client"] == 4


def test_an_upstreams_max_connections_bounds_the_links_of_calls_that_come_at_once(web, component_path):
    """Past the upstream's max_connections such calls share the catalog connection (which offers
    no client capabilities): links being opened count, so 8 at once open at most 2."""
    gateway = federated_gateway("python", [http_table("web", web.url, prefix="w", max_connections=2)])
    try:
        replies = at_once(8, lambda: answer(call(gateway, "/servers/web/mcp", "withdraw", {"seconds": 20})))
        health = health_of(gateway)
    finally:
        gateway.stop()
    parked = sum(r.get("result", {}).get("resultType") == "input_required" for r in replies)
    assert 1 <= parked <= 2
    assert health["links_in_use"] + health["links_idle"] <= 2 and health["calls"] == parked


def acknowledged_uris(gateway, path: str, uris: list[str], source: str | None = None) -> list[str]:
    """The URIs a listen stream naming `uris` is acknowledged; the stream ends when this returns.
    `source`: the loopback address the client connects from (the gateway's client address)."""
    with contextlib.ExitStack() as held:
        return listening(gateway, path, uris, held, source)


def listening(gateway, path: str, uris: list[str], held: contextlib.ExitStack, source: str | None = None) -> list[str]:
    """Open a listen stream naming `uris`, kept open until `held` closes; its acknowledged URIs."""
    body = rpc2026("subscriptions/listen", 3, notifications={"resourceSubscriptions": uris})
    client = held.enter_context(httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=60))
    stream = held.enter_context(
        client.stream("POST", gateway.url + path, json=body, headers=headers2026("subscriptions/listen"))
    )
    events = (e for e in sse_events(stream.iter_lines()) if not isinstance(e, str) and e.data)
    held.callback(events.close)  # referenced until then: a reading generator collected ends the stream
    ack = next(events).json()
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    return ack["params"]["notifications"].get("resourceSubscriptions", [])


def test_a_listen_stream_is_honored_only_uris_the_gateway_subscribes_upstream(gw):
    """Each URI a listen stream names is one upstream resources/subscribe: only URIs the upstream
    lists or matches with a template, at most 64 distinct per upstream and client address; the
    acknowledgement leaves out the others (the first named are the first honored)."""
    assert acknowledged_uris(gw, "/servers/toy/mcp", ["toy://nope", "toy://note"]) == ["toy://note"]
    assert acknowledged_uris(gw, "/mcp", ["toy+toy://nope", "toy+toy://note"]) == ["toy+toy://note"]
    items = [f"asking://item/{i}" for i in range(300)]
    assert acknowledged_uris(gw, "/servers/asking/mcp", ["asking://other", *items]) == items[:64]


def test_each_client_address_has_its_own_share_of_an_upstreams_listened_uris(gw):
    """Review 2 finding 3: one client's listen streams naming many URIs of an upstream took its
    whole cap (256 distinct URIs), leaving every other client's URIs out of their acknowledgement.
    Each client address now names at most 64 distinct URIs per upstream (its streams together);
    the 256 per upstream still bound what is subscribed upstream."""
    items = [f"asking://item/{i}" for i in range(400)]
    path = "/servers/asking/mcp"
    with contextlib.ExitStack() as held:
        # a first client names 100 URIs on two streams: 64 honored in all, the second stream none new
        assert listening(gw, path, items[:100], held, "127.0.0.2") == items[:64]
        assert listening(gw, path, items[60:70], held, "127.0.0.2") == items[60:64]
        # another client address is not affected by it: its own 64
        assert listening(gw, path, items[:100], held, "127.0.0.7") == items[:64]
        for n, source in enumerate(("127.0.0.3", "127.0.0.4", "127.0.0.5")):  # 4 x 64 = the 256 per upstream
            start = 64 * (n + 1)
            assert listening(gw, path, items[start : start + 64], held, source) == items[start : start + 64]
        # the upstream's 256 are taken: a fifth client is honored URIs already subscribed, no new one
        assert acknowledged_uris(gw, path, [items[300], items[5]], "127.0.0.6") == [items[5]]
    # streams ended (the gateway sees each disconnect soon after): the shares and the cap are free again
    deadline, freed = time.monotonic() + 60, []
    while freed != items[300:364] and time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):  # its streams are still ending: not acknowledged yet
            freed = acknowledged_uris(gw, path, items[300:370], "127.0.0.2")
    assert freed == items[300:364]
