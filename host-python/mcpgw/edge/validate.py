"""What the host checks so that a loaded edge component can neither leak nor lie.

A component is code someone uploaded. It passes the vectors, but nothing
stops it from keeping state across requests or answering differently on a
path the vectors never visit. So the host:

- **sends no secrets** (`redact`, `restore`): `Mcp-Session-Id` and
  `Last-Event-ID` values cross as placeholders with the same verdict inputs
  (a one-character stand-in when the value is present and, for the session
  id, valid; an empty one otherwise), and the query string never crosses
  (contract 1.0 does not read it; the legacy `session_id` lives there). The
  host puts the real values back into the context afterwards. The contract
  is unchanged: the component applies the session-id rule to a value with
  the same verdict (docs/edge-contract.md, "What crosses the boundary").
- **checks every outcome** (`OutcomeGuard.check`) before it is used or
  cached: exact shape, types and enums; every pass-through field equal to
  what crossed; preflight status 204 or 403; response headers only the CORS
  headers and `Vary`, each with the one value the contract allows. A failed
  check is a trap of kind `invalid-output`.
- **checks the binary before compiling it** (`binary_problem`): a component
  in the binary format, never WAT text (which wasmtime would compile, and
  echo into its parse errors);
- **checks the exported types** (`export_type_problem`) against the contract,
  so a component with the right names and wrong types is refused by name
  instead of failing inside a call;
- **escapes what others control** before it reaches a log line (`escape`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..logsafe import escape
from .contract import EdgeConfig, Header, RequestContext

# --- logs ---------------------------------------------------------------------

# --- load time: the binary and its exports --------------------------------------

WASM_MAGIC = b"\x00asm"
COMPONENT_LAYER = b"\x01\x00"  # bytes 6-7 of a component's header; a core module has 00 00


def binary_problem(wasm: bytes) -> tuple[str, str] | None:
    """(reason, detail) when `wasm` is not a binary component, else None. The reason is
    `corrupt` (what the compiler would say of junk); the detail names the rule and never
    quotes the upload."""
    if wasm[:4] != WASM_MAGIC:
        return "corrupt", (
            f"not a binary component: {len(wasm)} bytes without the wasm magic \\0asm "
            "(components are accepted in the binary format only, never as WAT text)"
        )
    if len(wasm) < 8 or wasm[6:8] != COMPONENT_LAYER:
        return "corrupt", "not a binary component: a core wasm module (the component layer header is missing)"
    return None


# The contract's exports, as `describe_type` writes them (wit/transport.wit). Parameter
# names are not part of the check; types, field names, cases and their order are.
_HEADER = "tuple<string,string>"
_ERROR = "variant{not-configured,invalid-config(string),malformed-input(string)}"
_CONFIG = (
    "record{allowed-origins:list<string>,allowed-hosts:list<string>,allow-credentials:bool,"
    "allowed-headers:list<string>,max-age:u32,supported-versions:list<string>,default-version:string,"
    "path-prefix:string}"
)
_HEAD = f"record{{method:string,path:string,query:string,headers:list<{_HEADER}>}}"
_CONTEXT = (
    "record{method:string,path:string,route:enum{mcp,sse,message,ws,health,other},server-id:option<string>,"
    "session-state:enum{absent,valid,invalid},session-id:option<string>,protocol-version:option<string>,"
    "protocol-state:enum{absent,supported,unsupported},revision:option<string>,accept-json:bool,accept-sse:bool,"
    "content-type:enum{absent,json,other},origin:option<string>,origin-state:enum{absent,allowed,denied},"
    "host-state:enum{absent,allowed,denied},last-event-id:option<string>,mcp-method:option<string>,"
    f"mcp-name:option<string>,cors-headers:list<{_HEADER}>}}"
)
_OUTCOME = f"variant{{preflight(record{{status:u16,headers:list<{_HEADER}>}}),forward({_CONTEXT})}}"
EXPECTED_EXPORTS = {
    "version": "func()->record{component:string,contract:string}",
    "configure": f"func({_CONFIG})->result<_,{_ERROR}>",
    "evaluate": f"func({_HEAD})->result<{_OUTCOME},{_ERROR}>",
    "configure-encoded": "func(string)->string",
    "evaluate-encoded": "func(string)->string",
}
# Exports a host uses when a component has them (docs/edge-contract.md section 16).
OPTIONAL_EXPORTS = {"evaluate-compact": "func(string)->string"}


def describe_type(t: Any) -> str:
    """A component type as text, e.g. `func(string)->string`, `list<tuple<string,string>>`."""
    from wasmtime.component import _types as T  # wasmtime only where components are

    if isinstance(t, T.FuncType):
        params = ",".join(describe_type(v) for _, v in t.params)
        return f"func({params})" + (f"->{describe_type(t.result)}" if t.result is not None else "")
    if isinstance(t, T.ListType):
        return f"list<{describe_type(t.element)}>"
    if isinstance(t, T.TupleType):
        return "tuple<" + ",".join(describe_type(e) for e in t.elements) + ">"
    if isinstance(t, T.OptionType):
        return f"option<{describe_type(t.payload)}>"
    if isinstance(t, T.ResultType):
        ok = describe_type(t.ok) if t.ok is not None else "_"
        err = describe_type(t.err) if t.err is not None else "_"
        return f"result<{ok},{err}>"
    if isinstance(t, T.RecordType):
        return "record{" + ",".join(f"{n}:{describe_type(v)}" for n, v in t.fields) + "}"
    if isinstance(t, T.EnumType):
        return "enum{" + ",".join(t.names) + "}"
    if isinstance(t, T.VariantType):
        return "variant{" + ",".join(n + (f"({describe_type(v)})" if v is not None else "") for n, v in t.cases) + "}"
    return type(t).__name__.lower()  # the scalars: String -> string, U16 -> u16, Bool -> bool


def export_type_problem(component: Any, engine: Any, interface: str) -> str | None:
    """Why the component's exports do not have the contract's types, or None.
    Extra exports are allowed (a later minor version may add some)."""
    from wasmtime.component import _types as T

    exports = component.type.exports(engine)
    if interface not in exports:
        return f"component does not export {interface}"
    iface = exports[interface].ty
    if not isinstance(iface, T.ComponentInstanceType):
        return f"export {interface} is not an instance"
    items = iface.exports(engine)
    for name, expected in EXPECTED_EXPORTS.items():
        if name not in items:
            return f"component lacks export {name!r}"
        got = describe_type(items[name].ty)
        if got != expected:
            return f"export {name!r} has type {escape(got, 160)}; the contract says {expected[:160]}"
    for name, expected in OPTIONAL_EXPORTS.items():
        if name in items and (got := describe_type(items[name].ty)) != expected:
            return f"export {name!r} has type {escape(got, 160)}; the contract says {expected}"
    return None


_VERSION = re.compile(r"[0-9A-Za-z.+-]{1,64}")


def version_problem(info: Mapping[str, str]) -> str | None:
    """The version strings end up in logs, /health and the `mcpgw-edge` response tag."""
    for key in ("component", "contract"):
        if not _VERSION.fullmatch(info[key]):
            return f"version() gave {key} {escape(info[key], 80)!s}: not 1..64 of [0-9A-Za-z.+-]"
    return None


# --- run time: what crosses, and what comes back ------------------------------

SESSION_STANDIN = "s"
EVENT_STANDIN = "e"
_SECRET = ("mcp-session-id", "last-event-id")
_TRIM = " \t"
_VISIBLE = re.compile(r"[\x21-\x7e]{1,256}")


def _get(headers: Iterable[Header], name: str) -> str | None:
    """Section 1's `get`: the trimmed values joined with ", ", or None when absent."""
    values = [v.strip(_TRIM) for n, v in headers if n == name]
    return ", ".join(values) if values else None


