"""Plugins at run time through the admin API and `mcpgw plugin`, in a real gateway (both edge
modes): reload and unload under concurrent calls fail none, and every answer is produced by
exactly one version; load, enable, disable, verify; the admin rules (token) apply."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
import httpx
import pytest
from mcp.client.client import Client

from test_plugins import example, hostile, plugin_table, text_of

pytestmark = pytest.mark.timeout(240)

TOKEN = "plugin-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
TEXT = "mail ann@example.com"


@pytest.fixture(scope="module", params=["wasm", "python"])
def gw(request, component_path):
    from upstream_procs import federated_gateway

    gateway = federated_gateway(
        request.param,
        [plugin_table("r", example("redact"), config={"replacement": "[v1]"})],
        MCPGW_ADMIN_TOKEN=TOKEN,
    )
    yield gateway
    gateway.stop()


def admin(gw, action: str, name: str = "r", wasm: bytes = b"", manifest: dict | None = None) -> httpx.Response:
    params = {"manifest": json.dumps(manifest)} if manifest else {}
    return httpx.post(
        f"{gw.url}/admin/plugins/{name}/{action}",
        content=wasm,
        params=params,
        headers={**AUTH, "content-type": "application/wasm"},
        timeout=60,
    )


async def calls_under(gw, change, clients: int = 6) -> list[str]:
    """Every answer the clients got while `change()` ran (each client calls in a loop until it ends)."""
    answers: list[str] = []
    done = anyio.Event()

    async def client() -> None:
        async with Client(gw.url + "/mcp") as c:
            while not done.is_set():
                answers.append(text_of(await c.call_tool("echo", {"text": TEXT})))

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(client)
        await anyio.to_thread.run_sync(change)
        done.set()
    return answers


async def test_reload_under_load_fails_no_call_and_each_answer_is_one_version(gw):
    wasm = example("redact").read_bytes()

    def reloads() -> None:
        for version in ("[v2]", "[v1]", "[v2]"):
            response = admin(gw, "reload", wasm=wasm, manifest={"config": {"replacement": version}})
            assert response.status_code == 200, response.text
            assert response.json()["event"]["action"] == "reload"

    answers = await calls_under(gw, reloads)  # a failed call raises out of the task group
    print(f"{len(answers)} calls during 3 reloads: {sorted(set(answers))}")
    assert answers and set(answers) <= {"mail [v1]", "mail [v2]"}, set(answers)
    async with Client(gw.url + "/mcp") as c:
        assert text_of(await c.call_tool("echo", {"text": TEXT})) == "mail [v2]"


async def test_unload_and_load_under_load_fail_no_call(gw):
    wasm = example("redact").read_bytes()

    def unload_then_load() -> None:
        assert admin(gw, "unload").status_code == 200
        response = admin(gw, "load", wasm=wasm, manifest={"config": {"replacement": "[v3]"}})
        assert response.status_code == 200, response.text

    answers = await calls_under(gw, unload_then_load)
    assert answers and set(answers) <= {"mail [v1]", "mail [v2]", "mail [v3]", TEXT}, set(answers)
    async with Client(gw.url + "/mcp") as c:
        assert text_of(await c.call_tool("echo", {"text": TEXT})) == "mail [v3]"


async def test_disable_and_enable(gw):
    assert admin(gw, "disable").status_code == 200
    health = httpx.get(gw.url + "/health")  # noqa: ASYNC210 - the gateway is another process: blocking stalls only the test
    state = {p["name"]: p for p in health.json()["plugins"]}["r"]
    assert state["state"] == "disabled" and "disabled by" in state["reason"]
    async with Client(gw.url + "/mcp") as c:
        assert text_of(await c.call_tool("echo", {"text": TEXT})) == TEXT
        assert admin(gw, "enable").status_code == 200
        assert text_of(await c.call_tool("echo", {"text": TEXT})).startswith("mail [v")


def test_refusals_leave_the_active_set_alone(gw):
    before = httpx.get(gw.url + "/health").json()["plugins"]
    assert admin(gw, "load", wasm=example("redact").read_bytes()).status_code == 422  # the name is taken
    refused = admin(gw, "reload", wasm=hostile("clock-ungranted").read_bytes())
    assert refused.status_code == 422
    assert refused.json()["step"] == "imports" and "mcpgw:plugin/clock@1.0.0" in refused.json()["detail"]
    refused = admin(gw, "reload", wasm=b"not wasm")
    assert refused.status_code == 422 and refused.json()["step"] == "compile"
    refused = admin(gw, "reload", wasm=example("redact").read_bytes(), manifest={"hooks": ["list-filter"]})
    assert refused.status_code == 422 and refused.json()["step"] == "hooks"
    refused = admin(gw, "reload", wasm=example("redact").read_bytes(), manifest={"config": {"kinds": ["nope"]}})
    assert refused.status_code == 422 and refused.json()["step"] == "configure"
    assert admin(gw, "unload", name="nobody").status_code == 404
    after = httpx.get(gw.url + "/health").json()["plugins"]
    assert [(p["name"], p["sha256"], p["state"]) for p in after] == [
        (p["name"], p["sha256"], p["state"]) for p in before
    ]


def test_the_admin_token_is_required(gw):
    assert httpx.get(gw.url + "/admin/plugins").status_code == 401
    response = httpx.post(gw.url + "/admin/plugins/r/unload", headers={"authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert httpx.get(gw.url + "/admin/plugins", headers=AUTH).json()["plugins"][0]["name"] == "r"


def test_the_cli(gw):
    def plugin(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "mcpgw.cli", "plugin", "--url", gw.url, "--token", TOKEN, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    listed = plugin("list")
    assert listed.returncode == 0 and json.loads(listed.stdout)["plugins"][0]["name"] == "r"
    verified = plugin("verify", str(example("noop")))
    assert verified.returncode == 0 and json.loads(verified.stdout)["verified"] is True
    refused = plugin("verify", str(hostile("wasi-probe")))
    assert refused.returncode == 1 and "wasi:cli/environment" in json.loads(refused.stdout)["detail"]
    loaded = plugin("load", "n", str(example("noop")), "--manifest", '{"priority": 5}')
    assert loaded.returncode == 0, loaded.stdout
    assert plugin("disable", "n").returncode == 0
    assert plugin("enable", "n").returncode == 0
    assert plugin("reload", "n", str(example("noop"))).returncode == 0
    assert plugin("unload", "n").returncode == 0
    assert plugin("unload", "n").returncode == 1
