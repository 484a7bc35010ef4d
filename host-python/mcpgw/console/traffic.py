"""The console's request counters: every HTTP response the gateway sends, by status class.

Installed outside the edge middleware (so the edge's own refusals, 403/421/431, count too) and
only when the console is on (the admin API is on): one closure and two integer increments per
request. The console page turns two readings into a rate; nothing here keeps history."""

from __future__ import annotations

import time
from typing import Any

from ..asgi import ASGIApp, Receive, Scope, Send


class Traffic:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.since = time.time()
        self.requests = 0
        self.by_class = {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        self.websockets = 0  # WebSocket handshakes (accepted or not), not in `requests`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.app(scope, receive, self._counting(send))
        elif scope["type"] == "websocket":
            self.websockets += 1
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _counting(self, send: Send) -> Send:
        async def counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.requests += 1
                key = f"{min(max(message['status'] // 100, 1), 5)}xx"
                self.by_class[key] += 1
            await send(message)

        return counting

    def snapshot(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "requests": self.requests,
            "by_class": dict(self.by_class),
            "websockets": self.websockets,
            "errors": self.by_class["4xx"] + self.by_class["5xx"],
        }
