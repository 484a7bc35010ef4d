"""Plugins at start-up and at run time: verify, then activate by replacing one reference.

The steps and their refusals are the edge registry's (`edge/registry.py`):
`verify` (slow, off the event loop: sha256 allowlist, compile, imports against
grants, exports, describe, configure on a fresh instance) raises
`SwapRefused(step, detail)`; activation (fast) builds a new immutable
`PluginSet` and assigns it. Calls already running finish on the set they
started with.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..edge.registry import _STEPS, SwapRefused
from ..edge.wasm_core import ComponentLoadError, read_component
from .chain import Plugin, PluginHooks, PluginSet
from .manifest import PluginManifest
from .sandbox import PluginComponent, PluginFault

log = logging.getLogger("mcpgw.plugins")

STEPS = {**_STEPS, "import-not-granted": "imports"}


class PluginRegistry:
    def __init__(self, manifests: list[PluginManifest], *, allowed_sha256: frozenset[str]):
        """Loads every manifest; raises SwapRefused (with `.manifest`) for the first that fails."""
        self.allowed_sha256 = frozenset(h.lower() for h in allowed_sha256)
        self.events: deque[dict[str, Any]] = deque(maxlen=50)
        self._lock = threading.Lock()
        plugins = []
        for manifest in manifests:
            try:
                plugin = self.verify(read_wasm(manifest.path), manifest, manifest.path)
            except SwapRefused as exc:
                exc.manifest = manifest  # type: ignore[attr-defined]  # the start-up error names its table
                raise
            plugins.append(plugin)
        self.current = PluginSet(self._watch(tuple(plugins)))
        self.hooks = PluginHooks(lambda: self.current)
        for plugin in self.current.plugins:
            log.info(
                "plugin %s %s (sha256 %s…, %s): hooks %s, grants %s, priority %d, %s, %s",
                plugin.name,
                plugin.version,
                plugin.component.sha256[:12],
                plugin.component.source,
                ",".join(sorted(plugin.hooks)),
                ",".join(plugin.manifest.grants) or "none",
                plugin.manifest.priority,
                plugin.manifest.on_error,
                plugin.state,
            )

    # --- verification (slow: off the event loop at run time) -----------------

    def verify(self, wasm: bytes, manifest: PluginManifest, source: str) -> Plugin:
        sha = hashlib.sha256(wasm).hexdigest()
        if self.allowed_sha256 and sha not in self.allowed_sha256:
            raise SwapRefused("allowlist", f"sha256 {sha} is not in MCPGW_PLUGINS_ALLOWED_SHA256")
        if manifest.sha256 and sha != manifest.sha256:
            raise SwapRefused("allowlist", f"sha256 {sha} is not the manifest's sha256 {manifest.sha256}")
        try:
            component = PluginComponent(
                wasm,
                name=manifest.name,
                grants=manifest.grants,
                fuel=manifest.fuel,
                fuel_per_kb=manifest.fuel_per_kb,
                memory_bytes=manifest.memory_mb * 1024 * 1024,
                max_output_bytes=manifest.max_output_kb * 1024,
                source=source,
            )
        except ComponentLoadError as exc:
            raise SwapRefused(STEPS.get(exc.reason, exc.reason), exc.detail) from None
        except PluginFault as exc:
            raise SwapRefused("describe", f"describe() failed: {exc}") from None
        missing = [h for h in manifest.hooks if h not in component.info["hooks"]]
        if missing:
            raise SwapRefused(
                "hooks", f"hooks {missing} are not implemented (describe() names {component.info['hooks']})"
            )
        plugin = Plugin(manifest, component)
        try:
            plugin.fresh_instance()
        except PluginFault as exc:
            raise SwapRefused("configure", exc.detail) from None
        return plugin

    # --- activation (fast) ---------------------------------------------------

    def _watch(self, plugins: tuple[Plugin, ...]) -> tuple[Plugin, ...]:
        for plugin in plugins:
            plugin.on_auto_disable = self._auto_disabled
        return plugins

    def _publish(self, plugins: tuple[Plugin, ...]) -> None:
        self.current = PluginSet(self._watch(plugins))  # one assignment: running calls keep theirs

    def _auto_disabled(self, plugin: Plugin) -> None:
        with self._lock:
            if plugin in self.current.plugins:
                self._publish(self.current.plugins)
            self._event("auto-disable", "gateway", plugin, reason=plugin.reason)

    def _get(self, name: str) -> Plugin:
        plugin = self.current.by_name(name)
        if plugin is None:
            raise SwapRefused("name", f"no plugin named {name!r} is loaded")
        return plugin

    def manifest_for(self, name: str, overrides: dict[str, Any] | None, source: str) -> PluginManifest:
        """The manifest a run-time load uses: the loaded plugin's (reload), else defaults; then overrides."""
        from .manifest import check_table

        existing = self.current.by_name(name)
        base = existing.manifest if existing is not None else PluginManifest(name=name, path="")

        def fail(message: str, key: str | None) -> SwapRefused:
            return SwapRefused("manifest", message + (f" (key {key!r})" if key else ""))

        if overrides:
            checked = check_table(name, overrides, fail, needs_path=False)
            base = replace(base, **{k: getattr(checked, k) for k in overrides if k != "path"})
        return replace(base, path=source, source=source, line=None)

    def activate(self, plugin: Plugin, actor: str, *, replace_existing: bool) -> dict[str, Any]:
        with self._lock:
            old = self.current.by_name(plugin.name)
            if old is not None and not replace_existing:
                raise SwapRefused("name", f"a plugin named {plugin.name!r} is already loaded (use reload)")
            if old is None and replace_existing:
                raise SwapRefused("name", f"no plugin named {plugin.name!r} is loaded (use load)")
            if old is not None and old.state == "disabled":  # a reload keeps an operator's disable
                plugin.set_state("disabled", old.reason)
            rest = tuple(p for p in self.current.plugins if p.name != plugin.name)
            self._publish((*rest, plugin))
            return self._event("reload" if old else "load", actor, plugin, from_=old)

    def unload(self, name: str, actor: str) -> dict[str, Any]:
        with self._lock:
            plugin = self._get(name)
            self._publish(tuple(p for p in self.current.plugins if p.name != name))
            return self._event("unload", actor, plugin)

    def set_enabled(self, name: str, enabled: bool, actor: str) -> dict[str, Any]:
        with self._lock:
            plugin = self._get(name)
            plugin.set_state("enabled" if enabled else "disabled", "" if enabled else f"disabled by {actor}")
            self._publish(self.current.plugins)
            return self._event("enable" if enabled else "disable", actor, plugin)

    def _event(
        self, action: str, actor: str, plugin: Plugin, *, from_: Plugin | None = None, reason: str = ""
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "time": time.time(),
            "action": action,
            "actor": actor,
            "plugin": plugin.name,
            "version": plugin.version,
            "sha256": plugin.component.sha256,
        }
        if from_ is not None:
            event["from"] = {"version": from_.version, "sha256": from_.component.sha256}
        if reason:
            event["reason"] = reason
        self.events.append(event)
        return event

    def health(self) -> list[dict[str, Any]]:
        return [p.health() for p in self.current.plugins]

    def status(self) -> dict[str, Any]:
        return {
            "plugins": self.health(),
            "allowlist": sorted(self.allowed_sha256) or None,
            "events": list(self.events),
        }


def read_wasm(path: str | Path) -> bytes:
    try:
        return read_component(path)
    except ComponentLoadError as exc:
        raise SwapRefused("read", exc.detail) from None
