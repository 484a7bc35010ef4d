"""The operator console at /admin/ in a real headless Chromium (Debian's, driven by playwright).

A gateway with the admin API on, a real stdio upstream and a real plugin: the page loads and asks
for the token; without it (or with a wrong one) every data call is refused and nothing is shown;
with it, the page shows the active edge version and the upstream's state; a rollback clicked on
the page (confirmed in the dialog) takes effect, as /health shows; a plugin disabled from the page
is disabled. Screenshots are kept under host-python/tests/artifacts/console/ (gitignored).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from conftest import REPO
from upstream_procs import TOY, federated_gateway, stdio_table, wait_upstreams

pytestmark = pytest.mark.browser

TOKEN = "console-test-admin-token-0123456789"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
NOOP = REPO / "plugins" / "dist" / "noop.wasm"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
WAIT_MS = 30_000  # generous: a loaded 2-core machine


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian chromium is not installed: `make test` installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def gw(component_path):
    if not NOOP.is_file():
        pytest.fail(f"{NOOP} is missing: run `make plugins`")
    plugin = f'[plugins.noop]\npath = "{NOOP}"\n'
    g = federated_gateway(
        "wasm", [stdio_table("toy", TOY, "stdio", "toy"), plugin], MCPGW_ADMIN_TOKEN=TOKEN, MCPGW_ADMIN_ALLOW_REMOTE="0"
    )
    yield g
    g.stop()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def connect(browser, gw, token: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(gw.url + "/admin/")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    return page


def test_the_page_is_refused_data_without_the_admin_token(browser, gw):
    page = browser.new_page()
    try:
        response = page.goto(gw.url + "/admin/")
        assert response is not None and response.status == 200
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.wait_for_selector("#token")
        assert page.is_hidden("#panels")  # nothing shown before a token
        # The data endpoint refuses without the credential, from the page's own origin too.
        status = page.evaluate("fetch('console/overview').then(r => r.status)")
        assert status == 401
        page.fill("#token", "not-the-token")
        page.click("#login button[type=submit]")
        refused = "() => document.getElementById('message').textContent.includes('refused (401)')"
        page.wait_for_function(refused, timeout=WAIT_MS)
        assert page.is_hidden("#panels")
        assert page.evaluate("sessionStorage.getItem('mcpgw-admin-token')") is None  # a refused token is dropped
        assert "0.1" not in page.inner_text("#edge-version")
        shot(page, "refused")
    finally:
        page.close()
    assert httpx.get(gw.url + "/admin/console/overview").status_code == 401
    assert httpx.get(gw.url + "/health").json()["console"] == {"enabled": True, "path": "/admin/"}
    assert "operator console on /admin/" in gw.log()
    bad = httpx.get(gw.url + "/admin/console/overview", headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401


def _relay_one_call(gw) -> None:
    """A tools/call through the toy upstream, so the console has a call and a latency to show."""
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    opened = httpx.post(gw.url + "/mcp", json=init, headers=headers, timeout=30)
    headers |= {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "toy__add", "arguments": {"a": 1}}}
    call["params"]["arguments"]["b"] = 2
    answer = httpx.post(gw.url + "/mcp", json=call, headers=headers, timeout=30).json()
    assert answer["result"]["content"][0]["text"] == "3", answer


def test_the_page_shows_the_edge_and_the_upstream(browser, gw):
    _relay_one_call(gw)
    health = httpx.get(gw.url + "/health").json()
    assert health["upstreams"]["toy"]["calls"]["total"] >= 1
    version = health["edge"]["component"]["version"]
    page = connect(browser, gw, TOKEN)
    try:
        page.wait_for_selector("#panels:not([hidden])", timeout=WAIT_MS)
        page.wait_for_function(
            f"() => document.getElementById('edge-version').textContent === {version!r}", timeout=WAIT_MS
        )
        assert page.inner_text("#edge-backend") == "wasm"
        assert page.inner_text("#edge-sha256") == health["edge"]["component"]["sha256"]
        row = page.locator("#upstreams tr[data-id=toy]")
        assert row.locator("td.state").inner_text() == "ready"
        assert "ms p50" in row.inner_text()  # the relayed call's latency
        assert page.inner_text("#tracing").startswith("off (")  # as /health says
        assert page.locator("#plugins tr[data-name=noop] td.state").inner_text() == "enabled"
        # A second reading draws the charts (the page polls every 2 s).
        page.wait_for_function(
            "() => document.getElementById('rate-now').textContent.startsWith('now ')", timeout=WAIT_MS
        )
        assert page.locator("#chart-rate polyline").get_attribute("points")
        shot(page, "overview")
    finally:
        page.close()


def test_rollback_from_the_page_takes_effect(browser, gw, v2_component_path):
    auth = {"authorization": f"Bearer {TOKEN}"}
    before = httpx.get(gw.url + "/health").json()["edge"]["component"]["sha256"]
    swapped = httpx.post(gw.url + "/admin/edge/swap?name=v2", content=v2_component_path.read_bytes(), headers=auth)
    assert swapped.status_code == 200, swapped.text
    v2 = swapped.json()["sha256"]
    assert httpx.get(gw.url + "/health").json()["edge"]["component"]["sha256"] == v2
    page = connect(browser, gw, TOKEN)
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    try:
        page.wait_for_selector("#rollback:not([disabled])", timeout=WAIT_MS)
        page.wait_for_function("() => document.querySelector('#edge-events tbody').rows.length >= 1", timeout=WAIT_MS)
        assert "swap" in page.inner_text("#edge-events")
        shot(page, "before-rollback")
        page.click("#rollback")
        done = "() => document.getElementById('message').textContent.startsWith('rolled back')"
        page.wait_for_function(done, timeout=WAIT_MS)
        assert dialogs and "Roll the edge back" in dialogs[0]
        after = httpx.get(gw.url + "/health").json()["edge"]
        assert after["component"]["sha256"] == before
        assert after["previous"] is None  # a rolled-back version is not kept
        page.wait_for_selector("#rollback[disabled]", timeout=WAIT_MS)
        assert page.inner_text("#edge-sha256") == before
        shot(page, "after-rollback")
    finally:
        page.close()


def test_a_plugin_disabled_from_the_page_is_disabled(browser, gw):
    page = connect(browser, gw, TOKEN)
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        button = page.locator("#plugins tr[data-name=noop] button.plugin-action")
        button.wait_for(timeout=WAIT_MS)
        assert button.inner_text() == "disable"
        button.click()
        page.wait_for_function(
            "() => document.querySelector('#plugins tr[data-name=noop] td.state')?.textContent.startsWith('disabled')",
            timeout=WAIT_MS,
        )
        plugins = {p["name"]: p for p in httpx.get(gw.url + "/health").json()["plugins"]}
        assert plugins["noop"]["state"] == "disabled"
        page.locator("#plugins tr[data-name=noop] button.plugin-action").click()  # enable: no confirmation
        page.wait_for_function(
            "() => document.querySelector('#plugins tr[data-name=noop] td.state')?.textContent === 'enabled'",
            timeout=WAIT_MS,
        )
        wait_upstreams(gw.url)
        assert {p["name"]: p for p in httpx.get(gw.url + "/health").json()["plugins"]}["noop"]["state"] == "enabled"
    finally:
        page.close()


def test_the_console_is_loopback_only_like_the_admin_api(component_path):
    """The page and its files are refused to a non-loopback caller (403), as every admin call is.
    Checked in process (on a thread of its own: playwright's sync API holds this one's event loop)
    with a caller address a loopback test cannot have."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mcpgw.app import create_app
    from mcpgw.settings import Settings

    app = create_app(Settings.from_env({"MCPGW_ADMIN_TOKEN": TOKEN, "MCPGW_EDGE": "python"}))

    async def get(path: str, client: str) -> int:
        transport = httpx.ASGITransport(app=app, client=(client, 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.get(path, headers={"authorization": f"Bearer {TOKEN}"})).status_code

    def status(path: str, client: str) -> int:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, get(path, client)).result()

    assert status("/admin/", "127.0.0.1") == 200
    assert status("/admin/console/app.js", "127.0.0.1") == 200
    assert status("/admin/console/overview", "127.0.0.1") == 200
    assert status("/admin/", "192.0.2.7") == 403
    assert status("/admin/console/app.js", "192.0.2.7") == 403
    assert status("/admin/console/overview", "192.0.2.7") == 403
    # Under MCPGW_PATH_PREFIX the page and everything it calls (relative URLs) move with it.
    app = create_app(
        Settings.from_env({"MCPGW_ADMIN_TOKEN": TOKEN, "MCPGW_EDGE": "python", "MCPGW_PATH_PREFIX": "/gw"})
    )
    assert status("/gw/admin/", "127.0.0.1") == 200
    assert status("/gw/admin/console/overview", "127.0.0.1") == 200
    assert status("/admin/", "127.0.0.1") == 404
    # Without the admin API there is no console, and /health says why.
    off = create_app(Settings.from_env({"MCPGW_EDGE": "python"})).health()["console"]
    assert off == {"enabled": False, "reason": "the admin API is off: MCPGW_ADMIN_TOKEN is unset"}
