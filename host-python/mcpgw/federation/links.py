"""A process's session connections to upstreams, keyed by (session id, upstream id), with the
upstreams of each session indexed beside them: what one session holds costs its own connections,
not everyone's (idle expiry asks it of every idle shared session: state/shared.py, expire_idle)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, MutableMapping
from typing import TypeVar

V = TypeVar("V")


class SessionLinks(MutableMapping[tuple[str, str], V]):
    """A dict of (session id, upstream id) -> V whose every change keeps `of_session` in step."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], V] = {}
        self._by_session: dict[str, set[str]] = {}  # session id -> its upstream ids

    def __getitem__(self, key: tuple[str, str]) -> V:
        return self._items[key]

    def get(self, key: tuple[str, str], default: V | None = None) -> V | None:  # type: ignore[override]
        return self._items.get(key, default)  # the hot path: no exception raised and caught

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __setitem__(self, key: tuple[str, str], value: V) -> None:
        self._items[key] = value
        self._by_session.setdefault(key[0], set()).add(key[1])

    def __delitem__(self, key: tuple[str, str]) -> None:
        del self._items[key]
        upstreams = self._by_session[key[0]]
        upstreams.discard(key[1])
        if not upstreams:
            del self._by_session[key[0]]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def items(self) -> ItemsView[tuple[str, str], V]:  # the dict's own view: no call per item
        return self._items.items()

    def __len__(self) -> int:
        return len(self._items)

    def of_session(self, session_id: str) -> list[tuple[str, V]]:
        """The session's (upstream id, value) pairs: as many as it has, whatever others hold."""
        return [(uid, self._items[(session_id, uid)]) for uid in self._by_session.get(session_id, ())]
