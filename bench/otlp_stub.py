"""An OTLP/HTTP traces receiver on loopback, for `make bench` (bench/tracing.py) and
tests/test_tracing.py: POST /v1/traces (protobuf) is decoded with opentelemetry-proto (the otel
extra) and its spans counted and kept."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CollectorStub:
    """An OTLP/HTTP traces receiver on loopback: POST /v1/traces, protobuf; counts spans by name
    and keeps the request headers and resource attributes of the last export."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        stub = self
        self.names: Counter[str] = Counter()
        self.spans: list[dict] = []  # name, trace id, span id, parent id, attributes (kept up to a bound)
        self.exports = 0
        self.resource: dict[str, str] = {}
        self.lock = threading.Lock()
        answer = ExportTraceServiceResponse().SerializeToString()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with stub.lock:
                    stub.exports += 1
                    for rs in request.resource_spans:
                        stub.resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                stub.names[span.name] += 1
                                if len(stub.spans) < 10_000:
                                    stub.spans.append(
                                        {
                                            "name": span.name,
                                            "trace_id": span.trace_id.hex(),
                                            "span_id": span.span_id.hex(),
                                            "parent_id": span.parent_span_id.hex(),
                                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                                        }
                                    )
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, name: str) -> int:
        with self.lock:
            return self.names[name]

    def wait_for(self, name: str, at_least: int, timeout: float = 30.0) -> int:
        """Spans named `name` received, once at least `at_least` (or the deadline: batches leave every 5 s)."""
        deadline = time.monotonic() + timeout
        while self.count(name) < at_least and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.count(name)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v) -> object:  # an OTLP AnyValue
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None
