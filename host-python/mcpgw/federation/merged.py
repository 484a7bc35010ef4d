"""`/mcp`: the built-in catalog plus every upstream's, names prefixed per upstream (names.py)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
from typing import Any

from ..server.catalog import LIST_KEYS, RESOURCE_NOT_FOUND, Catalog
from ..server.context import LOG_LEVELS, CallContext
from ..server.dispatcher import _no_cursor
from ..server.jsonrpc import INVALID_PARAMS, JsonRpcError
from ..state.session import Session
from .hub import FederatedDispatcher, Federation
from .interactive import interactive_capabilities
from .names import public_name, public_uri, split_name, split_uri
from .tasks import Seal, merged_capability, named_upstream, tasks_out
from .upstream import Upstream

INSTRUCTIONS = (
    "mcpgw: built-in tools (echo, add, sleep, log) plus the tools, resources and prompts of every "
    "configured upstream, named <upstream>__<name> (resource URIs <upstream>+<uri>)."
)


def _content_out(content: Any, prefix: str) -> Any:
    """One content block with the URIs it names (a resource link, an embedded resource) as /mcp
    names them, so reading them back through /mcp reaches their upstream."""
    if not isinstance(content, dict):
        return content
    if content.get("type") == "resource_link" and isinstance(content.get("uri"), str):
        return {**content, "uri": public_uri(prefix, content["uri"])}
    resource = content.get("resource")
    if content.get("type") == "resource" and isinstance(resource, dict) and isinstance(resource.get("uri"), str):
        return {**content, "resource": {**resource, "uri": public_uri(prefix, resource["uri"])}}
    return content


def links_out(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A tools/call or prompts/get result with its resource URIs prefixed (content blocks of a tool
    result, each prompt message's content); everything else as the upstream wrote it."""
    if isinstance(result.get("content"), list):
        result = {**result, "content": [_content_out(c, prefix) for c in result["content"]]}
    if isinstance(result.get("messages"), list):
        result = {
            **result,
            "messages": [
                {**m, "content": _content_out(m.get("content"), prefix)} if isinstance(m, dict) else m
                for m in result["messages"]
            ],
        }
    return result


