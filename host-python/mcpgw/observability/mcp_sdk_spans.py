"""The mcp SDK's own OpenTelemetry work on every request the gateway sends upstream, skipped while
the process has no tracer provider (docs/observability.md, "Tracing").

The SDK's JSON-RPC dispatcher (`mcp.shared.jsonrpc_dispatcher`, used by every upstream link)
opens a span (`MCP send <method>`) around each request it sends and injects the current trace
context into the request's `params._meta`, whether or not anything records spans. With no tracer
provider in the process (the gateway's tracing off and no embedding application's provider),
OpenTelemetry's API makes that a non-recording span and the injection finds nothing to inject,
yet the nested context managers, the context attach and detach and the propagators' work cost
a relayed call about 86k instructions (callgrind, opentelemetry-api 1.45.2, mcp 2.3.0).

`install()` rebinds the two names the dispatcher calls to guards that skip both while no tracer
provider is set and call the SDK's own functions as soon as one is (the gateway's tracing on:
observability/tracing.py sets or finds one; or an application's): the check is made on every
request, so the order in which providers and links appear does not matter. The SDK's files are
not touched. Left alone when OTEL_PYTHON_TRACER_PROVIDER names a provider (the API loads it on
first use, which the guard would not see).

What is skipped is what no provider can see: a non-recording span, and the injection of a span
context that is not valid. (Baggage an application put in the context by itself, with no
provider, is not injected into `params._meta` either.) A client's own `_meta.traceparent` is
relayed as sent, as before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from mcp.shared import _otel, jsonrpc_dispatcher
from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.trace import Span

_sdk_span = _otel.otel_span
_sdk_inject = _otel.inject_trace_context
_UNTRACED: AbstractContextManager[Span] = contextlib.nullcontext(trace.INVALID_SPAN)  # reusable, reentrant


def otel_span(name: str, **options: Any) -> AbstractContextManager[Span]:
    """The dispatcher's span: the SDK's while a tracer provider is set, else a non-recording one."""
    # The API's own record of the global provider (a private name of the pinned opentelemetry-api,
    # read because the public get_tracer_provider() costs a failed os.environ lookup per call;
    # tests/test_tracing.py fails if it moved).
    if trace._TRACER_PROVIDER is None:
        return _UNTRACED
    return _sdk_span(name, **options)


def inject_trace_context(meta: dict[str, Any]) -> None:
    """The dispatcher's injection into `params._meta`: the SDK's while a tracer provider is set."""
    if trace._TRACER_PROVIDER is not None:
        _sdk_inject(meta)


def untraced() -> bool:
    """Whether the dispatcher's span and injection would be skipped now (the guards installed, no
    tracer provider): a request may then be sent past the dispatcher with nothing of them lost."""
    return trace._TRACER_PROVIDER is None and getattr(jsonrpc_dispatcher, "otel_span", None) is otel_span


def request_span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Span]:
    """The span the dispatcher opens around a request it sends (CLIENT), for one the upstream link
    sends past the dispatcher with a tracer provider set (federation/link.py `_traced`): by the name
    the dispatcher calls, the guard once installed, else the SDK's own."""
    span: Callable[..., AbstractContextManager[Span]] = vars(jsonrpc_dispatcher)["otel_span"]
    return span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)


def inject_request_meta(meta: dict[str, Any]) -> None:
    """The trace context injected into a request's `params._meta` as the dispatcher injects it."""
    inject: Callable[[dict[str, Any]], None] = vars(jsonrpc_dispatcher)["inject_trace_context"]
    inject(meta)


def install(environ: Mapping[str, str] = os.environ) -> bool:
    """Rebind the dispatcher's two names to the guards (idempotent); False when left alone: a
    provider named by OTEL_PYTHON_TRACER_PROVIDER, or an SDK whose dispatcher no longer calls
    these two functions by these names (then nothing is rebound: its spans cost what they cost)."""
    if environ.get(OTEL_PYTHON_TRACER_PROVIDER):
        return False
    names = {"otel_span": (_sdk_span, otel_span), "inject_trace_context": (_sdk_inject, inject_trace_context)}
    if any(getattr(jsonrpc_dispatcher, name, None) not in found for name, found in names.items()):
        return False
    for name, (_, guard) in names.items():
        setattr(jsonrpc_dispatcher, name, guard)  # the module's global, read by send_raw_request per call
    return True
