"""One server-to-client message stream with a bounded replay buffer (resumability).

A stream outlives the HTTP connections that carry it: messages published
while no connection is attached are kept (up to `max_events`, for `ttl_s`) and
a client reconnecting with `Last-Event-ID` gets exactly the ones it missed.
Event ids are `<stream id>_<sequence>`: unique within a session and naming
their stream, so an id can never select another stream's events. Sequence 0 is
the priming event, which carries no message.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import orjson

# Events a connected but slow client may fall behind by before it is cut off (with `retry`);
# bounds the memory one stalled reader can pin.
LIVE_BACKLOG = 10_000


def parse_event_id(value: str) -> tuple[str, int] | None:
    stream_id, sep, seq = value.rpartition("_")
    # isascii: str.isdigit() also accepts digits int() refuses (superscripts such as "\xb2").
    if not sep or not stream_id or not seq.isascii() or not seq.isdigit() or len(seq) > 18:
        return None
    return stream_id, int(seq)


class Listener:
    """One HTTP connection attached to a stream. `kicked` ends it (a newer one took over, or shutdown)."""

    __slots__ = ("kicked", "retry")

    def __init__(self) -> None:
        self.kicked = False
        self.retry = False


class EventStream:
    def __init__(self, stream_id: str, max_events: int, ttl_s: float) -> None:
        self.id = stream_id
        self.max_events = max_events
        self.ttl_s = ttl_s
        self._events: deque[tuple[int, float, bytes]] = deque()
        self._next_seq = 1
        self.done = False  # nothing more will be published
        self.finished_at: float | None = None
        self.listener: Listener | None = None
        # What the live connection has been sent; events after it are kept whatever the
        # retention limits say (up to `LIVE_BACKLOG` more), so a burst never costs a connected
        # client anything. A new stream holds from 0: its first connection is on its way.
        self.held: int | None = 0
        self._wake = asyncio.Event()

    def event_id(self, seq: int) -> str:
        return f"{self.id}_{seq}"

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def publish(self, message: dict[str, Any] | bytes) -> int | None:
        if self.done:
            return None  # the stream was closed under its producer (session ended): nobody to deliver to
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        seq = self._next_seq
        self._next_seq += 1
        now = time.monotonic()
        self._events.append((seq, now, data))
        self._evict(now)
        self._wake.set()
        return seq

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.finished_at = time.monotonic()
            self._wake.set()

    def _evict(self, now: float) -> None:
        events = self._events
        while events and (len(events) > self.max_events or now - events[0][1] > self.ttl_s):
            if self.held is not None and events[0][0] > self.held and len(events) <= self.max_events + LIVE_BACKLOG:
                break  # not yet sent to the connected client
            events.popleft()

    def delivered(self, seq: int) -> None:
        self.held = seq

    def after(self, seq: int) -> list[tuple[int, bytes]] | None:
        """Events after `seq`, or None if some of them are no longer retained (or `seq` never existed)."""
        if seq > self.last_seq:
            return None
        self._evict(time.monotonic())
        first_kept = self._events[0][0] if self._events else self._next_seq
        if seq + 1 < first_kept:
            return None
        return [(s, data) for s, _, data in self._events if s > seq]

    def expired(self, now: float) -> bool:
        """A finished stream nobody can resume any more."""
        return (
            self.done and self.listener is None and self.finished_at is not None and now - self.finished_at > self.ttl_s
        )

    def attach(self, listener: Listener) -> None:
        if self.listener is not None:
            self.listener.kicked = True
        self.listener = listener
        self._wake.set()

    def detach(self, listener: Listener) -> None:
        if self.listener is listener:
            self.listener = None
            self.held = None  # from now on the retention limits alone decide what a resume finds

    def kick(self, retry: bool) -> None:
        """End the attached connection (server-initiated close; `retry` asks the client to come back)."""
        if self.listener is not None:
            self.listener.kicked = True
            self.listener.retry = retry
            self._wake.set()

    async def wait(self, timeout: float | None) -> bool:
        """Until something happens on the stream; False on timeout."""
        if timeout is None:
            await self._wake.wait()
            return True
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def clear_wake(self) -> None:
        self._wake.clear()
