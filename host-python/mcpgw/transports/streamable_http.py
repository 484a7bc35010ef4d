"""Streamable HTTP (POST /mcp): the first, JSON-response slice of the transport.

Reads the edge context from the scope; never re-parses what the edge decided.
The complete protocol (SSE responses, GET streams, resumability, batches,
2026-07-28 header matching) comes with the Streamable HTTP issue.
"""
from __future__ import annotations


import orjson

from ..asgi import Receive, Scope, Send, send_empty, send_json
from ..edge.contract import RequestContext
from ..edge.middleware import SCOPE_KEY
from ..server import jsonrpc
from ..server.dispatcher import SESSIONFUL_REVISIONS, STATELESS_REVISION, Dispatcher, negotiate
from ..server.sessions import SessionLimitReached, SessionStore

SESSION_NOT_FOUND = -32001  # as the MCP SDK reports an unknown session


class HttpError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit`."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise HttpError(413, jsonrpc.INVALID_REQUEST, f"Request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away during the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, jsonrpc.INVALID_REQUEST, f"Request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class StreamableHTTP:
    """ASGI app for the `mcp` route."""

    def __init__(self, dispatcher: Dispatcher, sessions: SessionStore, max_body_bytes: int):
        self.dispatcher = dispatcher
        self.sessions = sessions
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        try:
            if ctx["route"] != "mcp":
                # The router matched a pattern the edge did not accept as an MCP
                # path (e.g. an invalid server id such as `a%2Fb`).
                raise HttpError(404, jsonrpc.INVALID_REQUEST, "Not Found")
            if ctx["server_id"] is not None:
                raise HttpError(404, jsonrpc.INVALID_REQUEST, f"Unknown server: {ctx['server_id']}")
            if ctx["protocol_state"] == "unsupported":
                raise HttpError(400, jsonrpc.INVALID_REQUEST,
                                f"Unsupported MCP-Protocol-Version: {ctx['protocol_version']}")
            method = ctx["method"]
            if ctx["revision"] == STATELESS_REVISION and method != "POST":
                raise HttpError(405, jsonrpc.INVALID_REQUEST,
                                f"Method {method} not allowed under {STATELESS_REVISION}", [(b"allow", b"POST")])
            if method == "POST":
                await self._post(ctx, scope, receive, send)
            elif method == "DELETE":
                await self._delete(ctx, send)
            else:
                # GET (the server-to-client stream) arrives with the full transport.
                raise HttpError(405, jsonrpc.INVALID_REQUEST, f"Method {method} not allowed",
                                [(b"allow", b"POST, DELETE")])
        except HttpError as err:
            await send_json(send, err.status, jsonrpc.error_response(None, err.code, err.message), err.headers)
        except ConnectionAbortedError:
            return  # nobody to answer; nothing was started

    def _session(self, ctx: RequestContext):
        state = ctx["session_state"]
        if state == "absent":
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
        if state == "invalid":
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Bad Request: malformed Mcp-Session-Id")
        session = self.sessions.get(ctx["session_id"])
        if session is None:
            raise HttpError(404, SESSION_NOT_FOUND, "Session not found")
        return session

    async def _post(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        if not (ctx["accept_json"] and ctx["accept_sse"]):
            raise HttpError(406, jsonrpc.INVALID_REQUEST,
                            "Not Acceptable: Accept must list application/json and text/event-stream")
        if ctx["content_type"] != "json":
            raise HttpError(415, jsonrpc.INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json")
        body = await read_body(scope, receive, self.max_body_bytes)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HttpError(400, jsonrpc.PARSE_ERROR, "Parse error: body is not valid JSON") from None
        if isinstance(message, list):
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Batches are not supported yet")
        kind = jsonrpc.classify(message)
        if kind == "invalid":
            raise HttpError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")

        if kind == "request" and message["method"] == "initialize":
            params = message.get("params") if isinstance(message.get("params"), dict) else {}
            revision = negotiate(params.get("protocolVersion"))
            try:
                session = self.sessions.create(revision, params.get("clientInfo"))
            except SessionLimitReached:
                raise HttpError(503, jsonrpc.INTERNAL_ERROR, "Too many live sessions; try again later",
                                [(b"retry-after", b"5")]) from None
            result = jsonrpc.result_response(message["id"], self.dispatcher.initialize_result(revision))
            await send_json(send, 200, result, [(b"mcp-session-id", session.id.encode())])
            return

        revision = ctx["revision"]
        if revision in SESSIONFUL_REVISIONS:
            session = self._session(ctx)
            if kind == "notification" and message["method"] == "notifications/initialized":
                session.initialized = True
        if kind != "request":
            await send_empty(send, 202)
            return
        await send_json(send, 200, await self.dispatcher.handle_request(message, revision))

    async def _delete(self, ctx: RequestContext, send: Send) -> None:
        session = self._session(ctx)
        self.sessions.delete(session.id)
        await send_empty(send, 204)
