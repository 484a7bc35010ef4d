"""JSON-RPC 2.0 message shapes and error codes (no transport, no HTTP)."""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Defined by MCP 2026-07-28.
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022


class JsonRpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def error_response(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": JsonRpcError(code, message, data).to_error()}


def result_response(id_: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "result": result}


def valid_id(id_: Any) -> bool:
    """MCP: an id is a string or an integer (unlike base JSON-RPC, never null; never a boolean)."""
    return isinstance(id_, str) or (isinstance(id_, int) and not isinstance(id_, bool))


def classify(message: Any) -> str:
    """'request', 'notification', 'response' or 'invalid' for one decoded message, by MCP's rules."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return "invalid"
    # (One lookup per member, the message itself standing for "absent", and valid_id inline:
    # this runs for every message.)
    id_ = message.get("id", message)
    has_id = id_ is not message
    if has_id and not (isinstance(id_, str) or (isinstance(id_, int) and not isinstance(id_, bool))):
        return "invalid"
    method = message.get("method", message)
    if method is not message:
        if not isinstance(method, str):
            return "invalid"
        params = message.get("params", message)
        if params is not message and not isinstance(params, (dict, list)):
            return "invalid"
        return "request" if has_id else "notification"
    if has_id and ("result" in message) != ("error" in message):
        return "response"
    return "invalid"
