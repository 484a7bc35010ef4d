"""Where what an upstream sends on a client session's own connection goes: to that client.

A session's connection to an upstream (hub.py opens it) has one `SessionRelay` as its handler:
a notification or request the upstream sends goes on the stream of the session's most recent
request still running through that connection (where the MCP SDK's servers put it too), else on
the session's GET stream; a list_changed makes the session's own view of the upstream's lists
stale; a resource update is renamed to the URI the client knows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..server.context import CallContext
from ..state.session import Session
from .link import UpstreamLink
from .tasks import related_out, tasks_out
from .upstream import Upstream

_background: set[asyncio.Task[None]] = set()  # sends that must outlive the task that started them


class SessionRelay:
    """Routes what one upstream connection of one client session sends back to that client."""

    def __init__(
        self,
        session: Session,
        upstream: Upstream,
        uri_out: Callable[[str], str],
        tell: Callable[[Session, str], None],
    ) -> None:
        self.session = session
        self.upstream = upstream
        self.uri_out = uri_out  # upstream URI -> the URI this session's client knows
        self.tell = tell  # queue a notifications/<kind>/list_changed for the session (coalesced)
        # The upstream's lists as this connection sees them (what /mcp shows a session whose client
        # declared capabilities: the upstream may offer it more); None until read or after list_changed.
        self.lists: dict[str, list[dict[str, Any]]] | None = None
        self.lists_mark: tuple[UpstreamLink, int] | None = None  # the link and its list_changes when read
        self.viewed = False  # /mcp listed through this connection
        self.generation = 0  # bumped by each list_changed, so a re-read already under way is not kept
        self.calls: list[CallContext] = []  # requests running through this connection, oldest first
        # Upstream task id -> the id this session's client knows it by (tasks.py): gateway ids on
        # /mcp, unchanged on a virtual server.
        self.task_out: Callable[[str], str] | None = None
        # A gateway warning for the client about this connection, given with the next request
        # through it (on its stream when it has one, else on the session's GET stream).
        self.notice: dict[str, Any] | None = None

    @contextlib.contextmanager
    def running(self, ctx: CallContext) -> Iterator[None]:
        self.calls.append(ctx)
        try:
            yield
        finally:
            self.calls.remove(ctx)

    async def give_notice(self) -> None:
        if self.notice is not None:
            params, self.notice = self.notice, None
            await self._send("notifications/message", params)

    async def _send(self, method: str, params: dict[str, Any]) -> None:
        ctx = self.calls[-1] if self.calls else None
        if ctx is not None and await ctx.emit({"jsonrpc": "2.0", "method": method, "params": params}):
            return
        await self.session.notify(method, params)

    async def upstream_notification(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> None:
        if method.endswith("/list_changed"):
            self.lists, self.generation = None, self.generation + 1
            # This session's own view: a virtual server lists through this connection, and so does
            # /mcp for a client that declared capabilities. Everyone else's view is the catalog:
            # re-read once (coalesced), those clients are told only if it changed.
            if self.session.server is not None or self.viewed:
                self.tell(self.session, method.split("/")[1])
            self.upstream.refresh_soon(method)
        elif method == "notifications/resources/updated":
            uri = params.get("uri")
            await self.session.notify(method, {**params, "uri": self.uri_out(uri)} if isinstance(uri, str) else params)
        else:
            await self._send(method, tasks_out(method, params, self.task_out) if self.task_out else params)

    async def upstream_request(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> dict[str, Any]:
        ctx = self.calls[-1] if self.calls else None
        session = self.session
        sent: list[Any] = []  # the id the client knows this request by
        if self.task_out is not None:
            params = related_out(params, self.task_out)

        async def emit(message: dict[str, Any]) -> bool:
            # On the stream of the call it serves, else on the session's stream (as Session.request does).
            sent.append(message.get("id"))
            if ctx is not None and await ctx.emit(message):
                return True
            return session.attachment is not None and bool(await session.attachment.send(message))

        try:
            result: dict[str, Any] = await session.request(  # the client's answer, checked by the link
                method, params, timeout=self.upstream.config.call_timeout_s or 3600.0, emit=emit
            )
        except asyncio.CancelledError:
            # The upstream withdrew its request (notifications/cancelled; the SDK cancels this
            # callback): the client hears of it under the id it knows, so its dialog can close.
            if sent and sent[0] is not None and not session.closed:
                note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": sent[0]}}
                task = asyncio.ensure_future(self._cancelled(ctx, note))
                _background.add(task)
                task.add_done_callback(_background.discard)
            raise
        return result

    async def _cancelled(self, ctx: CallContext | None, note: dict[str, Any]) -> None:
        if ctx is not None and await ctx.emit(note):
            return
        await self.session.notify(note["method"], note["params"])
