"""An upstream MCP server with 2025-11-25 tasks, for the task relay tests: the mcp SDK's MCPServer
with the tasks surface added as a server middleware (the SDK 2.3.0 ships the tasks types but leaves
the feature to extensions: its spec surface has no tasks/* and would sieve a CreateTaskResult out
of tools/call).

It declares `tasks: {list, cancel, requests: {tools: {call}}}`. A task-augmented call of `work`
answers at once with a CreateTaskResult; the work runs on in the background (it outlives the
request), and `tasks/get|result|list|cancel` and `notifications/tasks/status` follow the spec.
Tasks belong to the connection (the upstream session) that created them, as the spec asks.

    python task_server.py stdio NAME
    python task_server.py http NAME PORT     # Streamable HTTP at /mcp
"""

from __future__ import annotations

import asyncio
import sys
import uuid
import warnings
from datetime import UTC, datetime
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

NAME = sys.argv[2] if len(sys.argv) > 2 else "tasks"
server = MCPServer(f"{NAME}-server", instructions=f"The {NAME} task upstream.")
CAPABILITY = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
RELATED = "io.modelcontextprotocol/related-task"
INVALID_PARAMS = -32602


@server.tool()
async def work(seconds: float, text: str) -> str:
    """Works for `seconds`, then answers `text` (call it as a task to get the answer later)."""
    await asyncio.sleep(seconds)
    return f"{NAME} did {text}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Task:
    def __init__(self, owner: int, ttl: int | None, seconds: float, text: str, outbound: Any) -> None:
        self.id = str(uuid.uuid4())
        self.owner, self.ttl, self.outbound = owner, ttl, outbound
        self.status, self.message = "working", "working on it"
        self.created = self.updated = _now()
        self.result: dict[str, Any] | None = None
        self.done = asyncio.Event()
        self.job = asyncio.ensure_future(self._run(seconds, text))

    def describe(self) -> dict[str, Any]:
        return {
            "taskId": self.id,
            "status": self.status,
            "statusMessage": self.message,
            "createdAt": self.created,
            "lastUpdatedAt": self.updated,
            "ttl": self.ttl,
            "pollInterval": 100,
        }

    async def _run(self, seconds: float, text: str) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            return  # cancel() already settled it
        self.result = {"content": [{"type": "text", "text": f"{NAME} did {text}"}], "isError": False}
        await self._settle("completed", "done")

    async def _settle(self, status: str, message: str) -> None:
        self.status, self.message, self.updated = status, message, _now()
        self.done.set()
        # Said on the connection's own stream: the request that created the task is long over.
        await self.outbound.notify("notifications/tasks/status", self.describe())

    async def cancel(self) -> None:
        self.job.cancel()
        await self._settle("cancelled", "cancelled by the client")


TASKS: dict[str, Task] = {}


def _owner(ctx: Any) -> int:
    return id(ctx.session._connection)


def _task(ctx: Any) -> Task:
    task = TASKS.get(str((ctx.params or {}).get("taskId")))
    if task is None or task.owner != _owner(ctx):  # another session's task is not found either
        raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task not found")
    return task


async def tasks_middleware(ctx: Any, call_next: Any) -> Any:
    method, params = ctx.method, ctx.params or {}
    if method == "initialize":
        result = await call_next(ctx)
        if isinstance(result, dict):
            result.setdefault("capabilities", {})["tasks"] = CAPABILITY
        else:
            result.capabilities.tasks = CAPABILITY
        return result
    if method == "tools/call" and isinstance(params.get("task"), dict):
        if params.get("name") != "work":
            raise MCPError(code=INVALID_PARAMS, message=f"{params.get('name')} does not run as a task")
        args = params.get("arguments") or {}
        task = Task(
            _owner(ctx),
            params["task"].get("ttl"),
            float(args.get("seconds", 0)),
            str(args.get("text", "")),
            ctx.session._connection.outbound,
        )
        TASKS[task.id] = task
        return {"task": task.describe()}
    if method == "tasks/get":
        return _task(ctx).describe()
    if method == "tasks/result":
        task = _task(ctx)
        await task.done.wait()  # blocks until the task is terminal, as the spec says
        if task.result is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Task {task.id} was {task.status}")
        return {**task.result, "_meta": {RELATED: {"taskId": task.id}}}
    if method == "tasks/cancel":
        task = _task(ctx)
        if task.done.is_set():
            raise MCPError(code=INVALID_PARAMS, message=f"Cannot cancel task: already {task.status}")
        await task.cancel()
        return task.describe()
    if method == "tasks/list":
        return {"tasks": [t.describe() for t in TASKS.values() if t.owner == _owner(ctx)]}
    return await call_next(ctx)


server._lowlevel_server.middleware.append(tasks_middleware)


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        import uvicorn

        uvicorn.run(
            server.streamable_http_app(host="127.0.0.1"),
            host="127.0.0.1",
            port=int(sys.argv[3]),
            log_level="info",
            access_log=False,
        )
