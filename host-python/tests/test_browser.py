"""A real headless Chromium calls the gateway cross-origin, with both edge backends.

The page is served from another origin on 127.0.0.1 (another port). Allowed: the
browser's preflight passes and the page reads Mcp-Session-Id (exposed by the
edge's CORS headers). Not allowed: the browser itself blocks the call.
"""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Gateway

pytestmark = pytest.mark.browser

PAGE = b"""<!doctype html><title>mcp client page</title><script>
async function initialize(gateway) {
  try {
    const r = await fetch(gateway + "/mcp", {
      method: "POST",
      headers: {"content-type": "application/json", "accept": "application/json, text/event-stream",
                "mcp-protocol-version": "2025-06-18"},
      body: JSON.stringify({jsonrpc: "2.0", id: 1, method: "initialize",
        params: {protocolVersion: "2025-06-18", capabilities: {}, clientInfo: {name: "browser", version: "0"}}}),
    });
    const body = await r.json();
    return {ok: true, status: r.status, session: r.headers.get("mcp-session-id"), version: body.result.protocolVersion};
  } catch (e) {
    return {ok: false, error: String(e)};
  }
}
</script>"""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):  # http.server's naming
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def page_origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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


def _initialize_from_page(browser, page_origin, gateway_url):
    page = browser.new_page()
    try:
        page.goto(page_origin + "/")
        return page.evaluate("gw => initialize(gw)", gateway_url)
    finally:
        page.close()


@pytest.mark.parametrize("mode", ["wasm", "python"])
def test_allowed_origin_passes_preflight_and_reads_session_id(browser, page_origin, component_path, mode):
    gw = Gateway({"MCPGW_EDGE": mode}).wait_ready()  # default origins: http://127.0.0.1 on any port
    try:
        result = _initialize_from_page(browser, page_origin, gw.url)
        assert result["ok"], result
        assert result["status"] == 200 and result["version"] == "2025-06-18"
        assert result["session"] and len(result["session"]) >= 32
    finally:
        gw.stop()


@pytest.mark.parametrize("mode", ["wasm", "python"])
def test_disallowed_origin_is_blocked_by_the_browser(browser, page_origin, component_path, mode):
    gw = Gateway({"MCPGW_EDGE": mode, "MCPGW_ALLOWED_ORIGINS": "https://only.example"}).wait_ready()
    try:
        result = _initialize_from_page(browser, page_origin, gw.url)
        assert not result["ok"], result
        assert "Failed to fetch" in result["error"]
        # It was the CORS refusal, not a network error: the gateway is up, refuses
        # this origin's preflight, and the initialize never reached the app.
        import httpx

        preflight = httpx.options(
            gw.url + "/mcp", headers={"origin": page_origin, "access-control-request-method": "POST"}
        )
        assert preflight.status_code == 403
        assert httpx.get(gw.url + "/health").json()["live"]["sessions"] == 0
    finally:
        gw.stop()
