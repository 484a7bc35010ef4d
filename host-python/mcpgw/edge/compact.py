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

Two ways to the same head and context: from ASGI bytes as servers deliver them (lower-case
names, each once, fields under 256 bytes), `head_bytes` and `outcome_bytes`, what serves; from
anything else, `head_raw`/`head` and `outcome`, which decode first. The differential tests and
`tests/test_wasm_host.py` hold both to the Python edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
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
# ...and for answers no longer than an honest component's for that path (`CompactCodec.largest_answer`):
# a preflight that names a configured header again and again passes the checks at any length (a
# hostile component's, up to about 1.1 M characters), and 4096 of them would be gigabytes. The
# longest honest forward for a memoized path: `F`, 8 codes, the mark, the canonical path's length
# (2 UTF-8 bytes from 128) and the canonical path, at most the raw path's 256 latin-1 characters
# (2 UTF-8 bytes each; a server id, 1 + 64, only on a route whose path is ASCII: shorter).
LARGEST_HONEST_FORWARD = 1 + 8 + 1 + 2 + 2 * _MEMO_MAX_PATH  # 524 bytes
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# The byte path (`head_bytes`, `outcome_bytes`: what serves). A field's length as one latin-1
# character: a head written in latin-1 with fields under 256 bytes becomes the UTF-8 head by
# `.decode("latin-1").encode()`, and is that head already when it is ASCII (nearly always).
_LEN = tuple(bytes((n,)) for n in range(256))
_TRIM_B = b" \t"
_VISIBLE_B = bytes(range(0x21, 0x7F))  # section 4: a valid session id is 1..256 of these (`validate._VISIBLE`)
_SESSION_VALID = b"a\x01s"
_SESSION_INVALID = b"a\x00"


# What `head_bytes` knows of a tuple of header names (`CompactCodec._plan`): the crossing headers
# there, as (position, code) in code order; the positions of the session id, Origin and the
# protocol version when there (else None); whether Host and Content-Type are there; the positions
# of the pass-through headers when there (else None); for the packed form, its start (`*`, the
# count, the letters) and a function picking the crossing values out of the headers, as a tuple.
_Plan = tuple[
    tuple[tuple[int, bytes], ...],
    int | None,
    int | None,
    int | None,
    bool,
    bool,
    int | None,
    int | None,
    int | None,
    bytes,
    Callable[[Sequence[tuple[bytes, bytes]]], tuple[bytes, ...]],
]
# Plans are memoized for tuples of up to this many names and bytes in all, at most this many plans
# (a few MB whatever clients send; real clients repeat a few tuples). A longer tuple's plan is
# made again for each head.
_PLAN_MAX_COUNT = 48
_PLAN_MAX_NAMES = 1024
_PLAN_LIMIT = 1024
_VERBS = {verb: verb.encode() for verb in ("GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH")}
# What `head_bytes` keeps for `outcome_bytes`: the ASGI headers, their plan, then Origin, the
# protocol version and the session id trimmed (None when absent), and whether that id is valid.
Held = tuple[Sequence[tuple[bytes, bytes]], _Plan, bytes | None, bytes | None, bytes | None, bool]


def _picker(positions: tuple[int, ...]) -> Callable[[Sequence[tuple[bytes, bytes]]], tuple[bytes, ...]]:
    """A function of the ASGI headers giving the values of the headers at `positions`, as a
    tuple, by C-level calls (`itemgetter` gives a bare item for one position)."""
    if len(positions) >= 2:
        pairs = itemgetter(*positions)
        return lambda headers: tuple(map(_VALUE, pairs(headers)))
    if positions:
        (at,) = positions
        return lambda headers: (headers[at][1],)
    return lambda headers: ()


_NAME = itemgetter(0)
_VALUE = itemgetter(1)
# A tuple of header names gets its matcher once it was planned this many times: a client sending
# new names with every head never makes one, and one that repeats them makes one.
_COMPILE_AFTER = 8


