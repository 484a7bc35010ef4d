"""OpenTelemetry tracing, captured with the SDK's in-memory span exporter.

The gateway runs in this process (real uvicorn on a loopback socket, in a thread) with a real
HTTP upstream process (the toy server, recording every request's headers) and a real plugin:
the parent/child structure of a relayed tools/call, the client's `traceparent` header and
`params._meta` (SEP-414) as parents, the `traceparent` that reached the upstream, an error's
status; with tracing off, OpenTelemetry's SDK is never imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider  # the otel extra: make test installs it
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import REPO
from upstream_procs import http_table, toy_http, wait_upstreams

NOOP = REPO / "plugins" / "dist" / "noop.wasm"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
VERSION = "2025-11-25"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
RELAYED = (  # the spans of a tools/call relayed to the toy upstream with the noop plugin on
    "POST mcp",
    "mcpgw.edge crossing",
    "tools/call toy__add",
    "mcpgw.plugin noop tool-pre-invoke",
    "mcpgw.plugin noop tool-post-invoke",
    "upstream toy tools/call",
    "MCP send tools/call add",
)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider, exporting to memory (the gateway finds it and uses it)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later tests' spans (the mcp SDK's, in this process) are no longer kept


@pytest.fixture(scope="module")
def traced(spans, component_path, tmp_path_factory):
    from mcpgw.app import create_app
    from mcpgw.serving import GatewayServer
    from mcpgw.settings import Settings

    if not NOOP.is_file():
        pytest.fail(f"{NOOP} is missing: run `make plugins`")
    folder = tmp_path_factory.mktemp("tracing")
    record = folder / "headers.jsonl"
    os.environ["TOY_RECORD_HEADERS"] = str(record)
    try:
        upstream = toy_http("toy")
    finally:
        del os.environ["TOY_RECORD_HEADERS"]
    config = folder / "mcpgw.toml"
    config.write_text(http_table("toy", upstream.url) + f'\n\n[plugins.noop]\npath = "{NOOP}"\n')
    settings = Settings.from_env({"MCPGW_EDGE": "wasm", "MCPGW_TRACING": "otlp", "MCPGW_CONFIG": str(config)})
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = GatewayServer(uvicorn.Config(app, loop="asyncio", http="httptools", log_level="warning"), app.drain)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "in-process gateway did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    wait_upstreams(url)
    yield SimpleNamespace(url=url, app=app, record=record)
    server.should_exit = True
    thread.join(30)
    loop.close()
    upstream.stop()


def _session(url: str) -> str:
    opened = httpx.post(url + "/mcp", json=INIT, headers=HEADERS, timeout=30)
    assert opened.status_code == 200, opened.text
    return opened.headers["mcp-session-id"]


def _call(url: str, session: str, body: dict, headers: dict | None = None) -> dict:
    h = {**HEADERS, "mcp-session-id": session, "mcp-protocol-version": VERSION, **(headers or {})}
    answer = httpx.post(url + "/mcp", json=body, headers=h, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _trace_of(spans: InMemorySpanExporter, trace_id: int, names: set[str]) -> list:
    """The finished spans of one trace, once every span named in `names` is there (spans end as
    the answer is written: a deadline, not a timing assertion)."""
    deadline = time.monotonic() + 30
    while True:
        found = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
        if names <= {s.name for s in found} or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _one(found: list, name: str):
    named = [s for s in found if s.name == name]
    assert len(named) == 1, (name, [s.name for s in found])
    return named[0]


def test_a_relayed_call_is_one_trace_from_the_client_to_the_upstream(traced, spans):
    session = _session(traced.url)
    traced.record.write_text("")  # only what this call sends upstream
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "toy__add", "arguments": {"a": 2}}}
    body["params"]["arguments"]["b"] = 3
    request_id = "trace-test-request-1"
    headers = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "x-request-id": request_id}
    answer = _call(traced.url, session, body, headers)
    assert answer["result"]["content"][0]["text"] == "5", answer

    found = _trace_of(spans, int(CLIENT_TRACE, 16), set(RELAYED))
    http = _one(found, "POST mcp")
    edge = _one(found, "mcpgw.edge crossing")
    mcp = _one(found, "tools/call toy__add")
    pre = _one(found, "mcpgw.plugin noop tool-pre-invoke")
    post = _one(found, "mcpgw.plugin noop tool-post-invoke")
    upstream = _one(found, "upstream toy tools/call")
    sdk = _one(found, "MCP send tools/call add")

    # The structure: client -> HTTP server span -> edge, MCP request -> plugins, upstream -> SDK send.
    assert http.kind == SpanKind.SERVER and http.parent.span_id == int(CLIENT_SPAN, 16) and http.parent.is_remote
    assert edge.parent.span_id == http.context.span_id
    assert mcp.kind == SpanKind.SERVER and mcp.parent.span_id == http.context.span_id
    assert pre.parent.span_id == mcp.context.span_id and post.parent.span_id == mcp.context.span_id
    assert upstream.kind == SpanKind.CLIENT and upstream.parent.span_id == mcp.context.span_id
    assert sdk.parent.span_id == upstream.context.span_id

    # What each says.
    assert http.attributes["http.route"] == "mcp" and http.attributes["http.response.status_code"] == 200
    assert http.attributes["mcpgw.edge.backend"] == "wasm"
    assert http.attributes["mcpgw.request_id"] == request_id  # the X-Request-Id the client got: logs meet traces
    assert edge.attributes["mcpgw.edge.backend"] == "wasm"
    assert mcp.attributes["mcp.method.name"] == "tools/call" and mcp.attributes["gen_ai.tool.name"] == "toy__add"
    assert mcp.attributes["mcpgw.edge.backend"] == "wasm"
    assert re.fullmatch(r"[0-9a-f]{16}", mcp.attributes["mcp.session.id_hash"])
    assert session not in json.dumps([dict(s.attributes) for s in found])  # the session id itself: never
    assert mcp.status.status_code != StatusCode.ERROR
    assert pre.attributes["mcpgw.plugin.action"] == "continue"
    assert upstream.attributes["mcpgw.upstream.id"] == "toy" and upstream.attributes["gen_ai.tool.name"] == "add"

    # The traceparent that reached the real upstream: this trace, parented by the upstream span.
    seen = [json.loads(line) for line in traced.record.read_text().splitlines()]
    sent = [h["traceparent"] for h in seen if "traceparent" in h]
    assert f"00-{CLIENT_TRACE}-{upstream.context.span_id:016x}-01" in sent, seen


def test_trace_context_in_params_meta_parents_the_mcp_span(traced, spans):
    """SEP-414: a client may carry its trace in `params._meta`; the MCP span joins that trace,
    linked to the HTTP request's span (a trace of its own here: no header was sent)."""
    session = _session(traced.url)
    meta_trace, meta_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    body = {
        "jsonrpc": "2.0",
        "id": 8,
        "method": "tools/call",
        "params": {
            "name": "echo",
            "arguments": {"text": "hi"},
            "_meta": {"traceparent": f"00-{meta_trace}-{meta_span}-01"},
        },
    }
    assert "result" in _call(traced.url, session, body)
    found = _trace_of(spans, int(meta_trace, 16), {"tools/call echo"})
    mcp = _one(found, "tools/call echo")
    assert mcp.parent.span_id == int(meta_span, 16)
    linked = mcp.links[0].context  # the HTTP request's span: it ends once the answer is written
    deadline = time.monotonic() + 30
    while not (http := [s for s in spans.get_finished_spans() if s.context.span_id == linked.span_id]):
        assert time.monotonic() < deadline, "the linked HTTP span never ended"
        time.sleep(0.05)
    http = http[0]
    assert http.name == "POST mcp" and http.context.trace_id != int(meta_trace, 16)


