"""Idle links (issue 19, defect 5): the mcp SDK's client gives up on an event stream after 300 s
without an event, and many servers send no keepalive. A legacy SSE link then dropped, and its
resource subscriptions with it; a Streamable HTTP link's GET stream (where the upstream's own
notifications come) was given up for good after two such timeouts, the link still "up". The read
timeout is the `read_timeout_s` key: 3 s here, so the test does not wait 300 s (a legacy SSE link
is pinged after 1 s of quiet: a loaded machine has 2 s of slack). Idle legacy SSE links stay open,
a Streamable HTTP GET stream has no read timeout, and the subscription keeps working past two read
timeouts on both.

Real gateway process (Python edge), the toy server over legacy SSE and Streamable HTTP, the mcp
SDK's client. The toy's `announce` tool sends `notifications/resources/updated` to every upstream
session that subscribed, on that session's own connection, as a server does.
"""

from __future__ import annotations

import anyio
import mcp_types as types
import pytest
from mcp.client.client import Client

from upstream_procs import federated_gateway, http_table, toy_http, toy_sse, upstream_health

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


@pytest.fixture(params=["sse", "streamable-http"])
def legacy(request, component_path):
    upstream = toy_sse("legacy") if request.param == "sse" else toy_http("legacy")
    upstream.transport = request.param
    yield upstream
    upstream.stop()


@pytest.mark.parametrize("path", ["/servers/legacy/mcp", "/mcp"])
async def test_an_idle_link_outlives_the_read_timeout_with_its_subscription(legacy, path):
    gw = federated_gateway("python", [http_table("legacy", legacy.url, transport=legacy.transport, read_timeout_s=3)])
    uri = "toy://note" if path != "/mcp" else "legacy+toy://note"
    tool = "announce" if path != "/mcp" else "legacy__announce"
    updates: list[str] = []
    updated = anyio.Event()

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            updated.set()

    try:
        async with (
            Client(gw.url + path, mode="legacy", message_handler=on_message) as subscriber,
            Client(gw.url + path, mode="legacy") as other,
        ):
            await subscriber.session.subscribe_resource(uri)
            await anyio.sleep(7)  # idle for more than two read timeouts
            reached = await other.call_tool(tool, {"uri": "toy://note"})
            assert reached.structured_content == {"result": 1}  # the one subscriber's upstream session
            with anyio.fail_after(15):
                await updated.wait()
            assert updates == [uri]
        assert "sent nothing on its event stream" not in gw.log()  # kept open, never dropped
        assert upstream_health(gw.url)["legacy"]["restarts"] == 0
    finally:
        gw.stop()
