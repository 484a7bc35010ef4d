"""Secrets never reach the log: a filter on every handler that masks credentials inside URLs.

Libraries log URLs as they use them (httpx writes `HTTP Request: POST http://user:pass@host/
mcp?api_key=...` at INFO for every upstream call), so an upstream URL with userinfo or a key in
its query would leak on every request. The filter rewrites each record's final message:
userinfo becomes `***@`, and the values of query parameters whose names say secret become `***`.
"""

from __future__ import annotations

import logging
import re

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
