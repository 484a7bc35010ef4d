"""The reference MCP "everything" server (npm @modelcontextprotocol/server-everything, pinned in
tests/e2e/everything/install.sh) as an upstream over Streamable HTTP, legacy SSE and stdio.

- What a client can list: the everything server offers its sampling, elicitation and roots tools
  only to clients that declare those capabilities (issue 19, defect 6: /mcp listed 13 tools where
  the virtual server listed 17). For a client declaring nothing and one declaring all three, the
  tools listed directly, through /servers/<id>/mcp and through /mcp (names prefixed) are the same,
  field by field.
- A restart: the everything server answers 400 "No valid session ID provided" (not 404) for a
  session it does not know; the next call after a restart is answered.
- The journey (everything_journey.py): every tool with the arguments it needs, resources and
  templates (list, read, a tool's resource_link read back, subscribe, the update, unsubscribe),
  prompts and completion, logging (setLevel, the simulated messages), sampling, elicitation (form
  and URL) and roots answered by the client's callbacks, progress, and a task (task-augmented call,
  tasks/get, result, list, cancel), made directly, through /servers/<id>/mcp and through /mcp, and
  compared case by case, field by field (volatile fields normalised, /mcp's names mapped back), for
  a client declaring sampling, elicitation and roots and one declaring nothing; over Streamable HTTP
  in both edge modes, over legacy SSE and stdio in the Python mode. The table of cases is written to
  tests/artifacts/everything-journey.md.

Real processes throughout (the everything server on Node 22, the gateway, the mcp SDK's clients).
"""

from __future__ import annotations

import base64
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
from mcp.shared.exceptions import MCPError

from conftest import REPO, stop_process
from everything_journey import Journey
from upstream_procs import federated_gateway, http_table, upstream_health

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


@pytest.fixture(scope="module")
def everything_wasm(everything):
    """A second gateway, in the wasm edge mode, in front of the same Streamable HTTP everything server."""
    _, servers = everything
    gw = federated_gateway("wasm", [http_table("ev-http", servers["ev-http"].url)])
    yield gw
    gw.stop()


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


# Differences the docs name (docs/federation.md): removed from the compared cases, listed in the table.
DOCUMENTED = {
    "initialize": "virtual: the gateway adds _meta io.mcpgw/gateway; /mcp: the gateway's own initialize",
}
# Fields /mcp leaves out by design (docs/federation.md): (case, field of the result).
MCP_OMITS = {
    ("task: tasks/list", "_meta"),  # /mcp merges the session's tasks of every upstream into one list
}
JOURNEY_TABLE: dict[str, dict[str, dict[str, list[str]]]] = {}  # case -> endpoint -> verdict -> runs
TABLE = REPO / "host-python" / "tests" / "artifacts" / "everything-journey.md"


def _verdict(case: str, direct: dict, other: dict, documented: str | None) -> str:
    if case not in other:
        return "n/a (documented)" if documented else "MISSING"
    if other[case] == direct.get(case):
        return "same" + (" (documented difference stripped)" if documented else "")
    return "DIFFERS"


def _summary(value) -> str:
    if isinstance(value, dict) and "error" in value:
        return f"error {value['error'].get('code')}"
    if isinstance(value, dict) and value.get("isError"):
        return "isError result"
    if isinstance(value, dict) and "task" in value:
        return f"task {value['task'].get('status')}"
    if isinstance(value, dict) and "status" in value and "taskId" in value:
        return f"task {value['status']}"
    if isinstance(value, list):
        return f"{len(value)} item(s)"
    return "ok"


def _write_table() -> None:
    """One row per journey case: what it was directly, and whether the virtual server and /mcp
    gave the same, with the runs (upstream transport, edge mode, client) each verdict holds for."""
    runs = len({run for row in JOURNEY_TABLE.values() for runs_ in row["direct"].values() for run in runs_})

    def cell(verdicts: dict[str, list[str]]) -> str:
        return "; ".join(
            verdict if len(where) == runs else f"{verdict} ({', '.join(where)})" for verdict, where in verdicts.items()
        )

    lines = [f"Journey cases over {runs} runs", "", "| journey case | direct | virtual | /mcp |", "|---|---|---|---|"]
    for case, row in JOURNEY_TABLE.items():
        lines.append(f"| {case} | {cell(row['direct'])} | {cell(row['virtual'])} | {cell(row['/mcp'])} |")
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(lines) + "\n")


JOURNEYS = [
    ("ev-http", "python"),
    ("ev-http", "wasm"),
    ("ev-sse", "python"),
    ("ev-stdio", "python"),
]