class GatewayDispatcher(FederatedDispatcher):
    def __init__(self, catalog: Catalog, federation: Federation) -> None:
        super().__init__(catalog)
        self.federation = federation

    def capabilities(self) -> dict[str, Any]:
        caps = copy.deepcopy(super().capabilities())
        # Subscriptions exist as far as some upstream offers them.
        caps["resources"]["subscribe"] = any(
            u.capabilities.get("resources", {}).get("subscribe") for u in self.federation.upstreams.values()
        )
        # Tasks exist as far as some upstream carries them (task ids: tasks.py).
        tasks = merged_capability([u.capabilities.get("tasks") for u in self.federation.upstreams.values()])
        if tasks is not None:
            caps["tasks"] = tasks
        return caps

    def instructions(self) -> str | None:
        return INSTRUCTIONS if self.federation.upstreams else super().instructions()

    def _ready(self) -> list[Upstream]:
        return [u for u in self.federation.upstreams.values() if u.ready]

    def _owner(self, public: Any) -> tuple[Upstream, str] | None:
        if not self.federation.by_prefix:
            return None  # no upstream: every name is a built-in's (or unknown)
        split = split_name(public) if isinstance(public, str) else None
        upstream = self.federation.by_prefix.get(split[0]) if split else None
        return (upstream, split[1]) if upstream and split else None

    def answers_at_once(self, method: str, params: dict[str, Any]) -> bool:
        """What the built-in catalog answers alone: a call of a quiet built-in tool (a name no
        upstream owns), ping, and, with no upstream configured, the rest of the built-ins' methods
        (with upstreams, lists and reads may wait on them and depend on the session's views)."""
        if method == "tools/call":
            # (The parent named rather than super(): an object less per request.)
            return FederatedDispatcher.answers_at_once(self, method, params) and self._owner(params.get("name")) is None
        if method == "ping":
            return True
        return not self.federation.upstreams and FederatedDispatcher.answers_at_once(self, method, params)

    def owner(self, method: str, params: dict[str, Any]) -> str | None:
        if method in ("tasks/get", "tasks/result", "tasks/cancel"):
            upstream = self.federation.upstreams.get(named_upstream(params.get("taskId")) or "")
            return upstream.id if upstream else None
        resource = method.startswith("resources/")
        found = self._uri_owner(params.get("uri")) if resource else self._owner(params.get("name"))
        return found[0].id if found else None

    def _uri_owner(self, public: Any) -> tuple[Upstream, str] | None:
        split = split_uri(public, self.federation.by_prefix) if isinstance(public, str) else None
        return (self.federation.by_prefix[split[0]], split[1]) if split else None

    async def _relay(
        self, upstream: Upstream, method: str, params: dict[str, Any], ctx: CallContext, session: Session | None
    ) -> dict[str, Any]:
        prefix = upstream.config.prefix
        return await self.federation.call(
            upstream, method, params, ctx, session, uri_out=lambda uri: public_uri(prefix, uri)
        )

    async def _listed(
        self, key: str, field: str, rename: Any, session: Session | None, ctx: CallContext
    ) -> list[dict[str, Any]]:
        """Every ready upstream's `key` list as this session (or this 2026-07-28 client, by the
        capabilities it declared) would see it (hub.Federation.view)."""
        if session is not None:
            self.federation.watch(session)
        upstreams = self._ready()
        capabilities = interactive_capabilities(ctx) if session is None else None
        views = await asyncio.gather(
            *(
                self.federation.view(u, session, functools.partial(public_uri, u.config.prefix), capabilities)
                for u in upstreams
            )
        )
        return [
            {**item, field: rename(u.config.prefix, item.get(field, ""))}
            for u, lists in zip(upstreams, views, strict=True)
            for item in lists.get(key, [])
        ]

    def _sealer(self, session: Session | None, upstream: Upstream) -> Seal:
        return functools.partial(self.federation.task_ids.seal, session.id if session else "", upstream.id)

    def _task_owner(self, public: Any, session: Session | None) -> tuple[Upstream, str]:
        """The upstream and its task id behind a gateway task id this session was given."""
        opened = self.federation.task_ids.open(session.id, public) if session is not None else None
        upstream = self.federation.upstreams.get(opened[0]) if opened else None
        if upstream is None or opened is None:
            # Unknown, forged, or another session's: all the same to the client.
            raise JsonRpcError(INVALID_PARAMS, f"Task not found: {public}", {"taskId": public})
        return upstream, opened[1]

    async def _tasks(self, ctx: CallContext, session: Session | None) -> list[dict[str, Any]]:
        """tasks/list: the session's tasks on every upstream it has a connection to that lists
        tasks, every page read (up to each upstream's max_pages), ids sealed."""
        if session is None:
            return []
        found: list[dict[str, Any]] = []
        for upstream, _ in await self.federation.session_links(session):
            declared = upstream.capabilities.get("tasks")
            if not isinstance(declared, dict) or not isinstance(declared.get("list"), dict):
                continue
            cursor: Any = None
            for _page in range(int(upstream.config.max_pages)):
                page = await self._relay(upstream, "tasks/list", {"cursor": cursor} if cursor else {}, ctx, session)
                found += tasks_out("tasks/list", page, self._sealer(session, upstream)).get("tasks", [])
                cursor = page.get("nextCursor")
                if not cursor:
                    break
        return found

    async def _result(
        self, method: str, params: dict[str, Any], ctx: CallContext, session: Session | None
    ) -> dict[str, Any]:
        if ctx.lists_as_bytes and method in LIST_KEYS and not self.federation.upstreams:
            return await FederatedDispatcher._result(self, method, params, ctx, session)  # the built-ins' lists alone
        if method == "tools/list":
            _no_cursor(params)
            return {"tools": self.catalog.tool_list() + await self._listed("tools", "name", public_name, session, ctx)}
        if method == "prompts/list":
            _no_cursor(params)
            return {
                "prompts": [p.describe() for p in self.catalog.prompts.values()]
                + await self._listed("prompts", "name", public_name, session, ctx)
            }
        if method == "resources/list":
            _no_cursor(params)
            return {
                "resources": [r.describe() for r in self.catalog.resources.values()]
                + await self._listed("resources", "uri", public_uri, session, ctx)
            }
        if method == "resources/templates/list":
            _no_cursor(params)
            return {
                "resourceTemplates": [t.describe() for t in self.catalog.templates]
                + await self._listed("resourceTemplates", "uriTemplate", public_uri, session, ctx)
            }
        if method in ("tools/call", "prompts/get"):
            owner = self._owner(params.get("name"))
            if owner:
                if params.get("task") is not None and session is None:
                    raise JsonRpcError(
                        INVALID_PARAMS, "A task-augmented request needs a session (tasks are per session)"
                    )
                result = await self._relay(owner[0], method, {**params, "name": owner[1]}, ctx, session)
                if session is not None:
                    result = tasks_out(method, result, self._sealer(session, owner[0]))
                return links_out(result, owner[0].config.prefix)
        elif method.startswith("tasks/") and session is None:
            raise JsonRpcError(INVALID_PARAMS, f"{method} needs a session (tasks are per session)")
        elif method in ("tasks/get", "tasks/result", "tasks/cancel"):
            upstream, task_id = self._task_owner(params.get("taskId"), session)
            result = await self._relay(upstream, method, {**params, "taskId": task_id}, ctx, session)
            result = tasks_out(method, result, self._sealer(session, upstream))
            return links_out(result, upstream.config.prefix) if method == "tasks/result" else result
        elif method == "tasks/list":
            _no_cursor(params)
            return {"tasks": await self._tasks(ctx, session)}
        elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            owner = self._uri_owner(params.get("uri"))
            if owner:
                result = await self._relay(owner[0], method, {**params, "uri": owner[1]}, ctx, session)
                if method == "resources/read":
                    prefix = owner[0].config.prefix
                    result = {
                        **result,
                        "contents": [
                            {**c, "uri": public_uri(prefix, c["uri"])}
                            if isinstance(c, dict) and isinstance(c.get("uri"), str)
                            else c
                            for c in result.get("contents", [])
                        ],
                    }
                return result
            if method != "resources/read":
                # Built-in resources never change; a subscription to one is accepted and stays quiet.
                if params.get("uri") in self.catalog.resources:
                    return {}
                raise JsonRpcError(
                    RESOURCE_NOT_FOUND, f"Resource not found: {params.get('uri')}", {"uri": params.get("uri")}
                )
        elif method == "completion/complete":
            ref = params.get("ref")
            if not isinstance(ref, dict):
                ref = {}
            if ref.get("type") == "ref/prompt":
                owner = self._owner(ref.get("name"))
                if owner:
                    return await self._relay(
                        owner[0], method, {**params, "ref": {**ref, "name": owner[1]}}, ctx, session
                    )
            elif ref.get("type") == "ref/resource":
                owner = self._uri_owner(ref.get("uri"))
                if owner:
                    return await self._relay(
                        owner[0], method, {**params, "ref": {**ref, "uri": owner[1]}}, ctx, session
                    )
        elif method == "logging/setLevel" and session is not None and params.get("level") in LOG_LEVELS:
            result = await super()._result(method, params, ctx, session)
            for upstream, link in await self.federation.session_links(session):
                if "logging" in upstream.capabilities:
                    # On an error that upstream keeps its level; ours applies to the built-ins.
                    with contextlib.suppress(JsonRpcError):
                        await link.request(method, {"level": params["level"]})
            await self.federation.remote_log_level(session, params["level"], ctx)  # stdio held elsewhere
            return result
        return await FederatedDispatcher._result(self, method, params, ctx, session)
