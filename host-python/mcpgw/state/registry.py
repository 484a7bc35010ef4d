"""Where sessions live: the `SessionRegistry` interface and its in-memory implementation.

The session engine (server/engine.py) reaches sessions only through this
interface, so another implementation (shared state across processes) plugs in
here without touching the engine or any transport.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Collection
from typing import Any, Protocol

from .session import Session

log = logging.getLogger("mcpgw.sessions")


class SessionLimitReached(Exception):
    pass


class StateUnavailable(Exception):
    """The shared state backend (Redis) cannot be reached: HTTP answers 503 with Retry-After."""


class SessionRegistry(Protocol):
    """Live sessions by id."""

    def create(
        self,
        revision: str,
        transport: str,
        server: str | None,
        client_info: Any = None,
        capabilities: Any = None,
        *,
        client: str | None,
    ) -> Session:
        """A new session with a fresh random id for the client at address `client`;
        SessionLimitReached past the cap."""
        ...

    def count_client(self, client: str) -> int:
        """Live sessions of the client at this address."""
        ...

    def get(self, session_id: str) -> Session | None:
        """The session as this process holds it (no shared-state round trip)."""
        ...

    async def lookup(self, session_id: str) -> Session | None:
        """The live session, wherever it was created (refreshing its expiry); StateUnavailable
        when shared state cannot be reached."""
        ...

    async def persist(self, session: Session) -> None:
        """Make a session just created visible to every process (no-op in memory)."""
        ...

    def delete(self, session_id: str, reason: str = "terminated") -> bool:
        """End the session (its requests, its outgoing requests, its streams); False if unknown."""
        ...

    async def terminate(self, session_id: str, reason: str = "terminated") -> bool:
        """End the session everywhere before returning (DELETE); False if unknown."""
        ...

    def expire_idle(self, now: float | None = None) -> int: ...

    def make_room(self) -> int:
        """Idle expiry run by a new session at a cap (initialize): bounded in cost per request."""
        ...

    # Shared sessions only (`session.shared`; never called for this process's own sessions):
    def claim(self, session: Session, id_: Any) -> Awaitable[Any]:
        """Reserve a request id in the session across processes: awaits to true, or false when it
        runs elsewhere (a future, not a coroutine: a request may run while it is on its way)."""
        ...

    def release(self, session: Session, id_: Any) -> None:
        """Let a claimed request id go (its request is answered), without waiting: the answer goes
        out at once, and a process that finds the claim still there asks this one, which says it
        is answered (docs/scale-out.md, request ids)."""
        ...

    async def store(self, session: Session) -> None:
        """Write back what a request changed in the session record (its log level)."""
        ...

    async def forward(self, session: Session, message: dict[str, Any]) -> None:
        """A client message for a request or outgoing request that runs in another process
        (notifications/cancelled, the client's answer): hand it to that process."""
        ...

    def health(self) -> dict[str, Any]:
        """/health's `state`: the backend and whether it is reachable."""
        ...

    def start(self) -> None:
        """Background work (heartbeats, channels), once the event loop runs."""
        ...

    async def stop(self) -> None: ...

    async def broadcast(
        self, method: str, params: dict[str, Any] | None = None, servers: Collection[str | None] | None = None
    ) -> int: ...

    def close_all(self, reason: str) -> None: ...

    def __len__(self) -> int: ...


class MemorySessions:
    """Sessions in this process's memory: the embedded default."""

    def __init__(self, max_sessions: int, idle_timeout_s: float) -> None:
        self._sessions: dict[str, Session] = {}
        self._per_client: dict[str, int] = {}
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s

    def create(
        self,
        revision: str,
        transport: str,
        server: str | None,
        client_info: Any = None,
        capabilities: Any = None,
        *,
        client: str | None,
    ) -> Session:
        if len(self._sessions) >= self.max_sessions:
            self.make_room()  # idle ones make room before anyone is refused
            if len(self._sessions) >= self.max_sessions:
                raise SessionLimitReached(f"{self.max_sessions} sessions are live")
        # token_urlsafe: 256 random bits as visible ASCII, as the spec asks of session ids.
        session = Session(secrets.token_urlsafe(32), revision, transport, server=server, client=client)
        session.identify(revision, client_info, capabilities)
        self._sessions[session.id] = session
        if client is not None:
            self._per_client[client] = self._per_client.get(client, 0) + 1
        return session

    def count_client(self, client: str) -> int:
        return self._per_client.get(client, 0)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    async def lookup(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    async def persist(self, session: Session) -> None:
        return None

    async def terminate(self, session_id: str, reason: str = "terminated") -> bool:
        return self.delete(session_id, reason)

    def delete(self, session_id: str, reason: str = "terminated") -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        if session.client is not None:
            left = self._per_client[session.client] - 1
            if left:
                self._per_client[session.client] = left
            else:
                del self._per_client[session.client]
        session.close(reason)
        return True

    def make_room(self) -> int:
        return self.expire_idle()  # no keepers here: one pass over the sessions

    def expire_idle(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        stale = [s.id for s in self._sessions.values() if now - s.last_active >= self.idle_timeout_s and not s.busy()]
        for sid in stale:
            self.delete(sid, "expired")
        if stale:
            log.info("expired %d idle session(s)", len(stale))
        return len(stale)

    async def broadcast(
        self, method: str, params: dict[str, Any] | None = None, servers: Collection[str | None] | None = None
    ) -> int:
        """Notify every session, or those of the given servers (None stands for /mcp)."""
        sent = 0
        for session in list(self._sessions.values()):
            if servers is None or session.server in servers:
                sent += await session.notify(method, params)
        return sent

    def claim(self, session: Session, id_: Any) -> Awaitable[Any]:
        claimed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        claimed.set_result(True)
        return claimed

    def release(self, session: Session, id_: Any) -> None:
        return None

    async def store(self, session: Session) -> None:
        return None

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def forward(self, session: Session, message: dict[str, Any]) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"backend": "memory"}

    def close_all(self, reason: str) -> None:
        for sid in list(self._sessions):
            self.delete(sid, reason)

    def __len__(self) -> int:
        return len(self._sessions)


async def expire_forever(registry: SessionRegistry, idle_timeout_s: float) -> None:
    """Run idle expiry every quarter of the idle timeout (bounded to 50 ms .. 30 s)."""
    interval = min(max(idle_timeout_s / 4, 0.05), 30.0)
    while True:
        await asyncio.sleep(interval)
        try:
            registry.expire_idle()
        except Exception:  # a bug here must not stop expiry for good
            log.exception("session expiry failed")
