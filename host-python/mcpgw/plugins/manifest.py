"""A plugin's manifest: one `[plugins.<name>]` table of the MCPGW_CONFIG file.

```toml
[plugins.guard]
path = "plugins/dist/tool-guard.wasm"   # relative to the config file
sha256 = "ab12..."                      # optional pin
hooks = ["tool-pre-invoke"]             # default: every hook describe() names
priority = 10                           # lower runs first
endpoints = ["/mcp"]                    # globs; default all
tools = ["files__*"]                    # globs over tool/prompt names and resource URIs; default all
grants = ["log"]                        # subset of ["log", "clock"]; default none
on_error = "fail-closed"                # or "fail-open"
config = { deny = ["files__delete"] }   # passed to configure() as JSON
```

`federation/config.py` reads the file and reports errors with file, line and
key; this module only checks one table (`check_table`) and holds the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HOOKS = (
    "tool-pre-invoke",
    "tool-post-invoke",
    "prompt-pre-fetch",
    "prompt-post-fetch",
    "resource-pre-fetch",
    "resource-post-fetch",
    "list-filter",
)
GRANTS = ("log", "clock")
ON_ERROR = ("fail-closed", "fail-open")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")

# The defaults of a manifest's keys (docs/plugins.md has the table).
DEFAULT_FUEL = 10_000_000
# Fuel added per KiB of a call's input (context and payload): parsing alone costs about 6 fuel a
# byte, redact's scanners about 140 with personal data in the text (docs/plugins.md, "What a call
# costs"); 200,000 a KiB covers the example plugins on any payload the gateway accepts.
DEFAULT_FUEL_PER_KB = 200_000
DEFAULT_MEMORY_MB = 16
DEFAULT_MAX_OUTPUT_KB = 1024
DEFAULT_DISABLE_AFTER = 20
DEFAULT_DISABLE_WINDOW_S = 60.0


@dataclass(frozen=True)
class PluginManifest:
    name: str
    path: str
    sha256: str = ""
    hooks: tuple[str, ...] = ()  # empty: every hook the plugin implements
    priority: int = 0
    endpoints: tuple[str, ...] = ("*",)
    tools: tuple[str, ...] = ("*",)
    config: Mapping[str, Any] = field(default_factory=dict)
    grants: tuple[str, ...] = ()
    fuel: int = DEFAULT_FUEL
    fuel_per_kb: int = DEFAULT_FUEL_PER_KB
    memory_mb: int = DEFAULT_MEMORY_MB
    max_output_kb: int = DEFAULT_MAX_OUTPUT_KB
    on_error: str = "fail-closed"
    disable_after: int = DEFAULT_DISABLE_AFTER  # 0: never auto-disabled
    disable_window_s: float = DEFAULT_DISABLE_WINDOW_S
    line: int | None = None  # where the table starts in its file (start-up errors name it)
    source: str = ""  # the config file, or who loaded it at run time

    def with_path(self, path: str) -> PluginManifest:
        return replace(self, path=path)


_STR, _INT, _NUM = "a string", "a non-negative integer", "a non-negative number"
_STRS = "a list of strings"
KEYS: dict[str, str] = {
    "path": _STR,
    "sha256": "a 64-digit lowercase hex sha256",
    "hooks": f"a list of hooks ({', '.join(HOOKS)})",
    "priority": "an integer",
    "endpoints": _STRS,
    "tools": _STRS,
    "config": "a table",
    "grants": f"a list drawn from {', '.join(GRANTS)}",
    "fuel": _INT,
    "fuel_per_kb": _INT,
    "memory_mb": _INT,
    "max_output_kb": _INT,
    "on_error": f"one of {', '.join(ON_ERROR)}",
    "disable_after": _INT,
    "disable_window_s": _NUM,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _fits(key: str, value: Any) -> bool:
    if key == "path":
        return isinstance(value, str) and bool(value)
    if key == "sha256":
        return isinstance(value, str) and bool(SHA256_PATTERN.fullmatch(value))
    if key == "hooks":
        return _strings(value) and all(v in HOOKS for v in value)
    if key == "grants":
        return _strings(value) and all(v in GRANTS for v in value)
    if key in ("endpoints", "tools"):
        return _strings(value)
    if key == "config":
        return isinstance(value, dict)
    if key == "priority":
        return _is_int(value)
    if key == "on_error":
        return value in ON_ERROR
    if key == "disable_window_s":
        return (_is_int(value) or isinstance(value, float)) and value >= 0
    return _is_int(value) and value >= 0  # fuel, fuel_per_kb, memory_mb, max_output_kb, disable_after


Fail = Callable[[str, str | None], Exception]


def check_table(
    name: str, table: Any, fail: Fail, base: Path | None = None, *, needs_path: bool = True
) -> PluginManifest:
    """One `[plugins.<name>]` table as a manifest. `fail(message, key)` builds the
    exception to raise (it adds file and line); `base` resolves a relative path."""
    if not NAME_PATTERN.fullmatch(name):
        raise fail(f"plugin name {name!r} must be letters, digits, '-' and '_' (at most 48)", None)
    if not isinstance(table, dict):
        raise fail(f"plugins.{name} must be a table", None)
    for key, value in table.items():
        if key not in KEYS:
            raise fail(f"plugins.{name}: unknown key {key!r}; known: {', '.join(KEYS)}", key)
        if not _fits(key, value):
            raise fail(f"plugins.{name}.{key} must be {KEYS[key]}", key)
    if needs_path and "path" not in table:
        raise fail(f"plugins.{name}: 'path' (the plugin's .wasm file) is required", None)
    for key in ("fuel", "memory_mb", "max_output_kb"):
        if key in table and table[key] == 0:
            raise fail(f"plugins.{name}.{key} must be greater than 0", key)
    path = str(table.get("path", ""))
    if path and base is not None and not Path(path).is_absolute():
        path = str(base / path)
    values: dict[str, Any] = {k: v for k, v in table.items() if k in KEYS and k != "path"}
    for key in ("hooks", "endpoints", "tools", "grants"):
        if key in values:
            values[key] = tuple(values[key])
    if "disable_window_s" in values:
        values["disable_window_s"] = float(values["disable_window_s"])
    return PluginManifest(name=name, path=path, **values)