def _lookup(headers: Iterable[Header]) -> dict[str, str]:
    """Section 1's `get` for every name in `headers` at once: name -> the trimmed values
    joined with ", " (a name that is not a key is absent)."""
    got: dict[str, str] = {}
    for name, raw in headers:
        value = raw.strip(_TRIM)
        got[name] = f"{got[name]}, {value}" if name in got else value
    return got


def redact(headers: list[Header]) -> tuple[list[Header], tuple[str | None, str | None] | None]:
    """The headers as they cross (secret values replaced by stand-ins with the same
    verdict inputs), and the real values to restore (None when there was nothing
    to replace). `headers` are the contract's, names lower-case."""
    if not any(n in _SECRET for n, _ in headers):
        return headers, None
    crossing: list[Header] = []
    for name, value in headers:
        if name == "mcp-session-id":
            crossing.append((name, SESSION_STANDIN if _VISIBLE.fullmatch(value.strip(_TRIM)) else ""))
        elif name == "last-event-id":
            crossing.append((name, EVENT_STANDIN if value.strip(_TRIM) else ""))
        else:
            crossing.append((name, value))
    return crossing, (_get(headers, "mcp-session-id"), _get(headers, "last-event-id"))


def redact_raw(
    headers: Iterable[tuple[bytes, bytes]], wanted: Mapping[bytes, str]
) -> tuple[list[Header], tuple[str | None, str | None] | None]:
    """`redact` for ASGI header bytes, in one pass: only the names in `wanted` (lower-case bytes
    -> the contract's name) cross, decoded as latin-1, secrets as stand-ins. Same result as
    `redact` of the filtered, decoded pairs."""
    crossing: list[Header] = []
    session: list[str] | None = None
    event: list[str] | None = None
    for raw_name, raw_value in headers:
        name = wanted.get(raw_name.lower())
        if name is None:
            continue
        value = raw_value.decode("latin-1")
        if name == "mcp-session-id":
            value = value.strip(_TRIM)
            session = [value] if session is None else [*session, value]
            value = SESSION_STANDIN if _VISIBLE.fullmatch(value) else ""
        elif name == "last-event-id":
            value = value.strip(_TRIM)
            event = [value] if event is None else [*event, value]
            value = EVENT_STANDIN if value else ""
        crossing.append((name, value))
    if session is None and event is None:
        return crossing, None
    return crossing, (
        None if session is None else ", ".join(session),
        None if event is None else ", ".join(event),
    )


