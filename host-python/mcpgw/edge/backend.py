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

import logging
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


class Edge:
    """The active edge backend and the story of how it was chosen."""

    def __init__(self, backend: PythonCore | WasmCore, status: EdgeStatus):
        self.backend = backend
        self.status = status

    # The middleware reads `backend` once per request itself (hot swap replaces
    # it); these are for everyone else.
    def evaluate(self, *head: Any) -> dict[str, Any]:
        return self.backend.evaluate(*head)

    def evaluate_raw(self, *head: Any) -> dict[str, Any]:
        return self.backend.evaluate_raw(*head)

    def health(self) -> dict[str, Any]:
        s = self.status
        report: dict[str, Any] = {"backend": s.active, "requested": s.requested, "reason": s.reason}
        if s.component:
            report["component"] = s.component
        if s.fallback_reason:
            report["fallback_reason"] = s.fallback_reason
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
