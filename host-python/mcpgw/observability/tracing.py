"""OpenTelemetry tracing: the optional extra `mcpgw[otel]`, imported only when tracing is on
(tracing_switch.py decides without importing it; docs/observability.md, "Tracing").

The spans of one request, parent first:

- `<METHOD> <route>` (SERVER), one per HTTP request or WebSocket connection: its parent is the
  client's `traceparent` header (W3C Trace Context; OTEL_PROPAGATORS applies). Attributes: method,
  route, status, the edge backend and version that evaluated the head.
- `mcpgw.edge` (INTERNAL): the edge's decision on the head, `mcpgw.edge.cached` when the outcome
  cache answered without a crossing into the backend.
- `<mcp method> [<tool or name>]` (SERVER), one per JSON-RPC request: its parent is the trace
  context in `params._meta` (`traceparent`, `tracestate`: MCP's SEP-414) when the client sent
  one, else the HTTP span. Attributes: MCP method, tool name, request id, the session's hash
  (never its id), the edge backend, and the JSON-RPC error code when it failed.
- `mcpgw.plugin <name> <hook>` (INTERNAL), one per plugin hook call: its action, or its fault.
- `upstream <id> <method>` (CLIENT), one per request relayed upstream within a traced request:
  its context goes to HTTP upstreams as the `traceparent` header; below it the mcp SDK's own
  client span (`MCP send ...`) puts the same trace into the upstream request's `params._meta`.

Exporting: OTLP over HTTP/protobuf with the standard OTEL_EXPORTER_OTLP_* variables, batched
(OTEL_BSP_* apply), sampled by OTEL_TRACES_SAMPLER. When the process already has an SDK tracer
provider (an application embedding the gateway, or a test), spans go there instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Coroutine, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from .. import __version__
from ..asgi import ASGIApp, Receive, Scope, Send
from ..logsafe import redact
from ..plugins.chain import session_hash
from . import request_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.util.types import Attributes

    from ..app import App
    from ..edge.outcome_cache import OutcomeCache
    from ..gateway import Gateway
    from ..state.session import Session

TRACE_HEADERS = (b"traceparent", b"tracestate", b"baggage")
NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}  # what a span name adds
DEFAULT_ENDPOINT = "http://localhost:4318"
# The edge version that evaluated this request's head (set by the edge hook, read by the MCP span:
# the request's tasks are created after it, with a copy of this context).
_EDGE_TAG: ContextVar[str] = ContextVar("mcpgw_edge_tag", default="-")


def otlp_endpoint(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Where the OTLP/HTTP exporter sends spans, as it computes it from the standard variables."""
    if traces := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    return environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/") + "/v1/traces"


