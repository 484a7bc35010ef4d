"""The `log` grant end to end: a real gateway process loads the test-only plugin `chatty`
(plugins/test/chatty: one log line per tool call, with a newline and a forged log prefix in it),
granted "log" in its manifest. Its lines reach the gateway's log in logger
`mcpgw.plugin.chatty`, tagged with the plugin's name, escaped onto one line, at most
LOG_LINES_PER_S a second with the rest counted in a tally line; every line the plugin wrote is
either in the log or in a tally. Without the grant the plugin is refused when it loads, naming the
import, at start-up and through the admin API."""

from __future__ import annotations

import re
import subprocess
import sys

import anyio
import httpx
import pytest
from mcp.client.client import Client

from mcpgw.plugins.sandbox import LOG_LINES_PER_S
from test_plugins import hostile, plugin_table, text_of

pytestmark = pytest.mark.timeout(180)

TOKEN = "plugin-log-admin-token"

CALLS = 6 * LOG_LINES_PER_S  # in a burst: over one second's allowance unless a call takes 100 ms
LINE = re.compile(r"mcpgw\.plugin\.chatty: plugin chatty: call (\d+) of echo\\nERROR mcpgw: forged$")
TALLY = re.compile(r"mcpgw\.plugin\.chatty: plugin chatty: (\d+) log lines suppressed \(rate limit\)$")


@pytest.fixture(scope="module", params=["wasm", "python"])
def gw(request, component_path):
    from upstream_procs import federated_gateway

    gateway = federated_gateway(
        request.param, [plugin_table("chatty", hostile("chatty"), grants=["log"])], MCPGW_ADMIN_TOKEN=TOKEN
    )
    yield gateway
    gateway.stop()


def _chatty(log: str) -> tuple[list[int], int, list[str]]:
    """(call numbers of the plugin's lines, lines suppressed by the tallies, every chatty record)."""
    records = [line for line in log.splitlines() if "mcpgw.plugin.chatty:" in line]
    calls = [int(m.group(1)) for line in records if (m := LINE.search(line))]
    suppressed = sum(int(m.group(1)) for line in records if (m := TALLY.search(line)))
    return calls, suppressed, records


async def test_a_granted_plugin_logs_tagged_escaped_and_rate_limited(gw):
    async with Client(gw.url + "/mcp") as client:
        for i in range(CALLS):
            assert text_of(await client.call_tool("echo", {"text": f"m{i}"})) == f"m{i}"
        # The tally of a window is written with the first line of the next one: one more call once
        # a second has passed (a wait for the limiter's window, not a timing assertion).
        await anyio.sleep(1.1)
        assert text_of(await client.call_tool("echo", {"text": "last"})) == "last"
    calls, suppressed, records = _chatty(gw.log())
    assert calls, gw.log()[-2000:]
    # Every record is one of the two shapes: the newline and the forged prefix stayed on the line.
    assert all(LINE.search(r) or TALLY.search(r) for r in records), records
    assert not any(line.startswith("ERROR mcpgw: forged") for line in gw.log().splitlines())
    # Rate-limited: lines were dropped and counted, and none was lost without being counted.
    assert suppressed > 0
    assert len(calls) + suppressed == CALLS + 1
    assert calls[-1] == CALLS + 1  # the plugin's own count: one instance served every call
    assert "WARNING" in next(r for r in records if LINE.search(r))  # the level the plugin chose


def _serve_refused(tmp_path, table: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "mcpgw.toml"
    config.write_text(table + "\n")
    env = {"MCPGW_CONFIG": str(config), "MCPGW_PORT": "0", "MCPGW_EDGE": "python"}
    return subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_the_grant_the_plugin_is_refused_at_start(tmp_path):
    run = _serve_refused(tmp_path, plugin_table("chatty", hostile("chatty"), grants=["clock"]))
    assert run.returncode == 2, run.stderr
    assert (
        f"{tmp_path / 'mcpgw.toml'}, line 1: plugins.chatty: refused at imports: "
        "plugin imports mcpgw:plugin/log@1.0.0, which is not granted (add 'log' to grants)"
    ) in run.stderr


def test_without_the_grant_the_admin_api_refuses_the_load(gw):
    url = gw.url
    wasm = hostile("chatty").read_bytes()
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/wasm"}
    refused = httpx.post(url + "/admin/plugins/chatty2/load", content=wasm, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["step"] == "imports"
    assert "mcpgw:plugin/log@1.0.0" in refused.json()["detail"]
    granted = httpx.post(
        url + "/admin/plugins/chatty2/load", content=wasm, headers=headers, params={"manifest": '{"grants": ["log"]}'}
    )
    assert granted.status_code == 200, granted.text
