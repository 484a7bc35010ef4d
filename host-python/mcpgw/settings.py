"""The one settings object: environment variables `MCPGW_*`, mirrored by `mcpgw serve` flags.

Every setting is declared once in `FIELDS` (name, env var, type, default, help);
the CLI builds its flags from the same table, and docs/configuration.md documents it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .edge.backend import MODES as EDGE_MODES
from .edge.contract import (
    DEFAULT_ALLOWED_HEADERS,
    DEFAULT_MAX_AGE,
    DEFAULT_VERSION,
    LOOPBACK_HOSTS,
    LOOPBACK_ORIGINS,
    SUPPORTED_VERSIONS,
    EdgeConfig,
)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _bool(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4444
    edge: str = "auto"
    edge_component: str = ""
    edge_fuel: int = 5_000_000
    edge_memory_mb: int = 16
    allowed_origins: tuple[str, ...] = LOOPBACK_ORIGINS
    allowed_hosts: tuple[str, ...] = ()
    allow_credentials: bool = False
    cors_max_age: int = DEFAULT_MAX_AGE
    path_prefix: str = ""
    max_body_bytes: int = 4 * 1024 * 1024
    max_head_bytes: int = 64 * 1024
    head_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    body_min_rate_bytes_s: int = 1024
    keepalive_timeout_s: float = 5.0
    max_connections_per_client: int = 256
    trusted_proxies: tuple[str, ...] = ()
    max_sessions: int = 10_000
    log_level: str = "info"
    access_log: bool = False
    log_format: str = "text"
    metrics: str = "loopback"
    tracing: str = "auto"
    edge_allowed_sha256: tuple[str, ...] = ()
    edge_rollback_traps: int = 20
    edge_rollback_window_s: int = 60
    edge_tag_responses: bool = False
    edge_cache_entries: int = 4096
    edge_signing_keys: tuple[str, ...] = ()
    admin_token: str = ""
    admin_allow_remote: bool = False
    auth: str = "none"
    allow_unauthenticated: bool = False
    public_url: str = ""
    auth_issuer: str = ""
    auth_jwks_url: str = ""
    auth_jwks_file: str = ""
    auth_audience: tuple[str, ...] = ()
    auth_algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    auth_hs_secret: str = ""
    auth_leeway_s: float = 60.0
    auth_jwks_timeout_s: float = 5.0
    auth_jwks_min_refresh_s: float = 60.0
    auth_jwks_refresh_s: float = 300.0
    auth_token_cache_entries: int = 4096
    auth_api_keys_file: str = ""
    auth_authorization_servers: tuple[str, ...] = ()
    auth_token: str = ""
    admin_scope: str = "mcpgw:admin"
    response_mode: str = "json"
    session_idle_timeout_s: float = 1800.0
    redis_url: str = ""
    workers: int = 1
    sse_keepalive_s: float = 15.0
    sse_keepalive_event: bool = False
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    sse_retry_ms: int = 1000
    event_store_max_events: int = 1000
    event_store_ttl_s: float = 300.0
    event_store_max_stream_bytes: int = 8 * 1024 * 1024
    event_store_max_session_bytes: int = 16 * 1024 * 1024
    event_store_max_bytes: int = 64 * 1024 * 1024
    slow_reader_max_bytes: int = 8 * 1024 * 1024
    slow_reader_wait_s: float = 5.0
    max_sessions_per_client: int = 100
    max_requests_per_session: int = 64
    max_listens_per_client: int = 16
    listen_idle_timeout_s: float = 600.0
    max_input_waits_per_client: int = 16
    input_wait_s: float = 600.0
    request_state_key: str = ""
    shutdown_grace_s: float = 10.0
    config: str = ""
    plugins_allowed_sha256: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"MCPGW_{name.upper()}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for f in fields(self):
            if str(f.type) in ("int", "float") and getattr(self, f.name) < 0:
                raise ValueError(f"MCPGW_{f.name.upper()}: must not be negative")
        if self.workers < 1:
            raise ValueError("MCPGW_WORKERS: must be at least 1")
        if self.input_wait_s <= 0:
            raise ValueError("MCPGW_INPUT_WAIT_S: must be more than 0")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"MCPGW_TRUSTED_PROXIES: not an address or CIDR: {proxy!r}") from None
        if self.request_state_key and len(self.request_state_key) < 32:
            raise ValueError("MCPGW_REQUEST_STATE_KEY: at least 32 characters")
        if self.metrics == "admin" and not self.admin_token and self.auth == "none":
            raise ValueError("MCPGW_METRICS=admin needs an admin credential: MCPGW_ADMIN_TOKEN (or auth on)")
        self.edge_signing_public_keys()  # a key that cannot be read is a setting error, at start-up

    def edge_signing_public_keys(self) -> tuple[Any, ...]:
        from .edge.signing import load_keys  # cryptography: only imported when keys are set

        try:
            return load_keys(self.edge_signing_keys) if self.edge_signing_keys else ()
        except ValueError as exc:
            raise ValueError(f"MCPGW_EDGE_SIGNING_KEYS: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("MCPGW_" + f.name.upper())
            if raw is None:
                continue
            try:
                values[f.name] = _parse(f.type, raw)
            except ValueError as exc:
                raise ValueError(f"MCPGW_{f.name.upper()}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def loopback_bind(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def effective_allowed_hosts(self) -> list[str]:
        """Explicit hosts, else the loopback names on a loopback bind (DNS-rebinding guard), else any."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        return list(LOOPBACK_HOSTS) if self.loopback_bind else ["*"]

    def edge_config(self) -> EdgeConfig:
        return EdgeConfig(
            allowed_origins=list(self.allowed_origins),
            allowed_hosts=self.effective_allowed_hosts(),
            allow_credentials=self.allow_credentials,
            allowed_headers=list(DEFAULT_ALLOWED_HEADERS),
            max_age=self.cors_max_age,
            supported_versions=list(SUPPORTED_VERSIONS),
            default_version=DEFAULT_VERSION,
            path_prefix=self.path_prefix,
        )

    def component_path(self) -> Path | None:
        return Path(self.edge_component) if self.edge_component else None


