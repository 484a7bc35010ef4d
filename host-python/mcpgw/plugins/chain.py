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
# A plugin's first COST_SAMPLE calls are timed, then 1 call in COST_SAMPLE (the 9th, 17th, ...):
# the p50 in /health is the median of the timed calls; the /metrics total counts a sampled call's
# cost COST_SAMPLE times. Reading the clock twice on every call was a tenth of the chain's own work
# per hook.
COST_SAMPLE = 8

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
# What the encoded input of a hook call starts with, per hook: the context's other keys follow
# (encoded once per request and shared by every plugin and by the pre and post hooks).
_HEADS = {
    hook: b'{"context":{"hook":' + orjson.dumps(hook) + b","
    for hook in (*(h for hooks in CALL_HOOKS.values() for h in hooks[:2]), "list-filter")
}


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
    costs_us: deque[float] = field(default_factory=lambda: deque(maxlen=COSTS_KEPT))  # sampled calls'
    cost_us_total: float = 0.0  # for /metrics: estimated from the timed calls (COST_SAMPLE)


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
        counters = self.counters
        calls = counters.calls = counters.calls + 1
        timed = calls <= COST_SAMPLE or calls % COST_SAMPLE == 1
        started = time.perf_counter_ns() if timed else 0
        try:
            inst = pool.pop() if pool else self.fresh_instance()
            out = inst.invoke_encoded(data)
            if out == CONTINUE:  # the common answer, unparsed
                if timed:
                    self._cost(started, calls)
                if len(pool) < POOL_MAX:
                    pool.append(inst)
                return CONTINUED
            action = parse_action(out)
        except PluginFault as fault:
            self._fault(fault)  # the instance is dropped: a fresh one serves the next call
            raise
        if timed:
            self._cost(started, calls)
        if len(pool) < POOL_MAX:
            pool.append(inst)
        if action[0] == "deny":
            counters.denials += 1
        elif action[0] == "modify":
            counters.modifications += 1
        return action

    def _cost(self, started: int, calls: int) -> None:
        cost_us = (time.perf_counter_ns() - started) / 1000
        self.counters.costs_us.append(cost_us)
        # Past the first COST_SAMPLE calls, a timed call stands for the COST_SAMPLE calls it samples.
        self.counters.cost_us_total += cost_us if calls <= COST_SAMPLE else cost_us * COST_SAMPLE

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
            try:
                return await self._list(pset, message, _Who.of(endpoint, principal, message, session), handle)
            except _Denied as denied:
                return denied.response
        pre_hook, post_hook, key = CALL_HOOKS[method]
        name = params.get(key)
        plan = pset.plan(method, endpoint, name)
        if not (plan.pre or plan.post or plan.filtered):
            return await handle(message)
        who = _Who.of(endpoint, principal, message, session)
        id_ = message["id"]
        try:
            if plan.filtered:
                await self._check_visible(pset, message, name, who, LISTED[method], handle)
            if not (plan.pre or plan.post):
                return await handle(message)
            # The context, encoded once for the pre and the post hooks and every plugin of each.
            tail = who.context(method, name if isinstance(name, str) else None, dispatcher.owner(method, params))
            if plan.pre:
                new = self._run(plan.pre, pre_hook, _HEADS[pre_hook] + tail, params, id_)
                if new is not params:
                    message = {**message, "params": new}
            response = await handle(message)
            if not plan.post or "result" not in response:
                return response
            result = self._run(plan.post, post_hook, _HEADS[post_hook] + tail, response["result"], id_)
            return response if result is response["result"] else {**response, "result": result}
        except _Denied as denied:
            return denied.response

    async def _list(self, pset: PluginSet, message: dict[str, Any], who: _Who, handle: Handle) -> Response:
        response = await handle(message)
        if "result" not in response:
            return response
        method = message["method"]
        chain = pset.chain("list-filter", who.endpoint)
        head = _HEADS["list-filter"] + who.context(method, None, None)
        result = self._run(chain, "list-filter", head, response["result"], message["id"])
        listed = next((v for v in LISTED.values() if v[0] == method), None)
        if listed is not None:
            self._remember(self._visible_key(who, pset, listed[0]), result.get(listed[1]))
        return response if result is response["result"] else {**response, "result": result}

    def _visible_key(self, who: _Who, pset: PluginSet, list_method: str) -> tuple[Any, ...]:
        # The principal as its encoded context (hashable): what the plugins saw decides the list.
        return (who.endpoint, who.principal, pset.generation, list_method)

    async def _check_visible(
        self,
        pset: PluginSet,
        message: dict[str, Any],
        name: Any,
        who: _Who,
        listed: tuple[str, str, str],
        handle: Handle,
    ) -> None:
        """Refuse a call of a name the endpoint's filtered list does not show. The filtered
        names are cached per endpoint, principal and plugin set; a name not in the cache is
        checked against a fresh list once before it is refused (a new upstream tool)."""
        list_method, result_key, unknown = listed
        cache_key = self._visible_key(who, pset, list_method)
        visible = self._visible.get(cache_key)
        if visible is not None and name in visible:
            return
        listing = await handle({"jsonrpc": "2.0", "id": message["id"], "method": list_method, "params": {}})
        if "result" in listing:
            chain = pset.chain("list-filter", who.endpoint)
            head = _HEADS["list-filter"] + who.context(list_method, None, None)
            result = self._run(chain, "list-filter", head, listing["result"], message["id"])
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

    def _run(self, chain: tuple[Plugin, ...], hook: str, head: bytes, payload: Any, id_: Any) -> Any:
        """Each plugin of the chain in turn on `hook`: a modify feeds the next, a deny ends it
        (raises _Denied). `head` is the call's input up to its payload (`_HEADS[hook]` and the
        request's encoded context); the payload is encoded once, again only after a modify.
        Returns the payload itself when every plugin continued."""
        encoded = None
        for plugin in chain:
            if plugin.state != "enabled":  # auto-disabled since this set was built
                continue
            if encoded is None:
                encoded = orjson.dumps(payload)
            data = head + encoded + b"}"
            try:
                if self.trace is None:
                    action, value = plugin.call(data)
                else:
                    with self.trace(plugin.name, hook) as span:
                        action, value = plugin.call(data)
                        span.set_attribute("mcpgw.plugin.action", action)
            except PluginFault as fault:
                if plugin.manifest.on_error == "fail-open":
                    plugin.counters.skipped += 1
                    continue
                raise _Denied(
                    jsonrpc.error_response(id_, jsonrpc.INTERNAL_ERROR, f"plugin {plugin.name} failed: {fault.kind}")
                ) from None
            if action == "continue":
                continue
            if action == "deny":
                raise _Denied(jsonrpc.error_response(id_, value["code"], value["message"]))
            payload, encoded = value, None  # modify: the next plugin gets the new payload
        return payload


