"""What a running request may do besides returning its result: report progress and log.

Messages go through `emit`, which the transport binds to the request's own
stream (an SSE response, or whatever the transport has); the server side never
knows which.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .input_required import InputRequired

# RFC 5424 severities, as MCP's logging/setLevel names them, least severe first.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LOG_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}
DEFAULT_LOG_LEVEL = "info"

Emit = Callable[[dict[str, Any]], Awaitable[bool]]  # False: this request's stream cannot carry it
# A session's `request`: sends the client a request (method, params, timeout=, emit=) on the stream
# of the request it serves (else the session's) and returns its answer.
AskClient = Callable[..., Awaitable[Any]]
# How long a handler waits for the client's answer to its request (elicitation, sampling, roots).
ASK_CLIENT_TIMEOUT_S = 300.0


@dataclass
class CallContext:
    # (The engine builds one per request with positional arguments, in this order: keep it.)
    request_id: Any
    revision: str
    emit: Emit
    progress_token: Any = None
    log_level: str | None = DEFAULT_LOG_LEVEL  # None: the client asked for no log messages
    client: str | None = None  # the client's address (None: unknown, stdio)
    caller: str = ""  # the principal's key, joined ("": authentication off)
    # What the client declared: the session's capabilities, or a 2026-07-28 request's envelope.
    capabilities: dict[str, Any] = field(default_factory=dict)
    ask_client: AskClient | None = None  # a session's back channel (None: 2026-07-28, stateless)
    # 2026-07-28: the client's verified inputResponses (input_required.py), keyed as we asked.
    input_responses: dict[str, Any] | None = None
    exchange: str | None = None  # the parked relayed call a verified retry continues
    # The catalog's lists may be answered as pre-serialised bytes (orjson.Fragment): set by the
    # engine when the response is serialised at once and nothing (plugins, the policy) reads it.
    lists_as_bytes: bool = False

    async def input(self, key: str, method: str, params: dict[str, Any]) -> Any:
        """The client's answer to a server-to-client request (elicitation, sampling, roots): asked
        on the session's stream, or, without one (2026-07-28), taken from the retry's
        inputResponses, the request first being answered with an InputRequiredResult."""
        if self.ask_client is not None:
            return await self.ask_client(method, params, timeout=ASK_CLIENT_TIMEOUT_S, emit=self.emit)
        if self.input_responses is not None and key in self.input_responses:
            return self.input_responses[key]
        raise InputRequired({key: {"method": method, "params": params}})

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
