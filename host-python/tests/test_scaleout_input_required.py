"""Scale-out (docs/scale-out.md): a relayed 2026-07-28 call parked by an InputRequiredResult in one
gateway process, its retry received by another. Two real gateway processes sharing a real
`redis-server` (scaleout_procs.py) and the same MCPGW_REQUEST_STATE_KEY, a real stdio upstream
that elicits and samples (tests/upstreams/asking_server.py):

- every round's retry sent to the other process: the call completes (raw requests, and the SDK
  `Client` behind a round-robin proxy);
- the holder SIGKILLed between the first request and the retry: one clear -32603 naming the loss;
- `mcpgw serve --workers 2` without the key: the supervisor gives its workers one.
"""

from __future__ import annotations

import os
import secrets
import time

import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client

from conftest import Gateway
from mcp_http import ENVELOPE, headers2026, read_sse, rpc2026
from scaleout_procs import (
    RedisServer,
    RoundRobinProxy,
    config_file,
    gateways,
    kill,
    stop_all,
    wait_workers,
    workers_gateway,
)
from upstream_procs import UPSTREAMS, stdio_table, wait_upstreams

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

ASKING = UPSTREAMS / "asking_server.py"
ASKS = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}, "sampling": {}}}
ANSWERS = {
    "Your name?": {"action": "accept", "content": {"name": "Ada"}},
    "Your colour?": {"action": "accept", "content": {"colour": "teal"}},
}
SAMPLED = {"role": "assistant", "model": "m", "content": {"type": "text", "text": "sampled"}}


@pytest.fixture(scope="module")
def redis():
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def pair(redis, component_path):
    """Gateways A and B sharing Redis, the asking upstream and one requestState key."""
    gws = gateways(redis, 2, [stdio_table("asking", ASKING, "stdio")], MCPGW_REQUEST_STATE_KEY=secrets.token_hex(32))
    for gw in gws:
        wait_upstreams(gw.url)
    yield gws
    stop_all(gws)


def answer(response: httpx.Response) -> dict:
    if response.headers["content-type"].startswith("text/event-stream"):
        return [e.json() for e in read_sse(response) if e.data][-1]
    return response.json()


def interview(gw: Gateway, path: str, **retry) -> dict:
    body = rpc2026("tools/call", 1, name="interview", arguments={}, **retry)
    body["params"]["_meta"] = ASKS
    return answer(httpx.post(gw.url + path, json=body, headers=headers2026("tools/call", "interview"), timeout=60))


def responses_to(result: dict) -> dict:
    out = {}
    for key, request in result["inputRequests"].items():
        if request["method"] == "sampling/createMessage":
            out[key] = SAMPLED
        else:
            out[key] = ANSWERS[request["params"]["message"]]
    return out


@pytest.mark.parametrize("path,prefix", [("/servers/asking/mcp", ""), ("/mcp", "asking__")])
def test_each_retry_on_the_other_process_continues_the_call(pair, path, prefix):
    a, b = pair
    name = prefix + "interview"
    body = rpc2026("tools/call", 1, name=name, arguments={})
    body["params"]["_meta"] = ASKS
    post = lambda gw, body: answer(  # noqa: E731
        httpx.post(gw.url + path, json=body, headers=headers2026("tools/call", name), timeout=60)
    )
    reply = post(a, body)["result"]
    rounds = 0
    for gw in [b, a, b, a]:  # three questions, one per round; each retry on the other process
        if reply.get("resultType") != "input_required":
            break
        rounds += 1
        retry = {**body, "params": {**body["params"], "inputResponses": responses_to(reply)}}
        retry["params"]["requestState"] = reply["requestState"]
        reply = post(gw, retry)
        assert "result" in reply, reply
        reply = reply["result"]
    assert rounds == 3
    assert reply["content"][0]["text"] == "Ada likes teal; sampled"
    # the last state sent again to B: A no longer holds the call, and says so through B
    again = httpx.post(b.url + path, json=retry, headers=headers2026("tools/call", name), timeout=60)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == -32602 and "no longer held here" in again.json()["error"]["message"]
    # the call stayed in A: the three retries B received were forwarded there and answered by A
    on_a, on_b = (httpx.get(gw.url + "/health").json()["limits"]["input_required"] for gw in pair)
    assert (on_b["retries_forwarded"], on_a["retries_served"]) == (3, 3)
    assert (on_a["retries_forwarded"], on_b["retries_served"]) == (0, 0)


