"""Fuel (wasmtime's instruction count) per invoke-encoded call of each built plugin.

Run after `make plugins`: `.venv/bin/python plugins/measure_fuel.py`. Each figure is the fuel of
one call after a warm-up call on the same instance (the first call also pays for lazy set-up).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from wasmtime import Config, Engine, Store
from wasmtime.component import Component, Linker

DIST = Path(__file__).resolve().parent / "dist"
FUEL = 10**12


def context(hook: str, name: str | None = "echo", method: str = "tools/call") -> dict[str, Any]:
    return {
        "hook": hook,
        "endpoint": "/mcp",
        "upstream": None,
        "method": method,
        "name": name,
        "principal": {"subject": "alice", "scopes": [], "claims-json": "{}"},
        "request-id": "1",
        "session-hash": "h",
    }


def text_result(size: int) -> dict[str, Any]:
    """A tool result of about `size` bytes of text, with some PII every ~1 KB."""
    chunk = "lorem ipsum dolor sit amet " * 36 + "mail bob@example.com card 4111 1111 1111 1111. "
    text = (chunk * (size // len(chunk) + 1))[:size]
    return {"content": [{"type": "text", "text": text}], "isError": False}


class Plugin:
    def __init__(self, engine: Engine, path: Path, config: dict[str, Any]) -> None:
        self.store = Store(engine)
        linker = Linker(engine)
        start = time.monotonic()
        with linker.root() as root, root.add_instance("mcpgw:plugin/clock@1.0.0") as clock:
            clock.add_func("now-ms", lambda _store: int((time.monotonic() - start) * 1000))
        self.store.set_fuel(FUEL)
        self.instance = linker.instantiate(self.store, Component.from_file(engine, str(path)))
        configure = self.func("configure")
        configure(self.store, json.dumps(config))
        configure.post_return(self.store)

    def func(self, name: str) -> Any:
        iface = self.instance.get_export_index(self.store, "mcpgw:plugin/plugin@1.0.0")
        index = self.instance.get_export_index(self.store, name, iface)
        return self.instance.get_func(self.store, index)

    def fuel(self, hook: str, payload: Any, **ctx: Any) -> tuple[int, str]:
        call = self.func("invoke-encoded")
        text = json.dumps({"context": context(hook, **ctx), "payload": payload})
        used = 0
        for _ in range(2):  # warm-up, then the measured call
            self.store.set_fuel(FUEL)
            out = call(self.store, text)
            call.post_return(self.store)
            used = FUEL - self.store.get_fuel()
        return used, out


def main() -> None:
    config = Config()
    config.consume_fuel = True
    engine = Engine(config)
    params = {"name": "echo", "arguments": {"text": "hello"}}
    tools = {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in ["echo", "add", "sleep", "log"]]}
    cases = [
        ("noop", {}, "tool-pre-invoke", params, {}),
        ("noop", {}, "tool-post-invoke", text_result(10_000), {}),
        ("noop", {}, "tool-post-invoke", text_result(1_000_000), {}),
        ("tool-guard", {"allow": ["e*", "add"], "deny": ["sleep"]}, "tool-pre-invoke", params, {}),
        ("tool-guard", {"deny": ["sleep"]}, "list-filter", tools, {"name": None, "method": "tools/list"}),
        (
            "args-guard",
            {"rules": [{"pointer": "/text", "glob": "*.env"}, {"pointer": "", "max_bytes": 4096}]},
            "tool-pre-invoke",
            params,
            {},
        ),
        ("rate-limit", {"rate_per_s": 1000, "burst": 1000}, "tool-pre-invoke", params, {}),
        ("redact", {}, "tool-post-invoke", {"content": [{"type": "text", "text": "hello world"}]}, {}),
        ("redact", {}, "tool-post-invoke", text_result(10_000), {}),
        ("redact", {}, "tool-post-invoke", text_result(1_000_000), {}),
    ]
    for name, cfg, hook, payload, ctx in cases:
        plugin = Plugin(engine, DIST / f"{name}.wasm", cfg)
        size = len(json.dumps(payload))
        used, out = plugin.fuel(hook, payload, **ctx)
        print(f"{name:11} {hook:17} payload {size:>9} B  fuel {used:>12,}  -> {out[:40]}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
