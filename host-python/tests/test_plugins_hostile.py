"""Hostile plugins in a real gateway process (both edge modes): each costs only its own call.

The test-only components of plugins/test (panic, loop, garbage, alloc-bomb, huge-output) each
guard one tool of the toy upstream; a fail-closed plugin's call gets -32603 "plugin <name>
failed: <kind>", a fail-open plugin's call proceeds without it, a control client is served all
along, faults are counted by kind, and a plugin that keeps failing is disabled automatically.
wasi-probe and clock-ungranted are refused when they load, naming the import.
"""

from __future__ import annotations

import subprocess
import sys

import anyio
import httpx
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from conftest import Gateway
from test_plugins import example, hostile, plugin_table, text_of

pytestmark = pytest.mark.timeout(180)

# plugin name -> (the tool it guards, the fault kinds it may end in)
HOSTILE = {
    "panic": ("toy__whoami", {"panic"}),
    "loop": ("toy__add", {"fuel"}),
    "garbage": ("toy__state", {"garbage"}),
    "alloc": ("toy__cancellations", {"panic", "memory"}),
    "huge": ("toy__roots_changed", {"panic", "memory", "fuel", "oversized"}),
}


@pytest.fixture(scope="module", params=["wasm", "python"])
def gw(request, component_path):
    from upstream_procs import TOY, federated_gateway, stdio_table

    files = {"panic": "panic", "loop": "loop", "garbage": "garbage", "alloc": "alloc-bomb", "huge": "huge-output"}
    tables = [stdio_table("toy", TOY, "stdio", "toy")]
    # alloc-bomb gets fuel enough to reach the memory limit (16 MiB), which must end it first.
    fuel = {"alloc": 500_000_000}
    tables += [
        plugin_table(
            name,
            hostile(files[name]),
            tools=[tool],
            hooks=["tool-pre-invoke"],
            **({"fuel": fuel[name]} if name in fuel else {}),
        )
        for name, (tool, _) in HOSTILE.items()
    ]
    tables += [
        plugin_table("open", hostile("panic"), tools=["add"], on_error="fail-open"),
        plugin_table("auto", hostile("panic"), tools=["sleep"], disable_after=3, disable_window_s=600),
        # An answer may be its input's size plus max_output_kb: a 3,000-character replacement makes
        # the rewritten result grow by more than 1 KiB, over the output limit.
        plugin_table("small", example("redact"), tools=["echo"], max_output_kb=1, config={"replacement": "#" * 3000}),
    ]
    gateway = federated_gateway(request.param, tables)
    yield gateway
    gateway.stop()


def plugins(gw: Gateway) -> dict[str, dict]:
    return {p["name"]: p for p in httpx.get(gw.url + "/health").json()["plugins"]}


async def test_each_hostile_plugin_costs_only_its_own_call(gw):
    served = 0
    stop = anyio.Event()

    async def control() -> None:
        nonlocal served
        async with Client(gw.url + "/mcp") as client:
            while not stop.is_set():
                assert text_of(await client.call_tool("echo", {"text": "ping"})) == "ping"
                served += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(control)
        async with Client(gw.url + "/mcp") as client:
            for _ in range(2):  # the second call runs on a fresh instance: the first was discarded
                for name, (tool, kinds) in HOSTILE.items():
                    with pytest.raises(MCPError) as failed:
                        await client.call_tool(tool, {})
                    assert failed.value.error.code == -32603
                    prefix = f"plugin {name} failed: "
                    assert failed.value.error.message.startswith(prefix)
                    assert failed.value.error.message.removeprefix(prefix) in kinds
                    # The same session goes on being served.
                    assert text_of(await client.call_tool("echo", {"text": "still here"})) == "still here"
        stop.set()
    assert served > 0
    health = plugins(gw)
    for name, (_, kinds) in HOSTILE.items():
        faults = health[name]["counters"]["faults"]
        assert sum(faults.values()) >= 2 and set(faults) <= kinds, (name, faults)
        assert health[name]["state"] == "enabled"  # 2 faults: far from disable_after


async def test_a_fail_open_plugin_is_skipped_and_counted(gw):
    async with Client(gw.url + "/mcp") as client:
        assert text_of(await client.call_tool("add", {"a": 2, "b": 3})) == "5"
    counters = plugins(gw)["open"]["counters"]
    assert counters["skipped"] >= 1 and counters["faults"].get("panic", 0) >= 1


async def test_an_output_over_the_limit_fails_the_call_clearly(gw):
    async with Client(gw.url + "/mcp") as client:
        with pytest.raises(MCPError) as failed:
            await client.call_tool("echo", {"text": "x" * 2000 + " ann@example.com"})
        assert failed.value.error.message == "plugin small failed: oversized"
        assert text_of(await client.call_tool("echo", {"text": "short"})) == "short"


async def test_a_plugin_that_keeps_failing_is_disabled_automatically(gw):
    async with Client(gw.url + "/mcp") as client:
        for _ in range(3):
            with pytest.raises(MCPError) as failed:
                await client.call_tool("sleep", {"seconds": 0})
            assert failed.value.error.message == "plugin auto failed: panic"
        await client.call_tool("sleep", {"seconds": 0})  # disabled now: the call proceeds
    auto = plugins(gw)["auto"]
    assert auto["state"] == "auto-disabled"
    assert auto["reason"].startswith("3 faults in 600 s")
    assert "plugin auto" in gw.log() and "AUTO-DISABLED" in gw.log()


@pytest.mark.parametrize(
    ("name", "grants", "import_"),
    [("wasi-probe", [], "wasi:cli/environment@0.2"), ("clock-ungranted", ["log"], "mcpgw:plugin/clock@1.0.0")],
)
def test_a_plugin_importing_what_is_not_granted_is_refused_at_start_naming_the_import(tmp_path, name, grants, import_):
    config = tmp_path / "mcpgw.toml"
    config.write_text(plugin_table("probe", hostile(name), grants=grants) + "\n")
    env = {"MCPGW_CONFIG": str(config), "MCPGW_PORT": "0", "MCPGW_EDGE": "python"}
    run = subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2
    assert f"{config}, line 1: plugins.probe: refused at imports: plugin imports {import_}" in run.stderr
