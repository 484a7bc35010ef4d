"""MCP sessions (sessionful revisions up to 2025-11-25), in memory.

A session owns what must end with it: its running requests (tasks), the
requests it sent the client and awaits answers to, and whatever the transport
attached (its streams). Closing a session, by DELETE, idle expiry or shutdown,
ends all three.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .context import DEFAULT_LOG_LEVEL
from .jsonrpc import JsonRpcError

log = logging.getLogger("mcpgw.sessions")


class SessionLimitReached(Exception):
    pass


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
    client_info: dict[str, Any] = field(default_factory=dict)
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    server: str | None = None  # the virtual server it belongs to; None: the gateway's own /mcp
    log_level: str = DEFAULT_LOG_LEVEL
    log_level_set: bool = False  # the client chose the level (logging/setLevel)
    initialized: bool = False
    closed: bool = False
    last_active: float = field(default_factory=time.monotonic)
    tasks: dict[tuple[type, Any], asyncio.Task] = field(default_factory=dict)
    attachment: Attachment | None = None
    closers: list[Callable[[str], None]] = field(default_factory=list)  # run once, when the session ends
    _outgoing: dict[str, asyncio.Future] = field(default_factory=dict)
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

    def track(self, id_: Any, task: asyncio.Task) -> None:
        """Register a running request (until it is done) so it can be cancelled by id."""
        key = request_key(id_)
        self.tasks[key] = task

        def untrack(done: asyncio.Task) -> None:
            if self.tasks.get(key) is done:
                del self.tasks[key]

        task.add_done_callback(untrack)

    def cancel(self, id_: Any) -> bool:
        task = self.tasks.get(request_key(id_))
        if task is None or task.done():
            return False
        task.cancel("cancelled by the client")
        return True

    async def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0,
                      emit: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """Send the client a request and wait for its answer: on `emit` (the stream of the client's
        request this one serves) when given and open, else on the session's stream."""
        if self.closed:
            raise NoClientChannel("the session has ended")
        id_ = f"mcpgw-{next(self._ids)}"
        future: asyncio.Future = asyncio.get_running_loop().create_future()
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


class SessionStore:
    def __init__(self, max_sessions: int = 10_000, idle_timeout_s: float = 1800.0) -> None:
        self._sessions: dict[str, Session] = {}
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s

    def create(self, revision: str, client_info: Any = None, capabilities: Any = None,
               server: str | None = None) -> Session:
        if len(self._sessions) >= self.max_sessions:
            self.expire_idle()  # idle ones make room before anyone is refused
            if len(self._sessions) >= self.max_sessions:
                raise SessionLimitReached(f"{self.max_sessions} sessions are live")
        # token_urlsafe: 256 random bits as visible ASCII, as the spec asks of session ids.
        session = Session(secrets.token_urlsafe(32), revision, server=server)
        session.identify(revision, client_info, capabilities)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def delete(self, session_id: str, reason: str = "terminated") -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.close(reason)
        return True

    def expire_idle(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        stale = [s.id for s in self._sessions.values()
                 if now - s.last_active >= self.idle_timeout_s and not s.busy()]
        for sid in stale:
            self.delete(sid, "expired")
        if stale:
            log.info("expired %d idle session(s)", len(stale))
        return len(stale)

    async def expire_forever(self) -> None:
        interval = min(max(self.idle_timeout_s / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            try:
                self.expire_idle()
            except Exception:  # a bug here must not stop expiry for good
                log.exception("session expiry failed")

    async def broadcast(self, method: str, params: dict[str, Any] | None = None,
                        servers: Any = None) -> int:
        """Notify every session, or those of the given servers (None stands for /mcp)."""
        sent = 0
        for session in list(self._sessions.values()):
            if servers is None or session.server in servers:
                sent += await session.notify(method, params)
        return sent

    def close_all(self, reason: str) -> None:
        for sid in list(self._sessions):
            self.delete(sid, reason)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self):
        return iter(list(self._sessions.values()))

