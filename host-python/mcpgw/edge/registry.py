"""Edge versions at run time: verified atomic swap, rollback, automatic rollback.

The active backend is one reference (`Edge.backend`) that the middleware reads
once per request, so a swap is a single assignment: requests already inside
the old backend finish there, new ones use the new one, and the old instance
is dropped when the last of them lets go of it.

A swap happens in two parts:
- `verify` (slow, run off the event loop): sha256 allowlist, compile, exports
  and contract version, then every shipped vector under the sandbox limits;
- `activate` (fast, on the serving thread): build the backend and replace the
  reference, keeping the one it replaces for rollback.

Any failed step raises `SwapRefused(step, detail)` and leaves the active
version untouched.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..logsafe import escape
from .backend import Edge, EdgeStatus
from .contract import EdgeConfig
from .signing import sidecar_signature, signature_problem
from .vectors import PACKAGED_DIR, load_cases
from .wasm_core import ComponentLoadError, WasmComponent, WasmCore, read_component, verify_component

log = logging.getLogger("mcpgw.edge")

# ComponentLoadError reasons, by the swap step that produces them.
_STEPS = {
    "missing": "read",
    "unreadable": "read",
    "not-allowed": "allowlist",
    "corrupt": "compile",
    "instantiate-failed": "compile",
    "contract-mismatch": "contract",
    "self-test-failed": "self-test",
}


class SwapRefused(Exception):
    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


@dataclass(frozen=True)
class Candidate:
    """A component that passed verification and can be activated."""

    component: WasmComponent
    source: str
    self_test: str


def describe(backend: Any) -> dict[str, Any]:
    if isinstance(backend, WasmCore):
        c = backend.component
        return {
            "backend": "wasm",
            "version": c.version["component"],
            "contract": c.version["contract"],
            "sha256": c.sha256,
            "source": c.source,
        }
    return {"backend": "python"}


class EdgeRegistry:
    def __init__(
        self,
        edge: Edge,
        config: EdgeConfig,
        *,
        allowed_sha256: frozenset[str],
        vectors_dir: Path | None = None,
        fuel: int,
        memory_bytes: int,
        rollback_traps: int,
        rollback_window_s: float,
    ):
        self.edge = edge
        self.config = config
        self.allowed_sha256 = frozenset(h.lower() for h in allowed_sha256)
        self.vectors_dir = vectors_dir or PACKAGED_DIR
        self.fuel = fuel
        self.memory_bytes = memory_bytes
        self.rollback_traps = rollback_traps
        self.rollback_window_s = rollback_window_s
        self.previous: tuple[Any, EdgeStatus] | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=20)
        # swap, rollback-manual, rollback-auto since start (/metrics; `events` keeps only the last 20)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._traps: deque[float] = deque()
        if isinstance(edge.backend, WasmCore):
            edge.backend.on_trap = self._on_trap

    # --- verification (slow: run it off the event loop) ----------------------

    def verify(self, wasm: bytes, source: str, signature: bytes | None = None) -> Candidate:
        # With MCPGW_EDGE_SIGNING_KEYS, the signature before anything else looks at the bytes.
        if (problem := signature_problem(wasm, signature, self.edge.signing_keys)) is not None:
            raise SwapRefused("signature", problem)
        try:
            component, summary = verify_component(
                wasm,
                source,
                load_cases(self.vectors_dir),
                allowed_sha256=self.allowed_sha256,
                fuel=self.fuel,
                memory_bytes=self.memory_bytes,
            )
        except ComponentLoadError as exc:
            raise SwapRefused(_STEPS.get(exc.reason, exc.reason), exc.detail) from None
        except Exception as exc:  # noqa: BLE001 - anything unforeseen is a named refusal too, never a 500
            raise SwapRefused("error", f"{type(exc).__name__}: {escape(exc, 300)}") from None
        return Candidate(component, source, summary)

    def verify_file(self, path: Path | str) -> Candidate:
        try:
            wasm = read_component(path)
            signature = sidecar_signature(Path(path))
        except ComponentLoadError as exc:
            raise SwapRefused("read", exc.detail) from None
        except ValueError as exc:
            raise SwapRefused("signature", str(exc)) from None
        return self.verify(wasm, str(path), signature)

    # --- activation and rollback (fast: on the serving thread) ---------------

    def activate(self, candidate: Candidate, actor: str) -> dict[str, Any]:
        with self._lock:
            try:
                core = WasmCore(candidate.component, self.config)
            except Exception as exc:  # noqa: BLE001 - any failure to instantiate refuses the swap; the old core keeps serving
                raise SwapRefused("activate", f"{type(exc).__name__}: {exc}") from None
            core.on_trap = self._on_trap
            c = candidate.component
            status = EdgeStatus(
                self.edge.status.requested,
                "wasm",
                "swapped in through the admin API",  # who did it: the event, behind the admin API
                {
                    "version": c.version["component"],
                    "contract": c.version["contract"],
                    "sha256": c.sha256,
                    "path": candidate.source,
                    "size": c.size,
                    "self_test": candidate.self_test,
                    "call_path": c.call_path,
                    "encoding": c.encoding,
                },
            )
            self.previous = (self.edge.backend, self.edge.status)
            self._replace(core, status)
            return self._event("swap", actor, core, from_=self.previous[0])

    def rollback(self, actor: str, reason: str = "manual") -> dict[str, Any]:
        with self._lock:
            if self.previous is None:
                raise SwapRefused("rollback", "there is no previous version to roll back to")
            backend, status = self.previous
            self.previous = None  # a rolled-back version is not kept: it was taken out for a reason
            replaced = self.edge.backend
            self._replace(backend, status)
            return self._event("rollback", actor, backend, from_=replaced, reason=reason)

    def _replace(self, backend: Any, status: EdgeStatus) -> None:
        self._traps.clear()
        # One assignment each; the middleware reads `backend` once per request,
        # and the response tag comes from the backend itself, not the status.
        self.edge.status = status
        self.edge.backend = backend

    def _on_trap(self, core: WasmCore, kind: str) -> None:
        """Automatic rollback when a swapped-in version traps too often."""
        if self.previous is None or self.edge.backend is not core:
            return
        now = time.monotonic()
        with self._lock:
            traps = self._traps
            traps.append(now)
            while traps and traps[0] < now - self.rollback_window_s:
                traps.popleft()
            tripped = len(traps) >= self.rollback_traps
        if tripped:
            log.error(
                "edge version %s trapped %d times in %.0f s: rolling back automatically",
                core.tag,
                self.rollback_traps,
                self.rollback_window_s,
            )
            with contextlib.suppress(SwapRefused):  # another request rolled back first
                self.rollback("auto-rollback", reason=f"{self.rollback_traps} traps in {self.rollback_window_s:.0f} s")

    def _event(self, action: str, actor: str, to: Any, *, from_: Any, reason: str = "") -> dict[str, Any]:
        event = {"time": time.time(), "action": action, "actor": actor, "from": describe(from_), "to": describe(to)}
        if reason:
            event["reason"] = reason
        self.events.append(event)
        self.counts[action if action == "swap" else f"{action}-{'auto' if actor == 'auto-rollback' else 'manual'}"] += 1
        return event

    def status(self) -> dict[str, Any]:
        return {
            "active": describe(self.edge.backend),
            "previous": describe(self.previous[0]) if self.previous else None,
            "allowlist": sorted(self.allowed_sha256) or None,
            "rollback": {"traps": self.rollback_traps, "window_s": self.rollback_window_s},
            "events": list(self.events),
        }