def _parse(type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    if type_name == "int":
        return int(raw)
    if type_name == "float":
        return float(raw)
    if type_name == "bool":
        return _bool(raw)
    if type_name.startswith("tuple"):
        return tuple(_csv(raw))
    return raw


CHOICES = {
    "edge": EDGE_MODES,
    "response_mode": ("json", "sse"),
    "log_level": ("debug", "info", "warning", "error", "critical"),
    "auth": ("none", "jwt", "api-key"),
    "log_format": ("text", "json"),
    "metrics": ("off", "loopback", "admin", "public"),
    "tracing": ("auto", "off", "otlp", "console"),
}

HELP = {
    "host": "address to bind (loopback by default; a loopback bind also enables the DNS-rebinding Host check)",
    "port": "port to listen on",
    "edge": (
        "edge backend: auto (component if it loads and passes its self-test, else python with a warning), "
        "wasm (component or refuse to start), python"
    ),
    "edge_component": "path of the transport_core.wasm to load (default: the one shipped in the package)",
    "edge_fuel": "fuel (roughly wasm instructions) per edge call, plus 400 per byte of request head, before it traps",
    "edge_memory_mb": "memory limit per edge component instance, MiB",
    "allowed_origins": (
        "comma-separated allowed Origins: exact (https://app.example.com), port wildcard "
        "(http://localhost:*), null, or *"
    ),
    "allowed_hosts": (
        "comma-separated allowed Host names (name or name:port, * for any); default: loopback names on a "
        "loopback bind, else any"
    ),
    "allow_credentials": "send Access-Control-Allow-Credentials: true (refused together with origin *)",
    "cors_max_age": "Access-Control-Max-Age of preflight answers, seconds",
    "path_prefix": "prefix all routes live under, e.g. /gateway",
    "max_body_bytes": "largest request body accepted (413 beyond)",
    "max_head_bytes": "largest request head (path, query, header names and values) accepted (431 beyond)",
    "head_timeout_s": (
        "a connection must complete each request head within this, seconds (408 and closed; 0: no deadline)"
    ),
    "body_timeout_s": "grace, seconds, before a request body must keep up with body_min_rate_bytes_s",
    "body_min_rate_bytes_s": (
        "slowest request body accepted after the grace, bytes/second on average (408 and closed; 0: no limit)"
    ),
    "keepalive_timeout_s": "an idle kept-alive HTTP connection is closed after this, seconds",
    "max_connections_per_client": (
        "most open connections from one client address (503 with Retry-After beyond; 0: no limit)"
    ),
    "trusted_proxies": (
        "comma-separated proxy addresses or CIDRs whose X-Forwarded-For names the client (rightmost untrusted hop)"
    ),
    "max_sessions": "most live sessions; initialize gets 503 beyond",
    "log_level": "log level: debug, info, warning, error, critical",
    "access_log": (
        "one log line per HTTP request (client, method, path, status, duration, the caller's subject "
        "when auth knows it; never a token)"
    ),
    "log_format": "log lines as text (human) or json (one JSON object per line, with the request's fields)",
    "metrics": (
        "Prometheus /metrics: off, loopback (loopback callers, others with the admin credential), admin (the admin "
        "credential always), public (anyone who can reach the gateway)"
    ),
    "tracing": (
        "OpenTelemetry traces (the mcpgw[otel] extra): auto (on when OTEL_EXPORTER_OTLP_ENDPOINT or "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set), otlp (on, OTLP/HTTP to the OTEL_* endpoint or localhost:4318), "
        "console (spans printed to stderr), off"
    ),
    "edge_allowed_sha256": (
        "comma-separated sha256 hex digests; when set, only these components load (at start-up and on swap)"
    ),
    "edge_rollback_traps": (
        "a swapped-in component that traps this many times within the window is rolled back automatically"
    ),
    "edge_rollback_window_s": "the window, seconds, for automatic rollback",
    "edge_tag_responses": "add `mcpgw-edge: <backend/version/sha256 prefix>` to every response (debugging, tests)",
    "edge_cache_entries": (
        "edge outcomes cached per backend, keyed by method, path, query and the contract's headers (0: off)"
    ),
    "edge_signing_keys": (
        "comma-separated Ed25519 public keys (files: PEM or base64; or the base64 itself); when set, a component "
        "serves only with a signature one of them verifies (<component>.sig at start-up; ?signature= on swap)"
    ),
    "admin_token": "bearer token for the admin API (/admin/edge/...); the admin API is off when unset",
    "admin_allow_remote": "accept admin API calls from non-loopback addresses",
    "auth": (
        "who may call: none (anyone who can reach the gateway; refused on a non-loopback bind unless "
        "allow_unauthenticated), jwt (OAuth 2.1 bearer JWTs), api-key (keys from auth_api_keys_file)"
    ),
    "allow_unauthenticated": "start with auth none on a non-loopback bind anyway (warned at start-up and in /health)",
    "public_url": (
        "the gateway's canonical URL as clients reach it (the OAuth resource; default http://<host>:<port>)"
    ),
    "auth_issuer": "jwt: the authorization server's issuer; tokens must carry exactly this iss",
    "auth_jwks_url": "jwt: the authorization server's JWKS URL (fetched with a timeout, cached, refreshed)",
    "auth_jwks_file": "jwt: a JWKS file with static keys, instead of or besides auth_jwks_url",
    "auth_audience": (
        "jwt: comma-separated accepted aud values; default: the resource called (<public_url>/mcp, "
        "<public_url>/servers/<id>/mcp) or <public_url> itself"
    ),
    "auth_algorithms": "jwt: accepted signature algorithms; HS* only with auth_hs_secret; none never",
    "auth_hs_secret": "jwt: the shared secret for HS* algorithms (at least 32 bytes; only if HS* is listed)",
    "auth_leeway_s": "jwt: clock skew allowed on exp and nbf, seconds",
    "auth_jwks_timeout_s": "jwt: timeout of one JWKS fetch, seconds",
    "auth_jwks_min_refresh_s": "jwt: an unknown kid refetches the JWKS at most once per this, seconds",
    "auth_jwks_refresh_s": (
        "jwt: the JWKS is refetched in the background every this, seconds (a removed key stops working then)"
    ),
    "auth_token_cache_entries": "jwt: verified tokens remembered until they expire or the key set changes (0: off)",
    "auth_api_keys_file": "api-key: the keys file (`<name> sha256:<hex> [scope ...]` per line; `mcpgw auth hash-key`)",
    "auth_authorization_servers": (
        "comma-separated authorization server issuer URLs for the protected-resource metadata (default: auth_issuer)"
    ),
    "auth_token": "mcpgw stdio only: the bearer token (JWT or API key) whose principal the stdio session runs as",
    "admin_scope": "a JWT carrying this scope may use the admin API (besides admin_token)",
    "response_mode": (
        "how POST requests are answered: json (application/json unless the request sends progress, logs or "
        "requests first, then SSE) or sse (always text/event-stream)"
    ),
    "session_idle_timeout_s": "a session with no request and no open stream for this long is ended",
    "redis_url": (
        "redis://[:password@]host:port/db shared by several gateway processes for sessions, event streams and "
        "delivery (any process serves any request); unset: this process's memory"
    ),
    "workers": ("mcpgw serve: gateway processes sharing the port (restarted if one dies); more than 1 needs redis_url"),
    "sse_keepalive_s": "interval of keepalive comments on idle GET streams, seconds",
    "sse_keepalive_event": (
        "legacy HTTP+SSE (/sse): send keepalives as a named `keepalive` event instead of an SSE comment"
    ),
    "ws_ping_interval_s": "WebSocket (/ws): interval of the server's pings, seconds (0: none)",
    "ws_ping_timeout_s": "WebSocket: a client that does not answer a ping within this is disconnected, seconds",
    "sse_retry_ms": "the `retry` an SSE stream sends before the server closes it, milliseconds",
    "event_store_max_events": "events kept per stream for resumption (Last-Event-ID)",
    "event_store_ttl_s": "how long events are kept for resumption, seconds",
    "event_store_max_stream_bytes": (
        "bytes of events kept per stream for resumption once sent (a single larger message is still delivered)"
    ),
    "event_store_max_session_bytes": "bytes of events kept for resumption across one session's streams",
    "event_store_max_bytes": (
        "bytes of events kept for resumption by the whole process (oldest finished streams evicted first)"
    ),
    "slow_reader_max_bytes": (
        "bytes a connected SSE reader may have queued but unsent; past it its stream ends with retry"
    ),
    "slow_reader_wait_s": (
        "how long a request producing messages waits for a slow SSE reader to make room before it is cut off, seconds"
    ),
    "max_sessions_per_client": "live sessions per client address; initialize gets 429 beyond (0: no cap)",
    "max_listens_per_client": (
        "open 2026-07-28 subscriptions/listen streams per client address; another gets -32029 (0: no cap)"
    ),
    "listen_idle_timeout_s": (
        "a subscriptions/listen stream that carried no event for this long ends with its result (0: never)"
    ),
    "max_input_waits_per_client": (
        "2026-07-28 calls of one client address relayed to upstreams that ask it things, running or waiting for"
        " its retry; another gets -32029 (0: no cap)"
    ),
    "input_wait_s": (
        "how long a relayed call waits for a 2026-07-28 client's retry after an InputRequiredResult, and how long"
        " a requestState is accepted, seconds"
    ),
    "request_state_key": (
        "key of the HMAC over InputRequiredResult requestState (at least 32 characters; empty: random per process)"
    ),
    "max_requests_per_session": (
        "running requests per session; a request gets 429 or a JSON-RPC error beyond (0: no cap)"
    ),
    "shutdown_grace_s": "on shutdown, how long running requests may finish before they are answered with an error",
    "config": "path of the TOML file listing upstream MCP servers (see Federation); none: built-in tools only",
    "plugins_allowed_sha256": (
        "comma-separated sha256 hex digests; when set, only these plugin components load (at start-up and at run time)"
    ),
}
