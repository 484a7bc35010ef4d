"""One log line per HTTP request and WebSocket handshake (MCPGW_ACCESS_LOG, off by default: a line
per request costs throughput), written by the observer (observability/observer.py), so the edge's
own answers (preflights, 403/421/431) have one too: client, method, path (never the query),
status, duration, route, the caller's subject when authentication knows it (never a token) and
the request id. Client-controlled text is escaped (logsafe.escape). In JSON (MCPGW_LOG_FORMAT=json)
the same values are fields of the line."""

from __future__ import annotations

import logging

from .asgi import Scope
from .logsafe import escape

log = logging.getLogger("mcpgw.access")


def write(rid: str, scope: Scope, route: str, status: int, seconds: float, subject: str | None) -> None:
    client = scope.get("client")
    fields = {
        "client": escape(client[0] if client else "-", 64),
        "method": escape(scope.get("method", "GET"), 16),
        "path": escape(scope.get("path", ""), 200),
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "route": route,
        "principal": escape(subject, 120) if subject is not None else None,
    }
    log.info(
        "%s %s %s %d %.1fms subject=%s route=%s request_id=%s",
        fields["client"],
        fields["method"],
        fields["path"],
        status,
        seconds * 1000,
        fields["principal"] or "-",
        route,
        rid,
        extra={"request": fields},
    )
