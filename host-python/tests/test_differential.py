"""Differential fuzzing: generated (often hostile) request heads must get identical
outcomes from the Rust component and the Python fallback.

Bounded in `make test`; `make fuzz` sets MCPGW_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import os

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpgw.edge.compact import evaluate_compact_with
from mcpgw.edge.contract import EdgeConfig, encode_head
from mcpgw.edge.python_core import PythonCore

EXAMPLES = int(os.environ.get("MCPGW_FUZZ_EXAMPLES", "600"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

CONFIGS = [
    EdgeConfig(),
    EdgeConfig(allow_credentials=True, max_age=0),
    EdgeConfig(allowed_origins=["*"], allowed_hosts=["*"]),
    EdgeConfig(
        allowed_origins=["https://app.example.com", "null", "http://LOCALHOST:*"],
        allowed_hosts=["example.com:8443", "[::1]", "localhost"],
        path_prefix="/gw/v1",
    ),
    EdgeConfig(
        supported_versions=["2025-06-18"], default_version="2025-06-18", allowed_headers=["x-a", "Content-Type"]
    ),
]

latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=40)
anything = st.text(max_size=40)  # any code point (the encoded path must hold for all)
noise = st.sampled_from(
    [" ", "\t", ",", ";", "=", '"', "\\", "%", "/", ":", "*", "[", "]", ".", "\x00", "\x7f", "é", "0", "q"]
)


def mix(*parts):
    """Text assembled from meaningful fragments and random noise."""
    return st.lists(st.one_of(*parts), max_size=8).map("".join)


frag_origin = st.sampled_from(
    [
        "http://",
        "https://",
        "localhost",
        "127.0.0.1",
        "[::1]",
        ":3000",
        ":",
        "*",
        "null",
        "app.example.com",
        "LOCALHOST",
        ":123456",
        ".evil.com",
        "HTTP://",
    ]
)
frag_accept = st.sampled_from(
    [
        "application/json",
        "text/event-stream",
        "*/*",
        "application/*",
        "text/*",
        "*/json",
        ";q=0",
        ";q=0.5",
        ";q=1.000",
        ";Q=0",
        ";q=1.5",
        ";q=abc",
        ";q=0.0001",
        ", ",
        ';x="a,b"',
        ';x="\\"',
        "text/html",
        "APPLICATION/JSON",
        ";",
        ",",
    ]
)
frag_path = st.sampled_from(
    [
        "/",
        "//",
        "mcp",
        "servers",
        "abc",
        "sse",
        "ws",
        "message",
        "health",
        "..",
        ".",
        "%2e",
        "%2F",
        "%6Dcp",
        "%zz",
        "%",
        "%4",
        "MCP",
        "gw",
        "v1",
        "a" * 65,
        "é",
        "~",
    ]
)
frag_host = st.sampled_from(
    [
        "localhost",
        "127.0.0.1",
        "[::1]",
        ":4444",
        ":",
        "evil.com",
        "[",
        "]",
        "example.com",
        ":8443",
        "LOCALHOST",
        ":abc",
        ":123456",
        ", ",
    ]
)
frag_version = st.sampled_from(["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28", "2024-11-05", " ", ", "])
frag_ctype = st.sampled_from(
    ["application/json", "Application/JSON", "; charset=utf-8", "text/plain", " ", ";", "application/json-rpc", ","]
)
frag_method = st.sampled_from(["GET", "POST", "DELETE", "OPTIONS", "PUT", "HEAD", "PATCH", ", "])
frag_reqheaders = st.sampled_from(
    ["content-type", "Mcp-Session-Id", "authorization", "x-custom", ",", " ", "X-A", "mcp-protocol-version", ", ,"]
)

VALUES = {
    "origin": mix(frag_origin, noise),
    "host": mix(frag_host, noise),
    "accept": mix(frag_accept, noise),
    "content-type": mix(frag_ctype, noise),
    "mcp-protocol-version": mix(frag_version, noise),
    "mcp-session-id": st.one_of(
        latin1, st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=250, max_size=260)
    ),
    "access-control-request-method": mix(frag_method, noise),
    "access-control-request-headers": mix(frag_reqheaders, noise),
    "last-event-id": latin1,
    "mcp-method": latin1,
    "mcp-name": anything,
    "x-other": latin1,
}


@st.composite
def header(draw):
    name = draw(st.sampled_from(sorted(VALUES)))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in name) if draw(st.booleans()) else name
    value = draw(VALUES[name])
    if draw(st.integers(0, 9)) == 0:
        value = f" \t{value}\t "
    return cased, value


@st.composite
def head(draw):
    method = draw(st.one_of(frag_method, st.sampled_from(["get", "Post", "options", "oPtIoNs", "ß"]), latin1))
    path = draw(st.one_of(mix(frag_path, noise), st.just("/mcp"), st.just("/servers/abc/mcp"), anything))
    if draw(st.booleans()) and not path.startswith("/"):
        path = "/" + path
    headers = draw(st.lists(header(), max_size=12))
    if draw(st.booleans()):
        headers.append(("origin", draw(st.sampled_from(["http://localhost:3000", "https://evil.example"]))))
        headers.append(("access-control-request-method", "POST"))
        method = "OPTIONS"
    return method, path, draw(latin1), headers


_CORES: dict[int, object] = {}


def _production_cores(component, index):
    """The backends as the middleware runs them (evaluate_raw: bytes in, contract headers only)."""
    from mcpgw.edge.wasm_core import WasmCore

    if index not in _CORES:
        python = PythonCore()
        python.configure(CONFIGS[index])
        _CORES[index] = (WasmCore(component, CONFIGS[index]), python)
    return _CORES[index]


def _as_bytes(request_head):
    method, path, query, headers = request_head
    try:
        return (
            method,
            path.encode("latin-1"),
            query.encode("latin-1"),
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        )
    except UnicodeEncodeError:
        return None  # not something an HTTP server can deliver


def _pair(component, config):
    python = PythonCore()
    python.configure(config)
    wasm = component.instantiate()
    wasm.configure_encoded(config.to_json())
    return python, wasm


@FUZZ
@given(config_index=st.integers(0, len(CONFIGS) - 1), request_head=head())
def test_backends_agree_on_generated_heads(component, config_index, request_head):
    python, wasm = _pair(component, CONFIGS[config_index])
    expected = python.evaluate(*request_head)
    got = orjson.loads(wasm.evaluate_encoded(encode_head(*request_head)))
    assert got == expected
    # And the Python fallback's own encoded path says the same.
    assert orjson.loads(python.evaluate_encoded(encode_head(*request_head))) == expected
    # And the compact encoding (what serves), host half included, on any code point.
    method, path, _, headers = request_head
    assert evaluate_compact_with(wasm.evaluate_compact, CONFIGS[config_index], method, path, headers) == expected
    # With the headers packed (values as received: the component trims them).
    assert evaluate_compact_with(wasm.evaluate_compact, CONFIGS[config_index], method, path, headers, True) == expected
    # And so do the production paths: ASGI bytes, only the contract's headers for wasm.
    raw = _as_bytes(request_head)
    if raw is not None:
        wasm_core, python_core = _production_cores(component, config_index)
        assert wasm_core.evaluate_raw(*raw) == expected
        assert python_core.evaluate_raw(*raw) == expected
        assert wasm_core.traps.total == 0


@FUZZ
@given(request_head=head())
def test_redact_raw_is_redact_of_the_contract_headers(request_head):
    """The production path's one-pass redaction (ASGI bytes) gives what `redact` gives for the
    contract's headers filtered and decoded: the same crossing pairs, the same secrets."""
    from mcpgw.edge.python_core import CONTRACT_HEADERS
    from mcpgw.edge.validate import redact, redact_raw

    raw = _as_bytes(request_head)
    if raw is None:
        return
    pairs = [(CONTRACT_HEADERS[key], v.decode("latin-1")) for n, v in raw[3] if (key := n.lower()) in CONTRACT_HEADERS]
    assert redact_raw(raw[3], CONTRACT_HEADERS) == redact(pairs)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.sampled_from(
            [
                "[]",
                '["GET","/mcp","",[]]',
                '["GET","/mcp","",[["a"]]]',
                '{"a":1}',
                '["GET","/mcp","",[["a","b",1]]]',
                '["GET",1,"",[]]',
                "null",
                '["GET","/mcp","",[]] x',
                '["\\ud800","/","",[]]',
                "[" * 300 + "]" * 300,
            ]
        ),
    )
)
def test_backends_agree_on_garbage_encoded_input(component, text):
    python, wasm = _pair(component, CONFIGS[0])
    expected = orjson.loads(python.evaluate_encoded(text.encode("utf-8")))
    got = orjson.loads(wasm.evaluate_encoded(text.encode("utf-8")))
    if "error" in expected:
        assert "error" in got and got["error"]["kind"] == expected["error"]["kind"]
    else:
        assert got == expected


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.lists(st.text(max_size=12), max_size=8).map(lambda parts: "".join(chr(len(p)) + p for p in parts)),
    )
)
def test_garbage_compact_heads_are_refused_or_evaluated_never_a_trap(component, text):
    """Any string into `evaluate-compact`: `E2` (malformed), or an outcome in the compact shape."""
    wasm = component.instantiate()
    wasm.configure_encoded(CONFIGS[0].to_json())
    out = wasm.evaluate_compact(text.encode())
    assert out == b"E2" or out[:1] in (b"F", b"P"), out
