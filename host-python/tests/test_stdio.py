"""`mcpgw stdio`: the gateway's catalog over stdin/stdout, as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from upstream_procs import TOY, stdio_table

pytestmark = pytest.mark.timeout(120)
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(id_, name, **arguments):
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def run_stdio(*lines: bytes | dict, env: dict | None = None, args: tuple = ()) -> tuple[list[dict], str]:
    """Feed lines to `mcpgw stdio`, close stdin, and return every stdout line parsed (each must be JSON)."""
    data = b"".join((json.dumps(line).encode() if isinstance(line, dict) else line) + b"\n" for line in lines)
    done = subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "stdio", *args],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "\u2028".encode() not in done.stdout and "\u2029".encode() not in done.stdout
    # Nothing but MCP messages, one per line by any reading of "line".
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(out) == done.stdout.count(b"\n")
    return out, done.stderr.decode()


def by_id(messages: list[dict]) -> dict:
    return {m.get("id"): m for m in messages if "id" in m}


async def test_the_sdk_stdio_client_initializes_lists_calls_with_progress_and_closes():
    seen = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    server = StdioServerParameters(command=sys.executable, args=["-m", "mcpgw.cli", "stdio"])
    async with Client(server, mode="legacy") as client:
        assert client.session.initialize_result.server_info.name == "mcpgw"
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "add", "sleep", "log"} <= tools
        result = await client.call_tool("sleep", {"seconds": 0.2, "ticks": 3}, progress_callback=on_progress)
        assert not result.is_error and seen == [1, 2, 3]
        text = (await client.read_resource("mcpgw://readme")).contents[0]
        assert isinstance(text, types.TextResourceContents) and "mcpgw" in text.text


def test_malformed_lines_get_a_parse_error_and_the_stream_goes_on():
    out, _ = run_stdio(INIT, b"{not json", b"\xff\xfe not utf-8", b"[1, 2]", INITIALIZED, call(1, "add", a=1, b=2))
    errors = [m["error"]["code"] for m in out if m.get("id") is None]
    assert errors == [-32700, -32700, -32600]
    assert by_id(out)[1]["result"]["content"][0]["text"] == "3"


def test_newlines_inside_strings_are_escaped_so_each_message_is_one_line():
    out, _ = run_stdio(INIT, INITIALIZED, call(1, "echo", text="line one\nline two\r\n\u2028end"))
    assert by_id(out)[1]["result"]["content"][0]["text"] == "line one\nline two\r\n\u2028end"


def test_large_messages_pass_and_oversized_ones_are_refused_without_ending_the_stream():
    big = "x" * 200_000
    out, _ = run_stdio(
        INIT,
        INITIALIZED,
        call(1, "echo", text=big),
        call(2, "echo", text="y" * 300_000),
        call(3, "echo", text="after"),
        args=("--max-body-bytes", "250000"),
    )
    answers = by_id(out)
    assert answers[1]["result"]["content"][0]["text"] == big
    assert 2 not in answers  # refused before it was parsed: its id is unknown
    assert any(m.get("id") is None and "larger than 250000" in m["error"]["message"] for m in out)
    assert answers[3]["result"]["content"][0]["text"] == "after"


def test_eof_mid_call_lets_the_call_finish_then_exits():
    out, err = run_stdio(INIT, INITIALIZED, call(1, "sleep", seconds=0.5))
    assert by_id(out)[1]["result"]["content"][0]["text"] == "slept 0.5s"
    assert "Traceback" not in err


def test_eof_cancels_what_outlives_the_grace():
    out, _ = run_stdio(INIT, INITIALIZED, call(1, "sleep", seconds=30), args=("--shutdown-grace-s", "0.2"))
    assert 1 not in by_id(out)  # cancelled: no answer, and the process still exits at once


def test_stdio_serves_configured_upstreams_too(tmp_path):
    config = tmp_path / "mcpgw.toml"
    config.write_text(stdio_table("toy", TOY, "stdio", "toy") + "\n")
    out, _ = run_stdio(INIT, INITIALIZED, call(1, "toy__add", a=40, b=2), args=("--config", str(config)))
    assert by_id(out)[1]["result"]["content"][0]["text"] == "42"
