"""The event store's byte accounting: what retained events may cost, per stream, per
session and for the whole process, and who pays when a budget is hit.

Every `EventStream` charges the bytes it holds (each event's data plus `EVENT_OVERHEAD`)
to its session's `SessionBudget`, if any, and to the one `EventBudget` of the process.
When a budget is exceeded, retained events are evicted in this order:

1. events of FINISHED streams with no reader connected, oldest first;
2. events of streams with no reader connected, oldest first;
3. events a connected reader has already been sent (kept only for a resume).

Events a connected reader has not been sent yet are never evicted for a budget: a reader
is never cut off for someone else's retention. What a reader has not been sent is bounded
per reader instead (`slow_reader_max_bytes`): past it the reader is cut off (its stream
ends with `retry`; a resume finds the events gone and gets 400). A single message larger
than any budget still reaches a connected reader; it is evicted once sent.

The process budget is a hard cap on retention whatever the number of sessions: the
per-session and per-stream budgets only decide who is evicted first. A store that keeps
events elsewhere (Redis) implements the same accounting: `charge`, `release`, `enforce`.
"""

from __future__ import annotations

import weakref
from typing import Protocol

# What one retained event costs beyond its data (the tuple, two ints, a float, the deque
# slot, the bytes object's header); an estimate, so that many tiny events are counted too.
EVENT_OVERHEAD = 160


class Retaining(Protocol):
    """A stream as the budgets see it (state.events.EventStream)."""

    @property
    def retained_bytes(self) -> int: ...

    def eviction_rank(self) -> tuple[int, float] | None:
        """(tier, time of the oldest evictable event), lower first; None: nothing evictable."""
        ...

    def evict_bytes(self, wanted: int) -> int:
        """Evict evictable events, oldest first, until `wanted` bytes are freed; the bytes freed."""
        ...


def _evict(streams: list[Retaining], wanted: int) -> int:
    """Free `wanted` bytes from `streams`, best victims first; the bytes freed."""
    ranked = [(rank, i) for i, s in enumerate(streams) if (rank := s.eviction_rank()) is not None]
    ranked.sort()
    freed = 0
    for _, i in ranked:
        if freed >= wanted:
            break
        freed += streams[i].evict_bytes(wanted - freed)
    return freed


class SessionBudget:
    """The bytes one session's streams retain."""

    __slots__ = ("__weakref__", "budget", "bytes", "streams")

    def __init__(self, budget: EventBudget) -> None:
        self.budget = budget
        self.bytes = 0
        self.streams: weakref.WeakSet[Retaining] = weakref.WeakSet()

    def enforce(self) -> None:
        limit = self.budget.max_session_bytes
        if self.bytes > limit:
            self.budget.count_eviction(_evict(list(self.streams), self.bytes - limit))


class EventBudget:
    """The process's event bytes: one object shared by every stream of the process."""

    def __init__(
        self,
        max_bytes: int,
        max_session_bytes: int,
        max_stream_bytes: int,
        slow_reader_max_bytes: int,
        slow_reader_wait_s: float,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_session_bytes = max_session_bytes
        self.max_stream_bytes = max_stream_bytes
        self.slow_reader_max_bytes = slow_reader_max_bytes
        self.slow_reader_wait_s = slow_reader_wait_s
        self.used = 0  # every event byte held in the process, sent or not
        self.peak = 0
        self.evicted_bytes = 0  # retained bytes evicted for a budget (any of the three)
        self.readers_cut = 0  # readers cut off past slow_reader_max_bytes
        self._streams: weakref.WeakSet[Retaining] = weakref.WeakSet()
        # Above max_bytes only what no budget may evict (unsent bytes of connected readers)
        # is left: scan again only once that has grown by an eighth of the budget.
        self._threshold = max_bytes

    def session(self) -> SessionBudget:
        return SessionBudget(self)

    def join(self, stream: Retaining, session: SessionBudget | None) -> None:
        self._streams.add(stream)
        if session is not None:
            session.streams.add(stream)

    def charge(self, nbytes: int, session: SessionBudget | None) -> None:
        self.used += nbytes
        self.peak = max(self.peak, self.used)
        if session is not None:
            session.bytes += nbytes

    def release(self, nbytes: int, session: SessionBudget | None) -> None:
        self.used -= nbytes
        if session is not None:
            session.bytes -= nbytes
        if self.used <= self.max_bytes:
            self._threshold = self.max_bytes

    def count_eviction(self, nbytes: int) -> None:
        self.evicted_bytes += nbytes

    def enforce(self) -> None:
        """Over the process budget: evict down to 7/8 of it (so that a flood does not rank
        every stream on every event)."""
        if self.used <= self._threshold:
            return
        self.count_eviction(_evict(list(self._streams), self.used - self.max_bytes * 7 // 8))
        if self.used > self.max_bytes:
            self._threshold = self.used + max(self.max_bytes // 8, 1)

    def describe(self) -> str:
        """The budgets, for the start-up log."""

        def mib(n: int) -> str:
            return f"{n / (1024 * 1024):g} MiB"

        return (
            f"events kept {mib(self.max_stream_bytes)} per stream, {mib(self.max_session_bytes)} per session, "
            f"{mib(self.max_bytes)} in all; {mib(self.slow_reader_max_bytes)} queued per reader "
            f"(producers wait {self.slow_reader_wait_s:g} s for room)"
        )

    def stats(self) -> dict[str, int]:
        return {
            "bytes": self.used,
            "peak_bytes": self.peak,
            "max_bytes": self.max_bytes,
            "evicted_bytes": self.evicted_bytes,
            "readers_cut": self.readers_cut,
        }


# glibc serves allocations at or above this from mmap, so that freeing them gives the
# memory back to the system at once (see `return_large_frees`).
MMAP_THRESHOLD = 128 * 1024
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_large_frees() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD. By default glibc raises it after each
    large free (up to 32 MiB), so large event buffers (a 1 MiB log message, its JSON, its SSE
    frame) come from the heap afterwards, and the heap does not shrink: one session's burst
    of 1 MiB messages kept ~130 MiB of RSS after every byte of it was freed and evicted
    (measured; 15 MiB with the threshold fixed). False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to fix
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