def test_progress_the_call_makes_during_a_forwarded_retry_comes_on_the_retrys_response(pair):
    a, b = pair
    first = interview(a, "/servers/asking/mcp")["result"]
    body = rpc2026("tools/call", 1, name="interview", arguments={})
    body["params"]["_meta"] = {**ASKS, "progressToken": "p-1"}
    body["params"]["inputResponses"], body["params"]["requestState"] = responses_to(first), first["requestState"]
    response = httpx.post(
        b.url + "/servers/asking/mcp", json=body, headers=headers2026("tools/call", "interview"), timeout=60
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = [e.json() for e in read_sse(response) if e.data]
    assert messages[0] == {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": "p-1", "progress": 1.0, "total": 3.0, "message": "name taken"},
    }
    assert messages[-1]["result"]["resultType"] == "input_required"  # the colour, from the holder
    assert [r["params"]["message"] for r in messages[-1]["result"]["inputRequests"].values()] == ["Your colour?"]


async def test_the_sdk_client_behind_a_round_robin_proxy_completes_an_interview(pair):
    asked: list[str] = []

    async def elicit(ctx, params) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content=ANSWERS[params.message]["content"])

    async def sample(ctx, params) -> types.CreateMessageResult:
        asked.append("sampling")
        return types.CreateMessageResult(
            role="assistant", model="m", content=types.TextContent(type="text", text="sampled")
        )

    with RoundRobinProxy([gw.url for gw in pair]) as proxy:
        async with Client(
            proxy.url + "/servers/asking/mcp", mode="2026-07-28", elicitation_callback=elicit, sampling_callback=sample
        ) as client:
            for _ in range(2):
                result = await client.call_tool("interview", {})
                assert [c.text for c in result.content if isinstance(c, types.TextContent)] == [
                    "Ada likes teal; sampled"
                ]
    assert asked == ["Your name?", "Your colour?", "sampling"] * 2


def test_a_retry_whose_holder_was_killed_gets_one_clear_error(pair):
    a, b = pair
    first = interview(a, "/servers/asking/mcp")["result"]
    assert first["resultType"] == "input_required"
    kill(a)
    reply = interview(b, "/servers/asking/mcp", inputResponses=responses_to(first), requestState=first["requestState"])
    error = reply["error"]
    assert error["code"] == -32603
    assert "which stopped" in error["message"] and "without requestState" in error["message"]
    assert error["data"]["upstream"] == "asking"
    # sent again without the state, the call starts afresh on B
    assert interview(b, "/servers/asking/mcp")["result"]["resultType"] == "input_required"


def test_workers_2_without_a_key_share_one_so_a_retry_verifies_on_the_other_worker(redis, component_path):
    """`--workers 2` with MCPGW_REQUEST_STATE_KEY unset: the supervisor gives both workers one key,
    so a state issued by one worker verifies on the other, which forwards the retry."""
    config = config_file([stdio_table("asking", ASKING, "stdio")])
    gw = workers_gateway(redis, 2, MCPGW_CONFIG=config)
    clients: dict[int, httpx.Client] = {}
    try:
        wait_workers(gw)
        wait_upstreams(gw.url)
        assert "requestState key: MCPGW_REQUEST_STATE_KEY unset; one generated here" in gw.log()
        assert "requestState key: random in this process" not in gw.log()
        for _ in range(200):  # one kept-alive connection to each worker (the kernel picks per connection)
            http = httpx.Client(timeout=60)
            pid = http.get(gw.url + "/health").json()["process"]["pid"]
            if pid in clients:
                http.close()
            else:
                clients[pid] = http
            if len(clients) == 2:
                break
        assert len(clients) == 2
        for http in clients.values():  # wait_upstreams asked one worker: each starts its own upstream
            deadline = time.monotonic() + 60
            while http.get(gw.url + "/health").json()["upstreams"]["asking"]["state"] != "ready":
                assert time.monotonic() < deadline, "a worker's upstream did not become ready"
                time.sleep(0.1)
        one, two = clients.values()
        body = rpc2026("tools/call", 1, name="interview", arguments={})
        body["params"]["_meta"] = ASKS
        headers = headers2026("tools/call", "interview")
        reply = answer(one.post(gw.url + "/servers/asking/mcp", json=body, headers=headers))["result"]
        for http in [two, one, two]:
            assert reply["resultType"] == "input_required"
            retry = {**body, "params": {**body["params"], "inputResponses": responses_to(reply)}}
            retry["params"]["requestState"] = reply["requestState"]
            reply = answer(http.post(gw.url + "/servers/asking/mcp", json=retry, headers=headers))
            assert "result" in reply, reply
            reply = reply["result"]
        assert reply["content"][0]["text"] == "Ada likes teal; sampled"
    finally:
        for http in clients.values():
            http.close()
        gw.stop()
        os.unlink(config)