@pytest.mark.parametrize("capable", [True, False], ids=["every capability", "no capability"])
@pytest.mark.parametrize(("upstream", "mode"), JOURNEYS)
async def test_the_journey_is_the_same_directly_on_the_virtual_server_and_on_mcp(
    everything, everything_wasm, upstream, mode, capable
):
    gw, servers = everything
    url = (everything_wasm if mode == "wasm" else gw).url
    straight = Journey(f"journey-direct-{mode}", capable=capable)
    virtual = Journey(f"journey-virtual-{mode}", capable=capable)
    merged = Journey(f"journey-merged-{mode}", upstream, capable=capable)
    targets = [
        (straight, direct(upstream, servers)),
        (virtual, url + f"/servers/{upstream}/mcp"),
        (merged, url + "/mcp"),
    ]

    async def run(journey: Journey, target) -> None:
        async with Client(target, mode="legacy", cache=None, **journey.callbacks()) as client:
            await journey.run(client)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tasks:
            for journey, target in targets:
                tasks.start_soon(run, journey, target)

    expected = straight.cases
    meta = virtual.cases.get("initialize", {}).get("_meta", {})
    assert meta.pop("io.mcpgw/gateway", {}).get("upstream") == upstream  # the documented addition
    if not meta:
        virtual.cases["initialize"].pop("_meta", None)
    # The journey went everywhere it should: the capability-dependent tools were called when declared.
    assert ("tool trigger-sampling-request" in expected) == capable
    assert "task: tasks/result" in expected and "notifications/resources/updated" in expected

    mcp_documented: dict[str, str] = {}
    for case, field in MCP_OMITS:
        if case in merged.cases and field not in merged.cases[case] and field in expected.get(case, {}):
            merged.cases[case] = {**merged.cases[case], field: expected[case][field]}
            mcp_documented[case] = f"no result {field} (one list merged from every upstream)"
    # A client that declared nothing sees, on /mcp, the catalog connection's lists
    # (docs/federation.md, "Names on /mcp"): not the session resources its own calls made (the
    # everything server lists them only to the connection that made them); they still read.
    session_made = f"demo://resource/session/{straight.tag}"
    mcp_expected = dict(expected)
    if not capable:
        listed = expected["resources/list"]
        mcp_expected["resources/list"] = {
            **listed,
            "resources": [r for r in listed["resources"] if not r["uri"].startswith("demo://resource/session/<tag>")],
        }
        for case in expected:
            if case.startswith("resources/read <tag>"):
                mcp_documented[case] = "no capability: not listed, so not read (the catalog's lists)"
        mcp_documented["resources/list"] = "no capability: without the session's own resources (the catalog's lists)"
    assert all(session_made not in str(v) for v in expected.values())  # normalised to <tag>

    column = f"{upstream} {mode} {'capable' if capable else 'none'}"
    mismatches = []
    for case, value in expected.items():
        row = JOURNEY_TABLE.setdefault(case, {"direct": {}, "virtual": {}, "/mcp": {}})
        row["direct"].setdefault(_summary(value), []).append(column)
        for name, other in (("virtual", virtual.cases), ("/mcp", merged.cases)):
            documented = (mcp_documented.get(case) or DOCUMENTED.get(case)) if name == "/mcp" else None
            if name == "virtual" and case == "initialize":
                documented = DOCUMENTED[case]
            verdict = _verdict(case, mcp_expected if name == "/mcp" else expected, other, documented)
            row[name].setdefault(verdict + (f": {documented}" if documented and name == "/mcp" else ""), []).append(
                column
            )
            if verdict in ("MISSING", "DIFFERS"):
                mismatches.append((name, case, value, other.get(case)))
    extra = [
        (name, case) for name, j in (("virtual", virtual), ("/mcp", merged)) for case in j.cases if case not in expected
    ]
    _write_table()
    assert not extra, extra
    assert not mismatches, "\n\n".join(
        f"{name}: {case}\n  direct: {d}\n  there:  {o}" for name, case, d, o in mismatches
    )


TIGHT_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def tight(everything):
    """A gateway whose everything upstreams take messages of at most 64 KiB (max_message_bytes)."""
    _, servers = everything
    stdio = "\n".join(
        [
            "[upstreams.ev-stdio]",
            'transport = "stdio"',
            f'command = "{NODE}"',
            f'args = ["{INDEX}", "stdio"]',
            f"max_message_bytes = {TIGHT_BYTES}",
        ]
    )
    gw = federated_gateway(
        "python",
        [
            http_table("ev-http", servers["ev-http"].url, max_message_bytes=TIGHT_BYTES),
            http_table("ev-sse", servers["ev-sse"].url, transport="sse", max_message_bytes=TIGHT_BYTES),
            stdio,
        ],
    )
    yield gw
    gw.stop()


@pytest.mark.parametrize("upstream", ["ev-http", "ev-sse", "ev-stdio"])
async def test_an_everything_answer_over_the_limit_fails_that_call_only(tight, upstream):
    """The TypeScript SDK writes an answer's id after its result: the gateway still finds whose
    answer an oversized message was (it keeps the first and last bytes), fails that call at once,
    not at call_timeout_s, and the connection goes on."""
    blob = base64.b64encode(os.urandom(96 * 1024)).decode()  # gzip cannot shrink it: ~128 KiB back
    arguments = {"name": f"big-{upstream}.gz", "data": f"data:application/octet-stream;base64,{blob}"}
    async with Client(tight.url + f"/servers/{upstream}/mcp", mode="legacy", cache=None) as client:
        with anyio.fail_after(30), pytest.raises(MCPError) as too_large:  # call_timeout_s is 60
            await client.call_tool("gzip-file-as-resource", {**arguments, "outputType": "resource"})
        error = too_large.value.error
        assert error.code == -32603 and error.data == {"upstream": upstream}
        assert error.message == (
            f"Upstream '{upstream}' answered tools/call with a message over {TIGHT_BYTES} bytes"
            " (the upstream's max_message_bytes)"
        )
        # The same connection goes on: the resource the call made is there, and small answers come.
        assert (await client.call_tool("echo", {"message": "still here"})).content[0].text == "Echo: still here"
        linked = await client.call_tool("gzip-file-as-resource", arguments)
        assert linked.content[0].uri == f"demo://resource/session/big-{upstream}.gz"
    health = upstream_health(tight.url)[upstream]
    assert health["state"] == "ready" and health["restarts"] == 0 and health["oversized_messages"] == 1
