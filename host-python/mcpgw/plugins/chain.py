"""Loaded plugins, the immutable set the request path reads, and the hook chain.

A `PluginSet` is never changed: a load, reload, unload, enable or disable
builds a new one and replaces the registry's reference, so a call that started
on one set finishes on it (and on the plugin versions in it).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import statistics
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import orjson

from ..logsafe import escape
from ..server import jsonrpc
from ..server.dispatcher import Dispatcher
from ..server.hooks import Handle, Response
from ..state.principal import Principal
from ..state.session import Session
from .manifest import PluginManifest
from .sandbox import CONTINUE, CONTINUED, PluginComponent, PluginFault, PluginInstance, parse_action

log = logging.getLogger("mcpgw.plugins")

POOL_MAX = 4  # idle instances kept per plugin
COSTS_KEPT = 1024  # recent call costs per plugin, for the p50 in /health
FAULT_LOG_INTERVAL_S = 1.0
VISIBLE_CACHE_ENTRIES = 1024
PLANS_KEPT = 4096  # (method, endpoint, name) -> the plugins a call goes through, per plugin set

# method -> (pre hook, post hook, the params key that names the target)
CALL_HOOKS = {
    "tools/call": ("tool-pre-invoke", "tool-post-invoke", "name"),
    "prompts/get": ("prompt-pre-fetch", "prompt-post-fetch", "name"),
    "resources/read": ("resource-pre-fetch", "resource-post-fetch", "uri"),
}
LIST_METHODS = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list"})
# A call whose target a list-filter may hide: (list method, result key, what the client is told)
LISTED = {
    "tools/call": ("tools/list", "tools", "Unknown tool"),
    "prompts/get": ("prompts/list", "prompts", "Unknown prompt"),
}

_generations = itertools.count(1)


def plugin_principal(principal: Principal | None) -> dict[str, Any] | None:
    """The caller as a hook's context carries it (wit/plugin.wit `principal`): subject, scopes and
    the selected claims, never a token; None without authentication."""
    if principal is None:
        return None
    described = principal.describe()
    return {
        "subject": described["subject"],
        "scopes": described["scopes"],
        "claims-json": orjson.dumps(described["claims"]).decode(),
    }


@dataclass
class Counters:
    calls: int = 0
    denials: int = 0
    modifications: int = 0
    skipped: int = 0  # fail-open faults: the call went on without this plugin
    faults: Counter[str] = field(default_factory=Counter)
    costs_us: deque[float] = field(default_factory=lambda: deque(maxlen=COSTS_KEPT))
    cost_us_total: float = 0.0  # every call's, for /metrics


class Plugin:
    """One loaded plugin version: manifest, compiled component, instance pool, counters, state."""

    def __init__(self, manifest: PluginManifest, component: PluginComponent):
        self.manifest = manifest
        self.component = component
        self.name = manifest.name
        self.version: str = component.info["version"]
        self.hooks = frozenset(manifest.hooks or component.info["hooks"])
        self.config_json = orjson.dumps(dict(manifest.config)).decode()
        self.state = "enabled"  # enabled | disabled | auto-disabled
        self.reason = ""
        self.counters = Counters()
        self.loaded_at = time.time()
        # Called with the plugin when it auto-disables (the registry publishes a new set).
        self.on_auto_disable: Callable[[Plugin], None] | None = None
        self._pool: list[PluginInstance] = []
        self._fault_times: deque[float] = deque()
        self._log_after = 0.0
        self._log_suppressed = 0

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"

    def applies_to_endpoint(self, endpoint: str) -> bool:
        return any(fnmatchcase(endpoint, glob) for glob in self.manifest.endpoints)

    def applies_to_name(self, name: Any) -> bool:
        if self.manifest.tools == ("*",):
            return True
        return isinstance(name, str) and any(fnmatchcase(name, glob) for glob in self.manifest.tools)

    def fresh_instance(self) -> PluginInstance:
        """A new instance, configured (raises PluginFault("configure") when refused)."""
        try:
            return self.component.instantiate(self.config_json)
        except PluginFault:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed instantiation is this plugin's fault, never the request's crash
            raise PluginFault("instantiate", str(exc)) from None

    def call(self, data: bytes) -> tuple[str, Any]:
        """One hook call: (action, value). Raises PluginFault after counting it.

        Runs on the event loop (one caller at a time); the pool's pop and append are single list
        operations, atomic under the GIL, so no lock is taken on the request path."""
        pool = self._pool
        inst = pool.pop() if pool else None
        self.counters.calls += 1
        started = time.perf_counter_ns()
        try:
            if inst is None:
                inst = self.fresh_instance()
            out = inst.invoke_encoded(data)
            action = CONTINUED if out == CONTINUE else parse_action(out)  # the common answer, unparsed
        except PluginFault as fault:
            self._fault(fault)  # the instance is dropped: a fresh one serves the next call
            raise
        cost_us = (time.perf_counter_ns() - started) / 1000
        self.counters.costs_us.append(cost_us)
        self.counters.cost_us_total += cost_us
        if len(pool) < POOL_MAX:
            pool.append(inst)
        kind = action[0]
        if kind != "continue":
            if kind == "deny":
                self.counters.denials += 1
            else:
                self.counters.modifications += 1
        return action

    def _fault(self, fault: PluginFault) -> None:
        self.counters.faults[fault.kind] += 1
        now = time.monotonic()
        if now < self._log_after:
            self._log_suppressed += 1
        else:
            self._log_after = now + FAULT_LOG_INTERVAL_S
            suppressed, self._log_suppressed = self._log_suppressed, 0
            log.warning(
                "plugin %s %s failed (%s): %s; on_error=%s%s",
                self.name,
                self.version,
                fault.kind,
                escape(fault.detail, 300),
                self.manifest.on_error,
                f" ({suppressed} more failures in the last interval, not logged)" if suppressed else "",
            )
        limit = self.manifest.disable_after
        if not limit or not self.enabled:
            return
        window = self.manifest.disable_window_s
        times = self._fault_times
        times.append(now)
        while times and times[0] < now - window:
            times.popleft()
        if len(times) >= limit:
            self.state = "auto-disabled"
            self.reason = f"{len(times)} faults in {window:g} s (last: {fault.kind})"
            log.error("plugin %s %s AUTO-DISABLED: %s", self.name, self.version, self.reason)
            if self.on_auto_disable is not None:
                self.on_auto_disable(self)

    def set_state(self, state: str, reason: str) -> None:
        self.state, self.reason = state, reason
        self._fault_times.clear()

    def health(self) -> dict[str, Any]:
        c = self.counters
        costs = list(c.costs_us)
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.component.sha256,
            "source": self.component.source,
            "hooks": sorted(self.hooks),
            "grants": list(self.manifest.grants),
            "priority": self.manifest.priority,
            "on_error": self.manifest.on_error,
            "state": self.state,
            "reason": self.reason or None,
            "call_path": self.component.call_path,
            "counters": {
                "calls": c.calls,
                "denials": c.denials,
                "modifications": c.modifications,
                "skipped": c.skipped,
                "faults": dict(c.faults),
                "p50_us": round(statistics.median(costs), 1) if costs else None,
            },
        }


class PluginSet:
    """An immutable, priority-ordered tuple of plugins; chains per (hook, endpoint) computed once."""

    def __init__(self, plugins: tuple[Plugin, ...]):
        self.plugins = tuple(sorted(plugins, key=lambda p: (p.manifest.priority, p.name)))
        self.generation = next(_generations)
        self.enabled = tuple(p for p in self.plugins if p.enabled)
        self._chains: dict[tuple[str, str], tuple[Plugin, ...]] = {}
        self._plans: dict[tuple[str, str, str | None], Plan] = {}

    def by_name(self, name: str) -> Plugin | None:
        return next((p for p in self.plugins if p.name == name), None)

    def chain(self, hook: str, endpoint: str) -> tuple[Plugin, ...]:
        key = (hook, endpoint)
        found = self._chains.get(key)
        if found is None:
            found = tuple(p for p in self.enabled if hook in p.hooks and p.applies_to_endpoint(endpoint))
            if len(self._chains) < 256:  # endpoints are few; bound it anyway
                self._chains[key] = found
        return found

    def plan(self, method: str, endpoint: str, name: Any) -> Plan:
        """The plugins a call of `method` on `name` at `endpoint` goes through, computed once per
        (method, endpoint, name) and kept (bounded): the per-call glob matching is not repeated."""
        key = (method, endpoint, name if isinstance(name, str) else None)
        found = self._plans.get(key)
        if found is None:
            pre_hook, post_hook, _ = CALL_HOOKS[method]
            found = Plan(
                pre=tuple(p for p in self.chain(pre_hook, endpoint) if p.applies_to_name(name)),
                post=tuple(reversed([p for p in self.chain(post_hook, endpoint) if p.applies_to_name(name)])),
                filtered=method in LISTED and bool(self.chain("list-filter", endpoint)),
            )
            if len(self._plans) < PLANS_KEPT:
                self._plans[key] = found
        return found


@dataclass(frozen=True)
class Plan:
    pre: tuple[Plugin, ...]  # pre hooks, in priority order
    post: tuple[Plugin, ...]  # post hooks, in the order they run (reverse priority)
    filtered: bool  # a list-filter applies: the name must be one the filtered list shows


class _Denied(Exception):
    def __init__(self, response: Response):
        self.response = response


class PluginHooks:
    """`server.hooks.Hooks` over the registry's current plugin set."""

    methods = frozenset(CALL_HOOKS) | LIST_METHODS

    def __init__(self, current: Callable[[], PluginSet]):
        self._current = current
        # (endpoint, principal, set generation, list method) -> names the filtered list shows
        self._visible: OrderedDict[tuple[Any, ...], frozenset[str]] = OrderedDict()
        # OpenTelemetry (observability/tracing.py, only when tracing is on): a span per hook call.
        self.trace: Callable[[str, str], AbstractContextManager[Any]] | None = None

    async def around(
        self,
        message: dict[str, Any],
        dispatcher: Dispatcher,
        session: Session | None,
        principal: Principal | None,
        handle: Handle,
    ) -> Response:
        pset = self._current()  # read once: this call runs on this set from start to end
        if not pset.enabled:
            return await handle(message)
        method = message["method"]
        endpoint = dispatcher.endpoint()
        raw = message.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if method in LIST_METHODS:
            if not pset.chain("list-filter", endpoint):
                return await handle(message)
            plan = None
        else:
            plan = pset.plan(method, endpoint, params.get(CALL_HOOKS[method][2]))
            if not (plan.pre or plan.post or plan.filtered):
                return await handle(message)
        base = {
            "endpoint": endpoint,
            "upstream": None,
            "method": method,
            "name": None,
            "principal": plugin_principal(principal),
            "request-id": orjson.dumps(message["id"]).decode(),
            "session-hash": session_hash(session.id) if session is not None else None,
        }
        try:
            if plan is None:
                return await self._list(pset, message, base, handle)
            return await self._call(pset, plan, message, params, base, dispatcher, handle)
        except _Denied as denied:
            return denied.response

    async def _list(self, pset: PluginSet, message: dict[str, Any], base: dict[str, Any], handle: Handle) -> Response:
        response = await handle(message)
        if "result" not in response:
            return response
        chain = pset.chain("list-filter", base["endpoint"])
        result = self._run(chain, {"hook": "list-filter", **base}, response["result"], message["id"])
        listed = next((v for v in LISTED.values() if v[0] == message["method"]), None)
        if listed is not None:
            self._remember(self._visible_key(base, pset, listed[0]), result.get(listed[1]))
        return response if result is response["result"] else {**response, "result": result}

    async def _call(
        self,
        pset: PluginSet,
        plan: Plan,
        message: dict[str, Any],
        params: dict[str, Any],
        base: dict[str, Any],
        dispatcher: Dispatcher,
        handle: Handle,
    ) -> Response:
        method = message["method"]
        pre_hook, post_hook, key = CALL_HOOKS[method]
        id_ = message["id"]
        name = params.get(key)
        if plan.filtered:
            await self._check_visible(pset, message, name, base, LISTED[method], handle)
        # One context for the call, its hook named per step (the dict is this call's own).
        context = {
            **base,
            "hook": pre_hook,
            "name": name if isinstance(name, str) else None,
            "upstream": dispatcher.owner(method, params),
        }
        if plan.pre:
            new = self._run(plan.pre, context, params, id_)
            if new is not params:
                message = {**message, "params": new}
        response = await handle(message)
        if not plan.post or "result" not in response:
            return response
        context["hook"] = post_hook
        result = self._run(plan.post, context, response["result"], id_)
        return response if result is response["result"] else {**response, "result": result}

    def _visible_key(self, base: dict[str, Any], pset: PluginSet, list_method: str) -> tuple[Any, ...]:
        # The principal as its encoded context (hashable): what the plugins saw decides the list.
        return (base["endpoint"], orjson.dumps(base["principal"]), pset.generation, list_method)

    async def _check_visible(
        self,
        pset: PluginSet,
        message: dict[str, Any],
        name: Any,
        base: dict[str, Any],
        listed: tuple[str, str, str],
        handle: Handle,
    ) -> None:
        """Refuse a call of a name the endpoint's filtered list does not show. The filtered
        names are cached per endpoint, principal and plugin set; a name not in the cache is
        checked against a fresh list once before it is refused (a new upstream tool)."""
        list_method, result_key, unknown = listed
        cache_key = self._visible_key(base, pset, list_method)
        visible = self._visible.get(cache_key)
        if visible is not None and name in visible:
            return
        listing = await handle({"jsonrpc": "2.0", "id": message["id"], "method": list_method, "params": {}})
        if "result" in listing:
            chain = pset.chain("list-filter", base["endpoint"])
            context = {**base, "hook": "list-filter", "method": list_method}
            result = self._run(chain, context, listing["result"], message["id"])
            visible = self._remember(cache_key, result.get(result_key))
        if visible is None or name not in visible:
            raise _Denied(jsonrpc.error_response(message["id"], jsonrpc.INVALID_PARAMS, f"{unknown}: {name}"))

    def _remember(self, key: tuple[Any, ...], items: Any) -> frozenset[str]:
        names = frozenset(
            item["name"]
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        )
        self._visible[key] = names
        self._visible.move_to_end(key)
        while len(self._visible) > VISIBLE_CACHE_ENTRIES:
            self._visible.popitem(last=False)
        return names

    def _run(
        self, chain: tuple[Plugin, ...], context: dict[str, Any], payload: dict[str, Any], id_: Any
    ) -> dict[str, Any]:
        """Each plugin of the chain in turn (`context` names the hook): a modify feeds the next, a
        deny ends it (raises _Denied). Returns the payload itself when every plugin continued."""
        for plugin in chain:
            if plugin.state != "enabled":  # auto-disabled since this set was built
                continue
            data = orjson.dumps({"context": context, "payload": payload})
            try:
                if self.trace is None:
                    action, value = plugin.call(data)
                else:
                    with self.trace(plugin.name, context["hook"]) as span:
                        action, value = plugin.call(data)
                        span.set_attribute("mcpgw.plugin.action", action)
            except PluginFault as fault:
                if plugin.manifest.on_error == "fail-open":
                    plugin.counters.skipped += 1
                    continue
                raise _Denied(
                    jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, f"plugin {plugin.name} failed: {fault.kind}")
                ) from None
            if action == "deny":
                raise _Denied(jsonrpc.error_response(id_, value["code"], value["message"]))
            if action == "modify":
                payload = value
        return payload


@functools.lru_cache(maxsize=4096)
def session_hash(session_id: str) -> str:
    """What a plugin sees of a session: the first 16 hex digits of its id's sha256, never the id
    (computed once per live session, not per hook call)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]
