"""The edge contract on the Python side: config, errors, and the encoded JSON codec.

`wit/transport.wit` is the source of truth; docs/edge-contract.md explains each
rule. Outcomes travel as plain dicts shaped like the encoded JSON of section 14
(`{"forward": {...}}`, `{"preflight": {...}}`, `{"error": {...}}`), so both
backends hand the middleware exactly the same thing with no conversion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypedDict

import orjson

from ..protocol import ALL_REVISIONS, DEFAULT_REVISION

CONTRACT_VERSION = "1.0.0"

# The protocol revisions live in one place (mcpgw/protocol.py); the edge is configured with them.
SUPPORTED_VERSIONS = ALL_REVISIONS
DEFAULT_VERSION = DEFAULT_REVISION
LOOPBACK_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
DEFAULT_ALLOWED_HEADERS = (
    "content-type",
    "accept",
    "authorization",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
)
DEFAULT_MAX_AGE = 600  # seconds a browser may cache a preflight answer

ErrorKind = Literal["not-configured", "invalid-config", "malformed-input"]
Header = tuple[str, str]


class EdgeError(Exception):
    """An `edge-error` value of the contract."""

    def __init__(self, kind: ErrorKind, message: str = ""):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message

    def to_outcome(self) -> dict[str, Any]:
        return {"error": {"kind": self.kind, "message": self.message}}


@dataclass(frozen=True)
class EdgeConfig:
    """The WIT `config` record. Field names are the encoded JSON keys.

    The defaults are the gateway's: `Settings().edge_config()` with nothing
    set is exactly `EdgeConfig()` (tests/test_settings.py fails when they
    disagree), and the vectors' base-config.json is the same configuration."""

    allowed_origins: list[str] = field(default_factory=lambda: list(LOOPBACK_ORIGINS))
    allowed_hosts: list[str] = field(default_factory=lambda: list(LOOPBACK_HOSTS))
    allow_credentials: bool = False
    allowed_headers: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOWED_HEADERS))
    max_age: int = DEFAULT_MAX_AGE
    supported_versions: list[str] = field(default_factory=lambda: list(SUPPORTED_VERSIONS))
    default_version: str = DEFAULT_VERSION
    path_prefix: str = ""

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_mapping(cls, data: Any) -> EdgeConfig:
        """Strict decoding of the encoded config (section 14): exact keys and types."""
        if not isinstance(data, dict):
            raise EdgeError("invalid-config", "config must be a JSON object")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise EdgeError("invalid-config", f"unknown key {unknown[0]!r}")
        for name in names:
            if name not in data:
                raise EdgeError("invalid-config", f"missing key {name!r}")
        for name in ("allowed_origins", "allowed_hosts", "allowed_headers", "supported_versions"):
            value = data[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise EdgeError("invalid-config", f"{name} must be a list of strings")
        if not isinstance(data["allow_credentials"], bool):
            raise EdgeError("invalid-config", "allow_credentials must be a boolean")
        max_age = data["max_age"]
        if isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 <= max_age <= 0xFFFFFFFF:
            raise EdgeError("invalid-config", "max_age must be an integer 0..4294967295")
        for name in ("default_version", "path_prefix"):
            if not isinstance(data[name], str):
                raise EdgeError("invalid-config", f"{name} must be a string")
        return cls(**{name: data[name] for name in names})


def decode_head(text: str | bytes) -> tuple[str, str, str, list[Header]]:
    """Strict decoding of the encoded head `[method, path, query, [[name, value], ...]]`."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EdgeError("malformed-input", f"invalid JSON: {exc}") from None
    if not isinstance(data, list) or len(data) != 4:
        raise EdgeError("malformed-input", "head must be a 4-element array")
    method, path, query, headers = data
    if not (isinstance(method, str) and isinstance(path, str) and isinstance(query, str)):
        raise EdgeError("malformed-input", "method, path and query must be strings")
    if not isinstance(headers, list):
        raise EdgeError("malformed-input", "headers must be an array")
    for pair in headers:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], str):
            raise EdgeError("malformed-input", "each header must be a [name, value] pair of strings")
    return method, path, query, headers


def encode_head(method: str, path: str, query: str, headers: Iterable[Header]) -> bytes:
    return orjson.dumps([method, path, query, [list(h) for h in headers]])


class RequestContext(TypedDict):
    """The `forward` payload attached to the ASGI scope as `scope["mcpgw.edge"]`.

    Read-only there (a `MappingProxyType`, `cors_headers` a tuple of pairs):
    a cached context is shared by every request with the same head."""

    method: str
    path: str
    route: Literal["mcp", "sse", "message", "ws", "health", "other"]
    server_id: str | None
    session_state: Literal["absent", "valid", "invalid"]
    session_id: str | None
    protocol_version: str | None
    protocol_state: Literal["absent", "supported", "unsupported"]
    revision: str | None
    accept_json: bool
    accept_sse: bool
    content_type: Literal["absent", "json", "other"]
    origin: str | None
    origin_state: Literal["absent", "allowed", "denied"]
    host_state: Literal["absent", "allowed", "denied"]
    last_event_id: str | None
    mcp_method: str | None
    mcp_name: str | None
    cors_headers: list[list[str]]
