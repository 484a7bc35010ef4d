"""In-memory MCP sessions (sessionful revisions up to 2025-11-25)."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Session:
    id: str
    revision: str
    client_info: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    initialized: bool = False


class SessionLimitReached(Exception):
    pass


def _short(value: Any) -> str:
    return value[:128] if isinstance(value, str) else ""


class SessionStore:
    def __init__(self, max_sessions: int = 10_000) -> None:
        self._sessions: dict[str, Session] = {}
        self.max_sessions = max_sessions

    def create(self, revision: str, client_info: Any = None) -> Session:
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitReached(f"{self.max_sessions} sessions are live")
        # Keep what identifies the client, bounded; not whatever else it sent.
        info = client_info if isinstance(client_info, dict) else {}
        kept = {"name": _short(info.get("name")), "version": _short(info.get("version"))}
        # token_urlsafe: 256 random bits as visible ASCII, as the spec asks of session ids.
        session = Session(secrets.token_urlsafe(32), revision, kept)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def delete(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._sessions)
