"""Prometheus metrics (`/metrics`, prometheus-client): every family, its labels, and how it is read.

Two kinds of family (docs/observability.md lists them all, with what each costs):

- **Counted on the request path**, as prometheus-client instruments: HTTP requests and their
  latency (observer.py), the edge's crossings (a histogram fed by the outcome cache), MCP
  requests and tool calls (the engine's `observe` hook), upstream calls and their latency (the
  federation's `observe` hook). Label children are bound once per label combination and kept
  (`_Bound`), so a request costs a dict lookup and an increment or two, never a label dict.
- **Read at scrape time** from the counters the gateway keeps anyway for /health (`StateCollector`):
  cache hits and misses, traps, swaps and rollbacks, plugins, upstream restarts and state, live
  sessions, streams, requests and event bytes, auth outcomes, refusals. Nothing is counted twice
  and the request path pays nothing for them.

Labels are bounded: routes, HTTP methods, statuses and MCP methods from fixed sets (anything else
`other`), upstream and plugin names from the configuration, tool names only when the catalog has
them (anything else `other`); never a session id, an argument, a path or a client's string.

Several processes (`PROMETHEUS_MULTIPROC_DIR`, one directory shared by the workers, empty at
start; the supervisor of `--workers N` makes one, multiprocess.py): every family is copied into
prometheus-client's multiprocess instruments, which write to that directory, by every worker
every `MIRROR_INTERVAL_S` (and by the answering worker at each scrape): a scrape, answered by any
worker, merges every worker's files, at most that many seconds old. The request path costs the
same as with one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..asgi import Receive, Scope, Send, is_loopback, send_json
from ..logsafe import escape
from ..server import jsonrpc

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("mcpgw.metrics")

# No `_created` series: one more series per child that no dashboard here reads.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MIRROR_INTERVAL_S = 5.0
TOOL_NAMES_REFRESH_S = 1.0

HTTP_METHODS = frozenset({"GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"})
# route -> transport (the edge's routes, plus the observer's `edge`: answered by the edge itself)
TRANSPORTS = {
    "mcp": "streamable-http",
    "sse": "sse",
    "message": "sse",
    "ws": "websocket",
    "health": "http",
    "metrics": "http",
    "admin": "http",
    "other": "http",
    "edge": "http",
}
MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
    }
)
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CROSSING_BUCKETS = (10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 0.001, 0.0025, 0.01, 0.1)
UPSTREAM_STATES = ("starting", "ready", "restarting", "stopped")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def bounded_method(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


def bounded_mcp_method(method: Any) -> str:
    return method if method in MCP_METHODS else "other"


class LocalCounter:
    """A counter family kept as plain numbers by label tuple. Only the event
    loop writes and reads it (requests, hooks and scrapes all run there), so no lock is taken: a
    request pays a dict lookup and an addition. `labels` turns a key into the label values,
    at scrape time."""

    def __init__(self, name: str, doc: str, labelnames: list[str], labels: Callable[[Any], list[str]] = list) -> None:
        self.name, self.doc, self.labelnames, self.labels = name, doc, labelnames, labels
        self.values: dict[Any, float] = {}

    def inc(self, key: Any, amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, value in list(self.values.items()):
            family.add_metric(self.labels(key), value)
        return family


class LocalHistogram:
    """A histogram family as plain numbers by label tuple: per key, the
    count of each bucket (not cumulative; the last is +Inf) and the sum. An observation is a
    bisect and two additions."""

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        labels: Callable[[Any], list[str]] = list,
    ) -> None:
        self.name, self.doc, self.labelnames, self.labels = name, doc, labelnames, labels
        self.bounds = buckets
        self.les = [repr(float(b)) for b in buckets] + ["+Inf"]  # as prometheus-client writes `le`
        self.data: dict[Any, list[float]] = {}

    def observe(self, key: Any, seconds: float) -> None:
        found = self.data.get(key)
        if found is None:
            found = self.data[key] = [0.0] * (len(self.bounds) + 2)
        found[bisect_left(self.bounds, seconds)] += 1
        found[-1] += seconds

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, found in list(self.data.items()):
            cumulative, buckets = 0.0, []
            for le, count in zip(self.les, found, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(self.labels(key), buckets, sum_value=found[-1])
        return family


def backend_label(backend_type: type) -> str:
    """The edge backend a request went through, from its class (kept in the key instead of a
    name: reading `edge.backend` costs a request less than asking the edge for its status)."""
    return "wasm" if backend_type.__name__ == "WasmCore" else "python"


def _http_labels(key: tuple[str, str, int, type]) -> list[str]:
    route, method, status, backend = key
    return [route, method, str(status), TRANSPORTS.get(route, "http"), backend_label(backend)]


class LocalHttp:
    """mcpgw_http_requests_total and mcpgw_http_request_duration_seconds from
    one entry per (route, method, status, backend class): per request one dict lookup, a bisect
    and two additions. The counter and the per-route histogram are summed from the entries at
    scrape time."""

    def __init__(self, requests: LocalCounter, duration: LocalHistogram) -> None:
        self.requests, self.duration = requests, duration
        self.bounds = duration.bounds
        self.data: dict[Any, list[float]] = {}  # key -> bucket counts, +Inf, handshakes (no latency), sum

    def observe(self, key: Any, seconds: float | None) -> None:
        found = self.data.get(key)
        if found is None:
            found = self.data[key] = [0.0] * (len(self.bounds) + 3)
        if seconds is None:
            found[-2] += 1
        else:
            found[bisect_left(self.bounds, seconds)] += 1
            found[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        self.requests.values = {}
        self.duration.data = {}
        for key, found in list(self.data.items()):
            self.requests.values[key] = sum(found[:-1])
            observed = found[:-2]
            if any(observed):
                route = (key[0],)
                into = self.duration.data.setdefault(route, [0.0] * (len(self.bounds) + 2))
                for i, count in enumerate(observed):
                    into[i] += count
                into[-1] += found[-1]
        yield self.requests.collect()
        yield self.duration.collect()


class ToolNames:
    """The tool names a label may carry: the built-in catalog's and every upstream's (its own name
    on its virtual server, its prefixed name on /mcp), re-read at most once a second."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.names: frozenset[str] = frozenset()
        self.read_at = -1e9

    def label(self, name: Any) -> str:
        if not isinstance(name, str):
            return "other"
        now = time.monotonic()
        if now - self.read_at > TOOL_NAMES_REFRESH_S:
            self.read_at = now
            self.names = self._read()
        return name if name in self.names else "other"

    def _read(self) -> frozenset[str]:
        from ..federation.names import public_name

        gateway = self.app.gateway
        names = set(gateway.dispatcher.catalog.tools)
        for upstream in gateway.federation.upstreams.values():
            for tool in upstream.lists["tools"]:
                name = tool.get("name")
                if isinstance(name, str):
                    names.add(name)
                    names.add(public_name(upstream.config.prefix, name))
        return frozenset(names)


