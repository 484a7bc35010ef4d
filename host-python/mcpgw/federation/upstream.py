"""One configured upstream: its catalog connection, restarted with backoff, and its cached catalog.

The catalog connection lists the upstream's tools, resources, templates and
prompts for the merged catalog, refreshes them on `list_changed`, and tells
`/health` how the upstream is. Calls do not use it when a session exists: each
client session gets its own connection (see hub.py), so everything that is
per-session upstream (log level, roots, subscriptions) stays per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .config import UpstreamConfig
from .link import OVERSIZED, UpstreamLink, UpstreamUnavailable, describe
from .oauth import ClientCredentials
from .stats import CallStats

log = logging.getLogger("mcpgw.federation")

LISTS = (  # method, result key, capability that offers it
    ("tools/list", "tools", "tools"),
    ("resources/list", "resources", "resources"),
    ("resources/templates/list", "resourceTemplates", "resources"),
    ("prompts/list", "prompts", "prompts"),
)


async def read_lists(link: UpstreamLink, max_pages: int) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Every list the upstream offers on `link`, each page up to `max_pages`; and the lists cut there."""
    caps = link.init_result.get("capabilities", {})
    lists: dict[str, list[dict[str, Any]]] = {}
    cut: list[str] = []
    for method, key, capability in LISTS:
        items: list[dict[str, Any]] = []
        if capability in caps:
            cursor = None
            for _ in range(max_pages):
                result = await link.request(method, {"cursor": cursor} if cursor else None)
                items += [item for item in result.get(key, []) if isinstance(item, dict)]
                cursor = result.get("nextCursor")
                if not cursor:
                    break
            if cursor:  # an upstream that keeps paging is cut off rather than followed forever
                cut.append(key)
                log.warning(
                    "upstream %s (%s): %s cut at max_pages (%d pages, %d items); raise max_pages to see the rest",
                    link.config.id,
                    link.label,
                    key,
                    max_pages,
                    len(items),
                )
        lists[key] = items
    return lists, cut


# Told when the catalog changed: (upstream, list keys, whether it came or went as a whole: then every
# client's view of it changed, not only of those who see the catalog).
OnChange = Callable[["Upstream", set[str], bool], Awaitable[None]]


