"""`[plugins.<name>]` tables: every error names the file, the line and the key, and stops the
gateway at start-up (exit 2); what a valid table becomes. Also the sandbox on its own: the
typed `invoke` and the encoded `invoke-encoded` (what the request path uses) agree."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import orjson
import pytest

from mcpgw.federation.config import ConfigError, parse, parse_plugins
from mcpgw.plugins.manifest import (
    DEFAULT_FUEL,
    DEFAULT_FUEL_PER_KB,
    DEFAULT_MAX_OUTPUT_KB,
    DEFAULT_MEMORY_MB,
)
from mcpgw.plugins.sandbox import PluginComponent, PluginFault, parse_action
from test_plugins import example, plugin_table

GOOD = '[plugins.guard]\npath = "guard.wasm"\n'


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("fuel = -1", 3, "plugins.guard.fuel must be a non-negative integer"),
        ("fuel = 0", 3, "plugins.guard.fuel must be greater than 0"),
        ("fuel_per_kb = 1.5", 3, "plugins.guard.fuel_per_kb must be a non-negative integer"),
        ('hooks = ["tool-pre-invoke", "after-everything"]', 3, "plugins.guard.hooks must be a list of hooks"),
        ('grants = ["log", "network"]', 3, "plugins.guard.grants must be a list drawn from log, clock"),
        ('on_error = "ignore"', 3, "plugins.guard.on_error must be one of fail-closed, fail-open"),
        ('sha256 = "abc"', 3, "plugins.guard.sha256 must be a 64-digit lowercase hex sha256"),
        ('priority = "high"', 3, "plugins.guard.priority must be an integer"),
        ("tools = 3", 3, "plugins.guard.tools must be a list of strings"),
        ('config = "x"', 3, "plugins.guard.config must be a table"),
        ("memroy_mb = 4", 3, "plugins.guard: unknown key 'memroy_mb'"),
    ],
)
def test_each_error_names_the_line_and_the_key(extra, line, message):
    with pytest.raises(ConfigError) as err:
        parse_plugins(GOOD + extra + "\n", "gw.toml")
    assert str(err.value).startswith(f"gw.toml, line {line}: {message}"), str(err.value)


def test_a_missing_path_and_a_bad_name_name_the_table():
    with pytest.raises(ConfigError, match=r"^gw.toml, line 2: plugins.guard: 'path' .* is required"):
        parse_plugins("\n[plugins.guard]\nfuel = 5\n", "gw.toml")
    with pytest.raises(ConfigError, match=r"^gw.toml, line 1: plugin name 'a.b' must be"):
        parse_plugins('[plugins."a.b"]\npath = "x"\n', "gw.toml")


def test_an_error_inside_a_config_sub_table_names_its_header():
    text = (
        '[plugins.guard]\npath = "g.wasm"\nfuel = 1\n\n[plugins.guard.config]\ndeny = ["x"]\n'
        "[plugins.other]\nfuel = 1\n"
    )
    with pytest.raises(ConfigError, match=r"^gw.toml, line 7: plugins.other: 'path'"):
        parse_plugins(text, "gw.toml")
    manifest = parse_plugins(text.split("[plugins.other]")[0], "gw.toml")[0]
    assert manifest.config == {"deny": ["x"]}


def test_a_valid_table_with_defaults_and_upstreams_beside_it(tmp_path):
    text = '[upstreams.toy]\ntransport = "stdio"\ncommand = "x"\n\n' + GOOD
    assert [u.id for u in parse(text, "gw.toml")] == ["toy"]  # upstream parsing accepts [plugins]
    (manifest,) = parse_plugins(text, "gw.toml", tmp_path)
    assert manifest.path == str(tmp_path / "guard.wasm")  # relative to the config file
    assert (manifest.fuel, manifest.fuel_per_kb, manifest.memory_mb, manifest.max_output_kb) == (
        DEFAULT_FUEL,
        DEFAULT_FUEL_PER_KB,
        DEFAULT_MEMORY_MB,
        DEFAULT_MAX_OUTPUT_KB,
    )
    assert (manifest.on_error, manifest.grants, manifest.endpoints, manifest.tools) == (
        "fail-closed",
        (),
        ("*",),
        ("*",),
    )
    assert manifest.line == 5


# Text with an email and a card number in every ~1 KB: redact's costliest documented case.
PII_CHUNK = "lorem ipsum dolor sit amet " * 36 + "mail bob@example.com card 4111 1111 1111 1111. "


def _redact(fuel_per_kb: int) -> PluginComponent:
    return PluginComponent(
        example("redact").read_bytes(),
        name="redact",
        grants=(),
        fuel=DEFAULT_FUEL,
        fuel_per_kb=fuel_per_kb,
        memory_bytes=DEFAULT_MEMORY_MB << 20,
        max_output_bytes=DEFAULT_MAX_OUTPUT_KB << 10,
    )


def test_the_default_budget_redacts_a_1_mb_result():
    """A call's fuel is `fuel` plus `fuel_per_kb` per KiB of its input, and its answer may be
    `max_output_kb` plus the input's size: with the defaults, redact rewrites a 1 MB result full of
    personal data (about 140 fuel a byte, 14 times the fixed 10M); without the per-KiB part the
    same call runs out of fuel."""
    text = PII_CHUNK * 1024
    context = {"hook": "tool-post-invoke", "endpoint": "/mcp", "method": "tools/call", "name": "echo"}
    data = orjson.dumps({"context": context, "payload": {"content": [{"type": "text", "text": text}]}})
    inst = _redact(DEFAULT_FUEL_PER_KB).instantiate("{}")
    assert inst.budget(data)[0] > 14 * DEFAULT_FUEL
    action, value = parse_action(inst.invoke_encoded(data))
    assert action == "modify"
    got = value["content"][0]["text"]
    assert got.count("[redacted:email]") == got.count("[redacted:card]") == 1024
    assert "bob@example.com" not in got and "4111" not in got
    with pytest.raises(PluginFault) as fault:
        _redact(0).instantiate("{}").invoke_encoded(data)
    assert fault.value.kind == "fuel"


def serve(tmp_path, table: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gw.toml"
    config.write_text(table + "\n")
    full = {"MCPGW_CONFIG": str(config), "MCPGW_PORT": "0", "MCPGW_EDGE": "python", **env}
    return subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "serve"], env=full, capture_output=True, text=True, timeout=60, check=False
    )


def test_start_up_stops_with_exit_2_naming_file_line_and_key(tmp_path):
    run = serve(tmp_path, plugin_table("guard", example("tool-guard"), fuel=-5))
    assert run.returncode == 2
    assert f"invalid config: {tmp_path / 'gw.toml'}, line 3: plugins.guard.fuel must be" in run.stderr


@pytest.mark.parametrize(
    ("keys", "env", "step", "detail"),
    [
        ({"hooks": ["prompt-pre-fetch"]}, {}, "hooks", "are not implemented"),
        ({"sha256": "0" * 64}, {}, "allowlist", "is not the manifest's sha256"),
        ({}, {"MCPGW_PLUGINS_ALLOWED_SHA256": "0" * 64}, "allowlist", "MCPGW_PLUGINS_ALLOWED_SHA256"),
        ({"config": {"allow": 3}}, {}, "configure", "configure refused"),
    ],
)
def test_a_plugin_refused_at_start_up_stops_it_naming_the_table(tmp_path, keys, env, step, detail):
    run = serve(tmp_path, plugin_table("guard", example("tool-guard"), **keys), **env)
    assert run.returncode == 2
    assert f"{tmp_path / 'gw.toml'}, line 1: plugins.guard: refused at {step}: " in run.stderr
    assert detail in run.stderr


def test_a_missing_file_is_named(tmp_path):
    run = serve(tmp_path, plugin_table("guard", tmp_path / "nowhere.wasm"))
    assert run.returncode == 2 and "refused at read" in run.stderr and "nowhere.wasm" in run.stderr


def test_the_allowlist_admits_a_listed_component(tmp_path):
    sha = hashlib.sha256(example("noop").read_bytes()).hexdigest()
    config = tmp_path / "gw.toml"
    config.write_text(plugin_table("n", example("noop"), sha256=sha) + "\n")
    from mcpgw.plugins import plugin_registry_for
    from mcpgw.settings import Settings

    registry = plugin_registry_for(Settings(config=str(config), plugins_allowed_sha256=(sha,)))
    assert registry is not None and [p["sha256"] for p in registry.health()] == [sha]


def _typed_action(value):
    """wasmtime-py lifts `action` untagged: None (continue), a str (modify) or a record (deny)."""
    if value is None:
        return {"continue": None}
    if isinstance(value, str):
        return {"modify": orjson.loads(value)}
    return {"deny": {"code": value.code, "message": value.message}}


def test_typed_invoke_and_invoke_encoded_agree():
    component = PluginComponent(
        example("tool-guard").read_bytes(),
        name="guard",
        grants=(),
        fuel=DEFAULT_FUEL,
        memory_bytes=DEFAULT_MEMORY_MB << 20,
        max_output_bytes=DEFAULT_MAX_OUTPUT_KB << 10,
    )
    inst = component.instantiate(orjson.dumps({"deny": ["rm*"]}).decode())
    ctx = {
        "endpoint": "/mcp",
        "upstream": None,
        "principal": None,
        "request-id": "1",
        "session-hash": None,
    }
    cases = [
        ("tool-pre-invoke", "tools/call", "rm_rf", {"name": "rm_rf", "arguments": {}}),
        ("tool-pre-invoke", "tools/call", "echo", {"name": "echo", "arguments": {"text": "x"}}),
        ("list-filter", "tools/list", None, {"tools": [{"name": "rm_rf"}, {"name": "echo"}]}),
    ]
    seen = set()
    for hook, method, name, payload in cases:
        context = {"hook": hook, **ctx, "method": method, "name": name}
        encoded = orjson.loads(inst.invoke_encoded(orjson.dumps({"context": context, "payload": payload})))
        typed = _typed_action(inst.invoke_typed(context, orjson.dumps(payload).decode()))
        assert typed == encoded, (hook, name)
        seen.add(next(iter(encoded)))
    assert seen == {"deny", "continue", "modify"}


def test_the_log_grant_escapes_and_rate_limits(caplog):
    from mcpgw.plugins.sandbox import LOG_LINES_PER_S, LogSink

    sink = LogSink("chatty")
    with caplog.at_level("DEBUG", logger="mcpgw.plugin.chatty"):
        sink.write("warning", "forged\nINFO mcpgw: line\x1b[31m é")
        for _ in range(50):
            sink.write("info", "again")
    records = [r for r in caplog.records if r.name == "mcpgw.plugin.chatty"]
    assert len(records) == LOG_LINES_PER_S  # the rest suppressed, counted
    first = records[0]
    assert first.levelname == "WARNING" and first.plugin == "chatty"
    assert first.getMessage() == "plugin chatty: forged\\nINFO mcpgw: line\\x1b[31m \\xe9"
    assert sink.suppressed == 50 + 1 - LOG_LINES_PER_S
