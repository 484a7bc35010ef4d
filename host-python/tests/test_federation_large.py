"""Large messages from upstreams (issue 19, defect 3): the upstream side accepts messages up to
`max_message_bytes` on every transport (the mcp SDK client's own limit is 1 MiB an SSE event), and
one message over the limit fails that call only, never the connection it came on. On stdio too:
the gateway's own line reader (federation/stdio_client.py) skips a line over the limit without
holding it, and fails only the call it answered.

Real gateway process (Python edge), real upstream processes (the toy server over Streamable HTTP,
legacy SSE and stdio), the mcp SDK's client with its own SSE event limit lifted (the gateway's
answers are as large as the upstream's).
"""

from __future__ import annotations

import tracemalloc

import anyio
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcpgw.federation.stdio_client import answered_id, read_lines
from upstream_procs import TOY, federated_gateway, http_table, stdio_table, toy_http, toy_sse, upstream_health

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def gw(component_path):
    web, legacy = toy_http("web"), toy_sse("legacy")
    tight_web, tight_legacy = toy_http("tight-web"), toy_sse("tight-legacy")
    tables = [
        http_table("web", web.url),
        http_table("legacy", legacy.url, transport="sse"),
        stdio_table("local", TOY, "stdio", "local"),
        http_table("tight-web", tight_web.url, max_message_bytes=2 * MIB, restart_backoff_s=0.2),
        http_table("tight-legacy", tight_legacy.url, transport="sse", max_message_bytes=2 * MIB, restart_backoff_s=0.2),
        stdio_table("tight-local", TOY, "stdio", "tight-local", max_message_bytes=2 * MIB),
    ]
    gateway = federated_gateway("python", tables)
    yield gateway
    gateway.stop()
    for upstream in (web, legacy, tight_web, tight_legacy):
        upstream.stop()


def client(url: str) -> Client:
    return Client(streamable_http_client(url, max_sse_event_size=None), mode="legacy")


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.mark.parametrize("upstream", ["web", "legacy", "local"])
async def test_a_5_mib_answer_comes_through_every_upstream_transport(gw, upstream):
    expected = ("0123456789abcdef" * (5 * MIB // 16 + 1))[: 5 * MIB]
    async with client(gw.url + f"/servers/{upstream}/mcp") as direct:
        result = await direct.call_tool("big", {"mib": 5})
        assert not result.is_error and text_of(result) == expected
    async with client(gw.url + "/mcp") as merged:
        result = await merged.call_tool(f"{upstream}__big", {"mib": 5})
        assert not result.is_error and text_of(result) == expected
        assert text_of(await merged.call_tool(f"{upstream}__whoami", {})).startswith(f"{upstream} pid=")


@pytest.mark.parametrize("upstream", ["tight-web", "tight-legacy", "tight-local"])
async def test_an_answer_over_the_limit_fails_that_call_only(gw, upstream):
    restarts = upstream_health(gw.url)[upstream]["restarts"]
    async with client(gw.url + f"/servers/{upstream}/mcp") as session:
        first = text_of(await session.call_tool("whoami", {}))
        slow: list[str] = []

        async def slow_call() -> None:  # in flight on the same connection while the large answer fails
            slow.append(text_of(await session.call_tool("slow", {"seconds": 2})))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(slow_call)
            with pytest.raises(MCPError) as too_large:
                await session.call_tool("big", {"mib": 3})
        error = too_large.value.error
        assert error.code == -32603 and error.data == {"upstream": upstream}
        assert error.message.startswith(f"Upstream '{upstream}' answered tools/call with a message over ")
        assert "max_message_bytes" in error.message
        assert slow == ["slept 2.0"]
        # The same connection goes on: under the limit works, and nothing restarted.
        assert text_of(await session.call_tool("whoami", {})) == first
        assert len(text_of(await session.call_tool("big", {"mib": 1.5}))) == int(1.5 * MIB)
    health = upstream_health(gw.url)[upstream]
    assert health["state"] == "ready" and health["restarts"] == restarts
    assert health["oversized_messages"] == 1  # visible, not only in the log


async def test_a_stdio_line_over_the_limit_is_skipped_without_being_held():
    """The stdio line reader keeps at most the limit of a line (and a few KiB of its edges): a
    64 MiB line read against a 1 MiB limit costs the reader about 1 MiB, not 64."""
    chunk = b"x" * MIB
    chunks = [b'{"jsonrpc":"2.0","id":"mcpgw-7","result":{"t":"'] + [chunk] * 64 + [b'"}}\n{"a":1}\n']

    async def receive(max_bytes: int) -> bytes:
        if not chunks:
            raise anyio.EndOfStream
        return chunks.pop(0)

    tracemalloc.start()
    try:
        lines = [item async for item in read_lines(receive, MIB)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MIB  # the 1 MiB chunks themselves are allocated by the fake pipe, one at a time
    (size, head, tail), rest = lines
    assert size == 64 * MIB + len(b'{"jsonrpc":"2.0","id":"mcpgw-7","result":{"t":"') + 3
    assert answered_id(head, tail) == "mcpgw-7" and rest == b'{"a":1}'


def test_the_id_of_an_oversized_answer_is_found_before_or_after_its_result():
    body = b'{"content":[{"type":"text","text":"...","id":"inner"}],"id":"mcpgw-1"}'
    # The Python SDK writes the id first, the TypeScript SDK (the everything server) last.
    assert answered_id(b'{"jsonrpc":"2.0","id":"mcpgw-3","result":' + body[:20], b"") == "mcpgw-3"
    assert answered_id(b'{"result":' + body[:20], body[-20:] + b'},"jsonrpc":"2.0","id":"mcpgw-4"}') == "mcpgw-4"
    assert answered_id(b'{"jsonrpc":"2.0","id":12,"error":{', b"") == 12
    # An "id" inside the result is not the answer's.
    assert answered_id(b'{"result":{"id":"mcpgw-9","x":"', b'...","id":"mcpgw-9"}}') is None