def test_an_error_answer_marks_the_mcp_span(traced, spans):
    session = _session(traced.url)
    tid = "11111111111111111111111111111111"
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}}
    answer = _call(traced.url, session, body, {"traceparent": f"00-{tid}-{CLIENT_SPAN}-01"})
    assert answer["error"]["code"] == -32602, answer  # Unknown tool
    found = _trace_of(spans, int(tid, 16), {"tools/call no_such_tool", "POST mcp"})
    mcp = _one(found, "tools/call no_such_tool")
    assert mcp.status.status_code == StatusCode.ERROR
    assert mcp.attributes["rpc.jsonrpc.error_code"] == -32602
    assert _one(found, "POST mcp").status.status_code != StatusCode.ERROR  # HTTP 200: the transport did its job


def test_crossing_spans_and_the_metrics_histogram_count_the_same_crossings(traced, spans):
    """The edge-crossing span hangs on the outcome cache's crossing hook, chained to /metrics'
    histogram: both see every crossing."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(traced.url + "/metrics", timeout=30).text
    counted = next(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mcpgw_edge_crossing_seconds_count"
    )
    crossing_spans = [s for s in spans.get_finished_spans() if s.name == "mcpgw.edge crossing"]
    assert counted >= 1 and len(crossing_spans) == counted


def test_health_and_the_start_up_log_say_where_traces_go(traced):
    tracing = httpx.get(traced.url + "/health").json()["tracing"]
    assert tracing["enabled"] is True and tracing["exporter"] == "the process's own tracer provider"


def test_a_served_gateway_exports_over_otlp_and_says_where(component_path):
    """`mcpgw serve` with only OTEL_EXPORTER_OTLP_ENDPOINT set: spans reach a collector (a stub
    decoding OTLP/HTTP protobuf) in the client's trace, and the log and /health say where."""
    sys.path.insert(0, str(REPO / "bench"))
    from conftest import Gateway
    from otlp_stub import CollectorStub

    collector = CollectorStub()
    gw = Gateway({"MCPGW_EDGE": "wasm", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "200"})
    try:
        gw.wait_ready()
        session = _session(gw.url)
        tid = "22222222222222222222222222222222"
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        assert "result" in _call(gw.url, session, body, {"traceparent": f"00-{tid}-{CLIENT_SPAN}-01"})
        assert collector.wait_for("tools/list", 1) >= 1
        ours = [s for s in collector.spans if s["trace_id"] == tid]
        assert {"POST mcp", "tools/list"} <= {s["name"] for s in ours}, ours
        assert collector.resource["service.name"] == "mcpgw"
        where = f"{collector.url}/v1/traces"
        assert f"tracing: on, exporting otlp/http to {where}" in gw.log()
        assert httpx.get(gw.url + "/health").json()["tracing"]["endpoint"] == where
    finally:
        gw.stop()
        collector.stop()
        sys.path.remove(str(REPO / "bench"))


