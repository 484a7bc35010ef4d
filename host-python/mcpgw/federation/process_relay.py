"""A request relayed to another gateway process, and its answer (scale-out: several processes, one Redis).

Two requests travel between gateway processes over the target's channel (`mcpgw:p:<process>`,
state/shared.py): a request for a stdio upstream whose connection another process holds
(hub.py: `upcall`, `upcancel`, `upprogress`, `upreply`), and a 2026-07-28 retry of a call parked
in another process (interactive.py: `inretry`, `incancel`, `innote`, `inreply`). Each is one
`ProcessRelay`, told apart by its four message kinds (`Kinds`); the message formats are theirs.

The asking side (`ask`): the request goes out with a call id of this process (`<process>.<n>`)
and `from`; the notes the target sends meanwhile (progress, logs) are handled in order, and all of
them before the answer is returned; the target is checked alive every LIVENESS_CHECK_S (one
`EXISTS`), and the wait is bounded by the caller's timeout plus REMOTE_MARGIN_S (the target answers
its own timeout at the caller's; the margin is for an answer lost on the way). A target that stopped
raises `ProcessStopped`, a wait past its bound `NoAnswer`: the callers word them for the client.
An asker that gives up (cancelled, or either of those) publishes the cancel kind, but only once the
request's own publish is done: the two could travel on different pooled Redis connections, and a
cancel that overtook its request would be ignored there and the request run anyway.

The serving side: a request kind runs the owner's `serve(message, note)` in a task of its own (the
cancel kind cancels it; a cancelled one is not answered); what it returns is the answer; a
JsonRpcError it raises becomes the error answer (code, message, data), any other exception -32603
naming the upstream and the method.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from ..server.jsonrpc import INTERNAL_ERROR, JsonRpcError
from .link import describe

log = logging.getLogger("mcpgw.federation")

LIVENESS_CHECK_S = 1.0  # how often a process waiting for an answer checks that the target still heartbeats
REMOTE_MARGIN_S = 5.0  # past the caller's timeout, for an answer lost on the way

Message: TypeAlias = dict[str, Any]
Note: TypeAlias = Callable[[Message], Awaitable[None]]  # serving side: send these fields as a note to the asker
Serve: TypeAlias = Callable[[Message, Note], Awaitable[Message]]  # a request heard -> its answer's fields


class Channels(Protocol):
    """The processes' channels over Redis (state/shared.py), as far as a relay needs them."""

    proc: str  # this gateway process

    async def send_to(self, process: str, message: dict[str, Any]) -> None: ...
    async def alive(self, processes: set[str]) -> set[str]: ...
    def on_channel(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None: ...


@dataclass(frozen=True)
class Kinds:
    """The message kinds of one relay on the processes' channels."""

    request: str
    cancel: str
    note: str
    reply: str
    what: str  # the request in a log line: "the answer to a <what> tools/call was not delivered"


class ProcessStopped(Exception):
    """The target process stopped heartbeating while a request to it waited for its answer."""

    def __init__(self, process: str) -> None:
        super().__init__(process)
        self.process = process


class NoAnswer(Exception):
    """No answer within the caller's timeout plus REMOTE_MARGIN_S."""


class ProcessRelay:
    def __init__(self, kinds: Kinds) -> None:
        self.kinds = kinds
        self._ids = itertools.count(1)
        # Requests sent from here waiting for their answer: call id -> the answer's future, the
        # handler of its notes, and the notes being handled (in order).
        self._waiting: dict[str, tuple[asyncio.Future[Message], Note, list[asyncio.Task[None]]]] = {}
        self._serving: dict[str, asyncio.Task[None]] = {}  # requests run here for another process: call id -> task
        self._background: set[asyncio.Task[None]] = set()  # sends that must outlive the task that started them
        self._channels: Channels | None = None
        self._serve: Serve | None = None

    def attach(self, channels: Channels, serve: Serve) -> None:
        """Hear this relay's kinds on this process's channel; requests from other processes are
        answered by `serve`."""
        self._channels, self._serve = channels, serve
        for kind in (self.kinds.request, self.kinds.cancel, self.kinds.note, self.kinds.reply):
            channels.on_channel(kind, self._heard)

    async def ask(
        self, channels: Channels, process: str, fields: Message, on_note: Note, timeout: float | None
    ) -> Message:
        """Send a request (`fields`, as the target's `serve` reads them) to `process` and return its
        answer message. `timeout` (None or 0: no bound) is the caller's own; cancelled here,
        cancelled there."""
        loop = asyncio.get_running_loop()
        call = f"{channels.proc}.{next(self._ids)}"
        future: asyncio.Future[Message] = loop.create_future()
        notes: list[asyncio.Task[None]] = []
        self._waiting[call] = (future, on_note, notes)
        message = {"kind": self.kinds.request, "from": channels.proc, "call": call, **fields}
        deadline = loop.time() + timeout + REMOTE_MARGIN_S if timeout else None
        # The request's publish has a task of its own: a cancellation that comes while it is on its
        # way sends the cancel only once it is done (see the module's docstring).
        sent = asyncio.ensure_future(channels.send_to(process, message))
        try:
            await asyncio.shield(sent)
            while not future.done():
                await asyncio.wait({future}, timeout=LIVENESS_CHECK_S)
                if future.done():
                    break
                if process not in await channels.alive({process}):
                    raise ProcessStopped(process)
                if deadline is not None and loop.time() > deadline:
                    raise NoAnswer(process)
        except BaseException:
            if not future.done():
                self.post(channels, process, {"kind": self.kinds.cancel, "call": call}, after=sent)
            raise
        finally:
            self._waiting.pop(call, None)
        if notes:
            await asyncio.gather(*notes, return_exceptions=True)  # in order, before the answer
        return future.result()

    def post(
        self, channels: Channels, process: str, message: Message, after: asyncio.Future[None] | None = None
    ) -> None:
        """Publish `message` to `process` in the background (a failure is dropped), after `after`
        is published when given (Redis delivers them in this order; nothing when it was not)."""

        async def send() -> None:
            if after is not None:
                await asyncio.wait({after})
                if after.cancelled() or after.exception() is not None:
                    return  # never sent: nothing to follow it there
            with contextlib.suppress(Exception):
                await channels.send_to(process, message)

        task = asyncio.ensure_future(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _heard(self, message: Message) -> None:
        """A request or its cancellation from another process, or a note or the answer to one sent from here."""
        kind, call = message.get("kind"), str(message.get("call"))
        if kind == self.kinds.request and self._channels is not None and self._serve is not None:
            task = asyncio.ensure_future(self._answer(self._channels, self._serve, message))
            self._serving[call] = task
            task.add_done_callback(lambda _: self._serving.pop(call, None))
        elif kind == self.kinds.cancel and (serving := self._serving.get(call)) is not None:
            serving.cancel()
        elif (waiting := self._waiting.get(call)) is not None:
            future, on_note, notes = waiting
            if kind == self.kinds.reply and not future.done():
                future.set_result(message)
            elif kind == self.kinds.note:
                before = notes[-1] if notes else None
                notes.append(asyncio.ensure_future(self._note_after(before, on_note, message)))

    @staticmethod
    async def _note_after(before: asyncio.Task[None] | None, on_note: Note, message: Message) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        await on_note(message)

    async def _answer(self, channels: Channels, serve: Serve, message: Message) -> None:
        """Run a request another process sent here, and send it the answer."""
        reply_to, call, upstream, method = message["from"], message["call"], message["upstream"], message["method"]

        async def note(fields: Message) -> None:
            with contextlib.suppress(Exception):
                await channels.send_to(reply_to, {"kind": self.kinds.note, "call": call, **fields})

        answer: Message
        try:
            answer = await serve(message, note)
        except JsonRpcError as err:
            answer = {"error": {"code": err.code, "message": err.message, "data": err.data}}
        except asyncio.CancelledError:
            return  # the asker gave it up: no answer expected
        except Exception as exc:  # noqa: BLE001 - the asker gets an error, never silence
            text = f"Upstream {upstream!r} failed during {method}: {describe(exc)}"
            answer = {"error": {"code": INTERNAL_ERROR, "message": text, "data": {"upstream": upstream}}}
        try:
            await channels.send_to(reply_to, {"kind": self.kinds.reply, "call": call, **answer})
        except Exception as exc:  # noqa: BLE001 - state unavailable: the asker's own wait ends it
            what = f"{self.kinds.what} {method}"
            log.warning("upstream %s: the answer to a %s was not delivered: %s", upstream, what, exc)

    def cancel_serving(self) -> None:
        """Give up the requests running here for other processes (unanswered: their askers' waits end them)."""
        for task in list(self._serving.values()):
            task.cancel()

    async def drain(self) -> None:
        """Wait for the background sends (cancellations, notifications) to be done."""
        await asyncio.gather(*self._background, return_exceptions=True)
