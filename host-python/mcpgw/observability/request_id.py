"""One id per HTTP request (and WebSocket handshake): the client's well-formed `X-Request-Id`, or
a new random one. It is returned in the `X-Request-Id` response header and is the `request_id`
of every log line written while the request runs (a context variable: tasks the request starts
inherit it)."""

from __future__ import annotations

import random
import re
from contextvars import ContextVar

HEADER = b"x-request-id"
# What a client may choose: 1 to 128 characters that are safe in a log line and a header.
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


class Tag:
    """The request a log line is written for: its id, and the caller's subject once authentication
    knows it (the Router sets it; one attribute, not a second context variable to set and clear)."""

    __slots__ = ("id", "principal")

    def __init__(self, id_: str) -> None:
        self.id = id_
        self.principal: str | None = None


# Set by the observer for each request: every JSON log line written while it runs carries the
# tag's id as `request_id` and, once known, its `principal`.
current: ContextVar[Tag | None] = ContextVar("mcpgw_request", default=None)


def new() -> str:
    """16 hex characters (64 random bits: an id, not a secret, so the fast PRNG, which Python
    reseeds in every forked worker): unique enough across workers and restarts."""
    return random.getrandbits(64).to_bytes(8).hex()  # (an f-string's formatting costs twice this)


def from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's `X-Request-Id` when it is well formed (the first one), else a new id."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == HEADER:
            if _WELL_FORMED.fullmatch(value):
                return value.decode("ascii")
            break
    return new()
