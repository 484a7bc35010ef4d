"""One server-to-client message stream with a bounded replay buffer (resumability).

A stream outlives the HTTP connections that carry it: messages published
while no connection is attached are kept (up to `max_events`, for `ttl_s`, and
within the byte budgets of `state.budget`) and a client reconnecting with
`Last-Event-ID` gets exactly the ones it missed. Event ids are
`<stream id>_<sequence>`: unique within a session and naming their stream, so
an id can never select another stream's events. Sequence 0 is the priming
event, which carries no message.

Retention limits never evict what the connected reader has not been sent yet;
that is bounded per reader by `EventBudget.slow_reader_max_bytes` (and
`LIVE_BACKLOG` events): a reader past it is cut off (its connection ends with
`retry`, a resume finds the events gone). Producers may wait for room first
(`room`), so that a reader that keeps reading is never cut off.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from typing import Any

import orjson

from .budget import EVENT_OVERHEAD, EventBudget, SessionBudget

# Events a connected but slow client may fall behind by, beyond `max_events`, before it is
# cut off (with `retry`); bytes are bounded by `EventBudget.slow_reader_max_bytes`.
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


class _Held:
    """The bytes a stream holds, apart from the stream, so that they are released from the
    budgets when the stream is dropped without `discard` (garbage-collected)."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


def _release(budget: EventBudget, held: _Held, session: SessionBudget | None) -> None:
    budget.release(held.bytes, session)
    held.bytes = 0


# (sequence, publish time, data, bytes charged)
Event = tuple[int, float, bytes, int]


