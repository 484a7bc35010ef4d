"""The edge as pure ASGI middleware: one boundary crossing per request.

- CORS preflights on MCP paths are answered here from the edge's response;
  the application is never called.
- Everything else gets the normalized context at `scope["mcpgw.edge"]` (in a
  copy of the scope; read-only, as every outcome the cache hands out, since
  a cached one is shared), the canonical path in `scope["path"]` for known routes
  (so routing sees `/mcp` for `//mcp/`), and the context's CORS headers added
  to the response start (into the outermost layer's `RESPONSE_HEADERS_KEY` list when there
  is one, observability/observer.py: one `send` wrapper per request instead of one per layer).
- Origin and Host verdicts are enforced here for every route, because they
  protect the whole gateway: a denied Origin gets 403 (cross-site requests),
  a denied Host 421 (DNS rebinding on a loopback bind), as the MCP SDK does.
- A request head larger than `max_head_bytes` gets 431 before the edge sees
  it: the HTTP parser (httptools) sets no limit of its own, and every byte
  of head costs edge work.
- Outcomes are cached per backend (`outcome_cache.py`): a repeated head
  does not cross the boundary again (`cache.crossings` counts those that do).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..asgi import ASGIApp, Receive, Scope, Send, send_empty, send_json
from ..server.jsonrpc import INVALID_REQUEST, error_response
from .backend import Edge
from .outcome_cache import OutcomeCache

SCOPE_KEY = "mcpgw.edge"
# Headers to add to an HTTP response's start, set by the outermost layer (the request observer)
# in the scope: layers behind it append theirs instead of wrapping `send` once more each.
RESPONSE_HEADERS_KEY = "mcpgw.response_headers"
# Encoded CORS headers kept per distinct value (a client's Origin makes one): bounded.
MAX_ENCODED_CORS = 256


def _encode_headers(pairs: Iterable[Sequence[str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs]


async def _refuse(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_json(send, status, error_response(None, INVALID_REQUEST, message), headers)


def head_size(raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    size = len(raw_path) + len(query)
    for name, value in headers:
        size += len(name) + len(value)
    return size


def _tagging(send: Send, tag: str) -> Send:
    """Name the edge version that evaluated the request on its response."""
    value = tag.encode("latin-1")

    async def tagged(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"mcpgw-edge", value)]
        await send(message)

    return tagged


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        edge: Edge,
        max_head_bytes: int,
        tag_responses: bool,
        cache_entries: int,
    ):
        self.app = app
        self.edge = edge
        self.cache = OutcomeCache(cache_entries)
        self.max_head_bytes = max_head_bytes
        self.tag_responses = tag_responses
        self._cors: dict[Any, list[tuple[bytes, bytes]]] = {}

    def _encoded_cors(self, pairs: Any) -> list[tuple[bytes, bytes]]:
        """`pairs` (an outcome's frozen `cors_headers`) as ASGI headers, encoded once per value."""
        found = self._cors.get(pairs)
        if found is None:
            if len(self._cors) >= MAX_ENCODED_CORS:
                self._cors.clear()
            found = self._cors[pairs] = _encode_headers(pairs)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return

        raw_path = scope.get("raw_path")
        if raw_path is None:  # optional in ASGI; uvicorn always sends it
            raw_path = scope["path"].encode("utf-8")
        query = scope.get("query_string", b"")
        headers = scope["headers"]
        size = head_size(raw_path, query, headers)
        if size > self.max_head_bytes:
            if kind == "http":
                await _refuse(send, 431, "Request Header Fields Too Large")
            else:
                await send({"type": "websocket.close", "code": 1009})
            return
        backend = self.edge.backend  # read once: a hot swap may replace it at any time
        outcome = self.cache.evaluate(backend, scope.get("method", "GET"), raw_path, query, headers, size)
        # Behind the observer, response headers go into its list; else each its own `send` wrapper.
        extra = scope.get(RESPONSE_HEADERS_KEY) if kind == "http" else None
        at = len(extra) if extra is not None else 0  # CORS headers go before the tag, as they did
        if self.tag_responses:
            if extra is None:
                send = _tagging(send, backend.tag)
            else:
                extra.append((b"mcpgw-edge", backend.tag.encode("latin-1")))

        preflight = outcome.get("preflight")
        if preflight is not None:
            await send_empty(send, preflight["status"], _encode_headers(preflight["headers"]))
            return

        ctx = outcome["forward"]
        scope = dict(scope)  # ours to extend; the server's dict stays as it was
        scope[SCOPE_KEY] = ctx
        if ctx["route"] != "other":
            # The canonical path of a known route is plain ASCII with no escapes
            # (the edge checked every segment), so it is also the decoded path.
            # Other paths keep the server's decoded `path`.
            scope["path"] = ctx["path"]
        cors = self._encoded_cors(ctx["cors_headers"]) if ctx["cors_headers"] else None

        if kind == "http":
            if ctx["host_state"] == "denied":
                await _refuse(send, 421, "Invalid Host header", cors)
                return
            if ctx["origin_state"] == "denied":
                await _refuse(send, 403, "Origin not allowed", cors)
                return
        elif ctx["host_state"] == "denied" or ctx["origin_state"] == "denied":
            # Cross-site WebSocket hijacking / rebinding: refuse the upgrade.
            await send({"type": "websocket.close", "code": 1008})
            return

        if cors is None:
            await self.app(scope, receive, send)
            return
        if extra is not None:
            extra[at:at] = cors
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)
