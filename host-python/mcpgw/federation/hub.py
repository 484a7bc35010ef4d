"""All upstreams, and the connections client sessions make through them.

Each client session gets its own connection to each upstream it uses, opened
on first use and closed with the session. What the upstream then sends on its
own initiative (logs, sampling, elicitation, roots requests, resource updates)
can only be meant for that session, so it never reaches another client: it goes
on the stream of the session's most recent request still running through that
connection (where the MCP SDK's servers put it too), else on the session's GET
stream. Requests without a session (2026-07-28) share the catalog connection;
they get progress but not upstream log messages, which cannot be attributed.

A session's connection that ends under it (the upstream restarted, dropped an idle
link, or exited) is reopened with the session's upstream state re-applied: its log
level and its resource subscriptions (the client's roots capability is offered again,
so the upstream asks for roots afresh). A request the upstream refused for want of
the session (HTTP 404, never run) is sent again once on the new connection; a request
that was running when the connection ended fails with one -32603 error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias

from ..server.context import CallContext
from ..server.dispatcher import Dispatcher
from ..server.input_required import INTERACTIVE_METHODS, InputRequired
from ..server.jsonrpc import JsonRpcError
from ..server.listen import RESOURCE_UPDATED, ListenHub
from ..server.stateless import CACHEABLE_METHODS
from ..state.session import Session
from .config import UpstreamConfig
from .interactive import InteractiveCalls, interactive_capabilities
from .link import (
    WAITS_BY_DESIGN,
    Attach,
    UpstreamLink,
    UpstreamSessionLost,
    UpstreamTimeout,
    UpstreamUnavailable,
    outgoing_params,
    relayable,
)
from .links import SessionLinks
from .listened import ListenedUris
from .names import public_uri
from .process_relay import Channels, Kinds, NoAnswer, Note, ProcessRelay, ProcessStopped
from .session_relay import SessionRelay
from .tasks import TaskIds
from .upstream import Upstream, read_lists

log = logging.getLogger("mcpgw.federation")

# The lists (what a client is offered may depend on the capabilities it declared).
LIST_METHODS = CACHEABLE_METHODS - {"resources/read", "server/discover"}

PendingLink: TypeAlias = "asyncio.Future[tuple[SessionRelay, UpstreamLink]]"  # a session's connection, opening or open


def _opened(pending: PendingLink) -> UpstreamLink | None:
    """The link a session connection future holds, if it opened."""
    if pending.done() and not pending.cancelled() and pending.exception() is None:
        return pending.result()[1]
    return None


# The reasons a session closes with when it ends for good (state/): its upstream sessions end too.
# Any other (a process shutting down, its copy dropped) leaves a shared session's upstream sessions
# to the other gateway processes.
SESSION_ENDS = frozenset({"terminated", "ended", "expired"})

# A client session's HTTP upstream session as recorded for every gateway process: its id, the
# upstream's initialize result, the process holding its GET stream, and whether that one is alive.
RecordedUpstream: TypeAlias = tuple[str, dict[str, Any], str, bool]


class SharedUpstreams(Channels, Protocol):
    """Where the HTTP upstream sessions of shared client sessions are recorded (state/shared.py)."""

    async def lookup(self, session_id: str) -> Session | None: ...
    async def upstream_session(self, session: Session, upstream: str) -> RecordedUpstream | None: ...
    async def record_upstream_session(
        self, session: Session, upstream: str, upstream_session: str, init_result: dict[str, Any], replacing: str | None
    ) -> bool: ...
    async def take_upstream_get(self, session: Session, upstream: str, owner: str) -> bool: ...
    async def upstream_owner(self, session: Session, upstream: str) -> tuple[str, bool]: ...


# A request for a stdio upstream relayed to the process holding the session's connection
# (process_relay.py), on the processes' channels; and a client notification passed on to it.
UPSTREAM_CALLS = Kinds("upcall", "upcancel", "upprogress", "upreply", what="relayed")
UPSTREAM_NOTIFY = "upnotify"


HOLDER_CHECK_S = 1.0  # how often the holders of the GET streams of re-attached upstream sessions are checked


def _outcome(exc: Exception) -> str:
    """A failed relay, for /metrics: timeout, unavailable (not connected, gone mid-call), or error
    (the upstream's own error answer)."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamUnavailable):
        return "unavailable"
    return "error"


class Federation:
    def __init__(self, configs: list[UpstreamConfig]) -> None:
        self.upstreams = {c.id: Upstream(c, self._catalog_changed) for c in configs}
        self.by_prefix = {u.config.prefix: u for u in self.upstreams.values()}
        self._links: SessionLinks[PendingLink] = SessionLinks()  # (session id, upstream id) -> link
        self._closing: set[asyncio.Task[None]] = set()
        self._tracked: set[str] = set()  # sessions whose end closes their connections
        # (session id, upstream id) -> the upstream URIs the session subscribed to, re-applied on reconnect
        self.subscriptions: dict[tuple[str, str], set[str]] = {}
        self._viewers: dict[str, Session] = {}  # sessions that listed something: told when their view changes
        self._queued: set[tuple[str, str]] = set()  # (session id, kind): a list_changed about to be sent
        self.task_ids = TaskIds()  # /mcp's task ids (tasks.py)
        # 2026-07-28: calls of clients that can be asked things (interactive.py), and the
        # subscriptions/listen streams told of catalog changes (set by gateway.py).
        self.interactive = InteractiveCalls()
        self.listens: ListenHub | None = None
        self.listened = ListenedUris(self.upstreams, self.by_prefix)  # what they named: subscribed upstream
        # Told of every relayed request: (upstream id, method, outcome, seconds); /metrics (observability/).
        self.observe: Callable[[str, str, str, float], None] | None = None
        # Told of every connection opened for a session (scale-out: a shared session's connection to
        # an upstream may already be open in another process; set by gateway.py).
        self.link_opened: Callable[[Session, str], Awaitable[None]] | None = None
        # Scale-out: a shared session's Streamable HTTP upstream session is opened once and
        # re-attached by every other process (set by gateway.py); (session id, upstream id) -> the
        # upstream session id this process found lost (404), so it is replaced, not re-attached.
        self.shared_upstreams: SharedUpstreams | None = None
        self._lost_upstream: dict[tuple[str, str], str] = {}
        # (session id, upstream id) -> the process holding the GET stream of the upstream session
        # this process re-attached; checked every HOLDER_CHECK_S, taken over when that one is gone.
        self._held_by: dict[tuple[str, str], str] = {}
        self._holders: asyncio.Task[None] | None = None
        # stdio upstreams of shared sessions: one process holds the connection (a child process),
        # the others relay the session's requests to it over its channel (process_relay.py).
        # (session id, upstream id) -> that process, when another; the sessions this process has
        # connections for.
        self._owners: dict[tuple[str, str], str] = {}
        self._relay = ProcessRelay(UPSTREAM_CALLS)
        self._known: dict[str, Session] = {}
        for upstream in self.upstreams.values():
            upstream.down_listeners.append(self._upstream_down)
            upstream.resource_updated = self._resource_updated

    def start(self) -> None:
        for upstream in self.upstreams.values():
            upstream.start()
        if self.shared_upstreams is not None and self._holders is None:
            self._holders = asyncio.ensure_future(self._watch_holders(self.shared_upstreams))
            self._relay.attach(self.shared_upstreams, functools.partial(self._serve_remote, self.shared_upstreams))
            self.shared_upstreams.on_channel(UPSTREAM_NOTIFY, self._notified_remote)
            # a 2026-07-28 retry reaching a process that does not hold its parked call goes there
            self.interactive.attach(self.shared_upstreams, self.upstreams)

    def heard_elsewhere(self, upstream_id: str, notification: str) -> None:
        """Another gateway process heard the upstream say `notification` (a list_changed): re-read
        the catalog here too, and forget what this process's session connections to it listed."""
        upstream = self.upstreams.get(upstream_id)
        if upstream is None:
            return
        for (_, uid), pending in self._links.items():
            if uid == upstream_id and pending.done() and not pending.cancelled() and pending.exception() is None:
                relay = pending.result()[0]
                relay.lists, relay.generation = None, relay.generation + 1
        upstream.refresh_soon(notification, heard_elsewhere=True)

    async def stop(self) -> None:
        if self._holders is not None:
            self._holders.cancel()
        for key in list(self._links):
            self._drop(key)
        await self.interactive.stop()
        await asyncio.gather(
            *(u.stop() for u in self.upstreams.values()),
            *self._closing,
            self._relay.drain(),
            self.listened.stop(),
            return_exceptions=True,
        )

    def health(self) -> dict[str, Any]:
        return {id_: u.health() for id_, u in self.upstreams.items()}

    def live_links(self) -> int:
        return len(self._links)

    # -- list_changed: only to the sessions whose view changed, coalesced ---------------
    def watch(self, session: Session) -> None:
        """The session listed something: its client is told from now on when that view changes."""
        if session.id not in self._viewers and not session.closed:
            self._viewers[session.id] = session
            self._track(session)

    def tell(self, session: Session, kind: str) -> None:
        """Queue notifications/<kind>/list_changed for the session: one however many causes arrive
        before it goes out."""
        key = (session.id, kind)
        if key in self._queued or session.closed:
            return
        self._queued.add(key)
        task = asyncio.ensure_future(self._tell(session, kind, key))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _tell(self, session: Session, kind: str, key: tuple[str, str]) -> None:
        await asyncio.sleep(0)  # a burst of causes becomes one notification
        self._queued.discard(key)
        if not session.closed:
            await session.notify(f"notifications/{kind}/list_changed")

    def _own_view(self, session: Session, upstream: Upstream) -> bool:
        """Whether the session sees the upstream through its own connection (told by it), not the catalog."""
        pending = self._links.get((session.id, upstream.id))
        if pending is None or _opened(pending) is None:
            return False
        return session.server is not None or pending.result()[0].viewed

    async def _catalog_changed(self, upstream: Upstream, keys: set[str], everyone: bool) -> None:
        """The catalog of `upstream` changed: tell the sessions that see it (on /mcp, or a virtual
        server session sharing the catalog connection). An upstream that came or went changed every
        view of it."""
        kinds = sorted({"resources" if k == "resourceTemplates" else k for k in keys})
        self.interactive.forget(upstream.id)  # what capability profiles were listed is read again
        if self.listens is not None:  # 2026-07-28 clients list from the catalog: /mcp and the virtual server
            for kind in kinds:
                self.listens.publish(None, f"notifications/{kind}/list_changed")
                self.listens.publish(upstream.id, f"notifications/{kind}/list_changed")
            if everyone:  # the upstream came back (or went): its catalog connection subscribes again
                self.listened.resubscribe(upstream)
        for session in list(self._viewers.values()):
            if session.server not in (None, upstream.id) or (not everyone and self._own_view(session, upstream)):
                continue
            for kind in kinds:
                self.tell(session, kind)

    def _resource_updated(self, upstream: Upstream, uri: str) -> None:
        """notifications/resources/updated on the catalog connection: to the listen streams that
        named the URI, on the virtual server and (prefixed) on /mcp."""
        if self.listens is not None:
            self.listens.publish(upstream.id, RESOURCE_UPDATED, uri)
            self.listens.publish(None, RESOURCE_UPDATED, public_uri(upstream.config.prefix, uri))

    async def view(
        self,
        upstream: Upstream,
        session: Session | None,
        uri_out: Callable[[str], str],
        capabilities: dict[str, Any] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """The upstream's lists as `session` would see them on /mcp: the catalog's, or, for a client
        that declared capabilities (an upstream may offer such a client more: tools that sample,
        elicit or ask for roots), read through the session's own connection and kept until that
        connection says list_changed. Without a session (2026-07-28), `capabilities` are the ones
        the request declared that let an upstream ask the client things: read on a pooled
        connection offering them (interactive.py), kept until the upstream says list_changed."""
        if session is None and capabilities and not self.interactive.full(upstream):
            try:
                return await self.interactive.lists(upstream, capabilities)
            except JsonRpcError as err:
                log.info("upstream %s: listing for a 2026-07-28 client fell back to the catalog: %s", upstream.id, err)
        if (
            session is None
            or session.server is not None
            or not relayable(session.client_capabilities)
            or self._at_capacity(session, upstream)
        ):
            await upstream.settled()
            return upstream.lists
        try:
            if (store := self._routed(session, upstream)) is not None and await self._owner(store, session, upstream):
                await upstream.settled()  # the connection is another process's: the catalog's lists
                return upstream.lists
            relay, link = await self.session_link(session, upstream, uri_out)
            relay.viewed = True
            await relay.give_notice()
            # A list_changed already received but not yet handled (the SDK handles it in a task of
            # its own, maybe after the answer that followed it) makes the kept lists stale too.
            if relay.lists is not None and relay.lists_mark == (link, link.list_changes):
                return relay.lists
            generation, mark = relay.generation, (link, link.list_changes)
            lists, _ = await read_lists(link, int(upstream.config.max_pages))
        except JsonRpcError as err:
            log.info(
                "upstream %s: listing for session %s fell back to the catalog: %s",
                upstream.id,
                session.id[:8],
                err.message,
            )
            return upstream.lists
        # Kept only by a process that hears the upstream's list_changed itself: a re-attached link
        # that does not hold the upstream session's GET stream learns of one through Redis, after
        # the fact (docs/scale-out.md, upstream connections), so it reads the lists every time.
        if relay.generation == generation and mark == (link, link.list_changes) and link.holds_get:
            relay.lists, relay.lists_mark = lists, mark
        return lists

    # -- calls ----------------------------------------------------------------
    async def call(
        self,
        upstream: Upstream,
        method: str,
        params: dict[str, Any] | None,
        ctx: CallContext,
        session: Session | None,
        uri_out: Callable[[str], str] = lambda uri: uri,
    ) -> dict[str, Any]:
        """Relay one request to `upstream` for `session` (or for a stateless request) and return its result."""
        started = time.perf_counter()
        try:
            result = await self._call(upstream, method, params, ctx, session, uri_out)
        except InputRequired:  # 2026-07-28: the upstream asked the client something; the call goes on
            self._count_call(upstream, method, "ok", started)
            raise
        except Exception as exc:  # an error answer, a timeout, a lost upstream (a cancelled call is not counted)
            self._count_call(upstream, method, _outcome(exc), started)
            raise
        self._count_call(upstream, method, "ok", started)
        return result

    def _count_call(self, upstream: Upstream, method: str, outcome: str, started: float) -> None:
        """One relayed call's time and outcome: the upstream's call statistics and, when metrics
        are on, `observe` ("ok", or what `_outcome` names a failure)."""
        elapsed = time.perf_counter() - started
        upstream.calls.record(elapsed, ok=outcome == "ok")
        if self.observe is not None:
            self.observe(upstream.id, method, outcome, elapsed)

    async def _call(
        self,
        upstream: Upstream,
        method: str,
        params: dict[str, Any] | None,
        ctx: CallContext,
        session: Session | None,
        uri_out: Callable[[str], str],
    ) -> dict[str, Any]:
        # The SDK puts its own token upstream; progress under it is reported under the client's.
        on_progress = ctx.progress if ctx.progress_token is not None else None
        if session is None and method in INTERACTIVE_METHODS:
            capabilities = interactive_capabilities(ctx)
            # 2026-07-28, a client that can be asked things (past max_connections such calls share
            # the catalog connection, which offers the upstream no client capabilities).
            if ctx.exchange is not None or (capabilities and not self.interactive.full(upstream)):
                return await self.interactive.call(upstream, method, outgoing_params(params), ctx, capabilities)
        elif session is None and method in LIST_METHODS:
            # A 2026-07-28 client that can be asked things is listed what such a client may call
            # (an upstream may offer it more: tools that sample, elicit, ask for roots).
            capabilities = interactive_capabilities(ctx)
            if capabilities and not self.interactive.full(upstream):
                return await self.interactive.request(upstream, method, outgoing_params(params), capabilities)
        for attempt in (1, 2):
            try:
                if session is None or self._at_capacity(session, upstream):
                    # A network upstream found down may be back already (restarted): one attempt tells.
                    if not upstream.ready and upstream.config.transport != "stdio":
                        await upstream.attempt_now(upstream.config.connect_timeout_s)
                    link = upstream.link
                    if link is None or not upstream.ready:
                        raise UpstreamUnavailable(upstream.id, f"is unavailable: {upstream.error or upstream.state}")
                    return await link.request(method, outgoing_params(params), on_progress)
                store = self._routed(session, upstream)
                if store is not None and (owner := await self._owner(store, session, upstream)) is not None:
                    return await self._call_remote(store, owner, upstream, method, params, ctx, session)
                relay, link = await self.session_link(session, upstream, uri_out)
                with relay.running(ctx):
                    await relay.give_notice()
                    result = await link.request(method, outgoing_params(params), on_progress)
                self._remember(session, upstream, method, params)
                return result
            except UpstreamSessionLost:
                # Never run upstream: once more on a new connection, when the upstream is back.
                upstream.check_now()
                if attempt == 2 or not await upstream.wait_ready(upstream.config.connect_timeout_s):
                    raise
            except UpstreamUnavailable:
                upstream.check_now()  # the catalog connection finds out now, not at the next ping
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _remember(self, session: Session, upstream: Upstream, method: str, params: dict[str, Any] | None) -> None:
        """Session state the upstream holds, so a reopened connection can be given it again."""
        uri = (params or {}).get("uri")
        if method not in ("resources/subscribe", "resources/unsubscribe") or not isinstance(uri, str):
            return
        key = (session.id, upstream.id)
        if method == "resources/subscribe":
            self.subscriptions.setdefault(key, set()).add(uri)
        elif key in self.subscriptions:
            self.subscriptions[key].discard(uri)

    def _upstream_down(self, upstream: Upstream) -> None:
        """The catalog connection of a network upstream went down (it stopped answering or went
        away): every session connection to that same server fails its calls now rather than hang.
        (A stdio upstream's session connections are processes of their own, unaffected.) An upstream
        that answered that it no longer knows the catalog connection's session (it restarted) is
        up: each session connection finds out about its own session at its next request (404: sent
        again on a new one), and one already on a new upstream session (re-opened or re-attached
        since the restart) must not fail its calls."""
        if upstream.config.transport == "stdio" or upstream.lost_session:
            return
        for (_, uid), pending in list(self._links.items()):
            if uid == upstream.id and (link := _opened(pending)) is not None:
                link.lose(f"is down ({upstream.error or 'not answering'})")

    def _at_capacity(self, session: Session, upstream: Upstream) -> bool:
        """Each session connection to a stdio upstream is a process: past the upstream's
        `max_connections`, new sessions share the catalog connection (progress still flows;
        logs and server-to-client requests, which cannot be attributed there, do not)."""
        if (session.id, upstream.id) in self._links:
            return False
        full = sum(1 for _, uid in self._links if uid == upstream.id) >= upstream.config.max_connections
        if full and not upstream.warned_full:
            upstream.warned_full = True
            log.warning(
                "upstream %s: %d sessions have their own connection (max_connections); further sessions share one",
                upstream.id,
                int(upstream.config.max_connections),
            )
        return full

    async def session_link(
        self, session: Session, upstream: Upstream, uri_out: Callable[[str], str] = lambda uri: uri
    ) -> tuple[SessionRelay, UpstreamLink]:
        key = (session.id, upstream.id)
        pending = self._links.get(key)
        if pending is not None and (ended := _opened(pending)) is not None and not ended.alive:
            self._ended(key, ended)  # its watcher has not run yet: a new one now (a retry after a 404)
            del self._links[key]
            pending = None
        if pending is None:
            # The catalog connection is down. A new stdio process would most likely fail the same way;
            # a network upstream may be back already (restarted): one attempt tells.
            if not upstream.ready and (upstream.config.transport == "stdio" or upstream.state == "stopped"):
                raise UpstreamUnavailable(upstream.id, f"is unavailable: {upstream.error or upstream.state}")
            if session.closed:
                raise UpstreamUnavailable(upstream.id, "is not reachable from an ended session")
            pending = asyncio.ensure_future(self._open(session, upstream, uri_out))
            self._links[key] = pending
            self._track(session)
        try:
            return await asyncio.shield(pending)
        except Exception:
            if pending.done() and self._links.get(key) is pending:
                del self._links[key]
            raise

    def _track(self, session: Session) -> None:
        """Forget the session's connections and interests when it ends."""
        if session.id not in self._tracked:
            self._tracked.add(session.id)
            self._known[session.id] = session
            session_id = session.id

            def drop_links(reason: str) -> None:
                if reason in SESSION_ENDS:  # the upstream sessions this process holds end with it
                    for _, pending in self._links.of_session(session_id):
                        if (link := _opened(pending)) is not None and link.holds_get:
                            link.keep_session = False
                self._drop_session(session_id)

            session.closers.append(drop_links)
            session.keepers.append(functools.partial(self._holds, session_id))

    def _holds(self, session_id: str) -> bool:
        """Whether this process holds something of the session that other gateway processes reach
        it through: a stdio upstream's connection (they relay to it) or the GET stream of an
        upstream session (what the upstream sends on its own comes there). Such a session's idle
        copy here is kept until the session ends everywhere (state/shared.py, expire_idle). Costs
        the session's own connections only (the index of SessionLinks), not every session's."""
        for uid, pending in self._links.of_session(session_id):
            link = _opened(pending)
            if link is None or self.upstreams[uid].config.transport == "stdio":
                return True  # opening, or a stdio upstream's process
            if link.holds_get and link.upstream_session is not None:
                return True
        return False

    async def _open(
        self, session: Session, upstream: Upstream, uri_out: Callable[[str], str]
    ) -> tuple[SessionRelay, UpstreamLink]:
        relay = SessionRelay(session, upstream, uri_out, self.tell)
        if session.server is None:  # /mcp: the client knows the upstream's tasks by gateway ids
            relay.task_out = functools.partial(self.task_ids.seal, session.id, upstream.id)
        store = self.shared_upstreams
        if store is None or not session.shared or upstream.config.transport != "streamable-http":
            store = None
        recorded = await store.upstream_session(session, upstream.id) if store is not None else None
        attach = await self._attachable(store, session, upstream, recorded)
        link = self._link(session, upstream, relay, attach, shared=store is not None)
        if attach is not None and not attach.hold_get and recorded is not None:
            self._held_by[(session.id, upstream.id)] = recorded[2]
        try:
            await link.open()
            if not upstream.ready:
                upstream.reconnect_now()
            if attach is None:
                await self._reapply(session, upstream, link)
            if store is not None and attach is None and link.upstream_session is not None:
                link = await self._record(store, session, upstream, relay, link, recorded)
            elif store is None and self.link_opened is not None:
                await self.link_opened(session, upstream.id)
        except BaseException:  # failed, or the session ended meanwhile: the link must not outlive this
            self._close_later(link)
            raise
        watcher = asyncio.ensure_future(self._forget_when_closed(session, upstream, link, uri_out))
        self._closing.add(watcher)
        watcher.add_done_callback(self._closing.discard)
        return relay, link

    def _link(
        self, session: Session, upstream: Upstream, relay: SessionRelay, attach: Attach | None, shared: bool
    ) -> UpstreamLink:
        caps, label = session.client_capabilities, f"session {session.id[:8]}"
        return UpstreamLink(upstream.config, relay, caps, label, upstream.tokens, attach=attach, shared=shared)

    async def _attachable(
        self, store: SharedUpstreams | None, session: Session, upstream: Upstream, recorded: RecordedUpstream | None
    ) -> Attach | None:
        """The recorded upstream session to re-attach, unless this process found it lost. Its GET
        stream is held by one process: the one that holds it already, else the first to find that
        one dead (its heartbeat gone) takes it over."""
        if store is None or recorded is None:
            return None
        upstream_session, init_result, owner, alive = recorded
        if self._lost_upstream.get((session.id, upstream.id)) == upstream_session:
            return None
        hold = owner == store.proc or (not alive and await store.take_upstream_get(session, upstream.id, owner))
        return Attach(upstream_session, init_result, hold)

    async def _record(
        self,
        store: SharedUpstreams,
        session: Session,
        upstream: Upstream,
        relay: SessionRelay,
        link: UpstreamLink,
        recorded: RecordedUpstream | None,
    ) -> UpstreamLink:
        """A new upstream session for a shared session: recorded for every process, unless another
        process recorded its own meanwhile (both opened at once): then this one is ended and theirs
        re-attached. Replacing one that was lost (the upstream restarted or forgot it), the client
        is told once that what the upstream kept in it is gone."""
        assert link.upstream_session is not None
        replacing = recorded[0] if recorded is not None else None
        opened = link.upstream_session, link.init_result
        if await store.record_upstream_session(session, upstream.id, *opened, replacing):
            if replacing is not None:
                log.warning(
                    "upstream %s: session %s had lost its upstream session; a new one was opened",
                    upstream.id,
                    session.id[:8],
                )
                relay.notice = {
                    "level": "warning",
                    "logger": "mcpgw",
                    "data": (
                        f"upstream {upstream.id}: the upstream no longer knew the upstream session the gateway "
                        "had opened for your session (it restarted or ended it); a new one was opened: what "
                        "the upstream kept in the old one (subscriptions, its own state) is not in the new one"
                    ),
                }
            return link
        link.keep_session = False  # ours is used by nobody: ended upstream too
        self._close_later(link)
        attach = await self._attachable(store, session, upstream, await store.upstream_session(session, upstream.id))
        if attach is None:
            raise UpstreamUnavailable(upstream.id, "is unavailable: its upstream session for this session was lost")
        theirs = self._link(session, upstream, relay, attach, shared=True)
        try:
            await theirs.open()
        except BaseException:
            self._close_later(theirs)
            raise
        return theirs

    async def _watch_holders(self, store: SharedUpstreams) -> None:
        """The GET stream of an upstream session is held by one process (what the upstream sends on
        its own, not within a request, comes there). When that process dies, the first process still
        re-attached to the session that notices takes the stream over; the others learn who did."""
        while True:
            await asyncio.sleep(HOLDER_CHECK_S)
            try:
                await self._check_holders(store)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - state unavailable: checked again next time
                log.debug("checking the upstream GET stream holders failed: %s", exc)

    async def _check_holders(self, store: SharedUpstreams) -> None:
        if not self._held_by and not self._owners:
            return
        alive = await store.alive({*self._held_by.values(), *self._owners.values()})
        for key, owner in list(self._owners.items()):
            if owner not in alive:  # its stdio connection went with it: the next use starts one here
                self._owners.pop(key, None)
        for key, holder in list(self._held_by.items()):
            pending = self._links.get(key)
            if pending is None or (link := _opened(pending)) is None or not link.alive or link.holds_get:
                self._held_by.pop(key, None)
                continue
            if holder in alive:
                continue
            relay = pending.result()[0]
            if await store.take_upstream_get(relay.session, key[1], holder):
                self._held_by.pop(key, None)
                link.hold_get()
                continue
            recorded = await store.upstream_session(relay.session, key[1])
            if recorded is None or recorded[0] != link.upstream_session:
                self._held_by.pop(key, None)  # replaced meanwhile: this link's next request finds out
            else:
                self._held_by[key] = recorded[2]

    # -- stdio upstreams of shared sessions: reached through the process holding the connection ---
    def _routed(self, session: Session, upstream: Upstream) -> SharedUpstreams | None:
        store = self.shared_upstreams
        return store if store is not None and session.shared and upstream.config.transport == "stdio" else None

    async def _owner(self, store: SharedUpstreams, session: Session, upstream: Upstream) -> str | None:
        """The process holding the session's connection to a stdio upstream when it is another one;
        None when it is this one, or becomes this one now (none held it, or its holder is gone:
        link_opened then tells the client, once, that what the upstream kept is lost)."""
        key = (session.id, upstream.id)
        if key in self._links:
            return None
        if (cached := self._owners.get(key)) is not None:
            return cached
        self._track(session)  # known here: another process may relay its requests here at once
        for _ in range(3):
            owner, alive = await store.upstream_owner(session, upstream.id)
            if owner == store.proc:
                return None
            if alive:
                self._owners[key] = owner
                return owner
            if await store.take_upstream_get(session, upstream.id, owner):
                return None
        raise UpstreamUnavailable(upstream.id, "is unavailable: its connection for this session keeps changing hands")

    async def _call_remote(
        self,
        store: SharedUpstreams,
        owner: str,
        upstream: Upstream,
        method: str,
        params: dict[str, Any] | None,
        ctx: CallContext,
        session: Session,
    ) -> dict[str, Any]:
        """Relay one request to the process holding the stdio connection and wait for its answer
        (process_relay.py): its progress comes back as it is made; what the upstream sends otherwise
        (logs, requests to the client) that process sends on the session's GET stream."""
        fields = {
            "session": session.id,
            "upstream": upstream.id,
            "method": method,
            "params": params,
            "progress": ctx.progress_token is not None,
        }
        timeout = upstream.config.call_timeout_s

        async def progressed(note: dict[str, Any]) -> None:
            await ctx.progress(note.get("progress", 0.0), note.get("total"), note.get("message"))

        try:
            waits = None if method in WAITS_BY_DESIGN else timeout
            answer = await self._relay.ask(store, owner, fields, progressed, waits)
        except ProcessStopped:
            self._owners.pop((session.id, upstream.id), None)
            raise UpstreamUnavailable(
                upstream.id, f"was reached through gateway process {owner}, which stopped during {method}"
            ) from None
        except NoAnswer:
            raise UpstreamTimeout(upstream.id, f"did not answer {method} within {timeout:g} s") from None
        error = answer.get("error")
        if isinstance(error, dict):
            data = error.get("data")
            if isinstance(data, dict) and data.pop("moved", False):
                self._owners.pop((session.id, upstream.id), None)  # asked again next time
            raise JsonRpcError(int(error["code"]), str(error["message"]), data)
        result: dict[str, Any] = answer.get("result") or {}
        return result

    async def remote_log_level(self, session: Session, level: str, ctx: CallContext) -> None:
        """logging/setLevel for the session's stdio connections held by other processes."""
        for upstream in self.upstreams.values():
            store = self._routed(session, upstream)
            key = (session.id, upstream.id)
            if store is None or key in self._links or "logging" not in upstream.capabilities:
                continue
            owner = self._owners.get(key)
            if owner is None:
                recorded, alive = await store.upstream_owner(session, upstream.id)
                owner = recorded if alive and recorded != store.proc else None
            if owner is not None:
                with contextlib.suppress(JsonRpcError):  # on an error that upstream keeps its level
                    await self._call_remote(store, owner, upstream, "logging/setLevel", {"level": level}, ctx, session)

    def _notified_remote(self, message: dict[str, Any]) -> None:
        """A client notification (upnotify) for a stdio connection held here, from another process."""
        pending = self._links.get((str(message.get("session")), str(message.get("upstream"))))
        if pending is not None and (link := _opened(pending)) is not None:
            task = asyncio.ensure_future(link.notify(str(message.get("method")), message.get("params")))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _serve_remote(self, store: SharedUpstreams, message: dict[str, Any], note: Note) -> dict[str, Any]:
        """Run a request another process relayed to this one's stdio connection: its answer."""
        upstream_id, method = message["upstream"], message["method"]

        async def relay_progress(progress: float, total: float | None, message: str | None) -> None:
            await note({"progress": progress, "total": total, "message": message})  # in order, before the answer

        try:
            # Known here, or its copy forgotten here while the client was served elsewhere: from the record.
            session = self._known.get(message["session"]) or await store.lookup(str(message["session"]))
            upstream = self.upstreams.get(upstream_id)
            if session is None or session.closed or upstream is None:
                raise UpstreamUnavailable(
                    upstream_id, f"is not connected for this session in gateway process {store.proc} any more"
                )
            prefix = upstream.config.prefix

            def uri_out(uri: str) -> str:
                return uri if session.server is not None else public_uri(prefix, uri)

            _, link = await self.session_link(session, upstream, uri_out)
            on_progress = relay_progress if message.get("progress") else None
            result = await link.request(method, outgoing_params(message.get("params")), on_progress)
        except UpstreamUnavailable as err:
            if isinstance(err, UpstreamTimeout):
                raise
            # the caller forgets this process as the holder
            raise JsonRpcError(err.code, err.message, {**(err.data or {}), "moved": True}) from None
        self._remember(session, upstream, method, message.get("params"))
        return {"result": result}

    def _ended(self, key: tuple[str, str], link: UpstreamLink) -> None:
        """A session's link ended: if the upstream refused its session (404), this process re-attaches
        it no more (the next one opened replaces it)."""
        if link.session_lost and link.upstream_session is not None and self.shared_upstreams is not None:
            self._lost_upstream[key] = link.upstream_session

    async def _reapply(self, session: Session, upstream: Upstream, link: UpstreamLink) -> None:
        """Give a new connection the session's state: its log level and its subscriptions."""
        caps = link.init_result.get("capabilities", {})
        if session.log_level_set and "logging" in caps:
            with contextlib.suppress(JsonRpcError):  # on an error the upstream keeps its own level
                await link.request("logging/setLevel", {"level": session.log_level})
        for uri in sorted(self.subscriptions.get((session.id, upstream.id), ())):
            try:
                await link.request("resources/subscribe", {"uri": uri})
            except JsonRpcError as err:
                log.warning(
                    "upstream %s: re-subscribing session %s to %s failed: %s",
                    upstream.id,
                    session.id[:8],
                    uri,
                    err.message,
                )

    async def _forget_when_closed(
        self, session: Session, upstream: Upstream, link: UpstreamLink, uri_out: Callable[[str], str]
    ) -> None:
        """An upstream connection that ended under a live session is reopened: at once when the
        session holds subscriptions there (so their updates keep coming), else at its next call."""
        await link.wait_closed()
        key = (session.id, upstream.id)
        pending = self._links.get(key)
        mine = pending is not None and _opened(pending) is link
        if mine:
            self._ended(key, link)
            del self._links[key]
        await link.close()
        if mine and not session.closed and self.subscriptions.get(key):
            await self._reopen(session, upstream, uri_out)

    async def _reopen(self, session: Session, upstream: Upstream, uri_out: Callable[[str], str]) -> None:
        while not session.closed and (session.id, upstream.id) not in self._links:
            if not await upstream.wait_ready(upstream.config.restart_backoff_max_s or 30.0):
                continue
            try:
                await self.session_link(session, upstream, uri_out)
                log.info("upstream %s: session %s reconnected, state re-applied", upstream.id, session.id[:8])
                return
            except UpstreamUnavailable as exc:
                log.warning("upstream %s: reconnecting session %s failed: %s", upstream.id, session.id[:8], exc.reason)
                await asyncio.sleep(upstream.config.restart_backoff_s or 0.5)

    async def session_links(self, session: Session) -> list[tuple[Upstream, UpstreamLink]]:
        """The open connections of one session."""
        return [
            (self.upstreams[uid], link)
            for uid, pending in self._links.of_session(session.id)
            if (link := _opened(pending)) is not None
        ]

    def _drop(self, key: tuple[str, str]) -> None:
        pending = self._links.pop(key, None)
        if pending is None:
            return
        link = _opened(pending)
        if link is not None:
            self._close_later(link)
        else:
            pending.cancel()  # still opening: _open closes what it started

    def _close_later(self, link: UpstreamLink) -> None:
        task = asyncio.ensure_future(link.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def client_notification(self, session: Session, method: str, params: dict[str, Any] | None) -> None:
        """A client notification every upstream connection of the session should hear
        (notifications/roots/list_changed)."""
        for _, pending in self._links.of_session(session.id):
            if (link := _opened(pending)) is not None:
                task = asyncio.ensure_future(link.notify(method, params))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        store = self.shared_upstreams
        for (sid, uid), owner in self._owners.items():  # stdio connections held by other processes
            if store is not None and sid == session.id:
                note = {"kind": UPSTREAM_NOTIFY, "session": sid, "upstream": uid, "method": method, "params": params}
                self._relay.post(store, owner, note)

    def _drop_session(self, session_id: str) -> None:
        self._tracked.discard(session_id)
        self._viewers.pop(session_id, None)
        for key in [k for k in self.subscriptions if k[0] == session_id]:
            del self.subscriptions[key]
        for key in [k for k in self._lost_upstream if k[0] == session_id]:
            del self._lost_upstream[key]
        for key in [k for k in self._held_by if k[0] == session_id]:
            del self._held_by[key]
        for key in [k for k in self._owners if k[0] == session_id]:
            del self._owners[key]
        self._known.pop(session_id, None)
        for uid, _ in self._links.of_session(session_id):
            self._drop((session_id, uid))


class FederatedDispatcher(Dispatcher):
    """What `/mcp` and the virtual servers share: client notifications that concern upstreams."""

    federation: Federation

    def notified(self, method: str, params: dict[str, Any] | None, session: Session | None) -> None:
        if method == "notifications/roots/list_changed" and session is not None:
            self.federation.client_notification(session, method, params)