def restore(outcome: dict[str, Any], secrets: tuple[str | None, str | None] | None) -> dict[str, Any]:
    """Put the real session id and Last-Event-ID back into a (checked) context."""
    if secrets is not None:
        ctx = outcome.get("forward")
        if ctx is not None:
            if ctx["session_id"] is not None:
                ctx["session_id"] = secrets[0]
            if ctx["last_event_id"] is not None:
                ctx["last_event_id"] = secrets[1]
    return outcome


FORWARD_KEYS = frozenset(RequestContext.__annotations__)
_ROUTES = frozenset(("mcp", "sse", "message", "ws", "health", "other"))
_SERVER_ROUTES = frozenset(("mcp", "sse", "message", "ws"))
_PRESENCE = frozenset(("absent", "valid", "invalid"))
_VERSION_STATES = frozenset(("absent", "supported", "unsupported"))
_CONTENT = frozenset(("absent", "json", "other"))
_VERDICTS = frozenset(("absent", "allowed", "denied"))
_METHODS = frozenset(("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"))
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SERVER_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_CANONICAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/%")
_ROUTE_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
_ENUMS = (
    ("route", _ROUTES),
    ("session_state", _PRESENCE),
    ("protocol_state", _VERSION_STATES),
    ("content_type", _CONTENT),
    ("origin_state", _VERDICTS),
    ("host_state", _VERDICTS),
)
# A canonical path that matches this holds only characters of _CANONICAL_CHARS (the common case,
# checked without building sets).
_CANONICAL_ONLY = re.compile(r"[A-Za-z0-9._~/%-]*")


def _canonical_chars_ok(canonical: str, path: str) -> bool:
    """Every character of `canonical` is an unreserved one, `/`, `%`, or one of `path`'s."""
    return _CANONICAL_ONLY.fullmatch(canonical) is not None or set(canonical) <= _CANONICAL_CHARS.union(path)


