"""What the gateway relays between a client and an upstream (issue 19): the client's capabilities
exactly as declared (never more), and an upstream's withdrawal (notifications/cancelled) of its
own elicitation, on virtual servers and on /mcp; a stdio upstream's stderr in the gateway's log.

A real gateway process (Python edge), the toy server over Streamable HTTP as the upstream (its
`offered` tool answers what its connection was offered in initialize), raw HTTP clients so the
declared capabilities are exactly what the test writes.
"""

from __future__ import annotations

import json

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client

from mcp_http import BASE, read_sse_text, rpc
from upstream_procs import TOY, federated_gateway, http_table, stdio_table, toy_http

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def gw(component_path):
    web = toy_http("web")
    gateway = federated_gateway("python", [http_table("web", web.url, prefix="w")])
    yield gateway
    gateway.stop()
    web.stop()


def _answer(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return read_sse_text(r.text)[-1].json() if r.headers["content-type"] == "text/event-stream" else r.json()


def offered_upstream(url: str, capabilities: dict, tool: str) -> dict:
    """Open a session declaring `capabilities`, and ask the upstream what its connection was offered."""
    with httpx.Client(timeout=60) as http:
        init = rpc(
            "initialize",
            0,
            protocolVersion="2025-11-25",
            capabilities=capabilities,
            clientInfo={"name": "t", "version": "0"},
        )
        r = http.post(url, json=init, headers=BASE)
        _answer(r)
        headers = {**BASE, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        http.post(url, json=rpc("notifications/initialized", None), headers=headers)
        result = _answer(http.post(url, json=rpc("tools/call", 1, name=tool, arguments={}), headers=headers))
        http.delete(url, headers=headers)
    return json.loads(result["result"]["content"][0]["text"])


RICH = {
    "sampling": {"context": {}, "tools": {}},
    "elicitation": {"form": {}},
    "roots": {"listChanged": True},
    "experimental": {"x-test": {"depth": 2}},
    "tasks": {"list": {}, "cancel": {}, "requests": {"sampling": {"createMessage": {}}}},
}
RELAYED = {key: RICH[key] for key in ("sampling", "elicitation", "roots", "experimental")}  # no tasks


@pytest.mark.parametrize(("path", "tool"), [("/servers/web/mcp", "offered"), ("/mcp", "w__offered")])
def test_client_capabilities_reach_the_upstream_exactly_as_declared(gw, path, tool):
    assert offered_upstream(gw.url + path, RICH, tool) == RELAYED


@pytest.mark.parametrize(
    "declared",
    [
        {},  # nothing: the upstream is offered nothing
        {"elicitation": {}},  # form only (the spec's empty object): never url added
        {"roots": {}},  # roots without listChanged: not added
        {"sampling": {}},  # plain sampling: no tools, no context
    ],
)
def test_an_upstream_is_never_offered_more_than_the_client_declared(gw, declared):
    assert offered_upstream(gw.url + "/servers/web/mcp", declared, "offered") == declared


@pytest.mark.parametrize("path", ["/servers/web/mcp", "/mcp"])
async def test_an_upstream_withdrawing_its_elicitation_reaches_the_client_with_its_id(gw, path):
    asked, withdrawn = anyio.Event(), anyio.Event()

    async def elicitation(ctx, params):
        asked.set()
        try:
            await anyio.sleep_forever()  # a user who has not answered yet
        except anyio.get_cancelled_exc_class():
            withdrawn.set()  # the client SDK cancels the handler on notifications/cancelled for its id
            raise
        return types.ElicitResult(action="cancel")  # pragma: no cover

    tool = "withdraw" if path.startswith("/servers") else "w__withdraw"
    async with Client(gw.url + path, mode="legacy", elicitation_callback=elicitation) as client:
        with anyio.fail_after(30):
            result = await client.call_tool(tool, {"seconds": 1.0})
            await withdrawn.wait()
        assert asked.is_set()
        assert result.content[0].text == "withdrawn"


async def test_a_stdio_upstreams_stderr_goes_to_the_gateway_log_with_its_id_and_rate_limited(component_path):
    gateway = federated_gateway("python", [stdio_table("loud", TOY, "stdio", "loud")])
    try:
        async with Client(gateway.url + "/servers/loud/mcp", mode="legacy") as client:
            await client.call_tool("complain", {"text": "disk almost full"})
            await client.call_tool("complain", {"text": "flood", "times": 5000})
            await client.call_tool("complain", {"text": "after the flood"})
        with anyio.fail_after(30):
            while "dropped: rate limit" not in gateway.log():  # noqa: ASYNC110 - another process's log file: polled
                await anyio.sleep(0.1)
        log = gateway.log()
        assert "upstream loud (session " in log and "stderr: disk almost full 0" in log
        floods = [line for line in log.splitlines() if "stderr: flood " in line]
        assert 0 < len(floods) < 5000  # a burst, then the rate limit
    finally:
        gateway.stop()


async def test_links_in_tool_results_and_prompts_resolve_through_mcp(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as merged:
        link, embedded = (await merged.call_tool("w__linked", {})).content
        assert isinstance(link, types.ResourceLink) and str(link.uri) == "w+toy://note"
        assert isinstance(embedded, types.EmbeddedResource) and str(embedded.resource.uri) == "w+toy://note"
        read = await merged.read_resource(str(link.uri))  # the link leads back to the upstream's resource
        assert [(str(c.uri), c.text) for c in read.contents] == [("w+toy://note", "a note from web")]
        (message,) = (await merged.get_prompt("w__cite", {})).messages
        assert isinstance(message.content, types.EmbeddedResource)
        assert str(message.content.resource.uri) == "w+toy://note"
    async with Client(gw.url + "/servers/web/mcp", mode="legacy") as virtual:  # its own names, unchanged
        link, embedded = (await virtual.call_tool("linked", {})).content
        assert str(link.uri) == "toy://note" and str(embedded.resource.uri) == "toy://note"
        (message,) = (await virtual.get_prompt("cite", {})).messages
        assert str(message.content.resource.uri) == "toy://note"
