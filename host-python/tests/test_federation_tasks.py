"""MCP tasks (2025-11-25) relayed through virtual servers and `/mcp` (docs/federation.md, "Tasks").

The upstream is a real process (tests/upstreams/task_server.py: the mcp SDK's MCPServer with the
tasks surface added), over stdio and Streamable HTTP; the client is the SDK's. The SDK 2.3.0 leaves
tasks to extensions, so the client sends the task requests through its JSON-RPC dispatcher as they
are on the wire, and hears `notifications/tasks/status` through a notification binding.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.extension import ClientExtension, NotificationBinding
from mcp.shared.exceptions import MCPError

from mcp_http import BASE, headers2026, read_sse_text, rpc, rpc2026
from mcpgw.federation.tasks import TaskIds, named_upstream
from upstream_procs import UPSTREAMS, HttpUpstream, federated_gateway, http_table, stdio_table, toy_http

pytestmark = pytest.mark.timeout(120)

TASKS = UPSTREAMS / "task_server.py"
UPSTREAM_TASKS = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
# Where a task-augmented `work` is called, and what answers: (path, tool name, upstream name).
CALL_TIMEOUT_S = 5.0  # the task upstreams' call_timeout_s: tasks/result may wait longer
PLACES = [
    ("/servers/job/mcp", "work", "job"),  # stdio
    ("/servers/web/mcp", "work", "web"),  # Streamable HTTP
    ("/mcp", "j__work", "job"),
    ("/mcp", "h__work", "web"),
]


@pytest.fixture(scope="module")
def gw(component_path):
    web = HttpUpstream([str(TASKS), "http", "web", "0"])
    toy = toy_http("toy")  # declares no tasks
    gateway = federated_gateway(
        "python",
        [
            stdio_table("job", TASKS, "stdio", "job", prefix="j", call_timeout_s=CALL_TIMEOUT_S),
            http_table("web", web.url, prefix="h", call_timeout_s=CALL_TIMEOUT_S),
            http_table("toy", toy.url, prefix="t"),
        ],
    )
    yield gateway
    gateway.stop()
    web.stop()
    toy.stop()


class StatusWatcher(ClientExtension):
    """Hears notifications/tasks/status (the SDK's client drops what its surface lacks)."""

    identifier = "io.mcpgw.test/task-status"

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.changed = anyio.Event()

    def notifications(self) -> list[NotificationBinding[Any]]:
        return [
            NotificationBinding(
                method="notifications/tasks/status", params_type=types.TaskStatusNotificationParams, handler=self._heard
            )
        ]

    async def _heard(self, params: types.TaskStatusNotificationParams) -> None:
        self.seen.append(params.model_dump(by_alias=True, mode="json", exclude_none=True))
        self.changed.set()
        self.changed = anyio.Event()

    async def status(self, task_id: str, status: str) -> dict[str, Any]:
        """The notification saying `task_id` reached `status` (waited for: an event, not a sleep)."""
        with anyio.fail_after(60):
            while True:
                for note in self.seen:
                    if note["taskId"] == task_id and note["status"] == status:
                        return note
                await self.changed.wait()


async def raw(client: Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One request as it goes on the wire, its result as it came back."""
    headers = {"mcp-protocol-version": client.protocol_version}
    return await client.session._dispatcher.send_raw_request(method, params, {"headers": headers})


async def start(client: Client, tool: str, seconds: float, text: str) -> dict[str, Any]:
    created = await raw(
        client, "tools/call", {"name": tool, "arguments": {"seconds": seconds, "text": text}, "task": {"ttl": 600000}}
    )
    assert set(created) == {"task"}, created  # a CreateTaskResult, not the tool's result
    return created["task"]


def test_the_tasks_capability_is_advertised_where_tasks_are_carried(gw):
    def capabilities(path: str) -> dict[str, Any]:
        init = rpc(
            "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "0"}
        )
        r = httpx.post(gw.url + path, json=init, headers=BASE, timeout=60)
        assert r.status_code == 200, r.text
        body = read_sse_text(r.text)[-1].json() if r.headers["content-type"] == "text/event-stream" else r.json()
        return body["result"]["capabilities"]

    assert capabilities("/servers/job/mcp")["tasks"] == UPSTREAM_TASKS
    assert capabilities("/servers/web/mcp")["tasks"] == UPSTREAM_TASKS
    assert "tasks" not in capabilities("/servers/toy/mcp")  # that upstream declares none
    assert capabilities("/mcp")["tasks"] == UPSTREAM_TASKS  # what /mcp routes: tools/call, get/result/list/cancel


@pytest.mark.parametrize(("path", "tool", "upstream"), PLACES)
async def test_a_task_is_relayed_from_creation_to_result_and_outlives_its_request(gw, path, tool, upstream):
    watcher = StatusWatcher()
    async with Client(gw.url + path, mode="legacy", extensions=[watcher]) as client:
        assert client.server_capabilities.tasks is not None
        task = await start(client, tool, 1.5, "the dishes")
        # The request that created the task is over; the task is still running upstream.
        assert task["status"] == "working"
        public = task["taskId"]
        if path == "/mcp":
            assert public.startswith("mcpgw-task.")  # the gateway's id, not the upstream's
        got = await raw(client, "tasks/get", {"taskId": public})
        assert got["taskId"] == public and got["status"] in ("working", "completed")
        listed = await raw(client, "tasks/list", {})
        assert public in [t["taskId"] for t in listed["tasks"]]
        # Said on the session's own stream after the creating request ended, with the id the client knows.
        note = await watcher.status(public, "completed")
        assert note["statusMessage"] == "done"
        result = await raw(client, "tasks/result", {"taskId": public})
        assert result["content"] == [{"type": "text", "text": f"{upstream} did the dishes"}]
        assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": public}
        assert (await raw(client, "tasks/get", {"taskId": public}))["status"] == "completed"


@pytest.mark.parametrize(("path", "tool", "upstream"), PLACES)
async def test_a_task_is_cancelled_through_the_gateway(gw, path, tool, upstream):
    watcher = StatusWatcher()
    async with Client(gw.url + path, mode="legacy", extensions=[watcher]) as client:
        task = await start(client, tool, 600, "forever")
        cancelled = await raw(client, "tasks/cancel", {"taskId": task["taskId"]})
        assert cancelled["taskId"] == task["taskId"] and cancelled["status"] == "cancelled"
        await watcher.status(task["taskId"], "cancelled")
        assert (await raw(client, "tasks/get", {"taskId": task["taskId"]}))["status"] == "cancelled"
        with pytest.raises(MCPError) as again:  # the upstream's own refusal, passed on
            await raw(client, "tasks/cancel", {"taskId": task["taskId"]})
        assert again.value.error.code == -32602 and "already cancelled" in again.value.error.message


@pytest.mark.parametrize(("path", "tool", "upstream"), PLACES)
async def test_a_task_id_from_another_session_is_refused(gw, path, tool, upstream):
    async with (
        Client(gw.url + path, mode="legacy") as owner,
        Client(gw.url + path, mode="legacy") as other,
    ):
        task = await start(owner, tool, 600, "mine")
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            with pytest.raises(MCPError) as refused:
                await raw(other, method, {"taskId": task["taskId"]})
            assert refused.value.error.code == -32602 and "not found" in refused.value.error.message.lower()
        assert task["taskId"] not in [t["taskId"] for t in (await raw(other, "tasks/list", {}))["tasks"]]
        # The owner still has it, untouched by the other session's attempts.
        assert (await raw(owner, "tasks/get", {"taskId": task["taskId"]}))["status"] == "working"
        await raw(owner, "tasks/cancel", {"taskId": task["taskId"]})


async def test_a_forged_or_unknown_gateway_task_id_is_not_found_on_mcp(gw):
    async with Client(gw.url + "/mcp", mode="legacy") as client:
        task = await start(client, "j__work", 600, "real")
        public = task["taskId"]
        head, _, tag = public.rpartition(".")
        forged = [
            f"{head}.{'A' * len(tag)}",  # the right upstream and task, a made-up tag
            "mcpgw-task.am9i.bm9wZQ.AAAAAAAAAAAAAAAAAAAAAA",  # an upstream task id that was never issued
            "not-a-gateway-id",
            public + "x",
        ]
        for taskid in forged:
            with pytest.raises(MCPError) as refused:
                await raw(client, "tasks/get", {"taskId": taskid})
            assert refused.value.error.code == -32602, taskid
        await raw(client, "tasks/cancel", {"taskId": public})


@pytest.mark.parametrize(("path", "tool"), [("/servers/job/mcp", "work"), ("/mcp", "j__work")])
def test_tasks_without_a_session_are_refused(gw, path, tool):
    """A stateless (2026-07-28) request would share the catalog connection, and its tasks, with
    every other stateless client."""
    requests = [
        ("tools/call", tool, {"name": tool, "arguments": {"seconds": 0, "text": "x"}, "task": {"ttl": 1000}}),
        ("tasks/list", None, {}),
    ]
    for method, name, params in requests:
        r = httpx.post(gw.url + path, json=rpc2026(method, 1, **params), headers=headers2026(method, name), timeout=60)
        body = read_sse_text(r.text)[-1].json() if r.headers["content-type"] == "text/event-stream" else r.json()
        assert body["error"]["code"] == -32602, body
        assert "needs a session" in body["error"]["message"]


def test_gateway_task_ids_route_back_only_for_their_session():
    ids = TaskIds()
    public = ids.seal("session-a", "job", "task.with.dots/and+slashes")
    assert ids.open("session-a", public) == ("job", "task.with.dots/and+slashes")
    assert named_upstream(public) == "job"  # what the plugins' `upstream` label reads
    assert ids.open("session-b", public) is None  # another session's
    assert TaskIds().open("session-a", public) is None  # another process's key
    assert ids.open("session-a", ids.seal("session-a", "web", "task.with.dots/and+slashes")) == (
        "web",
        "task.with.dots/and+slashes",
    )
    forged_tag = public.rpartition(".")[0] + ".\u00e9t\u00e9"  # non-ASCII: compare_digest on str would raise
    for junk in (None, 7, "", "mcpgw-task", "mcpgw-task.!!.??.x", public.replace("mcpgw-task", "other"), forged_tag):
        assert ids.open("session-a", junk) is None


@pytest.mark.parametrize(("path", "tool", "upstream"), PLACES)
async def test_tasks_result_waits_for_its_task_past_the_call_timeout(gw, path, tool, upstream):
    """tasks/result blocks until the task ends (as it does directly), so call_timeout_s does not cut it."""
    async with Client(gw.url + path, mode="legacy") as client:
        task = await start(client, tool, CALL_TIMEOUT_S + 2, "the long one")
        with anyio.fail_after(60):
            result = await raw(client, "tasks/result", {"taskId": task["taskId"]})
        assert result["content"] == [{"type": "text", "text": f"{upstream} did the long one"}]
