"""The upstream servers an operator configures, read from a TOML file (`MCPGW_CONFIG`).

```toml
[upstreams.files]              # the id: /servers/files/mcp, tool names files__<name>
transport = "stdio"
command = "python"
args = ["server.py"]

[upstreams.search]
transport = "streamable-http"  # or "sse"
url = "http://127.0.0.1:9000/mcp"
headers = { Authorization = "Bearer ..." }
```

A bad file stops the gateway at start-up with the key and line at fault.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..auth.policy import Policy
    from ..plugins.manifest import PluginManifest

TRANSPORTS = ("stdio", "streamable-http", "sse")
# The largest message read from an upstream unless the file says otherwise (the mcp SDK's client
# would stop at 1 MiB an SSE event); never below the gateway's own body limit (see `parse`).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# No underscore in ids: `<prefix>__<name>` must split back unambiguously.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,47}")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class OAuthConfig:
    """`[upstreams.<id>.oauth]`: the gateway's own client credentials at the upstream's
    authorization server (federation/oauth.py)."""

    client_id: str
    client_secret: str
    token_endpoint: str = ""  # or discovered from the issuer
    issuer: str = ""
    scopes: tuple[str, ...] = ()
    resource: str = ""  # RFC 8707 resource indicator; default: the upstream's URL


_OAUTH_KEYS = ("token_endpoint", "issuer", "client_id", "client_secret", "scopes", "resource")


@dataclass(frozen=True)
class UpstreamConfig:
    id: str
    transport: str
    prefix: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    connect_timeout_s: float = 10.0
    call_timeout_s: float = 60.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    health_interval_s: float = 30.0
    max_connections: float = 100  # client sessions with their own connection; beyond, calls share one
    max_pages: float = 100  # pages of each list read from the upstream; past it the catalog is cut (logged, /health)
    max_message_bytes: float = DEFAULT_MAX_MESSAGE_BYTES  # one message from the upstream; larger fails its call
    read_timeout_s: float = 300.0  # an HTTP upstream's event stream silent this long counts as gone (0: never)
    oauth: OAuthConfig | None = None  # client credentials for an upstream that needs a token
    client: str = "auto"  # streamable-http: "auto" (the gateway's own for http:// without oauth) or "sdk"


# key -> (type check, description) for the checks and their messages
_STR, _NUM = "a string", "a non-negative number"
_KEYS: dict[str, str] = {
    "transport": _STR,
    "prefix": _STR,
    "command": _STR,
    "args": "a list of strings",
    "env": "a table of strings",
    "cwd": _STR,
    "url": _STR,
    "headers": "a table of strings",
    "connect_timeout_s": _NUM,
    "call_timeout_s": _NUM,
    "restart_backoff_s": _NUM,
    "restart_backoff_max_s": _NUM,
    "health_interval_s": _NUM,
    "max_connections": _NUM,
    "max_pages": _NUM,
    "max_message_bytes": _NUM,
    "read_timeout_s": _NUM,
    "oauth": "a table ([upstreams.<id>.oauth])",
    "client": _STR,
}
_NEEDS = {"stdio": ("command",), "streamable-http": ("url",), "sse": ("url",)}
_HTTP = {"url", "headers", "read_timeout_s", "oauth"}
# the rest: all
_ONLY = {"stdio": {"command", "args", "env", "cwd"}, "streamable-http": _HTTP | {"client"}, "sse": _HTTP}


def _fits(kind: str, value: Any) -> bool:
    if kind.startswith("a table (["):
        return isinstance(value, dict)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    if kind.startswith("a list"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _line_of(text: str, table: str | None, key: str | None, section: str = "upstreams") -> int | None:
    """The line of `key` inside `[<section>.<table>]` (or of its own sub-table header, or of the
    table header), 1-based."""
    current: str | None = None
    header_line: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        found = re.fullmatch(rf"\[\s*{section}\s*\.\s*\"?([^\]\"]+)\"?\s*\](\s*#.*)?", line)
        if found:
            current = found.group(1).strip()
            if current == table:
                header_line = number
            elif key is not None and current == f"{table}.{key}":
                return number
            continue
        if line.startswith("["):
            current = None
            continue
        if key is not None and current == table and re.match(rf"\"?{re.escape(key)}\"?\s*=", line):
            return number
    if table is None and key is not None:  # a top-level key
        for number, raw in enumerate(text.splitlines(), 1):
            if re.match(rf"\s*\"?{re.escape(key)}\"?\s*[=.\[]", raw) or raw.strip() == f"[{key}]":
                return number
    return header_line


def parse(text: str, source: str = "<config>", body_limit: int = 0) -> list[UpstreamConfig]:
    """The `[upstreams.<id>]` tables. `body_limit` (the gateway's own request body limit) raises
    the default `max_message_bytes` when it is larger: an upstream may answer what a client may send."""

    def fail(message: str, table: str | None = None, key: str | None = None) -> ConfigError:
        line = _line_of(text, table, key)
        where = f"{source}, line {line}" if line else source
        return ConfigError(f"{where}: {message}")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    for key in data:
        if key not in ("upstreams", "plugins", "auth"):
            raise fail(
                f"unknown key {key!r} (the file holds [upstreams.<id>], [plugins.<name>] and [auth] tables)", None, key
            )
    tables = data.get("upstreams", {})
    if not isinstance(tables, dict):
        raise fail("'upstreams' must be a table of [upstreams.<id>] tables", None, "upstreams")
    upstreams: list[UpstreamConfig] = []
    prefixes: dict[str, str] = {}
    id_: str  # TOML keys are strings
    for id_, table in tables.items():
        if not ID_PATTERN.fullmatch(id_):
            raise fail(f"upstream id {id_!r} must be letters, digits and '-' (at most 48, no '_')", id_, None)
        if not isinstance(table, dict):
            raise fail(f"upstreams.{id_} must be a table", id_, None)
        for key, value in table.items():
            if key not in _KEYS:
                raise fail(f"upstreams.{id_}: unknown key {key!r}; known: {', '.join(_KEYS)}", id_, key)
            if not _fits(_KEYS[key], value):
                raise fail(f"upstreams.{id_}.{key} must be {_KEYS[key]}", id_, key)
        transport = table.get("transport")
        if transport not in TRANSPORTS:
            raise fail(
                f"upstreams.{id_}.transport must be one of {', '.join(TRANSPORTS)}",
                id_,
                "transport" if "transport" in table else None,
            )
        for key in _NEEDS[transport]:
            if not table.get(key):
                raise fail(f"upstreams.{id_}: a {transport} upstream needs {key!r}", id_, None)
        for key in table:
            if key in set().union(*_ONLY.values()) and key not in _ONLY[transport]:
                raise fail(f"upstreams.{id_}.{key} does not apply to a {transport} upstream", id_, key)
        url = table.get("url", "")
        if url and not re.match(r"https?://", url):
            raise fail(f"upstreams.{id_}.url must be an http:// or https:// URL", id_, "url")
        if table.get("client", "auto") not in ("auto", "sdk"):
            raise fail(f'upstreams.{id_}.client must be "auto" or "sdk"', id_, "client")
        prefix = table.get("prefix", id_)
        if not ID_PATTERN.fullmatch(prefix):
            raise fail(f"upstreams.{id_}.prefix {prefix!r} must be letters, digits and '-' (no '_')", id_, "prefix")
        if prefix in prefixes:
            raise fail(
                f"upstreams.{id_}.prefix {prefix!r} is already used by upstream {prefixes[prefix]!r}",
                id_,
                "prefix" if "prefix" in table else None,
            )
        prefixes[prefix] = id_
        oauth = _oauth(table["oauth"], fail, id_) if "oauth" in table else None
        if oauth is not None and any(k.lower() == "authorization" for k in table.get("headers", {})):
            raise fail(f"upstreams.{id_}: both an Authorization header and [oauth]: keep one", id_, "headers")
        numbers = {k: float(table[k]) for k in _KEYS if _KEYS[k] == _NUM and k in table}
        if numbers.get("max_message_bytes", 1024) < 1024:
            raise fail(f"upstreams.{id_}.max_message_bytes must be at least 1024", id_, "max_message_bytes")
        numbers.setdefault("max_message_bytes", float(max(DEFAULT_MAX_MESSAGE_BYTES, body_limit)))
        upstreams.append(
            UpstreamConfig(
                id=id_,
                transport=transport,
                prefix=prefix,
                command=table.get("command", ""),
                args=tuple(table.get("args", ())),
                env={k: _secret(v, fail, id_, "env") for k, v in table.get("env", {}).items()},
                cwd=table.get("cwd"),
                url=url,
                headers={k: _secret(v, fail, id_, "headers") for k, v in table.get("headers", {}).items()},
                oauth=oauth,
                client=table.get("client", "auto"),
                **numbers,
            )
        )
    return upstreams


def _oauth(table: dict[str, Any], fail: Any, id_: str) -> OAuthConfig:
    """`[upstreams.<id>.oauth]`, checked: client_id and client_secret, and token_endpoint or issuer."""
    where = f"upstreams.{id_}.oauth"
    for key, value in table.items():
        if key not in _OAUTH_KEYS:
            raise fail(f"{where}: unknown key {key!r}; known: {', '.join(_OAUTH_KEYS)}", id_, "oauth")
        if key == "scopes":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail(f"{where}.scopes must be a list of strings", id_, "oauth")
        elif not isinstance(value, str) or not value:
            raise fail(f"{where}.{key} must be a non-empty string", id_, "oauth")
    for key in ("client_id", "client_secret"):
        if key not in table:
            raise fail(f"{where} needs {key!r}", id_, "oauth")
    if not (table.get("token_endpoint") or table.get("issuer")):
        raise fail(f"{where} needs 'token_endpoint' or 'issuer' (its metadata names the token endpoint)", id_, "oauth")
    for key in ("token_endpoint", "issuer"):
        if key in table and not re.match(r"https?://", table[key]):
            raise fail(f"{where}.{key} must be an http:// or https:// URL", id_, "oauth")
    return OAuthConfig(
        client_id=table["client_id"],
        client_secret=_secret(table["client_secret"], fail, id_, "oauth"),
        token_endpoint=table.get("token_endpoint", ""),
        issuer=table.get("issuer", ""),
        scopes=tuple(table.get("scopes", ())),
        resource=table.get("resource", ""),
    )


def parse_plugins(text: str, source: str = "<config>", base: Path | None = None) -> list[PluginManifest]:
    """The `[plugins.<name>]` tables (mcpgw.plugins.manifest checks each), errors with file, line and key."""
    from ..plugins.manifest import check_table

    try:
        tables = tomllib.loads(text).get("plugins", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    if not isinstance(tables, dict):
        line = _line_of(text, None, "plugins")
        raise ConfigError(f"{source}{f', line {line}' if line else ''}: 'plugins' must be a table of [plugins.<name>]")
    manifests = []
    for name, table in tables.items():

        def fail(message: str, key: str | None, name: str = name) -> ConfigError:
            line = _line_of(text, name, key, "plugins")
            return ConfigError(f"{source}, line {line}: {message}" if line else f"{source}: {message}")

        manifest = check_table(name, table, fail, base)
        manifests.append(replace(manifest, line=_line_of(text, name, None, "plugins"), source=source))
    return manifests


def _secret(value: str, fail: Any, table: str, key: str) -> str:
    """A header or env value: `${VAR}` is the environment variable VAR, `file:<path>` the file's
    content (trailing newline stripped); anything else is literal. Secrets need not sit in the file."""
    if value.startswith("${") and value.endswith("}"):
        name = value[2:-1]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise fail(f"upstreams.{table}.{key}: {value!r} is not a ${{VARIABLE}} reference", table, key)
        if name not in os.environ:
            raise fail(f"upstreams.{table}.{key}: environment variable {name} is not set", table, key)
        return os.environ[name]
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"upstreams.{table}.{key}: cannot read {value[5:]}: {exc}", table, key) from None
    return value


def parse_auth(text: str, source: str = "<config>") -> Policy:
    """The `[auth]` table (today: `[auth.policy]` with `[[auth.policy.rules]]`), errors with file and line."""
    from ..auth.policy import EMPTY, parse_policy, rule_lines

    try:
        table = tomllib.loads(text).get("auth", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    lines = rule_lines(text)

    def fail(message: str, index: int | None) -> ConfigError:
        line = lines[index] if index is not None and index < len(lines) else _line_of(text, None, "auth")
        return ConfigError(f"{source}, line {line}: {message}" if line else f"{source}: {message}")

    if not isinstance(table, dict):
        raise fail("'auth' must be a table", None)
    for key in table:
        if key != "policy":
            raise fail(f"auth: unknown key {key!r}; known: policy", None)
    return parse_policy(table["policy"], fail) if "policy" in table else EMPTY


def load_policy(path: str | Path) -> Policy:
    return parse_auth(_read(path), str(path))


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def load(path: str | Path, body_limit: int = 0) -> list[UpstreamConfig]:
    return parse(_read(path), str(path), body_limit)


def load_plugins(path: str | Path) -> list[PluginManifest]:
    """The file's plugin manifests; relative plugin paths are relative to the file."""
    return parse_plugins(_read(path), str(path), Path(path).resolve().parent)
