"""The streams a session owns: its GET stream and the SSE responses to its POSTs in
Streamable HTTP (kept for resumption until they finish and their events expire), or
the one stream of a legacy HTTP+SSE connection. Delivery of what the server sends on
its own initiative goes to the session stream (`GET_STREAM_ID`)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from .budget import EventBudget
from .events import EventStream

GET_STREAM_ID = "0"
# Finished streams kept per session for resumption, beyond which the oldest are dropped.
MAX_STREAMS = 64


class SessionStreams:
    """Implements `state.session.Attachment` for one session."""

    def __init__(self, max_events: int, ttl_s: float, budget: EventBudget) -> None:
        self.max_events = max_events
        self.ttl_s = ttl_s
        self.budget = budget
        self.bytes = budget.session()  # what this session's streams retain (MCPGW_EVENT_STORE_MAX_SESSION_BYTES)
        self.streams: dict[str, EventStream] = {}
        self._ids = itertools.count(1)
        self.closed = False

    def new_stream(self) -> EventStream:
        """A stream for a POST's SSE response (not registered until `register`)."""
        return EventStream(str(next(self._ids)), self.max_events, self.ttl_s, self.budget, self.bytes)

    def register(self, stream: EventStream, requests: Sequence[Any] = ()) -> None:
        """Keep a POST's SSE response for resumption; `requests`: the ids it answers."""
        self._prune()
        self.streams[stream.id] = stream

    def get_stream(self) -> EventStream:
        stream = self.streams.get(GET_STREAM_ID)
        if stream is None:
            stream = self.streams[GET_STREAM_ID] = EventStream(
                GET_STREAM_ID, self.max_events, self.ttl_s, self.budget, self.bytes
            )
        return stream

    def _prune(self) -> None:
        now = time.monotonic()
        for sid in [sid for sid, s in self.streams.items() if s.expired(now)]:
            self.streams.pop(sid).discard()
        # Too many retained: drop the oldest finished ones (ids grow, dicts keep insertion order).
        finished = [sid for sid, s in self.streams.items() if s.done and s.listener is None]
        for sid in finished[: max(0, len(self.streams) - MAX_STREAMS)]:
            self.streams.pop(sid).discard()

    # -- Attachment --------------------------------------------------------
    def busy(self) -> bool:
        return any(s.listener is not None or (not s.done and s.id != GET_STREAM_ID) for s in self.streams.values())

    async def send(self, message: dict[str, Any]) -> bool:
        stream = self.streams.get(GET_STREAM_ID)
        if self.closed or stream is None or stream.done:
            return False
        stream.publish(message)
        return True

    def close(self, reason: str) -> None:
        self.closed = True
        # The client asked for the end (DELETE): nothing to come back for. Otherwise
        # (expiry, shutdown) the close is ours, and the client hears `retry` first.
        retry = reason != "terminated"
        for stream in self.streams.values():
            stream.kick(retry)
            stream.discard()  # the session is gone: nothing can be resumed
