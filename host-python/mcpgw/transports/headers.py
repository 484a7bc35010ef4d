"""2026-07-28: the `Mcp-Method` and `Mcp-Name` headers must say what the body says.

Intermediaries route on these headers without reading bodies, so a request
whose headers and body disagree is refused (400, -32020) rather than served
by whichever one a component happens to read.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..edge.contract import RequestContext

HEADER_MISMATCH = -32020

# Method -> the params field mirrored in Mcp-Name.
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

# Non-ASCII values travel as `=?base64?<utf-8 bytes, base64>?=`.
_B64_SENTINEL = re.compile(r"=\?base64\?(?P<payload>.*)\?=")


class HeaderMismatch(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = HEADER_MISMATCH
        self.message = message


def decode_header_value(value: str) -> str | None:
    """The header's text; None when a base64 sentinel is malformed (so it never matches by accident)."""
    found = _B64_SENTINEL.fullmatch(value)
    if found is None:
        return value
    payload = found.group("payload")
    try:
        raw = base64.b64decode(payload, validate=True)
        if base64.b64encode(raw).decode("ascii") != payload:
            return None  # non-canonical: the encoder never writes it
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def check_stateless_headers(ctx: RequestContext, message: Any) -> None:
    """Raise HeaderMismatch if the routing headers disagree with the (single) message."""
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return  # a response to the server: no method to mirror
    method = message["method"]
    if ctx["mcp_method"] is None:
        raise HeaderMismatch("Mcp-Method header is required")
    if ctx["mcp_method"] != method:
        raise HeaderMismatch("Mcp-Method header does not match the request body's method")
    key = NAME_BEARING_METHODS.get(method)
    params = message.get("params")
    if key is None or not isinstance(params, dict) or params.get(key) is None:
        return
    if ctx["mcp_name"] is None:
        raise HeaderMismatch(f"Mcp-Name header is required for {method}")
    if decode_header_value(ctx["mcp_name"]) != params[key]:
        raise HeaderMismatch(f"Mcp-Name header does not match the request body's {key!r} parameter")

