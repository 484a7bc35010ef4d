"""What may reach the log: text others control is escaped to one line, and secrets are masked.

`escape` makes client-, upload- or plugin-controlled text safe for one log line (a newline in a
request path or an upload's name can never forge a second line).

The `RedactSecrets` filter, on every handler, masks credentials inside URLs.

Libraries log URLs as they use them (httpx writes `HTTP Request: POST http://user:pass@host/
mcp?api_key=...` at INFO for every upstream call), so an upstream URL with userinfo or a key in
its query would leak on every request. The filter rewrites each record's final message:
userinfo becomes `***@`, the values of query parameters whose names say secret (or name a
session, such as legacy SSE's `session_id`) become `***`, and so does a `Bearer` credential.

The `ProtocolSecrets` filter, on every handler too, masks what the WebSocket library writes at
debug level through uvicorn's logger: every handshake header value but a few harmless ones
(`Authorization`, `Cookie`, `X-Api-Key` and any other header never reach the log), the query of
the request line, and frame payloads (only their kind and size are logged); the query of every
path uvicorn's own lines carry (`"WebSocket /ws?..." [accepted]`); and the JSON-RPC messages the
MCP SDK's client transports write at debug level for every upstream request and answer (a
client's tool arguments, relayed upstream, would be in them): only their length is logged.
"""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile(r"[^\x20-\x7e]")


def escape(text: object, limit: int = 200) -> str:
    """`text` as one printable-ASCII line of at most `limit` characters: control characters
    (CR, LF, NUL, ...) and non-ASCII become `\\xNN`/`\\uNNNN` escapes."""
    s = str(text)
    clipped = len(s) > limit
    s = _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s[:limit])
    return s + "..." if clipped else s


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_NAMES = r"(?:key|token|secret|password|passwd|pwd|auth|signature|sig|session)"
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[a-z0-9_-]*" + _SECRET_NAMES + r"[a-z0-9_-]*)=)[^&#\s]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>\bbearer\s+)[^\s,;\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _BEARER.sub(r"\g<scheme>***", _SECRET_PARAM.sub(r"\g<name>***", _USERINFO.sub(r"\g<scheme>***@", text)))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# Handshake headers whose values may be logged: none of them carries a credential.
_HARMLESS_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "origin",
        "user-agent",
        "date",
        "server",
        "content-type",
        "content-length",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    }
)
# The websockets library's debug lines (websockets 17: server.py, client.py, protocol.py).
_HEADER_LINES = frozenset({"< %s: %s", "> %s: %s"})
_REQUEST_LINES = frozenset({"< %s %s %s", "> GET %s HTTP/1.1"})
_FRAME_LINES = frozenset({"< %s", "> %s"})
_PATH_QUERY = re.compile(r"^(/[^?\s]*)\?\S*")
# The MCP SDK's client transports (mcp 2.3: client/streamable_http.py, client/sse.py) log whole
# messages at debug level, formatted into the message (f-strings): what precedes the payload.
_SDK_MESSAGE_LINES = ("Sending client message: ", "SSE message: ", "Received server message: ")


def _mask_query(value: object) -> object:
    return _PATH_QUERY.sub(r"\1?***", value) if isinstance(value, str) else value


class ProtocolSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("mcp.") and isinstance(record.msg, str):
            for prefix in _SDK_MESSAGE_LINES:
                if record.msg.startswith(prefix):
                    record.msg = f"{prefix}[{len(record.msg) - len(prefix)} characters, not logged]"
                    record.args = None
                    break
            return True
        if not record.name.startswith(("uvicorn", "websockets")) or not isinstance(record.args, tuple):
            return True
        msg, args = record.msg, record.args
        if msg in _HEADER_LINES and len(args) == 2:
            if str(args[0]).lower() not in _HARMLESS_HEADERS:
                record.args = (args[0], "***")
        elif msg in _FRAME_LINES and len(args) == 1 and hasattr(args[0], "opcode"):
            opcode, data = getattr(args[0], "opcode", None), getattr(args[0], "data", b"")
            record.args = (f"{getattr(opcode, 'name', opcode)} [{len(data)} bytes, not logged]",)
        elif msg in _REQUEST_LINES or (isinstance(msg, str) and "WebSocket %s" in msg):
            record.args = tuple(_mask_query(a) for a in args)
        return True


def install() -> None:
    """On every handler of the root logger (after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ProtocolSecrets) for f in handler.filters):
            handler.addFilter(ProtocolSecrets())  # first: it rewrites arguments, RedactSecrets the message
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
