"""MCP 2026-07-28 `InputRequiredResult`: server-to-client requests without a back channel.

A stateless client has no stream the server could send `elicitation/create`,
`sampling/createMessage` or `roots/list` on. Instead the request (`tools/call`,
`prompts/get`, `resources/read`) is answered with

    {"resultType": "input_required", "inputRequests": {key: {method, params}}, "requestState": "..."}

and the client retries the same request with `inputResponses` (keyed alike) and
the `requestState` echoed verbatim.

The state is the gateway's, so it is integrity-protected: an HMAC-SHA256 over
what it binds (the method, the name or URI, a digest of the arguments, the caller,
an expiry and, for a relayed call, the parked exchange it continues), under a key
that is random per process unless `MCPGW_REQUEST_STATE_KEY` names one. A client
cannot forge a state, stretch its life, move it to another tool or arguments, or
use another caller's (with authentication on: the caller is the principal).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .jsonrpc import INVALID_PARAMS, JsonRpcError

# The requests that may answer with InputRequiredResult (the spec's interactive requests).
INTERACTIVE_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
# The server-to-client requests an InputRequiredResult may carry.
INPUT_METHODS = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})
STATE_TTL_S = 600.0  # how long a requestState is accepted after it was issued
MAX_STATE_CHARS = 4096  # a requestState longer than this was not ours


class InputRequired(Exception):
    """Raised by a handler that needs the client's input first: `requests` maps keys to
    `{"method", "params"}`; `exchange` names a relayed call parked until the retry (None: the
    handler simply runs again with the responses)."""

    def __init__(self, requests: dict[str, dict[str, Any]], exchange: str | None = None) -> None:
        super().__init__(f"input required: {', '.join(sorted(requests))}")
        self.requests = requests
        self.exchange = exchange


@dataclass(frozen=True)
class Continuation:
    """A verified retry: the client's responses, and the exchange its state continues."""

    responses: dict[str, Any]
    exchange: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def binding(method: str, params: dict[str, Any], caller: str) -> dict[str, Any]:
    """What a state is bound to: the request as the client named it, and who asked."""
    target = params.get("uri") if method == "resources/read" else params.get("name")
    arguments = params.get("arguments")
    digest = hashlib.sha256(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return {"m": method, "t": target if isinstance(target, str) else None, "a": digest, "c": caller}


class RequestStates:
    """Signs and verifies requestState values."""

    def __init__(self, key: bytes | None = None, ttl_s: float = STATE_TTL_S) -> None:
        self.configured = key is not None
        self.key = key if key is not None else secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def issue(self, method: str, params: dict[str, Any], caller: str, exchange: str | None) -> str:
        payload = {
            **binding(method, params, caller),
            "e": int(time.time() + self.ttl_s),
            "x": exchange,
            "n": secrets.token_hex(8),
        }
        body = _b64(orjson.dumps(payload))
        return f"{body}.{_b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())}"

    def verify(self, method: str, params: dict[str, Any], caller: str) -> Continuation | None:
        """The continuation a retry carries (None: a first request). Raises -32602 for a state that
        is malformed, not signed by this gateway, expired, or issued for another request or caller."""
        state = params.get("requestState")
        responses = params.get("inputResponses")
        if state is None and responses is None:
            return None
        if responses is not None and not isinstance(responses, dict):
            raise JsonRpcError(INVALID_PARAMS, "inputResponses must be an object")
        if state is None:
            raise JsonRpcError(INVALID_PARAMS, "inputResponses without the requestState they answer")
        if not isinstance(state, str) or len(state) > MAX_STATE_CHARS or state.count(".") != 1:
            raise JsonRpcError(INVALID_PARAMS, "Invalid requestState: not one this gateway issued")
        body, _, tag = state.partition(".")
        expected = hmac.new(self.key, body.encode(), hashlib.sha256).digest()
        try:
            valid = hmac.compare_digest(_unb64(tag), expected)
            payload = orjson.loads(_unb64(body)) if valid else None
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            valid, payload = False, None
        if not valid or not isinstance(payload, dict):
            raise JsonRpcError(INVALID_PARAMS, "Invalid requestState: not one this gateway issued")
        if not isinstance(payload.get("e"), int) or payload["e"] < time.time():
            raise JsonRpcError(INVALID_PARAMS, "Invalid requestState: expired; send the request again without it")
        if any(payload.get(k) != v for k, v in binding(method, params, caller).items()):
            raise JsonRpcError(INVALID_PARAMS, "Invalid requestState: issued for another request or caller")
        exchange = payload.get("x")
        return Continuation(dict(responses or {}), exchange if isinstance(exchange, str) else None)


def input_required_result(requests: dict[str, dict[str, Any]], state: str) -> dict[str, Any]:
    return {"resultType": "input_required", "inputRequests": requests, "requestState": state}


def strip_retry(params: dict[str, Any]) -> dict[str, Any]:
    """The request without the retry's fields (what a handler or an upstream sees)."""
    if "inputResponses" not in params and "requestState" not in params:
        return params
    return {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
