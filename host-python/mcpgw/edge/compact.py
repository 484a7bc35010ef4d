"""The compact edge encoding (docs/edge-contract.md section 16): the host's half.

The component's `evaluate-compact` takes a length-prefixed head and returns only what the
rules decide: verdict codes, the canonical path, the server id, the CORS set, a preflight's
status and allowed headers. This module writes the head and builds the outcome dict (the
same dict `PythonCore` gives) from those decisions and from what the host already holds:
the method (normalized here), the pass-through headers, the real session id, the origin to
echo, the configuration. So no JSON on either side, the pass-through fields cannot lie, and
the guard checks only what the component decided:

- every code is one the encoding has and the outcome is exactly its shape;
- the verdicts agree with what the host knows for sure (the session verdict it computed for
  the stand-in; absent exactly when the header is; a supported version is a configured one);
- the canonical path is never longer than the raw path and has no character canonicalization
  could not give, and on a known route is plain ASCII; a server id is 1..64 unreserved
  characters on a server route;
- the CORS set is empty off MCP paths, allow-origin only with an Origin, credentials only
  when configured (the values are the contract's constants or the request's Origin);
- a 204 preflight needs an Origin and names only configured headers.

A failed check raises `InvalidOutput` (a trap of kind `invalid-output`, as on the JSON path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .contract import EdgeConfig, Header
from .python_core import CONTRACT_HEADERS
from .validate import (
    _CANONICAL_CHARS,
    _CANONICAL_ONLY,
    _METHODS,
    _ROUTE_PATH,
    _SERVER_ID,
    _SERVER_ROUTES,
    _VISIBLE,
    ALLOW_METHODS,
    EXPOSE,
    PREFLIGHT_VARY,
    InvalidOutput,
    _normalized_method,
)

_TRIM = " \t"
# A field's length is one character (its code point), so a field may be at most this long; a
# head with a longer one goes through the JSON path (`head` returns None).
MAX_FIELD = 0xD7FF
# The header codes: `a` + the index of the name in the guest's `Name::ALL`.
_NAMES = (
    "mcp-session-id",
    "mcp-protocol-version",
    "accept",
    "content-type",
    "origin",
    "host",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "access-control-request-method",
    "access-control-request-headers",
)
CODES = {name: chr(ord("a") + i) for i, name in enumerate(_NAMES)}
# What crosses: the headers a rule reads. The session id crosses as a stand-in with its
# verdict input; Last-Event-ID, Mcp-Method and Mcp-Name are only passed through, so they do
# not cross at all (the host fills them in).
_CROSSING = {name: code for name, code in CODES.items() if name not in ("last-event-id", "mcp-method", "mcp-name")}
_SESSION = CODES["mcp-session-id"]
del _CROSSING["mcp-session-id"]

_ROUTES = ("mcp", "sse", "message", "ws", "health", "other")
_PRESENCE = ("absent", "valid", "invalid")
_VERSION_STATES = ("absent", "supported", "unsupported")
_CONTENT = ("absent", "json", "other")
_VERDICTS = ("absent", "allowed", "denied")
_CORS_ORDER = (
    (1, "access-control-allow-origin", None),  # None: the request's Origin, echoed
    (2, "access-control-expose-headers", EXPOSE),
    (4, "access-control-allow-credentials", "true"),
    (8, "vary", "Origin"),
)
# The checked decisions of a forward are memoized per (answer, raw path): at most this many, for
# paths up to this long (about 1 MB whatever clients send; real clients repeat short paths).
_MEMO_LIMIT = 4096
_MEMO_MAX_PATH = 256
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lookup_raw(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Section 1's `get` for every name the contract reads, from ASGI header bytes (the same
    loop as `PythonCore.evaluate_raw`: bytes.lower() is ASCII-only, values decoded as latin-1)."""
    found: dict[str, str] = {}
    for name, value in headers:
        key = CONTRACT_HEADERS.get(name.lower())
        if key is not None:
            text = value.decode("latin-1").strip(_TRIM)
            found[key] = found[key] + ", " + text if key in found else text
    return found


def lookup(headers: Iterable[Header]) -> dict[str, str]:
    """`lookup_raw` for decoded headers (names matched ASCII-case-insensitively)."""
    found: dict[str, str] = {}
    for name, value in headers:
        key = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)
        if key in CODES:
            text = value.strip(_TRIM)
            found[key] = found[key] + ", " + text if key in found else text
    return found


