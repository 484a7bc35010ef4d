"""What a running request may do besides returning its result: report progress and log.

Messages go through `emit`, which the transport binds to the request's own
stream (an SSE response, or whatever the transport has); the server side never
knows which.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# RFC 5424 severities, as MCP's logging/setLevel names them, least severe first.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LOG_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}
DEFAULT_LOG_LEVEL = "info"

Emit = Callable[[dict[str, Any]], Awaitable[bool]]  # False: this request's stream cannot carry it


@dataclass
class CallContext:
    request_id: Any
    revision: str
    emit: Emit
    progress_token: Any = None
    log_level: str | None = DEFAULT_LOG_LEVEL  # None: the client asked for no log messages

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """notifications/progress, only when the caller asked for it with _meta.progressToken."""
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.emit({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

    def wants(self, level: str) -> bool:
        return self.log_level is not None and LOG_RANK[level] >= LOG_RANK[self.log_level]

    async def log(self, level: str, data: Any, logger: str = "mcpgw") -> None:
        """notifications/message, if `level` is at or above the level the client set."""
        if self.wants(level):
            await self.emit(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/message",
                    "params": {"level": level, "logger": logger, "data": data},
                }
            )
