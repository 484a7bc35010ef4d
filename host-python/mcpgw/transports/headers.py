"""2026-07-28: every request carries its own envelope, and the `MCP-Protocol-Version`,
`Mcp-Method` and `Mcp-Name` headers must say what the body says.

Intermediaries route on these headers without reading bodies, so a request
whose headers and body disagree is refused (400, -32020) rather than served
by whichever one a component happens to read.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from ..edge.contract import RequestContext
from ..server.jsonrpc import HEADER_MISMATCH, INVALID_PARAMS, UNSUPPORTED_PROTOCOL_VERSION
from ..server.stateless import CLIENT_CAPABILITIES_KEY, PROTOCOL_VERSION_KEY

# Method -> the params field mirrored in Mcp-Name.
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

# Non-ASCII values travel as `=?base64?<utf-8 bytes, base64>?=`.
_B64_SENTINEL = re.compile(r"=\?base64\?(?P<payload>.*)\?=")


class Rejection(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


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
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text in the payload
        return None


def check_stateless_request(ctx: RequestContext, message: Any, supported: tuple[str, ...]) -> None:
    """2026-07-28's checks of one message against its headers, in the MCP SDK's order
    (envelope, then headers, then version), so both report the same first failure."""
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return  # a response to the server: the transport refuses those separately
    method = message["method"]
    params = message.get("params")
    meta: dict[str, Any] = {}
    if "id" in message:  # requests carry the per-request envelope
        found = params.get("_meta") if isinstance(params, dict) else None
        if not isinstance(found, dict):
            raise Rejection(
                INVALID_PARAMS,
                f"params._meta must be an object carrying {PROTOCOL_VERSION_KEY!r} and {CLIENT_CAPABILITIES_KEY!r}",
            )
        meta = found
        missing = [k for k in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if k not in meta]
        if missing:
            raise Rejection(INVALID_PARAMS, f"params._meta is missing {', '.join(missing)}")
        if ctx["protocol_version"] != meta[PROTOCOL_VERSION_KEY]:
            raise Rejection(
                HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta's protocol version"
            )
    if ctx["mcp_method"] is None:
        raise Rejection(HEADER_MISMATCH, "Mcp-Method header is required")
    if ctx["mcp_method"] != method:
        raise Rejection(HEADER_MISMATCH, "Mcp-Method header does not match the request body's method")
    key = NAME_BEARING_METHODS.get(method)
    if (
        key is not None
        and isinstance(params, dict)
        and params.get(key) is not None
        and (ctx["mcp_name"] is None or decode_header_value(ctx["mcp_name"]) != params[key])
    ):
        raise Rejection(HEADER_MISMATCH, f"Mcp-Name header does not match the request body's {key!r} parameter")
    if "id" in message and meta[PROTOCOL_VERSION_KEY] not in supported:
        raise Rejection(
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": list(supported), "requested": meta[PROTOCOL_VERSION_KEY]},
        )
