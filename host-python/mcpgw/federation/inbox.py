"""A one-reader message stream between an upstream link's parts (its transport, its pump, the SDK's
dispatcher), in place of anyio's memory streams: a deque and a future, so handing a message to a
waiting reader costs no extra turn of the event loop (an anyio stream's send and receive each end
with a checkpoint). Measured: about 90k instructions less per relayed call for this hop alone
(docs/benchmarks.md, "Relaying"). `close()` ends it: the reader gets what was sent, then
`anyio.EndOfStream` (the end of an `async for`); a sender gets `anyio.ClosedResourceError`, as
from anyio's streams, which the SDK's dispatcher expects."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class Inbox(Generic[T]):
    """Messages in order, at most `bound` (at least 1) waiting: a sender waits for room. One reader."""

    def __init__(self, bound: int) -> None:
        self.bound = max(bound, 1)
        self.items: deque[T] = deque()
        self.closed = False
        self._reader: asyncio.Future[None] | None = None
        self._senders: deque[asyncio.Future[None]] = deque()

    async def send(self, item: T) -> None:
        while len(self.items) >= self.bound and not self.closed:
            room = asyncio.get_running_loop().create_future()
            self._senders.append(room)
            try:
                await room
            finally:
                with contextlib.suppress(ValueError):
                    self._senders.remove(room)
        if self.closed:
            raise anyio.ClosedResourceError
        self.items.append(item)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def close(self) -> None:
        self.closed = True
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        for room in self._senders:
            if not room.done():
                room.set_result(None)

    async def receive(self) -> T:
        while not self.items:
            if self.closed:
                raise anyio.EndOfStream
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        item = self.items.popleft()
        while self._senders:
            room = self._senders.popleft()
            if not room.done():
                room.set_result(None)
                break
        return item

    def __aiter__(self) -> Inbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Inbox[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        self.close()