class CompactCodec:
    """One configuration's head writer and outcome reader (built once per backend)."""

    def __init__(self, config: EdgeConfig):
        self.credentials = config.allow_credentials
        self.max_age = str(config.max_age)
        self.allowed_headers = frozenset(h.translate(_ASCII_LOWER) for h in config.allowed_headers)
        self.versions = frozenset(config.supported_versions)
        self.default_version = config.default_version
        self._forwards: dict[tuple[str, str], tuple[Any, ...]] = {}

    # --- the head ---------------------------------------------------------------

    def head(self, method: str, path: str, found: dict[str, str]) -> bytes | None:
        """The compact head, or None when a field is too long for the encoding (the caller
        then uses the JSON path)."""
        if len(method) > MAX_FIELD or len(path) > MAX_FIELD:
            return None
        parts = [chr(len(method)), method, chr(len(path)), path]
        session = found.get("mcp-session-id")
        if session is not None:
            parts += (_SESSION, "\x01s" if _VISIBLE.fullmatch(session) else "\x00")
        for name, value in found.items():
            code = _CROSSING.get(name)
            if code is not None:
                if len(value) > MAX_FIELD:
                    return None
                parts += (code, chr(len(value)), value)
        return "".join(parts).encode()

    # --- the outcome --------------------------------------------------------------

    def head_raw(
        self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[bytes | None, dict[str, str]]:
        """`lookup_raw` and `head` in one pass over the ASGI headers (the hot path): the compact
        head (None when a field is too long for it) and section 1's `get` of every name."""
        found: dict[str, str] = {}
        if len(method) > MAX_FIELD or len(path) > MAX_FIELD:
            return None, lookup_raw(headers)
        parts = [chr(len(method)), method, chr(len(path)), path]
        combined = False
        for name, value in headers:
            key = CONTRACT_HEADERS.get(name.lower())
            if key is not None:
                text = value.decode("latin-1").strip(_TRIM)
                if key in found:
                    found[key] = found[key] + ", " + text
                    combined = True
                    continue
                found[key] = text
                code = _CROSSING.get(key)
                if code is not None:
                    if len(text) > MAX_FIELD:
                        return None, lookup_raw(headers)
                    parts += (code, chr(len(text)), text)
        if combined:  # duplicates: the joined values cross (rare; written again from `found`)
            return self.head(method, path, found), found
        session = found.get("mcp-session-id")
        if session is not None:
            parts += (_SESSION, "\x01s" if _VISIBLE.fullmatch(session) else "\x00")
        return "".join(parts).encode(), found

    def outcome(self, out: bytes, method: str, path: str, found: dict[str, str]) -> dict[str, Any]:
        """The outcome dict for the component's answer `out` to this head; InvalidOutput when
        the answer is not one the contract allows for it."""
        try:
            text = out.decode()
            kind = text[:1]
            if kind == "F":
                return self._forward(text, method, path, found)
            if kind == "P":
                return self._preflight(text, found.get("origin"))
        except InvalidOutput:
            raise
        except Exception as exc:  # noqa: BLE001 - not UTF-8, cut short, a length past the end
            raise InvalidOutput(f"malformed compact outcome ({type(exc).__name__})") from None
        raise InvalidOutput("the compact outcome is neither a forward nor a preflight")

    def _decisions(self, text: str, path: str) -> tuple[Any, ...]:
        """A forward's decisions, checked against the raw path: everything of the answer that
        does not depend on the head's header values. Memoized by (answer, raw path): clients
        repeat both, and the checks are pure functions of them and the configuration."""
        key = (text, path)
        got = self._forwards.get(key)
        if got is not None:
            return got
        codes = text[1:9]
        if len(codes) != 8:
            raise InvalidOutput("a forward cut short")
        digits = [ord(c) - 48 for c in codes[:7]]
        mask = ord(codes[7]) - 64
        limits = (6, 3, 3, 4, 3, 3, 3)
        if any(not 0 <= d < n for d, n in zip(digits, limits, strict=True)) or not 0 <= mask < 16:
            raise InvalidOutput("a forward code the encoding does not have")
        route = _ROUTES[digits[0]]
        if route != "mcp" and mask:
            raise InvalidOutput("cors_headers on a route that is not an MCP path")
        if mask & 4 and not self.credentials:
            raise InvalidOutput("access-control-allow-credentials without allow-credentials")
        cors = tuple((name, value) for bit, name, value in _CORS_ORDER if mask & bit)
        mark = text[9]
        if mark == "=":
            canonical = path
            at = 10
        elif mark == ":":
            n = ord(text[10])
            canonical = text[11 : 11 + n]
            at = 11 + n
            if len(canonical) != n:
                raise InvalidOutput("the canonical path runs past the outcome")
            # Canonicalizing only decodes escapes of unreserved characters, upper-cases
            # other escapes and drops segments: never longer, never a new character.
            if len(canonical) > max(1, len(path)) or not (
                _CANONICAL_ONLY.fullmatch(canonical) is not None or set(canonical) <= _CANONICAL_CHARS.union(path)
            ):
                raise InvalidOutput("path is not the request's path canonicalized")
        else:
            raise InvalidOutput("the canonical path is neither the raw path nor a field")
        if route != "other" and not _ROUTE_PATH.fullmatch(canonical):
            raise InvalidOutput("path is not the request's path canonicalized")
        server_id = None
        if at < len(text):
            n = ord(text[at])
            server_id = text[at + 1 : at + 1 + n]
            if at + 1 + n != len(text) or route not in _SERVER_ROUTES or not _SERVER_ID.fullmatch(server_id):
                raise InvalidOutput("server_id is set but not a server route's 1..64 unreserved characters")
        got = (
            route,
            _PRESENCE[digits[1]],
            _VERSION_STATES[digits[2]],
            bool(digits[3] & 1),
            bool(digits[3] & 2),
            _CONTENT[digits[4]],
            _VERDICTS[digits[5]],
            _VERDICTS[digits[6]],
            cors,
            canonical,
            server_id,
        )
        if len(self._forwards) >= _MEMO_LIMIT or len(path) > _MEMO_MAX_PATH:
            if len(path) > _MEMO_MAX_PATH:
                return got
            self._forwards.clear()
        self._forwards[key] = got
        return got

    def _forward(self, text: str, method: str, path: str, found: dict[str, str]) -> dict[str, Any]:
        (
            route,
            session_state,
            protocol_state,
            accept_json,
            accept_sse,
            content,
            origin_state,
            host_state,
            cors,
            canonical,
            server_id,
        ) = self._decisions(text, path)
        get = found.get
        session = get("mcp-session-id")
        if session_state != ("absent" if session is None else "valid" if _VISIBLE.fullmatch(session) else "invalid"):
            raise InvalidOutput("session_state does not follow the mcp-session-id header that crossed")
        version = get("mcp-protocol-version")
        revision: str | None
        if protocol_state == "absent":
            revision = self.default_version
            ok = version is None
        elif protocol_state == "supported":
            revision = version
            ok = version in self.versions
        else:
            revision = None
            ok = version is not None
        if not ok:
            raise InvalidOutput("protocol_state does not follow mcp-protocol-version and the configured versions")
        origin = get("origin")
        if (origin_state == "absent") != (origin is None):
            raise InvalidOutput("origin_state disagrees with the presence of Origin")
        if (host_state == "absent") != ("host" not in found) or (content == "absent") != ("content-type" not in found):
            raise InvalidOutput("host_state or content_type disagrees with the presence of its header")
        if cors:
            if origin is None and cors[0][1] is None:
                raise InvalidOutput("access-control-allow-origin for a request without Origin")
            cors_headers = [[name, origin if value is None else value] for name, value in cors]
        else:
            cors_headers = []
        return {
            "forward": {
                "method": method if method in _METHODS else _normalized_method(method),
                "path": canonical,
                "route": route,
                "server_id": server_id,
                "session_state": session_state,
                "session_id": session if session_state == "valid" else None,
                "protocol_version": version,
                "protocol_state": protocol_state,
                "revision": revision,
                "accept_json": accept_json,
                "accept_sse": accept_sse,
                "content_type": content,
                "origin": origin,
                "origin_state": origin_state,
                "host_state": host_state,
                "last_event_id": get("last-event-id"),
                "mcp_method": get("mcp-method"),
                "mcp_name": get("mcp-name"),
                "cors_headers": cors_headers,
            }
        }

    def _preflight(self, text: str, origin: str | None) -> dict[str, Any]:
        if text == "P4":
            return {"preflight": {"status": 403, "headers": [["vary", PREFLIGHT_VARY]]}}
        if text[:2] != "P2":
            raise InvalidOutput("preflight status is not 204 or 403")
        n = ord(text[2])
        allow = text[3:]
        if len(allow) != n:
            raise InvalidOutput("the allowed headers are not exactly one field")
        if origin is None:
            raise InvalidOutput("a 204 preflight for a request without Origin")
        if not allow or any(name not in self.allowed_headers for name in allow.split(", ")):
            raise InvalidOutput("access-control-allow-headers names a header that is not allowed")
        headers = [
            ["access-control-allow-origin", origin],
            ["access-control-allow-methods", ALLOW_METHODS],
            ["access-control-allow-headers", allow],
            ["access-control-max-age", self.max_age],
        ]
        if self.credentials:
            headers.append(["access-control-allow-credentials", "true"])
        headers.append(["vary", PREFLIGHT_VARY])
        return {"preflight": {"status": 204, "headers": headers}}


def evaluate_compact_with(
    call: Callable[[bytes], bytes], config: EdgeConfig, method: str, path: str, headers: Iterable[Header]
) -> dict[str, Any]:
    """One head through the compact encoding end to end, with a fresh codec for `config`: what
    the vectors and the differential tests run (`call` is an instance's `evaluate_compact`,
    configured with `config`). ValueError for a head with a field too long for the encoding."""
    codec = CompactCodec(config)
    found = lookup(headers)
    head = codec.head(method, path, found)
    if head is None:
        raise ValueError("a field too long for the compact encoding")
    return codec.outcome(call(head), method, path, found)
