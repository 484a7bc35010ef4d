"""What one uncached edge crossing costs, in instructions (callgrind), both backends and the wasm
crossing's parts, on the three heads of `bench/edge_cost.py`, in-process:

- `wasm`, `python`: `evaluate_raw` as the middleware calls it (the bar: wasm/python <= 1.0x);
- `head`: `CompactCodec.head_bytes` (the compact head written from the ASGI header bytes);
- `call`: the component call alone (`EncodedCall.call`: ctypes, fuel, wasmtime, the guest, the
  canonical ABI's copies, freeing the answer);
- `outcome`: `CompactCodec.outcome_bytes` (the context built from the answer, checked).

Each figure is (count of 1,500 calls - count of 500) / 1,000, so the instrumentation's switching
cancels; a part's figure includes the harness's own call (~1k). Load-independent: valgrind counts
instructions, not time, so a shared machine gives the same figure. Run:
`python bench/edge_instructions.py` (it re-runs itself under valgrind, PYTHONHASHSEED=0)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import callgrind

PARTS = ("wasm", "python", "head", "call", "outcome")


def _inside() -> None:
    from edge_cost import HEADS
    from mcpgw.edge.backend import load_edge
    from mcpgw.edge.contract import EdgeConfig
    from mcpgw.settings import Settings

    cfg = EdgeConfig()
    defaults = Settings()
    limits = {
        "fuel": defaults.edge_fuel,
        "memory_bytes": defaults.edge_memory_mb * 1024 * 1024,
        "allowed_sha256": frozenset(defaults.edge_allowed_sha256),
    }
    wasm = load_edge("wasm", cfg, None, **limits)
    python = load_edge("python", cfg, None, **limits)
    core = wasm.backend
    assert core.encoding == "compact"
    codec = core._codec
    inst = core._inst
    callgrind.instrument(os.getpid(), "on")
    for index, (label, (method, raw_path, query, headers)) in enumerate(HEADS.items()):
        written = codec.head_bytes(method, raw_path, headers)
        assert written is not None
        head, held = written
        answer = inst.evaluate_compact(head)
        calls: dict[str, Callable[[], Any]] = {
            "wasm": lambda m=method, p=raw_path, q=query, h=headers: wasm.evaluate_raw(m, p, q, h),
            "python": lambda m=method, p=raw_path, q=query, h=headers: python.evaluate_raw(m, p, q, h),
            "head": lambda m=method, p=raw_path, h=headers: codec.head_bytes(m, p, h),
            "call": lambda head=head: inst.evaluate_compact(head),
            "outcome": lambda a=answer, m=method, p=raw_path, held=held: codec.outcome_bytes(a, m, p, held),
        }
        assert calls["wasm"]() == calls["python"](), label
        for part, call in calls.items():
            for _ in range(200):
                call()
            callgrind.dump_calls(call, f"h{index}:{PARTS.index(part)}")
    callgrind.instrument(os.getpid(), "off")


def measure() -> dict[str, dict[str, float]] | None:
    """{head: {part: instructions per call}}; None without valgrind."""
    from edge_cost import HEADS

    if not callgrind.available():
        print("  (valgrind not installed: no instruction count)", flush=True)
        return None
    done = callgrind.run(
        [sys.executable, __file__, "--inside"], prefix="mcpgw-edge-ir-", env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    callgrind.raise_failed(done)
    names = list(HEADS)
    result: dict[str, dict[str, float]] = {}
    for label, count in callgrind.per_label(done.dumps).items():  # "h{index}:{part}"
        index, part = label.removeprefix("h").split(":")
        result.setdefault(names[int(index)], {})[PARTS[int(part)]] = count
    return result


def report(result: dict[str, dict[str, float]]) -> None:
    print("instructions per uncached crossing (callgrind, in-process; parts of the wasm crossing alone)")
    for head, parts in result.items():
        shown = ", ".join(f"{part} {parts[part] / 1000:.1f}k" for part in PARTS if part in parts)
        ratio = parts["wasm"] / parts["python"] if "wasm" in parts and "python" in parts else float("nan")
        print(f"  {head:28} {shown}; wasm/python {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        _inside()
    else:
        found = measure()
        if found:
            report(found)
