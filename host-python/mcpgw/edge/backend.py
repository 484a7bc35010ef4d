"""Choosing the edge backend (`MCPGW_EDGE=wasm|python|auto`) and saying why.

- `python`: the pure-Python core.
- `wasm`: the component, or refuse to start: an operator who asked for the
  Rust edge must never get Python without noticing (ADR-038, lesson 2).
- `auto` (default): the component if it loads, speaks our contract and passes
  the self-test (every shipped vector); otherwise Python with a warning that
  says exactly why.

The choice, the component's version and sha256, or the reason for falling
back, are logged at start-up and reported by `/health`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import EdgeConfig
from .python_core import PythonCore
from .vectors import PACKAGED_DIR, load_cases

if TYPE_CHECKING:
    from .wasm_core import WasmCore

log = logging.getLogger("mcpgw.edge")

PACKAGED_COMPONENT = Path(__file__).with_name("wasm") / "transport_core.wasm"
MODES = ("auto", "wasm", "python")


class EdgeStartupError(RuntimeError):
    """`MCPGW_EDGE=wasm` was asked for and the component cannot serve."""


@dataclass
class EdgeStatus:
    requested: str
    active: str
    reason: str
    component: dict[str, Any] | None = None
    fallback_reason: str | None = None


# What /health (public) may say about a component: which version, not who put it there,
# from where, or where its file is (those stay in the admin API's status).
PUBLIC_COMPONENT_KEYS = ("version", "contract", "sha256", "size", "self_test", "call_path", "encoding")


def public_version(described: dict[str, Any] | None) -> dict[str, Any] | None:
    """A registry description (`registry.describe`) without its source path."""
    if described is None:
        return None
    return {k: described[k] for k in ("backend", "version", "contract", "sha256") if k in described}


class Edge:
    """The active edge backend and the story of how it was chosen.

    `signing_keys`: the Ed25519 keys a replacement must be signed with (none: no
    signature needed), as `load_verified_edge` checked the first one with them."""

    def __init__(self, backend: PythonCore | WasmCore, status: EdgeStatus):
        self.backend = backend
        self.status = status
        self.signing_keys: tuple[Any, ...] = ()
        self.allowlist_size = 0

    @property
    def status(self) -> EdgeStatus:
        return self._status

    @status.setter
    def status(self, status: EdgeStatus) -> None:
        # Every swap and rollback sets a status: so `since` is when this version took over.
        self._status = status
        self.since = time.time()

    # The middleware reads `backend` once per request itself (hot swap replaces
    # it); these are for everyone else.
    def evaluate(self, *head: Any) -> dict[str, Any]:
        return self.backend.evaluate(*head)

    def evaluate_raw(self, *head: Any) -> dict[str, Any]:
        return self.backend.evaluate_raw(*head)

    def health(self) -> dict[str, Any]:
        """Public: the version that is active, since when, and why in general terms; not who
        swapped it in, from which address, or file paths (the admin API's status has those)."""
        s = self.status
        report: dict[str, Any] = {"backend": s.active, "requested": s.requested, "reason": s.reason}
        report["since"] = round(self.since, 3)
        if s.component:
            report["component"] = {k: s.component[k] for k in PUBLIC_COMPONENT_KEYS if k in s.component}
        if s.fallback_reason:
            report["fallback_reason"] = s.fallback_reason.split(":", 1)[0]  # the reason's name, no detail
            report["reason"] = "fallback: " + report["fallback_reason"]
        report["verification"] = {"sha256_allowlist": self.allowlist_size, "signing_keys": len(self.signing_keys)}
        traps = getattr(self.backend, "traps", None)
        if traps is not None:
            report["traps"] = {"total": traps.total, **traps.by_kind}
        return report


def load_edge(
    mode: str,
    config: EdgeConfig,
    component_path: Path | str | None,
    *,
    vectors_dir: Path | str | None = None,
    fuel: int,
    memory_bytes: int,
    allowed_sha256: frozenset[str],
) -> Edge:
    if mode not in MODES:
        raise ValueError(f"MCPGW_EDGE must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "python":
        edge = _python_edge(mode, config, "MCPGW_EDGE=python", None)
        log.info("edge backend: python (requested by MCPGW_EDGE=python)")
        return edge

    path = Path(component_path) if component_path else PACKAGED_COMPONENT
    try:
        # Imported here: without a working wasmtime the Python edge must still start.
        from .wasm_core import ComponentLoadError, WasmCore, read_component, verify_component
    except ImportError as exc:
        return _unusable(mode, config, f"wasmtime-unavailable: {exc}")
    try:
        cases = load_cases(Path(vectors_dir) if vectors_dir else PACKAGED_DIR)
        component, summary = verify_component(
            read_component(path), str(path), cases, allowed_sha256=allowed_sha256, fuel=fuel, memory_bytes=memory_bytes
        )
        core = WasmCore(component, config)
    except ComponentLoadError as exc:
        return _unusable(mode, config, f"{exc.reason}: {exc.detail}")
    except (OSError, ValueError, KeyError) as exc:  # unreadable or malformed vectors
        return _unusable(mode, config, f"self-test-failed: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - wasmtime errors we did not classify: same rule, never silent
        return _unusable(mode, config, f"error: {type(exc).__name__}: {exc}")

    info = {
        "version": component.version["component"],
        "contract": component.version["contract"],
        "sha256": component.sha256,
        "path": str(path),
        "size": component.size,
        "self_test": summary,
        "call_path": component.call_path,
        "encoding": component.encoding,
    }
    log.info(
        "edge backend: wasm (Rust component %s, contract %s, sha256 %s, %s; %s)",
        info["version"],
        info["contract"],
        component.sha256,
        path,
        summary,
    )
    return Edge(core, EdgeStatus(mode, "wasm", f"MCPGW_EDGE={mode}: component loaded, self-test passed", info))


def load_verified_edge(
    mode: str,
    config: EdgeConfig,
    component_path: Path | str | None,
    *,
    vectors_dir: Path | str | None = None,
    fuel: int,
    memory_bytes: int,
    allowed_sha256: frozenset[str],
    signing_keys: tuple[Any, ...],
) -> Edge:
    """`load_edge`, and with signing keys the component's signature first (`<component>.sig`,
    over the bytes that then load). The Edge keeps the keys: every swap needs them too."""
    if mode != "python" and signing_keys:
        from .signing import sidecar_signature, signature_problem
        from .wasm_core import ComponentLoadError, read_component

        path = Path(component_path) if component_path else PACKAGED_COMPONENT
        try:
            wasm = read_component(path)
        except ComponentLoadError as exc:
            return _unusable(mode, config, f"{exc.reason}: {exc.detail}")
        try:
            problem = signature_problem(wasm, sidecar_signature(path), signing_keys)
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            return _unusable(mode, config, f"signature: {problem}")
        edge = load_edge(
            mode,
            config,
            path,
            vectors_dir=vectors_dir,
            fuel=fuel,
            memory_bytes=memory_bytes,
            allowed_sha256=allowed_sha256,
        )
        loaded = getattr(edge.backend, "component", None)
        if loaded is not None and loaded.sha256 != hashlib.sha256(wasm).hexdigest():
            return _unusable(mode, config, "signature: the file changed between its signature check and its load")
    else:
        edge = load_edge(
            mode,
            config,
            component_path,
            vectors_dir=vectors_dir,
            fuel=fuel,
            memory_bytes=memory_bytes,
            allowed_sha256=allowed_sha256,
        )
    edge.signing_keys = signing_keys
    edge.allowlist_size = len(allowed_sha256)
    return edge


def _unusable(mode: str, config: EdgeConfig, why: str) -> Edge:
    """The component cannot serve: refuse to start (wasm) or fall back loudly (auto)."""
    if mode == "wasm":
        log.error("edge backend: MCPGW_EDGE=wasm but the component cannot serve (%s)", why)
        raise EdgeStartupError(f"MCPGW_EDGE=wasm but the component cannot serve: {why}")
    log.warning("edge backend: python (FALLBACK: Rust component unusable: %s)", why)
    return _python_edge(mode, config, f"fallback: {why}", why)


def _python_edge(mode: str, config: EdgeConfig, reason: str, fallback: str | None) -> Edge:
    core = PythonCore()
    core.configure(config)
    return Edge(core, EdgeStatus(mode, "python", reason, fallback_reason=fallback))
