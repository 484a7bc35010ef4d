"""What may reach the log: text others control is escaped to one line, and secrets are masked.

`escape` makes client-, upload- or plugin-controlled text safe for one log line (a newline in a
request path or an upload's name can never forge a second line).

The `RedactSecrets` filter, on every handler, masks credentials inside URLs.

Libraries log URLs as they use them (httpx writes `HTTP Request: POST http://user:pass@host/
mcp?api_key=...` at INFO for every upstream call), so an upstream URL with userinfo or a key in
its query would leak on every request. The filter rewrites each record's final message:
userinfo becomes `***@`, and the values of query parameters whose names say secret become `***`.
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
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[a-z0-9_-]*(?:key|token|secret|password|passwd|pwd|auth|signature|sig)[a-z0-9_-]*)=)[^&#\s]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    return _SECRET_PARAM.sub(r"\g<name>***", _USERINFO.sub(r"\g<scheme>***@", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install() -> None:
    """On every handler of the root logger (after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
