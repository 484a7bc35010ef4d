"""HTTP framing shared by the HTTP transports: errors as JSON-RPC bodies, bounded body reads."""

from __future__ import annotations

from typing import Any

import orjson

from ..asgi import Receive, Scope, Send, send_json
from ..edge.contract import RequestContext
from ..server import jsonrpc

SESSION_NOT_FOUND = -32001  # as the MCP SDK reports an unknown session
RETRY_LATER = [(b"retry-after", b"5")]


class HttpError(Exception):
    """An HTTP status with a JSON-RPC error body (id null)."""

    def __init__(
        self, status: int, code: int, message: str, headers: list[tuple[bytes, bytes]] | None = None, data: Any = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        self.data = data

    async def send(self, send: Send) -> None:
        await send_json(
            send, self.status, jsonrpc.error_response(None, self.code, self.message, self.data), self.headers
        )


def not_found(what: str = "Not Found") -> HttpError:
    """The one answer to every unknown or invalid path, whatever the transport."""
    return HttpError(404, jsonrpc.INVALID_REQUEST, what)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit`."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise HttpError(413, jsonrpc.INVALID_REQUEST, f"Request body larger than {limit} bytes")
    message = await receive()  # (the whole body in one message, the common case: no list, no join)
    if message["type"] == "http.disconnect":
        raise ConnectionAbortedError("client went away during the request body")
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise HttpError(413, jsonrpc.INVALID_REQUEST, f"Request body larger than {limit} bytes")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
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


async def read_json_body(ctx: RequestContext, scope: Scope, receive: Receive, limit: int) -> Any:
    """The decoded JSON body of a POST: 415 unless it says JSON, 413 past `limit`, 400 if not JSON."""
    check_json_type(ctx)
    return parse_json(await read_body(scope, receive, limit))


def check_json_type(ctx: RequestContext) -> None:
    """415 unless the request says its body is JSON (before the body is read)."""
    if ctx["content_type"] != "json":
        raise HttpError(415, jsonrpc.INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json")


def parse_json(body: bytes) -> Any:
    """A body read by `read_body`, decoded: 400 if it is not JSON. (`read_json_body` in two steps,
    for a caller that saves the extra coroutine.)"""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, jsonrpc.PARSE_ERROR, "Parse error: body is not valid JSON") from None