class Upstream:
    def __init__(self, config: UpstreamConfig, on_change: OnChange) -> None:
        self.config = config
        self.on_change = on_change
        # Told of notifications/resources/updated on the catalog connection (the federation has it
        # subscribe there for 2026-07-28 subscriptions/listen streams): (upstream, upstream URI).
        self.resource_updated: Callable[[Upstream, str], None] | None = None
        self.state = "starting"  # starting, ready, restarting, stopped
        self.error: str | None = None
        self.restarts = 0
        self.warned_full = False  # logged once that max_connections was reached
        self.link: UpstreamLink | None = None
        self.lists: dict[str, list[dict[str, Any]]] = {key: [] for _, key, _ in LISTS}
        self.cut: list[str] = []  # lists cut at max_pages (the upstream had more pages)
        self._task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._announced: set[str] = set()  # list kinds the upstream said changed, not yet re-read
        self.refreshes = 0  # catalog re-reads after list_changed
        # Told of every list_changed this process heard from the upstream (scale-out: the other
        # processes re-read their catalogs too; set by the composition root, gateway.py).
        self.announce: Callable[[str, str], None] | None = None
        self._since = time.monotonic()
        self._up = asyncio.Event()  # set while ready
        self._check = asyncio.Event()  # ping the catalog connection now (a session connection failed)
        self._wake = asyncio.Event()  # end the backoff now (a session connection reached the upstream)
        self._attempts: list[asyncio.Event] = []  # set when the catalog connection's next attempt ends
        self.down_listeners: list[Callable[[Upstream], None]] = []  # told when a ready upstream goes down
        # The catalog connection last ended because the upstream no longer knew its session: it
        # answered (it restarted), so it is not down for the connections that have their own.
        self.lost_session = False
        self.tokens = (  # the gateway's own token for an upstream that needs one, shared by its connections
            ClientCredentials(config.id, config.oauth, config.url, config.connect_timeout_s) if config.oauth else None
        )
        self.calls = CallStats()  # requests relayed to it (hub.py), for /health and the console

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def ready(self) -> bool:
        return self.link is not None and self.link.alive

    @property
    def capabilities(self) -> dict[str, Any]:
        return self.link.init_result.get("capabilities", {}) if self.link else {}

    @property
    def init_result(self) -> dict[str, Any]:
        return self.link.init_result if self.link else {}

    def health(self) -> dict[str, Any]:
        info = self.init_result.get("serverInfo") or {}
        return {
            "state": self.state,
            "transport": self.config.transport,
            # streamable-http: whose client carries its links, the gateway's own ("mcpgw") or the SDK's
            "client": self.link.client if self.link is not None and self.config.transport != "stdio" else None,
            "since_s": round(time.monotonic() - self._since, 1),
            "restarts": self.restarts,
            "error": self.error,
            "server": info.get("name"),
            "protocol_version": self.link.version if self.link else None,
            "tools": len(self.lists["tools"]),
            "resources": len(self.lists["resources"]),
            "prompts": len(self.lists["prompts"]),
            "cut_at_max_pages": self.cut,
            "catalog_refreshes": self.refreshes,
            "oversized_messages": OVERSIZED[self.id],
            "oauth": self.tokens.health() if self.tokens is not None else None,
            "calls": self.calls.health(),
        }

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._supervise())

    async def stop(self) -> None:
        self.state = "stopped"
        for task in (self._refresh, self._task):
            if task is not None:
                task.cancel()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _enter(self, state: str, error: str | None = None) -> None:
        self.state, self.error, self._since = state, error, time.monotonic()
        if state == "ready":
            self._up.set()
        else:
            self._up.clear()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until the catalog connection is up; True if it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout or None)
        return self.ready

    def check_now(self) -> None:
        """A call through another connection found the upstream gone or restarted: ping the catalog
        connection at once instead of at the next health interval, so /health tells the truth."""
        self._check.set()

    async def attempt_now(self, timeout: float) -> bool:
        """Connect the catalog connection now (not after its backoff) and wait, at most `timeout` s,
        for that attempt to end; True if the upstream is ready. (A call that finds a network upstream
        down: it may have restarted since its connection was refused.)"""
        if self.ready or self.state == "stopped":
            return self.ready
        ended = asyncio.Event()
        self._attempts.append(ended)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), timeout or None)
        return self.ready

    def _attempted(self) -> None:
        attempts, self._attempts = self._attempts, []
        for ended in attempts:
            ended.set()

    def reconnect_now(self) -> None:
        """A session connection just reached the upstream: the catalog connection need not wait out
        its backoff."""
        self._wake.set()

    async def _supervise(self) -> None:
        backoff = self.config.restart_backoff_s
        while True:
            link = UpstreamLink(self.config, handler=self, label="catalog", auth=self.tokens)
            up_since = time.monotonic()
            was_ready = False
            try:
                await link.open()
                self.link = link
                changed = await self._fetch_lists(link)
                self._enter("ready")
                self._attempted()
                was_ready = True
                if changed:
                    await self.on_change(self, changed, True)
                await self._watch(link)
                self.error = link.error
            except asyncio.CancelledError:
                await link.close()
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the connection is recorded, then it restarts
                # The link's own reason, not the error built from it (no doubled "Upstream 'x' ...").
                self.error = link.error or describe(exc)
            finally:
                self.link = None
            self._enter("restarting", self.error)  # before closing: /health says the truth at once
            if not was_ready:
                self._attempted()
            self.lost_session = link.session_lost
            if was_ready:
                for listener in list(self.down_listeners):
                    listener(self)
            await link.close()
            # A connection that stayed up for a while starts the backoff afresh.
            if time.monotonic() - up_since > max(10 * backoff, 30.0):
                backoff = self.config.restart_backoff_s
            self.restarts += 1
            gone = {key for key, items in self.lists.items() if items}
            if gone:  # its tools and the rest leave the merged catalog until it is back
                self.lists = {key: [] for key in self.lists}
                await self.on_change(self, gone, True)
            if link.session_lost and was_ready:
                # It answered: it is up again with none of our sessions. Reconnect now.
                log.warning("upstream %s: %s; reconnecting now", self.id, self.error)
                continue
            log.warning("upstream %s: %s; reconnecting in %.1f s", self.id, self.error, backoff)
            if not self._attempts:  # else someone is waiting for an attempt: no backoff
                self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            backoff = min(backoff * 2, self.config.restart_backoff_max_s)

    async def _watch(self, link: UpstreamLink) -> None:
        """Until the connection ends; an upstream that stops answering pings counts as ended."""
        interval = self.config.health_interval_s
        while link.alive:
            self._check.clear()
            closed = asyncio.ensure_future(link.wait_closed())
            check = asyncio.ensure_future(self._check.wait())
            try:
                await asyncio.wait({closed, check}, timeout=interval or None, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                check.cancel()
            if not link.alive:
                return
            try:  # the interval passed, or a session connection asked for a check
                await link.request("ping", None, timeout=link.ping_timeout_s)
            except UpstreamUnavailable as exc:
                if link.alive:
                    link.lose(f"did not answer a ping: {exc.reason}")
                return
            except Exception as exc:  # noqa: BLE001 - whatever the ping's failure, the link counts as ended
                link.lose(f"did not answer a ping: {describe(exc)}")
                return

    async def _fetch_lists(self, link: UpstreamLink) -> set[str]:
        """Re-read every list the upstream offers; returns the keys whose contents changed."""
        lists, cut = await read_lists(link, int(self.config.max_pages))
        changed = {key for key in lists if lists[key] != self.lists.get(key)}
        self.lists, self.cut = lists, cut
        return changed

    def refresh_soon(self, notification: str, *, heard_elsewhere: bool = False) -> None:
        """Re-read the catalog after a list_changed, once however many arrive meanwhile (one that
        arrives while a re-read runs gets one more after it), then tell clients what changed.
        `heard_elsewhere`: another gateway process heard it (shared state)."""
        if not heard_elsewhere and self.announce is not None:
            self.announce(self.id, notification)
        self._announced.add(notification.split("/")[1])  # notifications/<kind>/list_changed
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._refresh_now())

    async def settled(self) -> None:
        """Until a catalog re-read under way is done (bounded by the connect timeout): a listing
        that arrives after a list_changed was heard (here or by another gateway process) answers
        with the new catalog, not the one being replaced."""
        refresh = self._refresh
        if refresh is not None and not refresh.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(refresh), self.config.connect_timeout_s or None)

    async def _refresh_now(self) -> None:
        while self._announced:
            await asyncio.sleep(0)  # let a burst of list_changed arrive first
            self._announced = set()
            link = self.link
            if link is None:
                return
            self.refreshes += 1
            try:
                changed = await self._fetch_lists(link)
            except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the old catalog; the link's own watch handles the rest
                log.warning("upstream %s: refreshing the catalog failed: %s", self.id, describe(exc))
                return
            if changed:  # an announcement that changed nothing reaches no one
                await self.on_change(self, changed, False)

    # -- LinkHandler for the catalog connection --------------------------------
    async def upstream_notification(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> None:
        if method.endswith("/list_changed"):
            self.refresh_soon(method)
        elif method == "notifications/resources/updated" and self.resource_updated is not None:
            if isinstance(params.get("uri"), str):
                self.resource_updated(self, params["uri"])
        elif method == "notifications/message":
            log.debug("upstream %s says: %s", self.id, params.get("data"))

    async def upstream_request(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the catalog connection offers the upstream no client capabilities")
