"""What plugins cost on the tool-call path: tools/call `echo` at 16 connections through a gateway
with no plugin, with the no-op plugin on both tool hooks, and with tool-guard + redact +
rate-limit together, side by side, alternating order between repetitions; and the time one
`echo` of a 10 KB and of a 1 MB text takes with and without redact on its result.

Every answer is checked (wrk counts a JSON-RPC error inside a 200 as an error), and the echo
must come back through the plugins: a call the chain refused would not count."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

import e2e
import server_instructions
import servers
import wrk

DIST = Path(__file__).resolve().parents[1] / "plugins" / "dist"
# Enough budget that rate-limit never refuses the benchmark's own load: it is measured, not tested.
UNLIMITED = {"rate_per_s": 1e9, "burst": 1e9}
# Text with an email and a card number in every ~1 KB (as plugins/measure_fuel.py): redact rewrites it.
PII_CHUNK = "lorem ipsum dolor sit amet " * 36 + "mail bob@example.com card 4111 1111 1111 1111. "


def _table(name: str, plugin: str, **keys: object) -> str:
    lines = [f"[plugins.{name}]", f"path = {json.dumps(str(DIST / (plugin + '.wasm')))}"]
    for key, value in keys.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


CONFIGS = {
    "no plugin": "",
    "noop pre+post": _table("noop", "noop", hooks=["tool-pre-invoke", "tool-post-invoke"]),
    "tool-guard + redact + rate-limit": (
        _table("guard", "tool-guard", config={"deny": ["nothing-*"]})
        + _table("redact", "redact")  # the manifest defaults: fuel and fuel_per_kb cover 1 MB
        + _table("rate", "rate-limit", grants=["clock"], config=UNLIMITED)
    ),
}


def _gateway(name: str, config_text: str, paths: list[str]) -> servers.Server:
    env = {}
    if config_text:
        fd, path = tempfile.mkstemp(suffix=".toml")
        with os.fdopen(fd, "w") as f:
            f.write(config_text)
        paths.append(path)
        env["MCPGW_CONFIG"] = path
    return servers.gateway("wasm", name=f"gateway-{name.replace(' ', '-').replace('+', '')}", **env)


def _echo_ms(url: str, text: str, calls: int, redacted: bool) -> float:
    """Median time of one tools/call echo of `text` on its own session, answer checked: the text
    as it was, or (`redacted`) with every email and card number replaced."""
    headers = e2e.open_session(url)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}}
    times = []
    with httpx.Client(timeout=120) as http:
        for i in range(calls):
            body["id"] = i + 1
            start = time.perf_counter()
            r = http.post(url + "/mcp", json=body, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
            answer = r.json()
            assert "result" in answer, str(answer)[:300]
            got = answer["result"]["content"][0]["text"]
            if redacted:
                assert "bob@example.com" not in got and "4111" not in got, got[:300]
                assert got.count("[redacted:email]") == text.count("bob@example.com"), got[:300]
            else:
                assert got == text
    return statistics.median(times)


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> dict:
    paths: list[str] = []
    targets: dict[str, servers.Server] = {}
    try:
        for name, text in CONFIGS.items():
            targets[name] = _gateway(name, text, paths)
        loads = {
            name: wrk.Workload("echo", "POST", "/mcp", e2e.open_session(srv.url), e2e.ECHO)
            for name, srv in targets.items()
        }
        for name, srv in targets.items():
            e2e.check(srv.url, loads[name])
            wrk.run(srv.url, loads[name], connections, 1)  # warm-up
        samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
        for rep in range(reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for name in order:
                samples[name].append(wrk.run(targets[name].url, loads[name], connections, duration_s))
        rows = [e2e.summarize("tools/call echo", connections, name, results, None) for name, results in samples.items()]
        for row in rows:
            figure = "FAILED" if row["rps"] is None else f"{row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms"
            print(f"  tools/call echo c={connections} {row['target']:34} {figure}  errors {row['errors']}", flush=True)
        redaction = []
        for size in (10 * 1024, 1024 * 1024):
            text = PII_CHUNK * round(size / len(PII_CHUNK))  # whole chunks: no half-cut email or card
            entry = {"bytes": len(text)}
            for name in ("no plugin", "tool-guard + redact + rate-limit"):
                entry[name] = _echo_ms(targets[name].url, text, 5 if size > 100_000 else 20, name != "no plugin")
            redaction.append(entry)
            print(
                f"  echo of {len(text) // 1024} KB ({len(text) // len(PII_CHUNK)} emails and cards): "
                f"{entry['no plugin']:.2f} ms without plugins, "
                f"{entry['tool-guard + redact + rate-limit']:.2f} ms with tool-guard + redact + rate-limit",
                flush=True,
            )
        return {"rows": rows, "redaction": redaction}
    finally:
        for srv in targets.values():
            srv.stop()
        for path in paths:
            os.unlink(path)


def instructions(n: int = 1000) -> dict[str, float] | None:
    """Instructions per tools/call echo (callgrind, one keep-alive client, wasm edge;
    bench/server_instructions.py) through a gateway with each of CONFIGS, in one run: the figure
    a shared machine does not disturb. None without valgrind."""
    if not server_instructions.available():
        print("  (valgrind not installed: no instruction count)", flush=True)
        return None
    counts: dict[str, float] = {}
    for name, text in CONFIGS.items():
        env = dict(server_instructions.GATEWAY_ENV)
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write(text)
            f.flush()
            if text:
                env["MCPGW_CONFIG"] = f.name
            counts[name] = server_instructions.per_request(server_instructions.gateway_argv(), env, n=n)
    base = counts["no plugin"]
    for name, count in counts.items():
        print(
            f"  instructions per tools/call echo, {name:34} {count:9,.0f}  (+{count - base:,.0f}, {base / count:.3f}x)",
            flush=True,
        )
    return counts


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--instructions"]:
        instructions()
    else:
        print(json.dumps(measure(1, 1), indent=1))
