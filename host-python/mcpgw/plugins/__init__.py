"""Sandboxed WebAssembly plugins on the request path (wit/plugin.wit, docs/plugins.md).

`manifest.py` (the `[plugins.<name>]` tables), `sandbox.py` (one component
under wasmtime: grants, fuel, memory, output limit), `chain.py` (loaded
plugins, the immutable plugin set, the hook chain the session engine calls),
`registry.py` (start-up loading and run-time lifecycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings
    from .registry import PluginRegistry


def plugin_registry_for(settings: Settings) -> PluginRegistry | None:
    """The plugins of MCPGW_CONFIG, or an empty registry when the admin API could load
    some at run time, else None (no plugins: nothing on the request path). Raises
    federation.config.ConfigError naming the file, line and table of a plugin refused."""
    from ..edge.registry import SwapRefused
    from ..federation.config import ConfigError, load_plugins
    from .registry import PluginRegistry

    manifests = load_plugins(settings.config) if settings.config else []
    if not manifests and not settings.admin_token:
        return None
    try:
        return PluginRegistry(manifests, allowed_sha256=frozenset(settings.plugins_allowed_sha256))
    except SwapRefused as exc:
        m = getattr(exc, "manifest", None)
        where = f"{m.source}, line {m.line}" if m is not None and m.line else (m.source if m is not None else "")
        name = m.name if m is not None else "?"
        raise ConfigError(f"{where}: plugins.{name}: refused at {exc.step}: {exc.detail}") from None