class EventStream:
    def __init__(
        self, stream_id: str, max_events: int, ttl_s: float, budget: EventBudget, session: SessionBudget | None
    ) -> None:
        self.id = stream_id
        self.max_events = max_events
        self.ttl_s = ttl_s
        self.budget = budget
        self.session = session
        self._events: deque[Event] = deque()
        self._next_seq = 1
        self.done = False  # nothing more will be published
        self.finished_at: float | None = None
        self.listener: Listener | None = None
        # What the live connection has been sent; events after it are never evicted by the
        # retention limits (the reader's own bound applies), so a burst never costs a connected
        # client anything. A new stream holds from 0: its first connection is on its way.
        self.held: int | None = 0
        self._unsent = 0  # bytes of the events after `held`
        self.cut = False  # a reader of this stream fell past its bound
        self._held = _Held()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        budget.join(self, session)
        weakref.finalize(self, _release, budget, self._held, session)

    def event_id(self, seq: int) -> str:
        return f"{self.id}_{seq}"

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def retained_bytes(self) -> int:
        return self._held.bytes

    @property
    def unsent_bytes(self) -> int:
        return self._unsent

    def publish(self, message: dict[str, Any] | bytes) -> int | None:
        if self.done:
            return None  # the stream was closed under its producer (session ended): nobody to deliver to
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        seq = self._next_seq
        self._next_seq += 1
        now = time.monotonic()
        size = len(data) + EVENT_OVERHEAD
        self._events.append((seq, now, data, size))
        self._charge(size)
        if self.held is not None:
            self._unsent += size
            self._bound_reader()
        self._evict(now)
        if self.session is not None:
            self.session.enforce()
        self.budget.enforce()
        self._wake.set()
        return seq

    def publish_at(self, seq: int, data: bytes) -> int | None:
        """Publish an event whose sequence was given elsewhere (a stream mirrored from shared
        state): an older one is a duplicate; a gap means events in between are gone, and so is
        what came before them (a reader behind the gap ends with `retry`)."""
        if seq < self._next_seq:
            return None
        if seq > self._next_seq:
            while self._events:
                self._pop()
            self._next_seq = seq
            self.held = min(self.held, seq - 1) if self.held is not None else None
        return self.publish(data)

    def continue_after(self, seq: int) -> None:
        """An empty stream continues one kept elsewhere, whose last event is `seq`."""
        assert not self._events
        self._next_seq = seq + 1
        self.held = seq if self.held is not None else None

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.finished_at = time.monotonic()
            self._wake.set()
            self._room.set()

    def discard(self) -> None:
        """Nobody can resume this stream any more: finish it and free what it retains."""
        self.finish()
        self._events.clear()
        self._unsent = 0
        self._charge(-self._held.bytes)

    # -- accounting and eviction --------------------------------------------------
    def _charge(self, size: int) -> None:
        self._held.bytes += size
        if size >= 0:
            self.budget.charge(size, self.session)
        else:
            self.budget.release(-size, self.session)

    def _pop(self) -> None:
        seq, _, _, size = self._events.popleft()
        if self.held is not None and seq > self.held:
            self._unsent -= size
        self._charge(-size)

    def _evictable(self) -> bool:
        """The oldest event may go: the connected reader has it, or no reader is connected."""
        return bool(self._events) and (self.held is None or self._events[0][0] <= self.held)

    def _evict(self, now: float) -> None:
        """The stream's own limits: count, age, `max_stream_bytes`; only what is evictable."""
        events = self._events
        limit = self.budget.max_stream_bytes
        while events and (len(events) > self.max_events or now - events[0][1] > self.ttl_s or self._held.bytes > limit):
            if not self._evictable():
                break  # not yet sent to the connected client
            self._pop()

    def _bound_reader(self) -> None:
        """The connected reader may fall behind by `slow_reader_max_bytes` (and LIVE_BACKLOG
        events, beyond max_events); past that its oldest unsent events go, and with them the
        reader (it finds the gap and ends with `retry`). One message alone always fits."""
        held = self.held
        assert held is not None
        limit = self.budget.slow_reader_max_bytes
        max_count = self.max_events + LIVE_BACKLOG

        def unsent_count() -> int:
            first = self._events[0][0] if self._events else self._next_seq
            return self.last_seq - max(held, first - 1)

        if self._unsent <= limit and unsent_count() <= max_count:
            return
        lost = False  # an event the reader has not been sent
        while len(self._events) > 1 and (self._unsent > limit or unsent_count() > max_count):
            lost = lost or self._events[0][0] > held
            self._pop()
        if lost and not self.cut:
            self.cut = True
            self.budget.readers_cut += 1
            self._wake.set()
            self._room.set()

    def eviction_rank(self) -> tuple[int, float] | None:
        if not self._evictable():
            return None
        tier = 0 if self.done and self.listener is None else 1 if self.listener is None else 2
        return tier, self._events[0][1]

    def evict_bytes(self, wanted: int) -> int:
        freed = 0
        while freed < wanted and self._evictable():
            freed += self._events[0][3]
            self._pop()
        return freed

    # -- readers -----------------------------------------------------------------------
    def delivered(self, seq: int) -> None:
        """The connected reader has been sent everything up to `seq`."""
        old = self.held
        self.held = seq
        if old is not None and seq >= old:
            first = self._events[0][0] if self._events else self._next_seq
            for i in range(max(old + 1, first) - first, min(seq + 1, self._next_seq) - first):
                self._unsent -= self._events[i][3]
        else:
            self._unsent = sum(size for s, _, _, size in self._events if s > seq)
        self._evict(time.monotonic())  # a message larger than the budgets is not kept once sent
        self._room.set()

    def after(self, seq: int) -> list[tuple[int, bytes]] | None:
        """Events after `seq`, or None if some of them are no longer retained (or `seq` never existed)."""
        if seq > self.last_seq:
            return None
        self._evict(time.monotonic())
        first_kept = self._events[0][0] if self._events else self._next_seq
        if seq + 1 < first_kept:
            return None
        events = self._events  # sequences are contiguous: the last `last_seq - seq` events
        return [(events[-k][0], events[-k][2]) for k in range(self.last_seq - seq, 0, -1)]

    async def room(self, size: int, timeout: float) -> bool:
        """Until the connected reader has room for `size` more bytes within its bound (or no
        reader is connected, or the stream ended); False after `timeout` seconds without."""
        deadline = time.monotonic() + timeout
        while (
            self.held is not None
            and not self.done
            and not self.cut
            and self._unsent > 0
            and self._unsent + size > self.budget.slow_reader_max_bytes
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def expired(self, now: float) -> bool:
        """A finished stream nobody can resume any more."""
        return (
            self.done and self.listener is None and self.finished_at is not None and now - self.finished_at > self.ttl_s
        )

    def attach(self, listener: Listener) -> None:
        if self.listener is not None:
            self.listener.kicked = True
        self.listener = listener
        self.cut = False
        self._wake.set()

    def detach(self, listener: Listener) -> None:
        if self.listener is listener:
            self.listener = None
            self.held = None  # from now on the retention limits alone decide what a resume finds
            self._unsent = 0
            self._evict(time.monotonic())
            self._room.set()

    def kick(self, retry: bool) -> None:
        """End the attached connection (server-initiated close; `retry` asks the client to come back)."""
        if self.listener is not None:
            self.listener.kicked = True
            self.listener.retry = retry
            self._wake.set()
            self._room.set()

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