def test_mcpgw_stdio_is_traced_and_console_spans_never_touch_stdout(component_path):
    """`mcpgw stdio` with MCPGW_TRACING=console: the MCP request's span is printed on stderr,
    and stdout carries nothing but the MCP stream."""
    lines = [
        INIT,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}},
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPGW_", "OTEL_"))}
    env["MCPGW_TRACING"] = "console"
    done = subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "stdio"],
        input="".join(json.dumps(m) + "\n" for m in lines),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]  # every stdout line is JSON-RPC
    assert [a.get("id") for a in answers] == [1, 2], done.stdout
    assert answers[1]["result"]["content"][0]["text"] == "hi"
    assert "tracing: on, exporting console (stderr)" in done.stderr
    assert '"name": "tools/call echo"' in done.stderr, done.stderr[-2000:]


def test_with_tracing_off_the_sdk_is_never_imported(component_path, tmp_path):
    code = (
        "import sys\n"
        "from mcpgw.app import create_app\n"
        "from mcpgw.settings import Settings\n"
        "app = create_app(Settings(edge='wasm'))\n"
        "print(app.tracing, app.health()['tracing'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'mcpgw.observability.tracing'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPGW_", "OTEL_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("None {'enabled': False"), out.stdout
    assert lines[1] == "['mcpgw.observability.tracing_switch']", out.stdout  # no SDK, no tracing module


def test_an_otlp_endpoint_turns_it_on_and_mcpgw_tracing_off_wins():
    from mcpgw.observability.tracing_switch import tracing_mode

    assert tracing_mode("auto", {}) is None
    assert tracing_mode("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "otlp"
    assert tracing_mode("auto", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}) == "otlp"
    assert tracing_mode("off", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) is None
    assert tracing_mode("otlp", {"OTEL_SDK_DISABLED": "true"}) is None
    assert tracing_mode("console", {}) == "console"


def test_the_mcp_sdks_span_per_upstream_request_is_skipped_only_while_no_tracer_provider_is_set():
    """observability/mcp_sdk_spans.py, in a process of its own (this one may have a provider): the
    names the SDK's dispatcher calls per request are the guards; with no provider they record and
    inject nothing, and once a provider is set they are the SDK's own span and injection (the
    relayed-call test above shows the `MCP send` span under the upstream span in a gateway)."""
    code = (
        "from mcp.shared import jsonrpc_dispatcher as d\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from mcpgw.observability import mcp_sdk_spans\n"
        "print(mcp_sdk_spans.install(), mcp_sdk_spans.install(), d.otel_span is mcp_sdk_spans.otel_span)\n"
        "def send():\n"
        "    meta = {}\n"
        "    with d.otel_span('MCP send tools/call add', kind=trace.SpanKind.CLIENT, attributes={'a': '1'}) as span:\n"
        "        d.inject_trace_context(meta)\n"
        "        return span.is_recording(), sorted(meta)\n"
        "print(send())\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "print(send(), [(s.name, s.kind.name, dict(s.attributes)) for s in exporter.get_finished_spans()])\n"
        "print(mcp_sdk_spans.install({'OTEL_PYTHON_TRACER_PROVIDER': 'sdk_tracer_provider'}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPGW_", "OTEL_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.splitlines() == [
        "True True True",
        "(False, [])",  # no provider: a non-recording span, nothing injected
        "(True, ['traceparent']) [('MCP send tools/call add', 'CLIENT', {'a': '1'})]",  # the SDK's own
        "False",  # a provider the API loads from the environment: left alone
    ], out.stdout + out.stderr
