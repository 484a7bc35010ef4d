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


class SessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def create(self, revision: str, client_info: dict[str, Any] | None = None) -> Session:
        # token_urlsafe: 256 random bits as visible ASCII, as the spec asks of session ids.
        session = Session(secrets.token_urlsafe(32), revision, client_info or {})
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def delete(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._sessions)
