"""A bounded cache of edge outcomes, in front of whichever backend is active.

The edge is a pure function of its configuration and the request head as the
contract sees it (`docs/edge-contract.md` section 1): method, raw path, query
and the contract's headers, in received order, duplicates kept. That tuple is
the key, so two heads that differ anywhere the edge could look never share an
entry, and headers the edge never reads (Content-Length, Authorization,
User-Agent) do not split entries. Entries belong to one backend object: a hot
swap or rollback brings a different one, and the cache starts empty for it.

Clients repeat their heads (same session id, same Accept and Origin on every
call), so most requests skip the boundary crossing. Bounded twice: at most
`max_entries` entries, evicted oldest first, and heads over `MAX_KEY_BYTES`
are never stored.

A cached outcome is handed to every request with that head, so every outcome
this cache returns is frozen (mappings read-only, lists made tuples): code
downstream cannot change an entry another request will get. Uncached outcomes
are frozen too, so their type does not depend on the cache being on or on the
size of the head.

`crossings` counts calls into the backend (misses and heads too big to store):
what tests and benchmarks that claim to exercise the backend assert on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .python_core import CONTRACT_HEADERS

MAX_KEY_BYTES = 2048

# (method, raw path, query, the contract's headers as (lowered name, value) in order)
_Key = tuple[str, bytes, bytes, tuple[tuple[bytes, bytes], ...]]


# The lists in an outcome (contract section 14): header pairs, by outcome kind.
_LISTS = {"forward": "cors_headers", "preflight": "headers"}


def freeze(outcome: dict[str, Any]) -> Mapping[str, Any]:
    """The outcome made read-only: its mappings become MappingProxyType, its
    header lists tuples of tuples. In place (about 1 us; a deep copy costs
    about 5): backends return a fresh outcome per call that nothing else holds."""
    for kind, payload in outcome.items():  # one: forward, preflight or error
        key = _LISTS.get(kind)
        if key is not None:
            payload[key] = tuple(map(tuple, payload[key]))
        outcome[kind] = MappingProxyType(payload)
    return MappingProxyType(outcome)


class OutcomeCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[_Key, Mapping[str, Any]] = {}
        self._backend: Any = None
        self.hits = 0
        self.misses = 0
        self.crossings = 0
        # Told the duration of each crossing, seconds (/metrics' histogram; None: not timed).
        self.on_crossing: Callable[[float], None] | None = None

    def _cross(
        self, backend: Any, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Mapping[str, Any]:
        self.crossings += 1
        observe = self.on_crossing
        if observe is None:
            return freeze(backend.evaluate_raw(method, raw_path, query, headers))
        start = time.perf_counter()
        outcome = backend.evaluate_raw(method, raw_path, query, headers)
        observe(time.perf_counter() - start)
        return freeze(outcome)

    def evaluate(
        self,
        backend: Any,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        head_bytes: int,
    ) -> Mapping[str, Any]:
        if self.max_entries <= 0 or head_bytes > MAX_KEY_BYTES:
            return self._cross(backend, method, raw_path, query, headers)
        if backend is not self._backend:
            self._entries = {}
            self._backend = backend
        wanted = CONTRACT_HEADERS
        # (a list comprehension: cheaper than a generator's resume per header)
        key = (method, raw_path, query, tuple([(lowered, v) for n, v in headers if (lowered := n.lower()) in wanted]))
        outcome = self._entries.get(key)
        if outcome is not None:
            self.hits += 1
            return outcome
        self.misses += 1
        outcome = self._cross(backend, method, raw_path, query, headers)
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest
        self._entries[key] = outcome
        return outcome

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "max_entries": self.max_entries,
            "hits": self.hits,
            "misses": self.misses,
            "crossings": self.crossings,
        }
