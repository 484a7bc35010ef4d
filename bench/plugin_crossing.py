"""What one plugin hook crossing costs, in instructions (callgrind), layer by layer, in-process:

- `floor`: the test-only `empty` plugin's `invoke-encoded` (answers continue without reading its
  input) through the host's encoded call: ctypes, wasmtime's call, the canonical ABI's string
  copies in and out, and nothing of the guest's own: what any crossing costs from Python;
- `noop guest`: the same call into the no-op example plugin (the SDK reads the context, checks
  the payload's syntax, dispatches, encodes continue);
- `Plugin.call`: the chain's per-plugin step around it (instance pool, counters, cost timing);
- `chain step`: `PluginHooks._run` for one plugin (the payload's encoding, the failure policy;
  the context is encoded once per request, not per step);
- `around` (label `whole-request`): `PluginHooks.around` for a tools/call echo with `noop` on its
  pre and post hooks, around a dispatcher call that answers at once: both chain steps and the
  per-request work (the plan, the context's encoding, the coroutine).

Input: the tool-pre-invoke and tool-post-invoke of a `tools/call echo` as the gateway sends them.
Each figure is (count of 1,500 calls - count of 500) / 1,000, so the instrumentation's switching
cancels. Run: `python bench/plugin_crossing.py` (it re-runs itself under valgrind)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import callgrind

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "plugins" / "dist"
CONTEXT = {
    "endpoint": "/mcp",
    "upstream": None,
    "method": "tools/call",
    "name": "echo",
    "principal": None,
    "request-id": "17",
    "session-hash": "0123456789abcdef",
}
PAYLOADS = {
    "tool-pre-invoke": {"name": "echo", "arguments": {"text": "hello"}},
    "tool-post-invoke": {"content": [{"type": "text", "text": "hello"}], "isError": False},
}
LAYERS = ("floor", "noop guest", "Plugin.call", "chain step", "around")


def _inside() -> None:
    """Under valgrind: every layer and hook, 500 then 1,500 calls, each run zeroed and dumped."""
    from mcpgw.plugins.chain import _HEADS, Plugin, PluginHooks, PluginSet, _Who
    from mcpgw.plugins.manifest import PluginManifest
    from mcpgw.plugins.sandbox import CONTINUED, PluginComponent

    def component(path: Path, name: str) -> PluginComponent:
        return PluginComponent(
            path.read_bytes(), name=name, grants=(), fuel=10_000_000, memory_bytes=64 << 20, max_output_bytes=1 << 20
        )

    empty = component(DIST / "test" / "empty.wasm", "empty").instantiate("{}")
    noop_component = component(DIST / "noop.wasm", "noop")
    noop = noop_component.instantiate("{}")
    manifest = PluginManifest(name="noop", path=str(DIST / "noop.wasm"), hooks=("tool-pre-invoke", "tool-post-invoke"))
    plugin = Plugin(manifest, noop_component)
    pset = PluginSet((plugin,))
    hooks = PluginHooks(lambda: pset)
    chain = (plugin,)
    callgrind.instrument(os.getpid(), "on")
    for hook, payload in PAYLOADS.items():
        context = {**CONTEXT, "hook": hook}
        data = orjson.dumps({"context": context, "payload": payload})
        # The chain's step gets the input up to its payload as the request encodes it once.
        who = _Who(CONTEXT["endpoint"], b"null", CONTEXT["request-id"], CONTEXT["session-hash"])
        head = _HEADS[hook] + who.context(CONTEXT["method"], CONTEXT["name"], CONTEXT["upstream"])
        assert orjson.loads(head + orjson.dumps(payload) + b"}") == orjson.loads(data)
        calls: dict[str, Callable[[], Any]] = {
            "floor": lambda data=data: empty.invoke_encoded(data),
            "noop guest": lambda data=data: noop.invoke_encoded(data),
            "Plugin.call": lambda data=data: plugin.call(data),
            "chain step": lambda hook=hook, head=head, payload=payload: hooks._run(chain, hook, head, payload, 17),
        }
        for layer, call in calls.items():
            assert call() in (b'{"continue":null}', CONTINUED, payload), layer
            callgrind.dump_calls(call, f"{hook}:{LAYERS.index(layer)}")

    class Endpoint:
        def endpoint(self) -> str:
            return "/mcp"

        def owner(self, method: str, params: dict[str, Any]) -> str | None:
            return None

    answer = {"jsonrpc": "2.0", "id": 17, "result": PAYLOADS["tool-post-invoke"]}

    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        return answer

    message = {"jsonrpc": "2.0", "id": 17, "method": "tools/call", "params": PAYLOADS["tool-pre-invoke"]}

    def whole() -> Any:
        coroutine = hooks.around(message, Endpoint(), None, None, handle)  # type: ignore[arg-type]
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value
        raise AssertionError("around() waited")

    assert whole() is answer
    callgrind.dump_calls(whole, f"whole-request:{LAYERS.index('around')}")
    callgrind.instrument(os.getpid(), "off")


def measure() -> dict[str, dict[str, float]] | None:
    """{hook: {layer: instructions per call}}; None without valgrind or the built plugins."""
    if not callgrind.available():
        print("  (valgrind not installed: no crossing count)", flush=True)
        return None
    if not (DIST / "test" / "empty.wasm").exists():
        print("  (plugins/dist/test/empty.wasm missing: `make plugins` builds it)", flush=True)
        return None
    done = callgrind.run([sys.executable, __file__, "--inside"], prefix="mcpgw-crossing-")
    callgrind.raise_failed(done)
    result: dict[str, dict[str, float]] = {}
    for label, count in callgrind.per_label(done.dumps).items():  # "{hook}:{layer index}"
        hook, layer = label.split(":")
        result.setdefault(hook, {})[LAYERS[int(layer)]] = count
    return result


def report(result: dict[str, dict[str, float]]) -> None:
    for hook, layers in result.items():
        shown = ", ".join(f"{layer} {layers[layer]:,.0f}" for layer in LAYERS if layer in layers)
        print(f"  instructions per {hook} crossing (callgrind, in-process): {shown}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        _inside()
    else:
        found = measure()
        if found:
            report(found)