def _matcher(
    names: tuple[bytes, ...], positions: tuple[int, ...], prefix: bytes
) -> Callable[[Sequence[tuple[bytes, bytes]]], tuple[bytes, ...] | None]:
    """A function of ASGI headers that returns the packed part of the head (`prefix`, the
    lengths, the values at `positions`) when the headers' names are exactly `names`, in that
    order, and None otherwise; ValueError when a length is 256 or more or the count differs,
    TypeError for an entry that is not a pair. Written out for these names (every entry
    unpacked, every name compared, each value read by its position: bytecode the interpreter
    specializes, where a loop over the headers costs a call per item). The source holds no
    name: the names are constants of the function's namespace."""
    pairs = "".join(f"(n{i}, v{i}), " for i in range(len(names)))
    differs = " or ".join(f"n{i} != N{i}" for i in range(len(names))) or "False"
    lengths = "".join(f"len(v{i}), " for i in positions)
    values = "".join(f"v{i}, " for i in positions)
    source = (
        "def match(h):\n"
        f"    {pairs}= h\n"
        f"    if {differs}:\n"
        "        return None\n"
        f"    return (PREFIX, bytes(({lengths})), {values})\n"
    )
    namespace: dict[str, Any] = {f"N{i}": name for i, name in enumerate(names)}
    namespace["PREFIX"] = prefix
    exec(source, namespace)  # generated from indices only: the names are bound, never written into it
    match: Callable[[Sequence[tuple[bytes, bytes]]], tuple[bytes, ...] | None] = namespace["match"]
    return match


# A packed head with no headers (section 16): a component that reads the packed form answers it
# (when configured) with a forward, one that does not with `E2`.
PACKED_PROBE = b"\x03GET\x01/*\x00"


