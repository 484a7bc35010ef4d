"""The edge contract in pure Python: the fallback backend and the reference.

Every function mirrors a section of docs/edge-contract.md; the Rust component
(guest/) implements the same rules and tests/vectors/ plus a differential
fuzzer hold the two together. Python's str.lower()/upper()/strip()/isdigit()
are Unicode-aware, the contract is ASCII-only, hence the helpers below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import orjson

from .contract import EdgeConfig, EdgeError, Header, decode_head

_T = TypeVar("_T")

_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"


def ascii_lower(s: str) -> str:
    return s.lower() if s.isascii() else s.translate(_LOWER)


def ascii_upper(s: str) -> str:
    return s.upper() if s.isascii() else s.translate(_UPPER)


# Character classes are spelled out: `\d`, `\w` and friends match non-ASCII.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_MEDIA_RANGE_RE = re.compile(_TOKEN + "/" + _TOKEN)
_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_SERVER_ID_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_SESSION_ID_RE = re.compile(r"[\x21-\x7e]{1,256}")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_VISIBLE_RE = re.compile(r"[\x21-\x7e]+")
_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.-]*")
_AUTHORITY_RE = re.compile(r"[a-z0-9._~:\[\]-]+")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._~-]+")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

_UPPER_METHODS = frozenset(("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"))
_ROUTES = {"mcp": "mcp", "sse": "sse", "message": "message", "ws": "ws", "health": "health"}
_SERVER_ROUTES = frozenset(("mcp", "sse", "message", "ws"))
_PREFLIGHT_METHODS = frozenset(("GET", "POST", "DELETE", "OPTIONS"))
_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
_EXPOSE_HEADERS = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
_PREFLIGHT_VARY = ["vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
_INTERESTING_NAMES = (
    "origin",
    "host",
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "access-control-request-method",
    "access-control-request-headers",
)
_INTERESTING = frozenset(_INTERESTING_NAMES)
# Contract section 1, by header-name bytes: evaluate_raw reads only these, and
# the wasm host passes the component only these.
CONTRACT_HEADERS = {name.encode(): name for name in _INTERESTING_NAMES}
# Memo tables hold at most _MEMO_LIMIT values of at most _MEMO_MAX_LEN characters
# each (about 1 MB in all, whatever clients send); longer values are computed
# every time: real clients send short ones.
_MEMO_LIMIT = 4096
_MEMO_MAX_LEN = 256


# --- section 3: path and route --------------------------------------------


def _escape(match: re.Match[str]) -> str:
    ch = chr(int(match.group(1), 16))
    return ch if ch in _UNRESERVED else "%" + match.group(1).upper()


def path_segments(raw: str) -> list[str]:
    """Steps 2-4 of section 3 for a path starting with `/`."""
    if "%" in raw:
        raw = _ESCAPE_RE.sub(_escape, raw)
    segments: list[str] = []
    for seg in raw.split("/"):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    return segments


def route_of(segments: list[str], prefix: tuple[str, ...]) -> tuple[str, str | None]:
    if prefix:
        n = len(prefix)
        if tuple(segments[:n]) != prefix:
            return "other", None
        segments = segments[n:]
    if len(segments) == 1:
        return _ROUTES.get(segments[0], "other"), None
    if (
        len(segments) == 3
        and segments[0] == "servers"
        and segments[2] in _SERVER_ROUTES
        and _SERVER_ID_RE.fullmatch(segments[1])
    ):
        return segments[2], segments[1]
    return "other", None


# --- section 6: Accept -------------------------------------------------------


def _split_outside_quotes(value: str, sep: str) -> list[str]:
    if '"' not in value:
        return value.split(sep)
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for i, ch in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == sep:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def _qvalue(text: str) -> int | None:
    if not _QVALUE_RE.fullmatch(text):
        return None
    whole, _, frac = text.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


def accept_verdicts(value: str) -> tuple[bool, bool]:
    """(accept_json, accept_sse) for a present, combined Accept value."""
    # best[target] = (specificity, weight)
    json_best = (0, 0)
    sse_best = (0, 0)
    for element in _split_outside_quotes(value, ","):
        parts = _split_outside_quotes(element, ";")
        media = ascii_lower(parts[0].strip(_OWS))
        if not _MEDIA_RANGE_RE.fullmatch(media):
            continue
        weight = 1000
        valid = True
        for param in parts[1:]:
            name, eq, raw = param.strip(_OWS).partition("=")
            if not eq or ascii_lower(name.strip(_OWS)) != "q":
                continue
            q = _qvalue(raw.strip(_OWS))
            if q is None:
                valid = False
            else:
                weight = q
            break
        if not valid:
            continue
        json_best = _better(json_best, _specificity(media, "application/json", "application/*"), weight)
        sse_best = _better(sse_best, _specificity(media, "text/event-stream", "text/*"), weight)
    return json_best[0] > 0 and json_best[1] > 0, sse_best[0] > 0 and sse_best[1] > 0


def _specificity(media: str, exact: str, family: str) -> int:
    if media == exact:
        return 3
    if media == family:
        return 2
    if media == "*/*":
        return 1
    return 0


def _better(best: tuple[int, int], spec: int, weight: int) -> tuple[int, int]:
    if spec == 0 or spec < best[0]:
        return best
    if spec > best[0]:
        return spec, weight
    return spec, max(best[1], weight)


# --- section 9: host-port -----------------------------------------------------


def parse_host_port(value: str) -> tuple[str, str | None] | None:
    """(name, port) of an ASCII-lowercased Host value or allowed-hosts entry."""
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            return None
        name, rest = value[: close + 1], value[close + 1 :]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if not name:
        return None
    if not rest:
        return name, None
    if rest[0] != ":" or not _PORT_RE.fullmatch(rest, 1):
        return None
    return name, rest[1:]


# --- section 13: configuration ----------------------------------------------


class _Compiled:
    """A validated config with everything evaluate() needs precomputed."""

    __slots__ = (
        "_memo",
        "allow_credentials",
        "allowed_headers",
        "allowed_headers_value",
        "any_host",
        "any_origin",
        "default_version",
        "exact_origins",
        "host_names",
        "host_ports",
        "max_age",
        "port_wildcards",
        "prefix",
        "supported",
    )

    def __init__(self, cfg: EdgeConfig):
        self.any_origin = False
        self.exact_origins: set[str] = set()
        self.port_wildcards: list[str] = []
        for entry in cfg.allowed_origins:
            low = ascii_lower(entry)
            if low == "*":
                self.any_origin = True
                continue
            if not _valid_origin_entry(low):
                raise EdgeError("invalid-config", f"allowed_origins: invalid entry {entry!r}")
            if low.endswith(":*"):
                self.port_wildcards.append(low[:-2])
            else:
                self.exact_origins.add(low)
        if cfg.allow_credentials and self.any_origin:
            raise EdgeError("invalid-config", "allow_credentials cannot be combined with the '*' origin")

        self.any_host = False
        self.host_names: set[str] = set()
        self.host_ports: set[tuple[str, str]] = set()
        for entry in cfg.allowed_hosts:
            if entry == "*":
                self.any_host = True
                continue
            parsed = parse_host_port(ascii_lower(entry))
            if parsed is None:
                raise EdgeError("invalid-config", f"allowed_hosts: invalid entry {entry!r}")
            name, port = parsed
            if port is None:
                self.host_names.add(name)
            else:
                self.host_ports.add((name, port))

        headers: list[str] = []
        for entry in cfg.allowed_headers:
            if not _TOKEN_RE.fullmatch(entry):
                raise EdgeError("invalid-config", f"allowed_headers: invalid header name {entry!r}")
            headers.append(ascii_lower(entry))
        self.allowed_headers = frozenset(headers)
        self.allowed_headers_value = ", ".join(headers)

        if not cfg.supported_versions:
            raise EdgeError("invalid-config", "supported_versions must not be empty")
        for version in cfg.supported_versions:
            if len(version) > 64 or not _VISIBLE_RE.fullmatch(version):
                raise EdgeError("invalid-config", f"supported_versions: invalid version {version!r}")
        if cfg.default_version not in cfg.supported_versions:
            raise EdgeError("invalid-config", "default_version must be one of supported_versions")
        self.supported = frozenset(cfg.supported_versions)
        self.default_version = cfg.default_version

        prefix = cfg.path_prefix
        if prefix:
            segments = prefix[1:].split("/")
            if not prefix.startswith("/") or not all(
                _SEGMENT_RE.fullmatch(s) and s not in (".", "..") for s in segments
            ):
                raise EdgeError("invalid-config", f"path_prefix: invalid prefix {prefix!r}")
            self.prefix = tuple(segments)
        else:
            self.prefix = ()

        self.allow_credentials = cfg.allow_credentials
        if not 0 <= cfg.max_age <= 0xFFFFFFFF:
            raise EdgeError("invalid-config", "max_age must be 0..4294967295")
        self.max_age = str(cfg.max_age)
        # The verdicts below are pure functions of (this config, one value), and
        # clients repeat the same values request after request: memoize them.
        self._memo: dict[str, dict[Any, Any]] = {
            "path": {},
            "origin": {},
            "host": {},
            "accept": {},
            "ctype": {},
        }

    def _remember(self, table: str, key: str, compute: Callable[[str], _T]) -> _T:
        if len(key) > _MEMO_MAX_LEN:
            return compute(key)
        memo = self._memo[table]
        try:
            return cast(_T, memo[key])  # each table holds only what its one compute function returns
        except KeyError:
            pass
        value = compute(key)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = value
        return value

    def path(self, raw: str) -> tuple[str, str, str | None]:
        return self._remember("path", raw, self._path)

    def _path(self, raw: str) -> tuple[str, str, str | None]:
        if not raw:
            return "/", "other", None
        if raw[0] != "/":
            return raw, "other", None
        segments = path_segments(raw)
        route, server_id = route_of(segments, self.prefix)
        return "/" + "/".join(segments), route, server_id

    def origin_state(self, origin: str) -> str:
        return self._remember("origin", origin, lambda o: "allowed" if self.origin_allowed(o) else "denied")

    def host_state(self, host: str | None) -> str:
        if host is None:
            return "absent"
        return self._remember("host", host, self.host_verdict)

    def accept(self, value: str | None) -> tuple[bool, bool]:
        if value is None:
            return False, False
        return self._remember("accept", value, accept_verdicts)

    def content_kind(self, value: str) -> str:
        return self._remember("ctype", value, _content_kind)

    def origin_allowed(self, origin: str) -> bool:
        if "," in origin:
            return False
        if self.any_origin:
            return True
        low = ascii_lower(origin)
        if low in self.exact_origins:
            return True
        for base in self.port_wildcards:
            if low == base:
                return True
            if (
                low.startswith(base)
                and low[len(base) : len(base) + 1] == ":"
                and _PORT_RE.fullmatch(low, len(base) + 1)
            ):
                return True
        return False

    def host_verdict(self, host: str) -> str:
        if self.any_host:
            return "allowed"
        parsed = parse_host_port(ascii_lower(host))
        if parsed is None:
            return "denied"
        name, port = parsed
        if name in self.host_names or (port is not None and (name, port) in self.host_ports):
            return "allowed"
        return "denied"


def _content_kind(value: str) -> str:
    """Section 7 for a present Content-Type."""
    return "json" if ascii_lower(value.partition(";")[0].strip(_OWS)) == "application/json" else "other"


def _valid_origin_entry(low: str) -> bool:
    if low == "null":
        return True
    scheme, sep, authority = low.partition("://")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        return False
    if authority.endswith(":*"):
        authority = authority[:-2]
    return bool(_AUTHORITY_RE.fullmatch(authority))


# --- the contract -----------------------------------------------------------


class PythonCore:
    """One configured instance of the edge, in Python."""

    tag = "python"  # names the backend that answered (response tagging, logs)

    def __init__(self) -> None:
        self._cfg: _Compiled | None = None

    def configure(self, cfg: EdgeConfig) -> None:
        self._cfg = _Compiled(cfg)  # raises before replacing: the old config stays

    def configure_encoded(self, text: str) -> str:
        try:
            try:
                data = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise EdgeError("invalid-config", f"invalid JSON: {exc}") from None
            self.configure(EdgeConfig.from_mapping(data))
        except EdgeError as err:
            return orjson.dumps(err.to_outcome()).decode()
        return ""

    def evaluate_encoded(self, text: str | bytes) -> bytes:
        if self._cfg is None:
            return orjson.dumps(EdgeError("not-configured").to_outcome())
        try:
            method, path, query, headers = decode_head(text)
        except EdgeError as err:
            return orjson.dumps(err.to_outcome())
        return orjson.dumps(self.evaluate(method, path, query, headers))

    def evaluate(self, method: str, path: str, query: str, headers: Iterable[Header]) -> dict[str, Any]:
        """One request head (latin-1 decoded strings) in, one outcome dict out."""
        # section 1: the headers the contract reads, duplicates combined in order
        found: dict[str, str] = {}
        for name, raw_value in headers:
            key = ascii_lower(name)
            if key in _INTERESTING:
                value = raw_value.strip(_OWS)
                found[key] = found[key] + ", " + value if key in found else value
        return self._evaluate(method, path, found)

    def evaluate_raw(
        self, method: str, raw_path: bytes, query: bytes, headers: Iterable[tuple[bytes, bytes]]
    ) -> dict[str, Any]:
        """The ASGI hot path: header bytes as received. bytes.lower() is ASCII-only,
        exactly the contract's lowering, and only the values the contract reads
        are decoded."""
        found: dict[str, str] = {}
        for name, value in headers:
            key = CONTRACT_HEADERS.get(name.lower())
            if key is not None:
                text = value.decode("latin-1").strip(_OWS)
                found[key] = found[key] + ", " + text if key in found else text
        return self._evaluate(method, raw_path.decode("latin-1"), found)

    def _evaluate(self, method: str, path: str, found: dict[str, str]) -> dict[str, Any]:
        cfg = self._cfg
        if cfg is None:
            return EdgeError("not-configured").to_outcome()
        get = found.get

        # section 2
        upper = ascii_upper(method)
        if upper in _UPPER_METHODS:
            method = upper

        # section 3
        canonical, route, server_id = cfg.path(path)

        # section 8
        origin = get("origin")
        origin_state = "absent" if origin is None else cfg.origin_state(origin)

        # section 12
        if method == "OPTIONS" and route == "mcp" and origin is not None:
            requested = get("access-control-request-method")
            if requested is not None:
                return {"preflight": _preflight(cfg, origin, origin_state, requested, get)}

        # section 4
        session_id = get("mcp-session-id")
        if session_id is None:
            session_state = "absent"
        elif _SESSION_ID_RE.fullmatch(session_id):
            session_state = "valid"
        else:
            session_state, session_id = "invalid", None

        # section 5
        version = get("mcp-protocol-version")
        if version is None:
            protocol_state, revision = "absent", cfg.default_version
        elif version in cfg.supported:
            protocol_state, revision = "supported", version
        else:
            protocol_state, revision = "unsupported", None

        # section 6
        accept_json, accept_sse = cfg.accept(get("accept"))

        # section 7
        content_type = get("content-type")
        content_kind = "absent" if content_type is None else cfg.content_kind(content_type)

        # section 11
        if route != "mcp":
            cors: list[list[str]] = []
        elif origin_state == "allowed":
            cors = [
                ["access-control-allow-origin", origin],  # type: ignore[list-item]
                ["access-control-expose-headers", _EXPOSE_HEADERS],
            ]
            if cfg.allow_credentials:
                cors.append(["access-control-allow-credentials", "true"])
            cors.append(["vary", "Origin"])
        else:
            cors = [["vary", "Origin"]]

        return {
            "forward": {
                "method": method,
                "path": canonical,
                "route": route,
                "server_id": server_id,
                "session_state": session_state,
                "session_id": session_id,
                "protocol_version": version,
                "protocol_state": protocol_state,
                "revision": revision,
                "accept_json": accept_json,
                "accept_sse": accept_sse,
                "content_type": content_kind,
                "origin": origin,
                "origin_state": origin_state,
                "host_state": cfg.host_state(get("host")),
                "last_event_id": get("last-event-id"),
                "mcp_method": get("mcp-method"),
                "mcp_name": get("mcp-name"),
                "cors_headers": cors,
            }
        }


def _preflight(cfg: _Compiled, origin: str, origin_state: str, requested: str, get: Any) -> dict[str, Any]:
    denied = {"status": 403, "headers": [list(_PREFLIGHT_VARY)]}
    if origin_state != "allowed" or requested not in _PREFLIGHT_METHODS:
        return denied
    names: list[str] = []
    raw = get("access-control-request-headers")
    if raw is not None:
        for element in raw.split(","):
            name = ascii_lower(element.strip(_OWS))
            if not name or name in names:
                continue
            if name not in cfg.allowed_headers:
                return denied
            names.append(name)
    headers = [
        ["access-control-allow-origin", origin],
        ["access-control-allow-methods", _ALLOW_METHODS],
        ["access-control-allow-headers", ", ".join(names) if names else cfg.allowed_headers_value],
        ["access-control-max-age", cfg.max_age],
    ]
    if cfg.allow_credentials:
        headers.append(["access-control-allow-credentials", "true"])
    headers.append(list(_PREFLIGHT_VARY))
    return {"status": 204, "headers": headers}
