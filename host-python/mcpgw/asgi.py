"""ASGI types, the two response writers every layer uses, and whether a caller is on loopback
(no routing, no MCP)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json(send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(payload)
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if headers:
        start.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


async def send_empty(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0"), *(headers or [])]}
    )
    await send({"type": "http.response.body", "body": b""})


def is_loopback(host: str | None) -> bool:
    """Whether a client address (scope["client"][0]) is this machine's loopback: the rule the admin
    API, the console and /metrics apply to callers without the admin credential."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