class Metrics:
    """The instruments counted on the request path, and the registry /metrics serves."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.multiprocess = multiprocess_dir()
        # Single process: the registry /metrics serves. Multiprocess: a scrape reads the shared
        # directory instead (`exposition`), which the mirror fills from the same families.
        self.registry = CollectorRegistry(auto_describe=False)
        counter, histogram = LocalCounter, LocalHistogram
        self.http_requests = counter(
            "mcpgw_http_requests",
            "HTTP requests and WebSocket handshakes answered, by route, method, status, transport and edge backend",
            ["route", "method", "status", "transport", "edge"],
            _http_labels,
        )
        self.http_duration = histogram(
            "mcpgw_http_request_duration_seconds",
            "Time from the request head to the end of the response (of the stream, for SSE), by route",
            ["route"],
            REQUEST_BUCKETS,
        )
        self.edge_crossing = histogram(
            "mcpgw_edge_crossing_seconds",
            "Time of one call into the edge backend (outcome cache misses and uncacheable heads)",
            [],
            CROSSING_BUCKETS,
        )
        self.mcp_requests = counter(
            "mcpgw_mcp_requests",
            "MCP requests answered by the session engine, by JSON-RPC method and outcome (ok, error, cancelled)",
            ["method", "outcome"],
        )
        self.tool_calls = counter(
            "mcpgw_tool_calls",
            "tools/call by tool (catalog names only, else other) and outcome (ok, tool_error, error, cancelled)",
            ["tool", "outcome"],
        )
        self.upstream_calls = counter(
            "mcpgw_upstream_calls",
            "Requests relayed to an upstream, by upstream, MCP method and outcome (ok, error, unavailable, timeout)",
            ["upstream", "method", "outcome"],
        )
        self.upstream_duration = histogram(
            "mcpgw_upstream_call_duration_seconds",
            "Time of one relayed upstream request, by upstream and MCP method",
            ["upstream", "method"],
            REQUEST_BUCKETS,
        )
        self.observe_crossing = self._observe_crossing
        self.http = LocalHttp(self.http_requests, self.http_duration)
        self.tool_names = ToolNames(app)
        self.state = StateCollector(app)
        self.mirror: Mirror | None = None
        if self.multiprocess is None:
            self.registry.register(RequestCollector(self))
            self.registry.register(self.state)
            self.registry.register(ProcessCollector(registry=None))
        else:
            self.mirror = Mirror(RequestCollector(self), self.state)

    # -- the request path ------------------------------------------------------
    def observe_http(self, route: str, method: str, status: int, backend: type, seconds: float | None) -> None:
        """One answered HTTP request (seconds) or WebSocket handshake (None: a connection's
        lifetime is not a latency); `backend` is the class of the edge backend that was active."""
        self.http.observe((route, method, status, backend), seconds)

    def _observe_crossing(self, seconds: float) -> None:
        self.edge_crossing.observe((), seconds)

    def observe_mcp(self, message: dict[str, Any], response: dict[str, Any] | None) -> None:
        """The engine's hook: one request answered (None: cancelled, no answer)."""
        method = message.get("method")
        if response is None:
            outcome = "cancelled"
        elif "error" in response:
            outcome = "error"
        else:
            outcome = "ok"
        # (LocalCounter.inc inline: this runs for every request)
        values = self.mcp_requests.values
        key: tuple[Any, str] = (method if method in MCP_METHODS else "other", outcome)
        values[key] = values.get(key, 0.0) + 1.0
        if method == "tools/call":
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if outcome == "ok":
                result = response.get("result") if response is not None else None
                if isinstance(result, dict) and result.get("isError") is True:
                    outcome = "tool_error"
            values = self.tool_calls.values
            key = (self.tool_names.label(name), outcome)
            values[key] = values.get(key, 0.0) + 1.0

    def observe_upstream(self, upstream: str, method: str, outcome: str, seconds: float) -> None:
        """The federation's hook: one relayed request (upstream ids come from the configuration)."""
        bounded = bounded_mcp_method(method)
        self.upstream_calls.inc((upstream, bounded, outcome))
        self.upstream_duration.observe((upstream, bounded), seconds)

    # -- scrape ----------------------------------------------------------------
    def exposition(self) -> bytes:
        if self.multiprocess is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        if self.mirror is not None:
            self.mirror.sync()
        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess)  # type: ignore[no-untyped-call]  # unannotated
        return generate_latest(registry)

    async def start(self) -> None:
        if self.mirror is not None:
            self.mirror.start()

    async def stop(self) -> None:
        if self.mirror is not None:
            await self.mirror.stop()
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess)  # type: ignore[no-untyped-call]  # unannotated

    def health(self) -> dict[str, Any]:
        """/health: served where, to whom, in which mode."""
        return {
            "enabled": True,
            "path": self.app.settings.path_prefix + "/metrics",
            "access": self.app.settings.metrics,
            "multiprocess": self.multiprocess is not None,
        }

    def describe(self) -> str:
        mode = f"multiprocess ({MULTIPROC_ENV}={self.multiprocess})" if self.multiprocess else "single process"
        return f"{self.app.settings.path_prefix}/metrics ({self.app.settings.metrics} access, {mode})"


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class RequestCollector(Collector):
    """The families counted on the request path."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield from m.http.collect()
        for family in (
            m.edge_crossing,
            m.mcp_requests,
            m.tool_calls,
            m.upstream_calls,
            m.upstream_duration,
        ):
            yield family.collect()


class StateCollector(Collector):
    """The counters the gateway keeps for /health, read at scrape time."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._edge()
        yield from self._live()
        yield from self._limits()
        yield from self._auth()
        yield from self._upstreams()
        yield from self._plugins()

    def _edge(self) -> Iterator[Metric]:
        app = self.app
        from .. import __version__

        build = _gauge("mcpgw_build_info", "The gateway's version (always 1)", ["version"])
        build.add_metric([__version__], 1)
        yield build
        status = app.edge.status
        component = status.component or {}
        info = _gauge(
            "mcpgw_edge_info",
            "The active edge backend (always 1): backend, component version, sha256 prefix",
            ["backend", "version", "sha256"],
        )
        info.add_metric([status.active, str(component.get("version", "")), str(component.get("sha256", ""))[:12]], 1)
        yield info
        cache = app.middleware.cache.stats()
        for name, value, doc in (
            ("mcpgw_edge_cache_hits", cache["hits"], "Requests whose edge outcome came from the outcome cache"),
            ("mcpgw_edge_cache_misses", cache["misses"], "Cacheable requests whose outcome was not cached"),
            ("mcpgw_edge_crossings", cache["crossings"], "Calls into the edge backend (misses and uncacheable heads)"),
        ):
            family = _counter(name, doc)
            family.add_metric([], value)
            yield family
        entries = _gauge("mcpgw_edge_cache_entries", "Outcomes held by the outcome cache")
        entries.add_metric([], cache["entries"])
        yield entries
        from ..edge.wasm_core import PROCESS_TRAPS

        traps = _counter("mcpgw_edge_traps", "Edge component failures served by the Python fallback, by kind", ["kind"])
        for kind, count in sorted(PROCESS_TRAPS.by_kind.items()):
            traps.add_metric([kind], count)
        yield traps
        registry = app.registry
        counts = registry.counts if registry is not None else {}
        swaps = _counter("mcpgw_edge_swaps", "Edge versions swapped in through the admin API")
        swaps.add_metric([], counts.get("swap", 0))
        yield swaps
        rollbacks = _counter("mcpgw_edge_rollbacks", "Edge rollbacks, by trigger (manual, auto)", ["trigger"])
        for trigger in ("manual", "auto"):
            rollbacks.add_metric([trigger], counts.get(f"rollback-{trigger}", 0))
        yield rollbacks

    def _live(self) -> Iterator[Metric]:
        live = self.app.live()
        for key, name, doc in (
            ("sessions", "mcpgw_sessions", "Live MCP sessions"),
            ("requests", "mcpgw_running_requests", "MCP requests running now"),
            ("streams", "mcpgw_streams", "Open event streams (SSE and WebSocket)"),
            ("upstream_links", "mcpgw_upstream_links", "Open upstream connections of client sessions"),
        ):
            family = _gauge(name, doc)
            family.add_metric([], live[key])
            yield family
        events = self.app.transports.events.stats()
        retained = _gauge("mcpgw_event_retained_bytes", "Bytes of events kept for resumption")
        retained.add_metric([], events["bytes"])
        yield retained
        evicted = _counter("mcpgw_event_evicted_bytes", "Bytes of events evicted to stay within the budgets")
        evicted.add_metric([], events["evicted_bytes"])
        yield evicted
        cut = _counter("mcpgw_event_readers_cut", "SSE readers cut off for reading too slowly")
        cut.add_metric([], events["readers_cut"])
        yield cut

    def _limits(self) -> Iterator[Metric]:
        limits = self.app.limits
        refused = _counter(
            "mcpgw_http_refused", "Connections or requests refused by the HTTP layer's limits, by reason", ["reason"]
        )
        from ..http_server import KINDS

        for kind in KINDS:
            refused.add_metric([kind], limits.refused[kind])
        yield refused
        connections = _gauge("mcpgw_http_connections", "Open client connections")
        connections.add_metric([], sum(limits.connections.values()))
        yield connections
        caps = _counter("mcpgw_limit_refusals", "Sessions and requests refused by a per-client cap, by cap", ["cap"])
        for cap, count in sorted(self.app.engine.refusals.items()):
            caps.add_metric([cap], count)
        yield caps

    def _auth(self) -> Iterator[Metric]:
        gate = self.app.gate
        outcomes = _counter(
            "mcpgw_auth_outcomes",
            "Credentials checked, by outcome (jwt: verified, cached, rejected; api-key: accepted, rejected)",
            ["outcome"],
        )
        refusals = _counter("mcpgw_auth_refusals", "Requests refused by authentication, by status", ["status"])
        if gate is not None:
            counts = getattr(gate.authenticator, "counts", {})
            for outcome, count in sorted(counts.items()):
                outcomes.add_metric([outcome], count)
            for status, count in sorted(gate.refusals.items()):
                refusals.add_metric([status], count)
        yield outcomes
        yield refusals

    def _upstreams(self) -> Iterator[Metric]:
        restarts = _counter("mcpgw_upstream_restarts", "Restarts of an upstream's catalog connection", ["upstream"])
        state = _gauge("mcpgw_upstream_state", "An upstream's state (1 for the current one)", ["upstream", "state"])
        for uid, upstream in sorted(self.app.gateway.federation.upstreams.items()):
            restarts.add_metric([uid], upstream.restarts)
            for name in UPSTREAM_STATES:
                state.add_metric([uid, name], 1 if upstream.state == name else 0)
        yield restarts
        yield state

    def _plugins(self) -> Iterator[Metric]:
        families = {
            "calls": _counter("mcpgw_plugin_calls", "Plugin hook calls", ["plugin"]),
            "denials": _counter("mcpgw_plugin_denials", "Requests a plugin denied", ["plugin"]),
            "modifications": _counter("mcpgw_plugin_modifications", "Requests or results modified", ["plugin"]),
            "skipped": _counter("mcpgw_plugin_skipped", "Fail-open faults: the call went on without it", ["plugin"]),
        }
        faults = _counter("mcpgw_plugin_faults", "Plugin faults, by kind", ["plugin", "kind"])
        cost = _counter("mcpgw_plugin_cost_seconds", "Time spent in a plugin's hook calls", ["plugin"])
        enabled = _gauge("mcpgw_plugin_enabled", "1 while a plugin is enabled (0: disabled, auto-disabled)", ["plugin"])
        registry = self.app.gateway.plugins
        for plugin in registry.current.plugins if registry is not None else ():
            c = plugin.counters
            for key, family in families.items():
                family.add_metric([plugin.name], getattr(c, key))
            for kind, count in sorted(c.faults.items()):
                faults.add_metric([plugin.name, kind], count)
            cost.add_metric([plugin.name], c.cost_us_total / 1e6)
            enabled.add_metric([plugin.name], 1 if plugin.enabled else 0)
        yield from families.values()
        yield faults
        yield cost
        yield enabled


