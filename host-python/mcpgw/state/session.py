"""One MCP session (sessionful revisions up to 2025-11-25) as this process holds it.

A session owns what must end with it: its running requests (tasks), the
requests it sent the client and awaits answers to, and whatever the transport
attached (its streams). Closing a session, by DELETE, idle expiry, the client
going away or shutdown, ends all three. A session belongs to the transport
and endpoint that created it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..server.context import DEFAULT_LOG_LEVEL
from ..server.jsonrpc import JsonRpcError
from ..state.principal import Principal

log = logging.getLogger("mcpgw.sessions")


class NoClientChannel(Exception):
    """The session has no stream on which to send the client a request."""


class Attachment(Protocol):
    """Transport state bound to a session (its streams)."""

    def busy(self) -> bool: ...
    def close(self, reason: str) -> None: ...
    async def send(self, message: dict[str, Any]) -> bool: ...


def _short(value: Any) -> str:
    return value[:128] if isinstance(value, str) else ""


def request_key(id_: Any) -> tuple[type, Any]:
    """JSON-RPC ids 1 and "1" are different requests."""
    return (type(id_), id_)


@dataclass(eq=False)
class Session:
    id: str
    revision: str
    transport: str  # the transport that created it ("streamable-http", "sse", "websocket", "stdio")
    client_info: dict[str, Any] = field(default_factory=dict)
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    server: str | None = None  # the virtual server it belongs to; None: the gateway's own /mcp
    client: str | None = None  # the client's address (scope["client"][0]); None: none (stdio)
    principal: Principal | None = None  # who opened it (None: auth off); only that caller finds it again
    log_level: str = DEFAULT_LOG_LEVEL
    log_level_set: bool = False  # the client chose the level (logging/setLevel)
    ready: bool = False  # initialize answered: requests other than ping may run
    initialized: bool = False  # the client sent notifications/initialized
    closed: bool = False
    shared: bool = False  # its record lives in shared state (Redis): other processes serve it too
    outgoing_prefix: str = "mcpgw-"  # of the ids of requests sent to the client (shared: names this process)
    last_active: float = field(default_factory=time.monotonic)
    tasks: dict[tuple[type, Any], asyncio.Task[Any]] = field(default_factory=dict)
    attachment: Attachment | None = None
    closers: list[Callable[[str], None]] = field(default_factory=list)  # run once, when the session ends
    # Shared sessions: something in this process that other processes reach the session through (a
    # stdio upstream's process, an upstream session's GET stream). While one answers True, idle expiry
    # here does not forget this process's copy; it ends it only once the record is gone everywhere.
    keepers: list[Callable[[], bool]] = field(default_factory=list)
    _outgoing: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    _ids: Any = field(default_factory=itertools.count)

    def identify(self, revision: str, client_info: Any, capabilities: Any) -> None:
        """What initialize told us: the revision, and the client (bounded: not whatever else it sent).
        Capabilities are kept whole: a relay offers upstreams exactly what this client can do."""
        info = client_info if isinstance(client_info, dict) else {}
        self.revision = revision
        self.client_info = {"name": _short(info.get("name")), "version": _short(info.get("version"))}
        self.client_capabilities = dict(capabilities) if isinstance(capabilities, dict) else {}

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def busy(self) -> bool:
        return bool(self.tasks) or bool(self._outgoing) or (self.attachment is not None and self.attachment.busy())

    def running(self, id_: Any) -> bool:
        return request_key(id_) in self.tasks

    def track(self, id_: Any, task: asyncio.Task[Any]) -> None:
        """Register a running request (until it is done) so it can be cancelled by id."""
        key = request_key(id_)
        self.tasks[key] = task

        def untrack(done: asyncio.Task[Any]) -> None:
            if self.tasks.get(key) is done:
                del self.tasks[key]

        task.add_done_callback(untrack)

    def hold(self, id_: Any, task: asyncio.Task[Any]) -> None:
        """Register a request answered inside `task`, which goes on after it (a connection's own
        task): cancellable by id until `release_hold`, not until the task ends."""
        self.tasks[request_key(id_)] = task

    def release_hold(self, id_: Any, task: asyncio.Task[Any]) -> None:
        key = request_key(id_)
        if self.tasks.get(key) is task:
            del self.tasks[key]

    def cancel(self, id_: Any) -> bool:
        task = self.tasks.get(request_key(id_))
        if task is None or task.done():
            return False
        task.cancel("cancelled by the client")
        return True

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float = 30.0,
        emit: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Any:
        """Send the client a request and wait for its answer: on `emit` (the stream of the client's
        request this one serves) when given and open, else on the session's stream."""
        if self.closed:
            raise NoClientChannel("the session has ended")
        id_ = f"{self.outgoing_prefix}{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._outgoing[id_] = future
        try:
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
            if params is not None:
                message["params"] = params
            sent = emit is not None and await emit(message)
            if not sent and (self.attachment is None or not await self.attachment.send(message)):
                raise NoClientChannel("the session has no open stream")
            return await asyncio.wait_for(future, timeout)
        finally:
            self._outgoing.pop(id_, None)

    def resolve(self, message: dict[str, Any]) -> bool:
        """Hand a client's response to the request waiting for it; False if none waits."""
        future = self._outgoing.get(message["id"]) if isinstance(message["id"], str) else None
        if future is None or future.done():
            return False
        if "error" in message:
            err = message["error"] if isinstance(message["error"], dict) else {}
            future.set_exception(JsonRpcError(err.get("code", 0), str(err.get("message", "")), err.get("data")))
        else:
            future.set_result(message.get("result"))
        return True

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> bool:
        """A notification not tied to any request (list_changed, logging): on the session's stream."""
        if self.closed or self.attachment is None:
            return False
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        return await self.attachment.send(message)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        for closer in self.closers:
            try:
                closer(reason)
            except Exception:  # one failing closer must not keep the rest from running
                log.exception("closing session %s", self.id)
        for task in list(self.tasks.values()):
            task.cancel(f"session {reason}")
        for future in self._outgoing.values():
            if not future.done():
                future.set_exception(NoClientChannel(f"session {reason}"))
        if self.attachment is not None:
            self.attachment.close(reason)