def _normalized_method(method: str) -> str:
    upper = method.translate(_ASCII_UPPER)
    return upper if upper in _METHODS else method


_PASS_THROUGH = (
    ("protocol_version", "mcp-protocol-version"),
    ("origin", "origin"),
    ("last_event_id", "last-event-id"),
    ("mcp_method", "mcp-method"),
    ("mcp_name", "mcp-name"),
)
EXPOSE = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
PREFLIGHT_STATUSES = frozenset((204, 403))
MAX_HEADER_VALUE = 8192
_VALUE_UNSAFE = re.compile(r"[\x00\r\n]|[^\x00-\xff]")


class InvalidOutput(Exception):
    """An outcome that is not what the contract allows: a trap of kind `invalid-output`."""


class OutcomeGuard:
    """Checks one configured backend's outcomes against the contract and the head that crossed."""

    def __init__(self, config: EdgeConfig):
        self.credentials = config.allow_credentials
        self.max_age = str(config.max_age)
        self.allowed_headers = frozenset(h.translate(_ASCII_LOWER) for h in config.allowed_headers)
        self.versions = frozenset(config.supported_versions)
        self.default_version = config.default_version
        # The CORS headers of an MCP path's context when the request has no Origin; with one,
        # these and Access-Control-Allow-Origin echoing it.
        self._cors_no_origin = {"vary": "Origin", "access-control-expose-headers": EXPOSE}
        if self.credentials:
            self._cors_no_origin["access-control-allow-credentials"] = "true"

    def check(self, out: Any, method: str, path: str, headers: list[Header]) -> str | None:
        """None when `out` is a valid forward or preflight outcome for this head, else why not
        (printable and bounded: it goes into a log line)."""
        if not isinstance(out, dict) or len(out) != 1:
            return "the outcome is not an object with exactly one key"
        kind, payload = next(iter(out.items()))
        if not isinstance(payload, dict):
            return f"{escape(kind, 40)} is not an object"
        if kind == "forward":
            return self._forward(payload, method, path, _lookup(headers))
        if kind == "preflight":
            return self._preflight(payload, _get(headers, "origin"))
        if kind == "error":
            return f"an error outcome for a well-formed head: {escape(payload.get('kind'), 40)}"
        return f"unknown outcome kind {escape(kind, 40)}"

    def _forward(self, ctx: dict[str, Any], method: str, path: str, got: dict[str, str]) -> str | None:
        # `got` is section 1's `get` for every header that crossed (one pass over them, not one
        # per field): a name missing from it is absent.
        if ctx.keys() != FORWARD_KEYS:
            missing = sorted(FORWARD_KEYS - ctx.keys())
            extra = sorted(ctx.keys() - FORWARD_KEYS)
            return f"forward keys differ from the contract's (missing {missing[:3]}, unknown {escape(extra[:3], 80)})"
        route = ctx["route"]
        for key, allowed in _ENUMS:
            value = ctx[key]
            if value.__class__ is not str or value not in allowed:
                return f"{key} is {escape(value, 40)}, not one of {sorted(allowed)}"
        if ctx["accept_json"].__class__ is not bool or ctx["accept_sse"].__class__ is not bool:
            return f"{'accept_json' if ctx['accept_json'].__class__ is not bool else 'accept_sse'} is not a boolean"
        if ctx["method"] != (method if method in _METHODS else _normalized_method(method)):
            return "method is not the request's, normalized"
        canonical = ctx["path"]
        # Canonicalizing only decodes escapes of unreserved characters, upper-cases
        # other escapes and drops segments: never longer, never a new character.
        if (
            canonical.__class__ is not str
            or len(canonical) > max(1, len(path))
            or not _canonical_chars_ok(canonical, path)
            or (route != "other" and not _ROUTE_PATH.fullmatch(canonical))
        ):
            return "path is not the request's path canonicalized"
        server_id = ctx["server_id"]
        if server_id is not None and (
            route not in _SERVER_ROUTES or server_id.__class__ is not str or not _SERVER_ID.fullmatch(server_id)
        ):
            return "server_id is set but not a server route's 1..64 unreserved characters"
        for key, name in _PASS_THROUGH:
            if ctx[key] != got.get(name):
                return f"{key} is not the {name} header that crossed"
        session = got.get("mcp-session-id")
        state = "absent" if session is None else "valid" if _VISIBLE.fullmatch(session) else "invalid"
        if ctx["session_state"] != state or ctx["session_id"] != (session if state == "valid" else None):
            return "session_state/session_id do not follow the mcp-session-id header that crossed"
        origin = got.get("origin")
        if (ctx["origin_state"] == "absent") != (origin is None):
            return "origin_state disagrees with the presence of Origin"
        revision, protocol, protocol_state = ctx["revision"], ctx["protocol_version"], ctx["protocol_state"]
        if protocol_state == "supported":
            revision_ok = revision == protocol and protocol in self.versions
        else:
            revision_ok = revision == (self.default_version if protocol_state == "absent" else None)
        if not revision_ok:
            return "revision/protocol_state do not follow mcp-protocol-version and the configured versions"
        cors = ctx["cors_headers"]
        if route != "mcp":
            return None if cors == [] else "cors_headers on a route that is not an MCP path"
        if origin is None:
            return _headers(cors, self._cors_no_origin, "cors_headers")
        values = {**self._cors_no_origin, "access-control-allow-origin": origin}
        return _headers(cors, values, "cors_headers")

    def _preflight(self, p: dict[str, Any], origin: str | None) -> str | None:
        if p.keys() != {"status", "headers"}:
            return "preflight keys are not exactly status and headers"
        status = p["status"]
        if isinstance(status, bool) or status not in PREFLIGHT_STATUSES:
            return f"preflight status {escape(status, 20)} is not 204 or 403"
        headers = p["headers"]
        if status == 403:
            return _headers(headers, {"vary": PREFLIGHT_VARY}, "preflight headers")
        if origin is None:
            return "a 204 preflight for a request without Origin"
        allowed = {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": ALLOW_METHODS,
            "access-control-max-age": self.max_age,
            "vary": PREFLIGHT_VARY,
        }
        if self.credentials:
            allowed["access-control-allow-credentials"] = "true"
        problem = _headers(headers, allowed, "preflight headers", free="access-control-allow-headers")
        if problem is not None:
            return problem
        for name, value in headers:
            if name == "access-control-allow-headers":
                names = value.split(", ")
                if not value or any(n not in self.allowed_headers for n in names):
                    return "access-control-allow-headers names a header that is not allowed"
        return None