class Mirror:
    """Multiprocess mode: every family (the request path's and those read from the gateway's
    state) copied into prometheus-client's multiprocess instruments, which write to the shared
    directory: counters and histogram buckets by their increase since the last copy, gauges set
    (summed over live workers). The request path keeps its plain numbers, so a request costs the
    same as with one process; the copy runs every MIRROR_INTERVAL_S and at each scrape."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors
        self.instruments: dict[str, Any] = {}
        self.last: dict[Any, float] = {}
        self.gauges: set[tuple[str, tuple[str, ...]]] = set()  # (family, label values) set last time
        self._task: asyncio.Task[None] | None = None

    def _instrument(self, family: Metric, labels: tuple[str, ...]) -> Any:
        found = self.instruments.get(family.name)
        if found is None:
            registry = CollectorRegistry(auto_describe=False)  # not served: the files are
            if family.type == "counter":
                found = Counter(family.name, family.documentation, list(labels), registry=registry)
            else:
                found = Gauge(
                    family.name, family.documentation, list(labels), registry=registry, multiprocess_mode="livesum"
                )
            self.instruments[family.name] = found
        return found

    def _histogram(self, family: Metric) -> None:
        """Bucket counts (cumulative in the samples) and the sum, by their increase: written
        into the instrument's own per-bucket values (prometheus-client 0.26's `_buckets`, `_sum`;
        pinned, and tests/test_metrics.py checks the merged histograms)."""
        groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for sample in family.samples:
            labels = tuple((k, v) for k, v in sample.labels.items() if k != "le")
            group = groups.setdefault(labels, {"buckets": [], "sum": 0.0})
            if sample.name.endswith("_bucket"):
                group["buckets"].append((sample.labels["le"], sample.value))
            elif sample.name.endswith("_sum"):
                group["sum"] = sample.value
        for labels, group in groups.items():
            instrument = self.instruments.get(family.name)
            if instrument is None:
                bounds = [float(le) for le, _ in group["buckets"] if le != "+Inf"]
                instrument = self.instruments[family.name] = Histogram(
                    family.name, family.documentation, [k for k, _ in labels], buckets=bounds, registry=None
                )
            child = instrument.labels(*(v for _, v in labels)) if labels else instrument
            previous = 0.0
            for i, (_, cumulative) in enumerate(group["buckets"]):
                self._add(child._buckets[i], (family.name, labels, str(i)), cumulative - previous)
                previous = cumulative
            self._add(child._sum, (family.name, labels, "sum"), group["sum"])

    def _add(self, value: Any, key: Any, now: float) -> None:
        before = self.last.get(key, 0.0)
        self.last[key] = now
        if now > before:
            value.inc(now - before)

    def sync(self) -> None:
        gauges_now: set[tuple[str, tuple[str, ...]]] = set()
        families = (family for collector in self.collectors for family in collector.collect())
        for family in families:
            if family.type == "histogram":
                self._histogram(family)
                continue
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                names = tuple(sample.labels)
                instrument = self._instrument(family, names)
                child = instrument.labels(*(sample.labels[n] for n in names)) if names else instrument
                if family.type == "counter":
                    key = (family.name, tuple(sample.labels.values()))
                    before = self.last.get(key, 0.0)
                    delta = sample.value - before if sample.value >= before else sample.value  # reset: all new
                    self.last[key] = sample.value
                    if delta > 0:
                        child.inc(delta)
                else:
                    child.set(sample.value)
                    gauges_now.add((family.name, tuple(sample.labels[n] for n in names)))
        # A gauge series the state no longer has (the edge version before a swap, an unloaded
        # plugin) reads 0, not its last value.
        for name, values in self.gauges - gauges_now:
            gauge = self.instruments[name]
            (gauge.labels(*values) if values else gauge).set(0)
        self.gauges = gauges_now

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:  # a failed copy is logged; the next one tries again
                log.exception("metrics: copying the gateway's counters for other workers failed")
            await asyncio.sleep(MIRROR_INTERVAL_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self.sync()


class MetricsEndpoint:
    """`GET /metrics` under MCPGW_METRICS's rule: `public` anyone; `loopback` (default) loopback
    callers, others with the admin credential; `admin` the admin credential always. The admin
    credential is MCPGW_ADMIN_TOKEN (compared in constant time) or, with authentication on, a
    credential carrying MCPGW_ADMIN_SCOPE, as a bearer token."""

    def __init__(
        self, metrics: Metrics, mode: str, admin_token: str, scope_check: Callable[[str], Awaitable[bool]] | None
    ) -> None:
        self.metrics = metrics
        self.mode = mode
        self._token = admin_token.encode()
        self._scope_check = scope_check

    async def _admin(self, scope: Scope) -> bool:
        presented = b""
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = rest.strip()
                break
        if not presented:
            return False
        if self._token and hmac.compare_digest(presented, self._token):
            return True
        return self._scope_check is not None and await self._scope_check(presented.decode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            refusal = jsonrpc.error_response(None, jsonrpc.INVALID_REQUEST, "Method not allowed")
            await send_json(send, 405, refusal, [(b"allow", b"GET")])
            return
        client = scope.get("client")
        open_to_caller = self.mode == "public" or (
            self.mode == "loopback" and is_loopback(client[0] if client else None)
        )
        if not open_to_caller and not await self._admin(scope):
            log.warning(
                "metrics refused: caller %s sent no valid admin credential", escape(client[0] if client else "-")
            )
            message = "Unauthorized: /metrics needs the admin credential"
            refusal = jsonrpc.error_response(None, jsonrpc.INVALID_REQUEST, message)
            await send_json(send, 401, refusal, [(b"www-authenticate", b'Bearer realm="mcpgw"')])
            return
        body = self.metrics.exposition()
        length = str(len(body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", length)],
            }
        )
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
