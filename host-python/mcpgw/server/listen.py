"""MCP 2026-07-28 `subscriptions/listen`: the stream a stateless client opts in to for change
notifications (there is no GET stream in that revision).

One listen request is one stream: its first message is
`notifications/subscriptions/acknowledged` with the filter the gateway honors, then the
notifications it asked for (`notifications/tools|prompts|resources/list_changed`,
`notifications/resources/updated` for the URIs it named), each with
`_meta["io.modelcontextprotocol/subscriptionId"]` = the listen request's id. Events are level
triggers ("this changed, list again"), so a burst of the same event waiting for a slow reader
is sent once. The stream ends with a result (the same `_meta`) when the gateway ends it: idle
for `MCPGW_LISTEN_IDLE_TIMEOUT_S`, or the gateway shutting down; the client then listens again.
Closing the response ends it without one.

Bounded like other streams: at most `MCPGW_MAX_LISTENS_PER_CLIENT` open per client address
(another gets -32029), at most MAX_URIS resource URIs per stream, and at most one of each
distinct event waits for a reader (so at most the three list_changed kinds and the stream's
URIs). URIs the federation does not subscribe to upstream (not the upstream's, or past its
per-upstream cap) are left out of the acknowledgement: the stream does not hear of them.

Events are published per endpoint (`None`: /mcp; else a virtual server's id), by the
federation when an upstream's catalog changes and when a resource the listener named is
updated. Nothing of HTTP here: the request's `emit` carries the messages.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .context import CallContext
from .jsonrpc import INVALID_PARAMS, INVALID_REQUEST, JsonRpcError

log = logging.getLogger("mcpgw.listen")

SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"
ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
RESOURCE_UPDATED = "notifications/resources/updated"
# The filter's flags and the notification each one opts in to.
FLAGS = {
    "toolsListChanged": "notifications/tools/list_changed",
    "promptsListChanged": "notifications/prompts/list_changed",
    "resourcesListChanged": "notifications/resources/list_changed",
}
MAX_URIS = 1000  # resource URIs one stream may name
LIMIT_EXCEEDED = -32029  # as the engine's per-client caps (HTTP 429 there; here a JSON-RPC error)


@dataclass(eq=False)
class _Stream:
    server_id: str | None
    methods: frozenset[str]
    uris: frozenset[str]
    client: str | None
    pending: dict[tuple[str, str], None] = field(default_factory=dict)  # ordered, deduplicated
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ending: str | None = None  # why the gateway ends it (graceful: a result is sent)


class ListenHub:
    def __init__(self, max_per_client: int = 16, idle_timeout_s: float = 600.0) -> None:
        self.max_per_client = max_per_client  # 0: no cap
        self.idle_timeout_s = idle_timeout_s  # 0: no idle deadline
        self._streams: set[_Stream] = set()
        self._per_client: collections.Counter[str] = collections.Counter()
        self.refused = 0
        self.closed = False
        # Told when a stream names resource URIs of an endpoint, and when it ends (the federation
        # subscribes upstream for them): (server id, uris, True opened / False ended).
        # Returns the URIs of an opening stream it cannot take (not honored).
        self.interest: Callable[[str | None, Collection[str], bool, str | None], frozenset[str]] | None = None

    def health(self) -> dict[str, Any]:
        return {
            "max_listens_per_client": self.max_per_client,
            "listen_idle_timeout_s": self.idle_timeout_s,
            "streams": len(self._streams),
            "refused": self.refused,
        }

    def publish(self, server_id: str | None, method: str, uri: str | None = None) -> int:
        """Queue an event for every stream of the endpoint that asked for it; how many."""
        reached = 0
        for stream in list(self._streams):
            if stream.server_id != server_id:
                continue
            if method == RESOURCE_UPDATED:
                if uri is None or uri not in stream.uris:
                    continue
            elif method not in stream.methods:
                continue
            stream.pending[(method, uri or "")] = None  # one per distinct event: bounded by the filter
            stream.wake.set()
            reached += 1
        return reached

    def close(self) -> None:
        """The gateway is shutting down: every stream ends now, with its result."""
        self.closed = True
        for stream in self._streams:
            stream.ending = stream.ending or "shutdown"
            stream.wake.set()

    async def serve(self, server_id: str | None, request_id: Any, params: dict[str, Any], ctx: CallContext) -> Any:
        """Serve one listen request until it ends; its result (the stream ended gracefully)."""
        wanted = params.get("notifications")
        if not isinstance(wanted, dict):
            raise JsonRpcError(INVALID_PARAMS, "subscriptions/listen needs params.notifications (an object)")
        uris = wanted.get("resourceSubscriptions")
        if uris is not None and (not isinstance(uris, list) or not all(isinstance(u, str) for u in uris)):
            raise JsonRpcError(INVALID_PARAMS, "notifications.resourceSubscriptions must be a list of URIs")
        if uris is not None and len(uris) > MAX_URIS:
            raise JsonRpcError(INVALID_PARAMS, f"notifications.resourceSubscriptions: at most {MAX_URIS} URIs")
        if self.closed:
            raise JsonRpcError(INVALID_REQUEST, "Server shutting down")
        cap, client = self.max_per_client, ctx.client or ""
        if cap and self._per_client[client] >= cap:
            self.refused += 1
            raise JsonRpcError(
                LIMIT_EXCEEDED, f"Too many open subscriptions/listen streams from this client (limit {cap})"
            )
        honored: dict[str, Any] = {flag: True for flag in FLAGS if wanted.get(flag) is True}
        ordered = list(dict.fromkeys(uris or ()))  # the first named are the first honored
        named = frozenset(ordered)
        if named and self.interest is not None:
            named -= self.interest(server_id, ordered, True, ctx.client)  # subscribed upstream (or built-in)
        if named:
            honored["resourceSubscriptions"] = [u for u in ordered if u in named]
        stream = _Stream(server_id, frozenset(FLAGS[f] for f in FLAGS if f in honored), named, ctx.client)
        meta = {SUBSCRIPTION_ID_KEY: request_id}
        self._streams.add(stream)
        self._per_client[client] += 1
        try:
            ack = {"jsonrpc": "2.0", "method": ACKNOWLEDGED, "params": {"notifications": honored, "_meta": meta}}
            if not await ctx.emit(ack):
                raise JsonRpcError(
                    INVALID_REQUEST, "subscriptions/listen needs a streamed answer: Accept must list text/event-stream"
                )
            while stream.ending is None:
                stream.wake.clear()
                if not stream.pending:
                    try:
                        await asyncio.wait_for(stream.wake.wait(), self.idle_timeout_s or None)
                    except TimeoutError:
                        stream.ending = "idle"
                        break
                while stream.pending and stream.ending is None:
                    method, uri = next(iter(stream.pending))
                    del stream.pending[(method, uri)]
                    event_params: dict[str, Any] = {"_meta": meta}
                    if method == RESOURCE_UPDATED:
                        event_params = {"uri": uri, "_meta": meta}
                    if not await ctx.emit({"jsonrpc": "2.0", "method": method, "params": event_params}):
                        stream.ending = "lost"
            log.debug("listen stream %r of %s ended: %s", request_id, stream.client, stream.ending)
            return {"_meta": meta}
        finally:
            self._streams.discard(stream)
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]
            if stream.uris and self.interest is not None:
                self.interest(server_id, stream.uris, False, stream.client)
