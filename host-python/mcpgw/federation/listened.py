"""2026-07-28 `subscriptions/listen` streams: the resource URIs they name, subscribed upstream.

A listen stream names resource URIs (on /mcp prefixed, on a virtual server the upstream's own);
each upstream's catalog connection is subscribed to a URI while at least one stream names it, so
its `notifications/resources/updated` reach those streams (hub.py publishes them). Bounded: at
most MAX_LISTENED_URIS distinct URIs per upstream, of which the streams of one client address name
at most MAX_LISTENED_URIS_PER_CLIENT; a URI the upstream neither lists nor matches with one of its
resource templates is not subscribed.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import re
from collections.abc import Collection, Mapping
from typing import Any

from ..server.jsonrpc import JsonRpcError
from .names import split_uri
from .upstream import Upstream

log = logging.getLogger("mcpgw.federation")

MAX_LISTENED_URIS = 256  # distinct resource URIs 2026-07-28 listen streams have subscribed per upstream
MAX_LISTENED_URIS_PER_CLIENT = 64  # of those, distinct URIs the listen streams of one client address name


@functools.lru_cache(maxsize=1024)
def _template_pattern(template: str) -> re.Pattern[str]:
    """A URI template (RFC 6570) as a pattern the URIs it expands to match: a simple `{var}` is
    one path segment; a reserved, fragment, path or exploded expression anything."""
    parts = re.split(r"(\{[^}]*\})", template)
    out = []
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            expr = part[1:-1]
            out.append(".*" if expr[:1] in ("+", "#", "/", "?", "&", ";", ".") or expr.endswith("*") else "[^/?#]*")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def offers(upstream: Upstream, uri: str, listed: Collection[Any]) -> bool:
    """Whether the upstream lists the resource URI (`listed`: its resources' URIs), or one of its
    resource templates matches it. An upstream not connected yet (its lists unknown) is taken to
    offer it."""
    if not upstream.ready or uri in listed:
        return True
    templates = (t.get("uriTemplate") for t in upstream.lists["resourceTemplates"])
    return any(isinstance(t, str) and _template_pattern(t).fullmatch(uri) for t in templates)


class ListenedUris:
    """The URIs listen streams name, counted per upstream and per client address."""

    def __init__(self, upstreams: Mapping[str, Upstream], by_prefix: Mapping[str, Upstream]) -> None:
        self.upstreams = upstreams
        self.by_prefix = by_prefix
        # (upstream id, upstream URI) -> listen streams naming it: subscribed on the catalog connection
        self._listened: collections.Counter[tuple[str, str]] = collections.Counter()
        self._listened_per_upstream: collections.Counter[str] = collections.Counter()  # distinct URIs
        # (client address, upstream id, upstream URI) -> that client's listen streams naming it, and
        # (client address, upstream id) -> distinct URIs: each client's share of the upstream's cap
        self._listened_by: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._client_share: collections.Counter[tuple[str, str]] = collections.Counter()
        self._subscribing: dict[str, asyncio.Lock] = {}  # one (un)subscribe at a time per upstream
        self._sending: set[asyncio.Task[None]] = set()

    def interest(
        self, server_id: str | None, uris: Collection[str], opened: bool, client: str | None = None
    ) -> frozenset[str]:
        """Listen streams of an endpoint named these URIs (opened) or ended: the catalog connection
        subscribes upstream to each URI while at least one stream names it, at most
        MAX_LISTENED_URIS distinct URIs per upstream, one (un)subscribe request at a time; the
        streams of one client address name at most MAX_LISTENED_URIS_PER_CLIENT distinct URIs per
        upstream (one client cannot take the whole cap). What an opening stream named and is not
        subscribed to (a URI the upstream does not list nor match with a template, or past either
        cap) is returned: not honored."""
        refused: set[str] = set()
        past_share = 0
        who = client or ""
        listed: dict[str, set[Any]] = {}  # upstream id -> the URIs of its resources
        for uri in uris:
            if server_id is not None:
                upstream = self.upstreams.get(server_id)
                target = (upstream, uri) if upstream is not None else None
            else:
                split = split_uri(uri, self.by_prefix)
                target = (self.by_prefix[split[0]], split[1]) if split is not None else None
            if target is None:
                continue  # a built-in URI (they never change) or nobody's
            upstream, upstream_uri = target
            key, mine, share = (upstream.id, upstream_uri), (who, upstream.id, upstream_uri), (who, upstream.id)
            if opened:
                if mine not in self._listened_by and self._client_share[share] >= MAX_LISTENED_URIS_PER_CLIENT:
                    refused.add(uri)
                    past_share += 1
                    continue
                if key not in self._listened:
                    if upstream.id not in listed:
                        listed[upstream.id] = {r.get("uri") for r in upstream.lists["resources"]}
                    if self._listened_per_upstream[upstream.id] >= MAX_LISTENED_URIS or not offers(
                        upstream, upstream_uri, listed[upstream.id]
                    ):
                        refused.add(uri)
                        continue
                    self._listened_per_upstream[upstream.id] += 1
                    self._subscribe_later(upstream, "resources/subscribe", upstream_uri)
                self._listened[key] += 1
                if mine not in self._listened_by:
                    self._client_share[share] += 1
                self._listened_by[mine] += 1
                continue
            if self._listened_by[mine] > 0:
                self._listened_by[mine] -= 1
                if self._listened_by[mine] == 0:
                    del self._listened_by[mine]
                    self._client_share[share] -= 1
                    if self._client_share[share] <= 0:
                        del self._client_share[share]
            if self._listened[key] > 0:
                self._listened[key] -= 1
                if self._listened[key] == 0:
                    del self._listened[key]
                    self._listened_per_upstream[upstream.id] -= 1
                    if self._listened_per_upstream[upstream.id] <= 0:
                        del self._listened_per_upstream[upstream.id]
                    self._subscribe_later(upstream, "resources/unsubscribe", upstream_uri)
        if refused:
            log.warning(
                "listen stream of %s: %d resource URI(s) not subscribed upstream (unknown to it, or past %d per "
                "upstream), %d of them past the client's share (%d per upstream)",
                client or "a local client",
                len(refused),
                MAX_LISTENED_URIS,
                past_share,
                MAX_LISTENED_URIS_PER_CLIENT,
            )
        return frozenset(refused)

    def _subscribe_later(self, upstream: Upstream, method: str, uri: str) -> None:
        async def send() -> None:
            lock = self._subscribing.setdefault(upstream.id, asyncio.Lock())
            try:
                async with lock:  # in order, one at a time: a listen stream's URIs are not a burst upstream
                    link = upstream.link
                    if link is None or not upstream.ready:
                        return  # subscribed again when it comes back (resubscribe)
                    await link.request(method, {"uri": uri})
            except JsonRpcError as err:
                log.warning("upstream %s: %s %s for listen streams failed: %s", upstream.id, method, uri, err.message)

        task = asyncio.ensure_future(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def resubscribe(self, upstream: Upstream) -> None:
        """The upstream came back: its catalog connection is subscribed again to what is named."""
        for uid, uri in list(self._listened):
            if uid == upstream.id:
                self._subscribe_later(upstream, "resources/subscribe", uri)

    async def stop(self) -> None:
        await asyncio.gather(*self._sending, return_exceptions=True)