def _headers(pairs: Any, allowed: dict[str, str], what: str, free: str | None = None) -> str | None:
    """`pairs` is a list of [name, value] string pairs, each name in `allowed` (or `free`) at
    most once, each value exactly the allowed one: a constant, or the request's own Origin
    echoed (so no CR, LF or NUL a client did not send); a `free` value only well-formed."""
    if not isinstance(pairs, list):
        return f"{what} is not a list"
    seen: set[str] = set()
    for pair in pairs:
        # Exact types (what orjson gives), checked without isinstance calls: this runs per header.
        if pair.__class__ is not list or len(pair) != 2:
            return f"{what}: an entry is not a [name, value] pair of strings"
        name, value = pair
        if name.__class__ is not str or value.__class__ is not str:
            return f"{what}: an entry is not a [name, value] pair of strings"
        if name in seen:
            return f"{what}: {escape(name, 60)} twice"
        seen.add(name)
        if name == free:
            # The one value not fixed by the contract or echoed from the request: well-formed.
            if len(value) > MAX_HEADER_VALUE or _VALUE_UNSAFE.search(value):
                return f"{what}: the value of {escape(name, 60)} is too long or has CR, LF, NUL or non-latin-1"
            continue
        if name not in allowed:
            return f"{what}: header {escape(name, 60)} is not one the edge may set"
        if value != allowed[name]:
            return f"{what}: {escape(name, 60)} is not the value the contract gives it"
    return None
