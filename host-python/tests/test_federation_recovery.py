"""Federation faults a demanding user meets (issue 19): an HTTP upstream that restarts under a
session, one that hangs (SIGSTOP) with no call timeout, and errors that say whose fault they are.

Real gateway processes (Python edge: these are federation faults, not edge behaviour), real
upstream processes (the toy server over Streamable HTTP), the mcp SDK's client. Every wait has a
deadline; nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import time

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from conftest import Gateway
from mcp_http import ENVELOPE, NOTHING_LIVE, drained, headers2026
from upstream_procs import federated_gateway, http_table, toy_http, upstream_health, wait_upstreams

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def stateless_call(url: str, name: str, arguments: dict | None = None) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments or {}, "_meta": ENVELOPE},
    }
    return httpx.post(url + "/mcp", json=body, headers=headers2026("tools/call", name), timeout=60)


@pytest.fixture
def web(component_path):
    upstream = toy_http("web")
    yield upstream
    upstream.stop()


async def test_a_restarted_http_upstream_serves_the_next_call_with_the_session_state_reapplied(web):
    # Pings far apart: whatever notices the restart, it is not the health ping.
    gw = federated_gateway("python", [http_table("web", web.url, health_interval_s=300, restart_backoff_s=0.2)])
    updates: list[str] = []
    updated = anyio.Event()

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            updated.set()

    try:
        async with Client(gw.url + "/servers/web/mcp", mode="legacy", message_handler=on_message) as client:
            await client.session.set_logging_level("warning")
            await client.session.subscribe_resource("toy://note")
            before = json.loads(text_of(await client.call_tool("state", {})))
            assert before == {"level": "warning", "subscribed": ["toy://note"]}
            first = text_of(await client.call_tool("whoami", {}))
            restarts = upstream_health(gw.url)["web"]["restarts"]

            web.restart()  # same port, a new process that knows none of our sessions

            # The next call works: the session's link is reopened (a 404 to our old session is
            # never run upstream, so the gateway sends the call again on the new link).
            with anyio.fail_after(30):
                again = text_of(await client.call_tool("whoami", {}))
            assert again.startswith("web pid=") and again != first
            after = json.loads(text_of(await client.call_tool("state", {})))
            assert after == {"level": "warning", "subscribed": ["toy://note"]}  # re-applied on the new link
            assert text_of(await client.call_tool("touch_if_subscribed", {})) == "touched"
            with anyio.fail_after(10):
                await updated.wait()
            assert updates == ["toy://note"]
        health = wait_upstreams(gw.url, timeout=30)["web"]
        assert health["state"] == "ready" and health["restarts"] > restarts
        # A stateless (2026-07-28) call goes through the catalog connection, also reconnected.
        r = stateless_call(gw.url, "web__whoami")
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == again
        assert drained(gw.url) == NOTHING_LIVE
    finally:
        gw.stop()


async def test_a_restarted_upstream_that_answers_400_for_the_old_session_counts_as_a_lost_session(component_path):
    # Some servers (the TypeScript SDK's) answer 400 "No valid session ID provided", not 404.
    web = toy_http("web", TOY_LOST_SESSION_400="1")
    gw = federated_gateway("python", [http_table("web", web.url, health_interval_s=300, restart_backoff_s=0.2)])
    try:
        async with Client(gw.url + "/servers/web/mcp", mode="legacy") as client:
            await client.session.set_logging_level("warning")
            await client.session.subscribe_resource("toy://note")
            first = text_of(await client.call_tool("whoami", {}))
            web.restart()
            with anyio.fail_after(30):  # the call refused with 400 is sent again on a new link
                again = text_of(await client.call_tool("whoami", {}))
            assert again.startswith("web pid=") and again != first
            after = json.loads(text_of(await client.call_tool("state", {})))
            assert after == {"level": "warning", "subscribed": ["toy://note"]}  # re-applied on the new link
        r = stateless_call(gw.url, "web__whoami")  # the catalog connection re-initialized too
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == again
    finally:
        gw.stop()
        web.stop()


async def test_a_stateless_call_after_a_restart_is_answered_not_refused(web):
    gw = federated_gateway("python", [http_table("web", web.url, health_interval_s=300, restart_backoff_s=0.2)])
    try:
        first = stateless_call(gw.url, "web__whoami").json()["result"]["content"][0]["text"]
        web.restart()
        r = stateless_call(gw.url, "web__whoami")
        assert r.status_code == 200, r.text  # was 400: the upstream's 404 read as the client's mistake
        assert r.json()["result"]["content"][0]["text"] != first
    finally:
        gw.stop()


async def test_a_call_in_flight_when_an_http_upstream_dies_gets_one_clear_error_and_health_knows_at_once(web):
    gw = federated_gateway("python", [http_table("web", web.url, health_interval_s=300, restart_backoff_s=0.2)])
    try:
        async with Client(gw.url + "/servers/web/mcp", mode="legacy") as client:
            await client.call_tool("whoami", {})

            async def kill_soon():
                await anyio.sleep(0.5)
                web.proc.kill()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(kill_soon)
                with pytest.raises(MCPError) as died:
                    await client.call_tool("slow", {"seconds": 20})
            error = died.value.error
            assert error.code == -32603
            assert error.message == "Upstream 'web' closed the connection during tools/call"  # the gateway's words
            assert error.data == {"upstream": "web"}
            # The failed call marked it down (the ping is 300 s away).
            health = wait_upstreams(gw.url, timeout=15, predicate=lambda u: u["state"] != "ready")["web"]
            assert health["state"] == "restarting" and health["error"]
            assert not health["error"].startswith("Upstream")  # the reason, not a wrapped error
            with pytest.raises(MCPError) as down:
                await client.call_tool("whoami", {})
            message = down.value.error.message
            assert down.value.error.code == -32603 and message.startswith("Upstream 'web' is unavailable: ")
            assert message.count("Upstream") == 1 and down.value.error.data == {"upstream": "web"}
            web.restart()
            failures: list[MCPError] = []
            with anyio.fail_after(30):
                while True:
                    try:
                        assert text_of(await client.call_tool("whoami", {})).startswith("web pid=")
                        break
                    except MCPError as exc:
                        failures.append(exc)
                        await anyio.sleep(0.1)
            assert all(f.error.code == -32603 and f.error.data == {"upstream": "web"} for f in failures)
        assert drained(gw.url) == NOTHING_LIVE
    finally:
        gw.stop()


async def test_a_stopped_upstream_with_no_call_timeout_goes_down_and_calls_fail_promptly(web):
    gw = federated_gateway(
        "python",
        [
            http_table(
                "web", web.url, call_timeout_s=0, connect_timeout_s=2, health_interval_s=0.5, restart_backoff_s=0.2
            )
        ],
    )
    try:
        async with Client(gw.url + "/servers/web/mcp", mode="legacy") as client:
            await client.call_tool("whoami", {})
            os.kill(web.proc.pid, signal.SIGSTOP)
            try:
                with anyio.fail_after(30):  # the call in flight fails once the ping says it is down
                    with pytest.raises(MCPError) as hung:
                        await client.call_tool("slow", {"seconds": 1})
                assert hung.value.error.code == -32603 and hung.value.error.data == {"upstream": "web"}
                health = upstream_health(gw.url)["web"]
                assert health["state"] != "ready" and "ping" in health["error"]
                with anyio.fail_after(30), pytest.raises(MCPError) as refused:
                    await client.call_tool("whoami", {})
                assert refused.value.error.code == -32603 and "Upstream 'web'" in refused.value.error.message
            finally:
                os.kill(web.proc.pid, signal.SIGCONT)
            health = wait_upstreams(gw.url, timeout=60)["web"]
            assert health["state"] == "ready"
            with anyio.fail_after(30):
                while True:
                    try:
                        await client.call_tool("whoami", {})
                        break
                    except MCPError:
                        await anyio.sleep(0.1)
    finally:
        gw.stop()


def test_an_unreachable_upstream_is_named_once_in_its_error(component_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = http_table("gone", f"http://127.0.0.1:{port}/mcp", connect_timeout_s=2, restart_backoff_s=0.2)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mcpgw-gone-{os.getpid()}.toml")
    with open(path, "w") as f:
        f.write(config + "\n")
    gw = Gateway({"MCPGW_EDGE": "python", "MCPGW_CONFIG": path}).wait_ready()
    try:
        deadline = time.monotonic() + 30
        while upstream_health(gw.url)["gone"]["error"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        health = upstream_health(gw.url)["gone"]
        assert health["state"] != "ready" and not health["error"].startswith("Upstream")
        r = stateless_call(gw.url, "gone__whoami")
        error = r.json()["error"]
        assert error["message"].startswith("Upstream 'gone' is unavailable: ")
        assert error["message"].count("Upstream 'gone'") == 1 and error["data"] == {"upstream": "gone"}
    finally:
        gw.stop()
        os.unlink(path)
