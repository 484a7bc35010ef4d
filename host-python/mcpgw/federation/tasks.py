"""MCP tasks (2025-11-25) through the gateway: task ids on `/mcp` and the `tasks` capability.

A virtual server relays tasks as it relays everything: the session's own upstream connection
creates them, so the upstream scopes them to that session, and their ids pass unchanged.

On `/mcp` a task may live on any upstream, so the client gets a gateway task id instead of the
upstream's: `mcpgw-task.<upstream>.<upstream task id>.<tag>` (the middle parts base64url),
where the tag is an HMAC (SHA-256, a key random per gateway process) of the session id, the
upstream and its task id. The id routes `tasks/get|result|cancel` back to the upstream that made
the task, needs no table, and cannot be forged or used from another session: a wrong tag is
"task not found", exactly as an unknown id is. Every task id an upstream sends a `/mcp` session
(a CreateTaskResult, tasks/get|cancel|list, `notifications/tasks/status`, the related-task `_meta`
of results, notifications and requests) is turned into this form on the way out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

Seal = Callable[[str], str]  # an upstream task id -> the id the client knows it by

RELATED_TASK = "io.modelcontextprotocol/related-task"  # _meta key naming the task a message belongs to
PREFIX = "mcpgw-task"
TAG_BYTES = 16


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TaskIds:
    """Gateway task ids, bound to one session and one upstream (see the module docstring)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _tag(self, session_id: str, upstream: str, task_id: str) -> str:
        message = "\0".join((session_id, upstream, task_id)).encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest()[:TAG_BYTES])

    def seal(self, session_id: str, upstream: str, task_id: str) -> str:
        """The id the session's client knows the upstream's task by."""
        tag = self._tag(session_id, upstream, task_id)
        return f"{PREFIX}.{_b64(upstream.encode())}.{_b64(task_id.encode())}.{tag}"

    def open(self, session_id: str, public: Any) -> tuple[str, str] | None:
        """(upstream id, upstream task id) for an id this session was given, else None."""
        named = _named(public)
        if named is None:
            return None
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a "no").
        tag = public.rpartition(".")[2].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(tag, self._tag(session_id, *named).encode()):
            return None
        return named


def _named(public: Any) -> tuple[str, str] | None:
    """The (upstream id, upstream task id) a gateway task id names, not checked against its tag."""
    if not isinstance(public, str):
        return None
    parts = public.split(".")
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    try:
        return _unb64(parts[1]).decode(), _unb64(parts[2]).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def named_upstream(public: Any) -> str | None:
    """The upstream a gateway task id names (unchecked: for labels such as the plugins' `upstream`;
    a request with a forged id is refused by TaskIds.open before it goes anywhere)."""
    named = _named(public)
    return named[0] if named else None


def _task(task: Any, seal: Seal) -> Any:
    if isinstance(task, dict) and isinstance(task.get("taskId"), str):
        return {**task, "taskId": seal(task["taskId"])}
    return task


def related_out(params: dict[str, Any], seal: Seal) -> dict[str, Any]:
    """A message's params with the related-task `_meta` naming the gateway's task id."""
    meta = params.get("_meta")
    if isinstance(meta, dict) and isinstance(meta.get(RELATED_TASK), dict):
        return {**params, "_meta": {**meta, RELATED_TASK: _task(meta[RELATED_TASK], seal)}}
    return params


def tasks_out(method: str, result: dict[str, Any], seal: Seal) -> dict[str, Any]:
    """A result (or a notification's params) with every task id in it sealed for the session."""
    result = related_out(result, seal)
    if method in ("tasks/get", "tasks/cancel", "notifications/tasks/status"):
        return {**result, "taskId": seal(result["taskId"])} if isinstance(result.get("taskId"), str) else result
    if method == "tasks/list" and isinstance(result.get("tasks"), list):
        return {**result, "tasks": [_task(t, seal) for t in result["tasks"]]}
    if isinstance(result.get("task"), dict):  # a CreateTaskResult (a task-augmented request)
        return {**result, "task": _task(result["task"], seal)}
    return result


def merged_capability(declared: list[Any]) -> dict[str, Any] | None:
    """The `tasks` server capability `/mcp` offers: what some upstream declares of tasks/list,
    tasks/cancel and task-augmented tools/call (the only task-augmented request /mcp routes);
    None when no upstream carries tasks."""
    caps = [c for c in declared if isinstance(c, dict)]
    merged: dict[str, Any] = {}
    if any(isinstance(c.get("list"), dict) for c in caps):
        merged["list"] = {}
    if any(isinstance(c.get("cancel"), dict) for c in caps):
        merged["cancel"] = {}
    if any(augments_tool_calls(c) for c in caps):
        merged["requests"] = {"tools": {"call": {}}}
    return merged or None


def augments_tool_calls(tasks_capability: Any) -> bool:
    """Whether a server's `tasks` capability declares task-augmented tools/call."""
    if not isinstance(tasks_capability, dict):
        return False
    requests = tasks_capability.get("requests")
    tools = requests.get("tools") if isinstance(requests, dict) else None
    return isinstance(tools, dict) and isinstance(tools.get("call"), dict)
