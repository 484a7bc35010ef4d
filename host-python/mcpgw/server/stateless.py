"""MCP 2026-07-28 (stateless): the per-request envelope and what results must carry.

No session: each request names its protocol version, client capabilities and
(optionally) log level in `params._meta`, and every result says it is
complete; list and read results also carry caching directives.
"""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"

# Methods that exist only with a session (or a back channel), not in 2026-07-28.
SESSION_ONLY_METHODS = frozenset({"initialize", "ping", "logging/setLevel"})
# Results a client may cache: they carry ttlMs and cacheScope. ttlMs 0 = immediately stale,
# so a catalog that changes is never served stale from a client's cache.
CACHEABLE_METHODS = frozenset(
    {"tools/list", "resources/list", "resources/templates/list", "prompts/list", "resources/read", "server/discover"}
)


# What `envelope` answers for a request without one (shared: its callers only read it).
NO_META: dict[str, Any] = {}


def envelope(params: Any) -> dict[str, Any]:
    """A request's `params._meta` (read-only; empty when it has none)."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta if isinstance(meta, dict) else NO_META


def stamp_result(method: str, result: dict[str, Any], server_info: dict[str, Any]) -> dict[str, Any]:
    # An InputRequiredResult (input_required.py) keeps its own resultType.
    kind = "input_required" if result.get("resultType") == "input_required" else "complete"
    stamped = {**result, "resultType": kind}
    if method in CACHEABLE_METHODS:
        stamped["ttlMs"] = 0
        stamped["cacheScope"] = "private"
    stamped["_meta"] = {**result.get("_meta", {}), SERVER_INFO_KEY: server_info}
    return stamped
