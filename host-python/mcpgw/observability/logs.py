"""Log formats (`MCPGW_LOG_FORMAT=text|json`) and the request's fields on log lines.

- text: `<time> <LEVEL> <logger>: <message>`, as always.
- json: one JSON object per line: `ts` (UTC, ISO 8601, milliseconds), `level`, `logger`,
  `message`, `request_id` while a request runs (request_id.current) and `principal` once
  authentication knows the caller (the same `request_id.Tag`), the fields a line was
  given with `extra={"request": {...}}` (the access log: route, method, path, status,
  duration_ms, client, principal), and `exception` when there is one.

Both formats go through the same filters (logsafe.install: URL secrets, bearer credentials,
WebSocket handshake headers and frames are masked before any formatter sees a record).
uvicorn's loggers propagate to the same root handler (cli.py passes uvicorn no log config), so
its lines are formatted and filtered the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from .. import logsafe
from . import request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        tag = request_id.current.get()
        rid = getattr(record, "request_id", None) or (tag.id if tag is not None else None)
        if rid is not None:
            line["request_id"] = rid
            if tag is not None and tag.principal is not None:
                line["principal"] = logsafe.escape(tag.principal, 120)
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = logsafe.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = logsafe.redact(record.exc_text)
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, log_format: str) -> None:
    """One stderr handler on the root logger with the chosen format and the secret filters
    (mcpgw serve and mcpgw stdio: stdout may be the MCP stream)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logsafe.install()