class _NoOrphanClientSpans(Sampler):
    """The configured sampler, except that the mcp SDK's client spans with no parent are dropped:
    the health pings and catalog refreshes the gateway sends its upstreams on its own (no
    request behind them) would otherwise be a root trace each, every few seconds."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if name.startswith("MCP send ") and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoOrphanClientSpans({self.inner.get_description()})"


class Tracing:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        existing = trace.get_tracer_provider()
        self.owned: TracerProvider | None = None
        if isinstance(existing, TracerProvider):  # the embedding process configured OpenTelemetry itself
            provider = existing
            self.exporter = "the process's own tracer provider"
            self.endpoint: str | None = None
        else:
            attributes: dict[str, str] = {"service.version": __version__}
            if not os.environ.get("OTEL_SERVICE_NAME"):
                attributes["service.name"] = "mcpgw"
            # The SDK's own reading of OTEL_TRACES_SAMPLER(_ARG), what TracerProvider() would use
            # (a private name of the pinned SDK; tests/test_tracing.py would fail if it moved).
            from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

            provider = TracerProvider(
                resource=Resource.create(attributes), sampler=_NoOrphanClientSpans(_get_from_env_or_default())
            )
            exporter: SpanExporter
            if mode == "console":
                # stderr, never stdout: `mcpgw stdio` speaks MCP on stdout.
                exporter, self.exporter, self.endpoint = ConsoleSpanExporter(out=sys.stderr), "console (stderr)", None
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter, self.exporter, self.endpoint = OTLPSpanExporter(), "otlp/http", otlp_endpoint()
            provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)  # global: the mcp SDK's client spans join the same traces
            self.owned = provider
        self.sampler = provider.sampler.get_description()
        self.tracer = provider.get_tracer("mcpgw", __version__)

    # -- what the operator sees -------------------------------------------------
    def describe(self) -> str:
        where = f" to {redact(self.endpoint)}" if self.endpoint else ""
        return f"on, exporting {self.exporter}{where}, sampler {self.sampler}"

    def health(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "exporter": self.exporter,
            "endpoint": redact(self.endpoint) if self.endpoint else None,
            "sampler": self.sampler,
        }

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        from ..federation.link import UpstreamLink

        if UpstreamLink.trace == self.upstream_call:
            UpstreamLink.trace = None
        if self.owned is not None:
            self.owned.shutdown()

    # -- wiring ---------------------------------------------------------------------
    def install(self, app: App, inner: ASGIApp) -> ASGIApp:
        """Hook every traced step of `app` and return `inner` wrapped in the HTTP server span."""
        self.install_gateway(app.gateway)
        self._trace_edge(app.middleware.cache)
        return _ServerSpans(inner, self)

    def install_gateway(self, gateway: Gateway) -> None:
        """The steps below the transports (all `mcpgw stdio` has): MCP requests, plugin hooks,
        upstream requests."""
        from ..federation.link import UpstreamLink

        gateway.engine.trace = self.mcp_request
        if gateway.plugins is not None:
            gateway.plugins.hooks.trace = self.plugin_call
        UpstreamLink.trace = self.upstream_call  # process-wide, like the tracer provider itself

    def _trace_edge(self, cache: OutcomeCache) -> None:
        """The edge's decision names the HTTP span (route, edge version); a crossing into the
        backend (a cache miss) is a child span, made from the crossing's measured duration (the
        cache's crossing hook, chained to the one /metrics may have set): a cached answer costs
        no span."""
        evaluate = cache.evaluate
        tracer = self.tracer

        def traced(backend: Any, method: str, raw_path: bytes, query: bytes, headers: Any, size: int) -> Any:
            tag = backend.tag
            _EDGE_TAG.set(tag)  # before the crossing, so its span (below) names the version
            outcome = evaluate(backend, method, raw_path, query, headers, size)
            server = trace.get_current_span()
            if server.is_recording():
                forward = outcome.get("forward")
                route = forward["route"] if forward is not None else "preflight"
                server.update_name(f"{method} {route}")
                server.set_attributes(
                    {"http.route": route, "mcpgw.edge.backend": tag.split("/", 1)[0], "mcpgw.edge.version": tag}
                )
            return outcome

        metrics = cache.on_crossing

        def crossed(seconds: float) -> None:
            if metrics is not None:
                metrics(seconds)
            tag = _EDGE_TAG.get()
            end = time.time_ns()
            span = tracer.start_span(
                "mcpgw.edge crossing",
                start_time=end - int(seconds * 1e9),
                attributes={"mcpgw.edge.backend": tag.split("/", 1)[0], "mcpgw.edge.version": tag},
            )
            span.end(end_time=end)

        cache.evaluate = traced  # type: ignore[method-assign,assignment] # the one crossing point, wrapped while on
        cache.on_crossing = crossed

    async def mcp_request(
        self, message: dict[str, Any], session: Session | None, work: Coroutine[Any, Any, Any]
    ) -> Any:
        """Run one JSON-RPC request's answer (`work`) inside its span."""
        method = message["method"]
        raw = message.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        named = params.get(NAMED_BY.get(method, ""))
        edge = _EDGE_TAG.get()
        attributes: dict[str, Any] = {
            "mcp.method.name": method,
            "jsonrpc.request.id": str(message.get("id")),
            "mcpgw.edge.backend": edge.split("/", 1)[0],
            "mcpgw.edge.version": edge,
        }
        if session is not None:
            attributes["mcp.session.id_hash"] = session_hash(session.id)
        if isinstance(named, str):
            attributes["gen_ai.tool.name" if method == "tools/call" else "mcp.target"] = named[:200]
        meta = params.get("_meta")
        parent, links = None, []
        if isinstance(meta, dict) and isinstance(meta.get("traceparent"), str):
            carrier = {k: v for k in ("traceparent", "tracestate") if isinstance(v := meta.get(k), str)}
            found = propagate.extract(carrier)
            if trace.get_current_span(found).get_span_context().is_valid:
                parent = found
                here = trace.get_current_span().get_span_context()
                if here.is_valid:
                    links.append(Link(here, {"mcpgw.link": "http request"}))
        name = f"{method} {named[:80]}" if isinstance(named, str) else method
        with self.tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes, links=links
        ) as span:
            response = await work
            error = response.get("error") if isinstance(response, dict) else None
            if isinstance(error, dict):
                span.set_attribute("rpc.jsonrpc.error_code", error.get("code", 0))
                span.set_attribute("error.type", str(error.get("code")))
                span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))[:200]))
            return response

    @contextlib.contextmanager
    def plugin_call(self, plugin: str, hook: str) -> Iterator[Any]:
        with self.tracer.start_as_current_span(
            f"mcpgw.plugin {plugin} {hook}", attributes={"mcpgw.plugin.name": plugin, "mcpgw.plugin.hook": hook}
        ) as span:
            yield span

    @contextlib.contextmanager
    def upstream_call(
        self, upstream: str, transport: str, method: str, params: dict[str, Any] | None
    ) -> Iterator[dict[str, str]]:
        """The span of one request relayed upstream, yielding the headers that carry its context
        (none when no traced request is behind the call: pings and catalog refreshes)."""
        if not trace.get_current_span().get_span_context().is_valid:
            yield {}
            return
        attributes: dict[str, Any] = {
            "mcp.method.name": method,
            "mcpgw.upstream.id": upstream,
            "mcpgw.upstream.transport": transport,
        }
        if method == "tools/call" and isinstance(name := (params or {}).get("name"), str):
            attributes["gen_ai.tool.name"] = name[:200]
        with self.tracer.start_as_current_span(
            f"upstream {upstream} {method}", kind=SpanKind.CLIENT, attributes=attributes
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
            yield headers


class _ServerSpans:
    """Outermost on the request path: the HTTP server span of every request and WebSocket."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        carrier = {n.decode(): v.decode("latin-1") for n, v in scope["headers"] if n in TRACE_HEADERS}
        parent = propagate.extract(carrier) if carrier else None
        method = scope.get("method", "GET") if kind == "http" else "WEBSOCKET"
        attributes = {
            "http.request.method": method,
            "url.path": scope.get("path", "")[:256],
            "network.protocol.name": "http" if kind == "http" else "websocket",
        }
        if (tag := request_id.current.get()) is not None:  # set by the observer, outside: logs and trace meet
            attributes["mcpgw.request_id"] = tag.id
        with self.tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:

            async def sending(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, sending if kind == "http" else send)