def reads_packed(call: Callable[[bytes], bytes]) -> bool:
    """Whether a configured component's `evaluate-compact` (`call`) reads the packed form."""
    return call(PACKED_PROBE)[:1] == b"F"


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
        # The longest honest preflight: `P2`, the length (at most 3 UTF-8 bytes) and the allowed
        # headers, each configured one at most once (the contract's section on preflights).
        preflight = 5 + len(", ".join(self.allowed_headers))
        self.largest_answer = max(LARGEST_HONEST_FORWARD, preflight)
        # The longest honest answer to any compact head (a path field of MAX_FIELD code points, up
        # to 4 UTF-8 bytes each, canonicalized; a server id): the host reads no longer one.
        self.largest_read = max(13 + 4 * MAX_FIELD + 65, preflight)
        self.versions = frozenset(config.supported_versions)
        self.default_version = config.default_version
        self._forwards: dict[tuple[str, str], tuple[Any, ...]] = {}
        # The byte path's memo: per (answer, raw path), the checked decisions and a prebuilt
        # forward context to copy (or, for a preflight, its checked allow-headers value).
        self._answers: dict[tuple[bytes, bytes], tuple[Any, ...]] = {}
        # Whether `head_bytes` writes the packed form (section 16): set by the host once it knows
        # the component reads it (`reads_packed`).
        self.packed = False
        # `head_bytes`' plans per header names tuple (`_plan`).
        self._plans: dict[tuple[bytes, ...], _Plan | None] = {}  # None: the shortcut does not apply
        # How often each memoized names tuple was planned (up to `_COMPILE_AFTER`), and the
        # matcher tried first per number of headers (`_planned`).
        self._uses: dict[tuple[bytes, ...], int] = {}
        self._fast: dict[int, tuple[_Plan, Callable[[Sequence[tuple[bytes, bytes]]], tuple[bytes, ...] | None]]] = {}

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

    def head_packed(self, method: str, path: str, headers: Iterable[Header]) -> bytes | None:
        """The compact head in the packed form, from decoded headers (what the vectors and the
        differential tests run; `head_bytes` writes the same form from ASGI bytes): each crossing
        header's value as received when it comes once (the component trims it), the combined
        value when it comes more than once; None when a field is too long for the encoding."""
        found = lookup(headers)
        seen: dict[str, str | None] = {}
        for name, value in headers:
            key = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)
            if key in _CROSSING:
                seen[key] = None if key in seen else value
        values = [seen.get(key) or found[key] for key in _CROSSING if key in seen]
        fields = [method, path, *values]
        if any(len(field) > MAX_FIELD for field in fields):
            return None
        parts = [chr(len(method)), method, chr(len(path)), path, "*", chr(len(values))]
        parts += (code for key, code in _CROSSING.items() if key in seen)
        parts += (chr(len(value)) for value in values)
        parts += values
        session = found.get("mcp-session-id")
        if session is not None:
            parts += (_SESSION, "\x01s" if _VISIBLE.fullmatch(session) else "\x00")
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

    # --- the byte path (what serves) -------------------------------------------------

    def head_bytes(
        self, method: str, raw_path: bytes, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[bytes, Held] | None:
        """The compact head written from the ASGI bytes as they are, and what `outcome_bytes`
        needs of them; None when this shortcut does not apply, and `head_raw` serves: a name the
        contract reads twice (its values are combined) or not in lower case (ASGI servers
        lower-case them), or a field of 256 bytes or more. Values are not decoded: a latin-1
        head that is ASCII (nearly always) is already the UTF-8 one.

        Where the headers the head carries sit depends only on the header names in received
        order, and clients repeat those: a `_Plan` per tuple of names (`_planned`) says it, so
        no name is looked at again and only the present headers are read. In the packed form
        (what serves) the values cross as received, with one `len` each (the component trims
        them), and a tuple of names seen `_COMPILE_AFTER` times gets a matcher (`_matcher`):
        one function that checks a head has exactly those names and returns its packed part,
        tried first for heads with as many headers."""
        if not isinstance(headers, (list, tuple)):  # another iterable (ASGI allows one): `head_raw` reads it
            return None
        try:
            verb = _VERBS.get(method) or method.encode("latin-1")
            fast = self._fast.get(len(headers)) if self.packed else None
            got: Sequence[bytes] | None = None if fast is None else fast[1](headers)
            plan: _Plan | None
            if fast is not None and got is not None:
                plan = fast[0]
            else:
                plan = self._planned(headers)
                if plan is None:
                    return None
                if self.packed:
                    values = plan[10](headers)
                    got = (plan[9], bytes(map(len, values)), *values)
                else:
                    letters: list[bytes] = []
                    for at, code in plan[0]:
                        value = headers[at][1].strip(_TRIM_B)
                        letters += (code, _LEN[len(value)], value)
                    got = letters
            parts = [_LEN[len(verb)], verb, _LEN[len(raw_path)], raw_path, *got]
            _, session_at, origin_at, version_at = plan[:4]
            origin = version = session = None
            valid = False
            if origin_at is not None:
                origin = headers[origin_at][1].strip(_TRIM_B)
            if version_at is not None:
                version = headers[version_at][1].strip(_TRIM_B)
            if session_at is not None:
                session = headers[session_at][1].strip(_TRIM_B)
                # Section 4 (`validate._VISIBLE`) without a regex; isalnum() settles most ids alone.
                valid = 0 < len(session) <= 256 and (session.isalnum() or not session.translate(None, _VISIBLE_B))
                parts.append(_SESSION_VALID if valid else _SESSION_INVALID)
            head = b"".join(parts)
        except (IndexError, ValueError, TypeError, UnicodeEncodeError):  # a field too long, an entry not bytes
            return None
        held = (headers, plan, origin, version, session, valid)
        return (head if head.isascii() else head.decode("latin-1").encode()), held

    def _planned(self, headers: Sequence[tuple[bytes, bytes]]) -> _Plan | None:
        """The plan for these headers' names (memoized, `_plan`); in the packed form, the names
        tuple's matcher is made on its `_COMPILE_AFTER`-th use and tried first from then on for
        heads with as many headers. TypeError for an entry that is not a pair of bytes."""
        names = tuple(map(_NAME, headers))
        try:
            plan = self._plans[names]
        except KeyError:
            plan = self._plan(names)
        if plan is not None and self.packed and names and names in self._plans:
            uses = self._uses.get(names, 0) + 1
            if uses <= _COMPILE_AFTER:
                self._uses[names] = uses
                if uses == _COMPILE_AFTER:
                    self._fast[len(names)] = (plan, _matcher(names, tuple(at for at, _ in plan[0]), plan[9]))
        return plan

    def _plan(self, names: tuple[bytes, ...]) -> _Plan | None:
        """What `head_bytes` needs to know of a tuple of header names (`_Plan`), or None when its
        shortcut does not apply (a name the contract reads in capitals or twice, or a name that
        is not bytes); memoized for tuples of up to `_PLAN_MAX_COUNT` names and `_PLAN_MAX_NAMES`
        bytes in all, at most `_PLAN_LIMIT` of them."""
        at: dict[str, int] = {}
        plan: _Plan | None = None
        for i, name in enumerate(names):
            if not isinstance(name, bytes):
                return None
            key = CONTRACT_HEADERS.get(name.lower())
            if key is not None:
                if key in at or not name.islower():  # combined, or matched case-insensitively
                    break
                at[key] = i
        else:
            crossing = tuple((at[name], code.encode()) for name, code in _CROSSING.items() if name in at)
            plan = (
                crossing,
                at.get("mcp-session-id"),
                at.get("origin"),
                at.get("mcp-protocol-version"),
                "host" in at,
                "content-type" in at,
                at.get("last-event-id"),
                at.get("mcp-method"),
                at.get("mcp-name"),
                b"*" + bytes((len(crossing),)) + b"".join(code for _, code in crossing),
                _picker(tuple(i for i, _ in crossing)),
            )
        if len(names) <= _PLAN_MAX_COUNT and sum(map(len, names)) <= _PLAN_MAX_NAMES:
            if len(self._plans) >= _PLAN_LIMIT:
                self._plans.clear()
                self._uses.clear()
            self._plans[names] = plan
        return plan

    def outcome_bytes(self, out: bytes, method: str, raw_path: bytes, held: Held) -> dict[str, Any]:
        """`outcome` for a head `head_bytes` wrote: the same context, the same checks. What an
        answer decides is checked once per (answer, raw path) and kept with a prebuilt
        context; per call only the checks against this head's values run, and the values the
        host passes through are decoded."""
        try:
            answer = self._answers[out, raw_path]
        except KeyError:
            answer = self._answer(out, raw_path)
        headers, plan, origin_b, version_b, session, valid = held
        origin = None if origin_b is None else origin_b.decode("latin-1")
        template = answer[0]
        if template is None:  # a preflight: (None, its allow-headers value or None for a 403)
            return self._preflight_outcome(answer[1], origin)
        _, session_state, protocol_state, origin_absent, host_absent, content_absent, cors = answer
        forward = template.copy()
        if session is None:
            if session_state != "absent":
                raise InvalidOutput("session_state does not follow the mcp-session-id header that crossed")
        elif session_state != ("valid" if valid else "invalid"):
            raise InvalidOutput("session_state does not follow the mcp-session-id header that crossed")
        elif valid:
            forward["session_id"] = session.decode("ascii")
        if version_b is None:
            version = None
            ok = protocol_state == "absent"
        else:
            forward["protocol_version"] = version = version_b.decode("latin-1")
            if protocol_state == "supported":
                forward["revision"] = version
                ok = version in self.versions
            else:
                ok = protocol_state == "unsupported"
        if not ok:
            raise InvalidOutput("protocol_state does not follow mcp-protocol-version and the configured versions")
        if origin_absent != (origin is None):
            raise InvalidOutput("origin_state disagrees with the presence of Origin")
        host_present, content_present, last_event_at, mcp_method_at, mcp_name_at = plan[4:9]
        if host_absent == host_present or content_absent == content_present:
            raise InvalidOutput("host_state or content_type disagrees with the presence of its header")
        forward["method"] = method if method in _METHODS else _normalized_method(method)
        if origin is not None:
            forward["origin"] = origin
        if cors is not None:  # (allow-origin in the set, the other pairs)
            echo, pairs = cors
            if not echo:
                forward["cors_headers"] = list(map(list, pairs))
            elif origin is None:
                raise InvalidOutput("access-control-allow-origin for a request without Origin")
            else:
                forward["cors_headers"] = [["access-control-allow-origin", origin], *map(list, pairs)]
        else:
            forward["cors_headers"] = []
        if last_event_at is not None:
            forward["last_event_id"] = headers[last_event_at][1].strip(_TRIM_B).decode("latin-1")
        if mcp_method_at is not None:
            forward["mcp_method"] = headers[mcp_method_at][1].strip(_TRIM_B).decode("latin-1")
        if mcp_name_at is not None:
            forward["mcp_name"] = headers[mcp_name_at][1].strip(_TRIM_B).decode("latin-1")
        return {"forward": forward}

    def _answer(self, out: bytes, raw_path: bytes) -> tuple[Any, ...]:
        """An answer's checks that do not depend on the head's header values, and what
        `outcome_bytes` builds from it; memoized like `_decisions`."""
        try:
            text = out.decode()
            path = raw_path.decode("latin-1")
            kind = text[:1]
            if kind == "F":
                route, session, protocol, accept_json, accept_sse, content, origin, host, cors, canonical, server_id = (
                    self._check_forward(text, path)
                )
                template = {
                    "method": None,
                    "path": canonical,
                    "route": route,
                    "server_id": server_id,
                    "session_state": session,
                    "session_id": None,
                    "protocol_version": None,
                    "protocol_state": protocol,
                    "revision": self.default_version if protocol == "absent" else None,
                    "accept_json": accept_json,
                    "accept_sse": accept_sse,
                    "content_type": content,
                    "origin": None,
                    "origin_state": origin,
                    "host_state": host,
                    "last_event_id": None,
                    "mcp_method": None,
                    "mcp_name": None,
                    "cors_headers": None,
                }
                # The CORS set as (allow-origin in it, its other pairs): the origin is the request's.
                pairs = tuple((name, value) for name, value in cors if value is not None)
                answer: tuple[Any, ...] = (
                    template,
                    session,
                    protocol,
                    origin == "absent",
                    host == "absent",
                    content == "absent",
                    (len(pairs) < len(cors), pairs) if cors else None,
                )
            elif kind == "P":
                answer = (None, self._check_preflight(text))
            else:
                raise InvalidOutput("the compact outcome is neither a forward nor a preflight")
        except InvalidOutput:
            raise
        except Exception as exc:  # noqa: BLE001 - not UTF-8, cut short, a length past the end
            raise InvalidOutput(f"malformed compact outcome ({type(exc).__name__})") from None
        if len(raw_path) <= _MEMO_MAX_PATH and len(out) <= self.largest_answer:
            if len(self._answers) >= _MEMO_LIMIT:
                self._answers.clear()
            self._answers[(out, raw_path)] = answer
        return answer

    def _check_preflight(self, text: str) -> str | None:
        """A preflight answer's allow-headers value (None for a 403), checked."""
        if text == "P4":
            return None
        if text[:2] != "P2":
            raise InvalidOutput("preflight status is not 204 or 403")
        n = ord(text[2])
        allow = text[3:]
        if len(allow) != n:
            raise InvalidOutput("the allowed headers are not exactly one field")
        if not allow or any(name not in self.allowed_headers for name in allow.split(", ")):
            raise InvalidOutput("access-control-allow-headers names a header that is not allowed")
        return allow

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
        got = self._check_forward(text, path)
        if len(self._forwards) >= _MEMO_LIMIT or len(path) > _MEMO_MAX_PATH:
            if len(path) > _MEMO_MAX_PATH:
                return got
            self._forwards.clear()
        self._forwards[key] = got
        return got

    def _check_forward(self, text: str, path: str) -> tuple[Any, ...]:
        """`_decisions` without the memo."""
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
        return (
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
        return self._preflight_outcome(self._check_preflight(text), origin)

    def _preflight_outcome(self, allow: str | None, origin: str | None) -> dict[str, Any]:
        """The preflight outcome for a checked answer (`_check_preflight`) and the request's Origin."""
        if allow is None:
            return {"preflight": {"status": 403, "headers": [["vary", PREFLIGHT_VARY]]}}
        if origin is None:
            raise InvalidOutput("a 204 preflight for a request without Origin")
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
    call: Callable[[bytes], bytes],
    config: EdgeConfig,
    method: str,
    path: str,
    headers: Iterable[Header],
    packed: bool = False,
) -> dict[str, Any]:
    """One head through the compact encoding end to end, with a fresh codec for `config`: what
    the vectors and the differential tests run (`call` is an instance's `evaluate_compact`,
    configured with `config`), with the headers letter by letter or, with `packed`, in the packed
    form. ValueError for a head with a field too long for the encoding."""
    codec = CompactCodec(config)
    headers = list(headers)
    found = lookup(headers)
    head = codec.head_packed(method, path, headers) if packed else codec.head(method, path, found)
    if head is None:
        raise ValueError("a field too long for the compact encoding")
    return codec.outcome(call(head), method, path, found)
