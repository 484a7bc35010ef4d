"""The reference MCP "everything" server (npm @modelcontextprotocol/server-everything, pinned in
tests/e2e/everything/install.sh) as an upstream over Streamable HTTP, legacy SSE and stdio.

- What a client can list: the everything server offers its sampling, elicitation and roots tools
  only to clients that declare those capabilities (issue 19, defect 6: /mcp listed 13 tools where
  the virtual server listed 17). For a client declaring nothing and one declaring all three, the
  tools listed directly, through /servers/<id>/mcp and through /mcp (names prefixed) are the same,
  field by field.
- A restart: the everything server answers 400 "No valid session ID provided" (not 404) for a
  session it does not know; the next call after a restart is answered.

Real processes throughout (the everything server on Node 22, the gateway, the mcp SDK's clients).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time

import anyio
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters

from conftest import REPO, stop_process
from upstream_procs import federated_gateway, http_table

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]
NODE = REPO / ".build" / "conformance" / "node_modules" / "node" / "bin" / "node"
EVERYTHING = REPO / ".build" / "everything" / "node_modules" / "@modelcontextprotocol" / "server-everything"
INDEX = EVERYTHING / "dist" / "index.js"


class Everything:
    """The everything server over HTTP (`streamableHttp` or `sse`) on a port of its own."""

    def __init__(self, mode: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.mode = mode
        self.url = f"http://127.0.0.1:{self.port}" + ("/mcp" if mode == "streamableHttp" else "/sse")
        self.start()

    def start(self) -> None:
        env = {**os.environ, "PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [str(NODE), str(INDEX), self.mode], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the everything server ({self.mode}) did not start") from None
                time.sleep(0.1)

    def restart(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.start()

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def everything(component_path):
    if not NODE.exists() or not INDEX.exists():
        pytest.fail("the everything server is not installed: `make test` runs tests/e2e/everything/install.sh")
    http, sse = Everything("streamableHttp"), Everything("sse")
    stdio = "\n".join(
        ["[upstreams.ev-stdio]", 'transport = "stdio"', f'command = "{NODE}"', f'args = ["{INDEX}", "stdio"]']
    )
    gw = federated_gateway(
        "python",
        [http_table("ev-http", http.url, restart_backoff_s=0.2), http_table("ev-sse", sse.url, transport="sse"), stdio],
    )
    yield gw, {"ev-http": http, "ev-sse": sse}
    gw.stop()
    http.stop()
    sse.stop()


async def _sampling(ctx, params):
    return types.CreateMessageResult(role="assistant", model="m", content=types.TextContent(type="text", text="x"))


async def _elicitation(ctx, params):
    return types.ElicitResult(action="decline")


async def _roots(ctx):
    return types.ListRootsResult(roots=[])


PROFILES = {
    "nothing": {},
    "sampling, elicitation, roots": {
        "sampling_callback": _sampling,
        "elicitation_callback": _elicitation,
        "list_roots_callback": _roots,
    },
}


def direct(upstream: str, servers: dict[str, Everything]):
    if upstream == "ev-stdio":
        return StdioServerParameters(command=str(NODE), args=[str(INDEX), "stdio"])
    if upstream == "ev-sse":
        return sse_client(servers[upstream].url)
    return servers[upstream].url


def tools_of(listed) -> dict[str, dict]:
    return {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in listed.tools}


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("upstream", ["ev-http", "ev-sse", "ev-stdio"])
async def test_each_client_lists_the_same_tools_directly_on_the_virtual_server_and_on_mcp(
    everything, upstream, profile
):
    gw, servers = everything
    callbacks = PROFILES[profile]
    async with contextlib.AsyncExitStack() as stack:
        straight = await stack.enter_async_context(Client(direct(upstream, servers), mode="legacy", **callbacks))
        virtual = await stack.enter_async_context(
            Client(gw.url + f"/servers/{upstream}/mcp", mode="legacy", **callbacks)
        )
        merged = await stack.enter_async_context(Client(gw.url + "/mcp", mode="legacy", **callbacks))
        expected = tools_of(await straight.list_tools())
        through_virtual = tools_of(await virtual.list_tools())
        prefix = f"{upstream}__"
        through_mcp = {
            name.removeprefix(prefix): {**tool, "name": tool["name"].removeprefix(prefix)}
            for name, tool in tools_of(await merged.list_tools()).items()
            if name.startswith(prefix)
        }
    assert through_virtual == expected
    assert through_mcp == expected
    declared = bool(callbacks)
    assert ("trigger-sampling-request" in expected) == declared  # the server's view depends on the client


async def test_a_restarted_everything_server_answering_400_serves_the_next_call(everything):
    gw, servers = everything
    async with Client(gw.url + "/servers/ev-http/mcp", mode="legacy") as client:
        first = await client.call_tool("echo", {"message": "before"})
        assert first.content[0].text == "Echo: before"
        servers["ev-http"].restart()  # a new process: our upstream session id gets 400
        with anyio.fail_after(30):
            again = await client.call_tool("echo", {"message": "after"})
        assert again.content[0].text == "Echo: after"