class _Who:
    """What every hook call of one request shares: the endpoint, the caller (encoded: it is also
    part of the list-filter cache's key), the request id as JSON text, the session's hash."""

    __slots__ = ("endpoint", "principal", "request_id", "session_hash")

    def __init__(self, endpoint: str, principal: bytes, request_id: str, session_hash: str | None):
        self.endpoint = endpoint
        self.principal = principal
        self.request_id = request_id
        self.session_hash = session_hash

    @staticmethod
    def of(endpoint: str, principal: Principal | None, message: dict[str, Any], session: Session | None) -> _Who:
        return _Who(
            endpoint,
            b"null" if principal is None else orjson.dumps(plugin_principal(principal)),
            orjson.dumps(message["id"]).decode(),
            session_hash(session.id) if session is not None else None,
        )

    def context(self, method: str, name: str | None, upstream: str | None) -> bytes:
        """The encoded context after its `hook` key, and the payload's key: a hook call's input is
        `_HEADS[hook]` + this + the encoded payload + `}` (wit/plugin.wit `context`). All but the
        request id is encoded once per endpoint, call target, caller and session and kept."""
        key = (self.endpoint, method, name, upstream, self.principal, self.session_hash)
        fixed = _CONTEXTS.get(key)
        if fixed is None:
            fixed = (
                orjson.dumps(
                    {
                        "endpoint": self.endpoint,
                        "upstream": upstream,
                        "method": method,
                        "name": name,
                        "principal": orjson.Fragment(self.principal),
                        "session-hash": self.session_hash,
                    }
                )[1:-1]
                + b',"request-id":'
            )
            if len(_CONTEXTS) >= CONTEXTS_KEPT:
                _CONTEXTS.clear()
            _CONTEXTS[key] = fixed
        return fixed + orjson.dumps(self.request_id) + b'},"payload":'


CONTEXTS_KEPT = 4096
# (endpoint, method, name, upstream, principal, session hash) -> that much of a hook's encoded
# context (_Who.context); cleared when full.
_CONTEXTS: dict[tuple[Any, ...], bytes] = {}


@functools.lru_cache(maxsize=4096)
def session_hash(session_id: str) -> str:
    """What a plugin sees of a session: the first 16 hex digits of its id's sha256, never the id
    (computed once per live session, not per hook call)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]
