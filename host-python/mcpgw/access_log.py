"""One log line per HTTP request (MCPGW_ACCESS_LOG, off by default: a line per request costs
throughput): method, path, status, duration and the caller's subject when authentication knows
it, never a token. Client-controlled text is escaped (logsafe.escape)."""

from __future__ import annotations

import logging
import time
from typing import Any

from .asgi import ASGIApp, Receive, Scope, Send
from .logsafe import escape
from .state.principal import SCOPE_KEY as PRINCIPAL_KEY

log = logging.getLogger("mcpgw.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            principal = scope.get(PRINCIPAL_KEY)  # set by the Router's auth gate on this same scope
            client = scope.get("client")
            log.info(
                "%s %s %s %d %.1fms subject=%s",
                escape(client[0] if client else "-", 64),
                escape(scope.get("method", ""), 16),
                escape(scope.get("path", ""), 200),
                status,
                (time.perf_counter() - start) * 1000,
                escape(principal.subject, 120) if principal is not None else "-",
            )
