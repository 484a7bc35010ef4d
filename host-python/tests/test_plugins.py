"""Plugins in a real gateway process, in both edge modes, with a real upstream (the toy server
over stdio) and the mcp SDK's client: each example plugin (tool-guard, args-guard, redact,
rate-limit) doing its job on /mcp and on a virtual server, and what /health and the start-up log
say about them. Also the helpers the other test_plugins_*.py modules use: where the plugin
components are (`make plugins` builds them into plugins/dist) and a writer of `[plugins.<name>]`
tables.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from conftest import REPO, require_file

PLUGINS_DIR = Path(os.environ.get("MCPGW_TEST_PLUGINS", REPO / "plugins" / "dist"))


def example(name: str) -> Path:
    return require_file(PLUGINS_DIR / f"{name}.wasm", "run `make plugins`")


def hostile(name: str) -> Path:
    return require_file(PLUGINS_DIR / "test" / f"{name}.wasm", "run `make plugins`")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def plugin_table(name: str, path: Path, **keys: Any) -> str:
    """`[plugins.<name>]` with `path` and the given keys (config as an inline table)."""
    lines = [f"[plugins.{name}]", f"path = {_toml(str(path))}"]
    lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    return "\n".join(lines)


pytestmark = pytest.mark.timeout(180)


def text_of(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.fixture(scope="module", params=["wasm", "python"])
def gw(request, component_path):
    from upstream_procs import TOY, UPSTREAMS, federated_gateway, stdio_table

    gateway = federated_gateway(
        request.param,
        [
            stdio_table("toy", TOY, "stdio", "toy"),
            stdio_table("deep", UPSTREAMS / "deep_server.py", "stdio", "deep"),
            plugin_table(
                "guard",
                example("tool-guard"),
                priority=10,
                config={"deny": ["toy__add", "add"], "endpoints": {"/servers/toy/mcp": {"deny": ["add"]}}},
            ),
            plugin_table(
                "args",
                example("args-guard"),
                priority=20,
                tools=["echo"],
                config={"rules": [{"pointer": "/text", "contains": "DROP TABLE"}]},
            ),
            plugin_table("redact", example("redact"), priority=30, hooks=["tool-post-invoke"]),
            plugin_table(
                "rate",
                example("rate-limit"),
                priority=40,
                grants=["clock"],
                tools=["toy__whoami", "whoami"],
                config={"rate_per_s": 0.001, "burst": 3},
            ),
        ],
    )
    yield gateway
    gateway.stop()


async def test_a_denied_call_gets_the_plugins_error(gw):
    async with Client(gw.url + "/mcp") as client:
        with pytest.raises(MCPError) as denied:
            await client.call_tool("echo", {"text": "1; DROP TABLE users"})
        assert denied.value.error.code == -32602
        assert "/text" in denied.value.error.message  # args-guard names the pointer
        assert text_of(await client.call_tool("echo", {"text": "harmless"})) == "harmless"


async def test_a_redacted_result_arrives_redacted(gw):
    async with Client(gw.url + "/mcp") as client:
        text = text_of(await client.call_tool("echo", {"text": "write to ann@example.com or call +4712345678"}))
    assert "ann@example.com" not in text and "12345678" not in text
    assert "[redacted:email]" in text and "[redacted:phone]" in text


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def _post_call(gw: Any, id_: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from mcp_http import headers2026, rpc2026

    body = rpc2026("tools/call", id_, name=name, arguments=arguments)
    answer: dict[str, Any] = httpx.post(gw.url + "/mcp", json=body, headers=headers2026("tools/call", name)).json()
    return answer


def test_arguments_nested_deeper_than_a_plugin_parses_are_refused(tmp_path):
    """The gateway's JSON parser passes arrays nested 200 deep, the plugin SDK's (serde_json) only
    127: the SDK refuses the call before args-guard's hook runs (fails closed), where the hook used
    to get nothing to check and let the refused text through. args-guard alone in the chain (in
    `gw` tool-guard, first, would refuse it the same way), over stdio."""
    from test_stdio import INIT, INITIALIZED, by_id, run_stdio

    config = tmp_path / "mcpgw.toml"
    config.write_text(
        plugin_table("args", example("args-guard"), config={"rules": [{"pointer": "/text", "contains": "DROP TABLE"}]})
        + "\n"
    )
    refused = "1; DROP TABLE users"
    out, _ = run_stdio(
        INIT,
        INITIALIZED,
        _call(1, "echo", text=refused, pad=_nested(100, 0)),
        _call(2, "echo", text=refused, pad=_nested(200, 0)),
        _call(3, "echo", text="harmless", pad=_nested(200, 0)),
        args=("--config", str(config)),
    )
    answers = by_id(out)
    assert answers[1]["error"]["code"] == -32602 and "/text" in answers[1]["error"]["message"]  # checked
    too_deep = {"code": -32603, "message": "plugin args-guard: malformed input: payload nested deeper than 127"}
    assert answers[2]["error"] == too_deep
    assert answers[3]["error"] == too_deep  # nothing to refuse, refused all the same: the SDK cannot tell


def test_a_result_nested_deeper_than_a_plugin_parses_is_refused_not_let_through(gw):
    """redact on a result whose structured content holds the email nested 180 deep (past the
    plugin SDK's 127, within what the upstream link carries): denied, -32603 from the plugin SDK,
    never passed on unredacted; 100 deep it is redacted as usual."""
    answer = _post_call(gw, 24, "deep__deep", {"text": "mail bob@example.com", "depth": 100})
    result = json.dumps(answer["result"])
    assert "bob@example.com" not in result and result.count("[redacted:email]") == 2
    answer = _post_call(gw, 25, "deep__deep", {"text": "mail bob@example.com", "depth": 180})
    assert "bob@example.com" not in json.dumps(answer)
    assert answer["error"] == {
        "code": -32603,
        "message": "plugin redact: malformed input: payload nested deeper than 127",
    }


def test_a_stdio_answer_nested_deeper_than_the_link_reads_fails_its_call_at_once(gw):
    """An answer nested past what the upstream link's JSON-RPC parser reads (about 198 deep) is
    not a readable message: the call it answers fails at once with the gateway's wording and
    data.upstream (it used to be dropped and the call waited out its timeout)."""
    answer = _post_call(gw, 26, "deep__deep", {"text": "x", "depth": 240})
    assert answer["error"]["code"] == -32603
    assert "answered tools/call with a message the gateway cannot read" in answer["error"]["message"]
    assert answer["error"]["data"] == {"upstream": "deep"}


async def test_a_hidden_tool_is_neither_listed_nor_callable(gw):
    async with Client(gw.url + "/mcp") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "toy__whoami" in names and "echo" in names
        assert "toy__add" not in names and "add" not in names
        for hidden in ("toy__add", "add"):
            with pytest.raises(MCPError) as refused:
                await client.call_tool(hidden, {"a": 1, "b": 2})
            assert refused.value.error.code == -32602
            assert f"Unknown tool: {hidden}" in refused.value.error.message
    async with Client(gw.url + "/servers/toy/mcp") as client:  # the virtual server, with its own names
        names = {t.name for t in (await client.list_tools()).tools}
        assert "whoami" in names and "add" not in names
        with pytest.raises(MCPError) as refused:
            await client.call_tool("add", {"a": 1, "b": 2})
        assert refused.value.error.code == -32602


def test_a_hidden_tool_is_refused_without_a_list_first_on_a_2026_request(gw):
    """A stateless request that never listed: the gateway filters the list itself before the call."""
    from mcp_http import headers2026, rpc2026

    body = rpc2026("tools/call", 7, name="add", arguments={"a": 1, "b": 2})
    answer = httpx.post(gw.url + "/mcp", json=body, headers=headers2026("tools/call", "add")).json()
    assert answer["error"]["code"] == -32602
    assert answer["error"]["message"] == "Unknown tool: add"


async def test_the_rate_limit_answers_the_plugins_error_past_its_budget(gw):
    async with Client(gw.url + "/servers/toy/mcp", mode="legacy") as client:  # a session: one bucket
        for _ in range(3):
            assert text_of(await client.call_tool("whoami", {})).startswith("toy pid=")
        with pytest.raises(MCPError) as limited:
            await client.call_tool("whoami", {})
        assert limited.value.error.code == -32000
        assert "rate limit" in limited.value.error.message
        # Other tools are not rate-limited: the plugin's `tools` globs exclude them.
        for _ in range(4):
            await client.call_tool("state", {})


def test_health_and_the_start_up_log_describe_every_plugin(gw):
    from mcp_http import headers2026, rpc2026

    body = rpc2026("tools/call", 8, name="echo", arguments={"text": "DROP TABLE t"})
    assert "error" in httpx.post(gw.url + "/mcp", json=body, headers=headers2026("tools/call", "echo")).json()
    plugins = {p["name"]: p for p in httpx.get(gw.url + "/health").json()["plugins"]}
    assert list(plugins) == ["guard", "args", "redact", "rate"]  # priority order
    rate = plugins["rate"]
    assert rate["state"] == "enabled" and rate["grants"] == ["clock"]
    assert re.fullmatch(r"[0-9a-f]{64}", rate["sha256"]) and rate["version"]
    assert plugins["redact"]["hooks"] == ["tool-post-invoke"]
    for plugin in plugins.values():
        assert set(plugin["counters"]) >= {"calls", "denials", "modifications", "faults", "p50_us"}
    args = plugins["args"]["counters"]
    assert args["denials"] >= 1 and args["calls"] >= args["denials"] and args["p50_us"] > 0
    assert args["faults"] == {}
    log = gw.log()
    for name, plugin in plugins.items():
        line = next(line for line in log.splitlines() if f"plugin {name} " in line and "hooks" in line)
        assert plugin["sha256"][:12] in line and plugin["version"] in line and "enabled" in line


# -- every transport gets the same chain ------------------------------------------


def test_websocket_and_legacy_sse_get_the_same_chain(gw):
    from websockets.sync.client import connect

    from test_stdio import INIT

    with connect(gw.url.replace("http://", "ws://") + "/ws", subprotocols=["mcp"]) as ws:
        ws.send(json.dumps(INIT))
        json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        ws.send(json.dumps(_call(1, "echo", text="DROP TABLE t")))
        assert json.loads(ws.recv(timeout=60))["error"]["code"] == -32602
        ws.send(json.dumps(_call(2, "toy__add", a=1, b=2)))
        assert json.loads(ws.recv(timeout=60))["error"]["message"] == "Unknown tool: toy__add"


async def test_legacy_sse_gets_the_same_chain(gw):
    from mcp.client.sse import sse_client

    async with Client(sse_client(gw.url + "/sse")) as client:
        text = text_of(await client.call_tool("echo", {"text": "ann@example.com"}))
        assert text == "[redacted:email]"
        assert "toy__add" not in {t.name for t in (await client.list_tools()).tools}


def _call(id_: int, name: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def test_stdio_gets_the_same_chain(tmp_path):
    from test_stdio import INIT, INITIALIZED, by_id, run_stdio

    config = tmp_path / "mcpgw.toml"
    config.write_text(
        plugin_table("guard", example("tool-guard"), config={"deny": ["add"]})
        + "\n"
        + plugin_table("redact", example("redact"))
        + "\n"
    )
    out, log = run_stdio(
        INIT,
        INITIALIZED,
        _call(1, "add", a=1, b=2),
        _call(2, "echo", text="ann@example.com"),
        args=("--config", str(config)),
    )
    answers = by_id(out)
    assert answers[1]["error"] == {"code": -32602, "message": "Unknown tool: add"}
    assert answers[2]["result"]["content"][0]["text"] == "[redacted:email]"
    assert "plugin guard" in log and "plugin redact" in log
