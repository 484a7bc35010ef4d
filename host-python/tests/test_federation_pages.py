"""The catalog page limit (issue 19, defect 9): `max_pages` per upstream; an upstream with more
pages is cut there, and the cut is logged and shown in /health. A real gateway, a real upstream
(tests/upstreams/paged_server.py: one tool per page, 150 pages)."""

from __future__ import annotations

import pytest
from mcp.client.client import Client

from upstream_procs import UPSTREAMS, federated_gateway, stdio_table, upstream_health

pytestmark = pytest.mark.timeout(120)
PAGED = UPSTREAMS / "paged_server.py"


async def test_a_150_page_catalog_is_read_whole_when_max_pages_allows(component_path):
    gateway = federated_gateway("python", [stdio_table("paged", PAGED, "150", max_pages=200)])
    try:
        async with Client(gateway.url + "/mcp", mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
        assert {f"paged__t{n}" for n in range(150)} <= names
        health = upstream_health(gateway.url)["paged"]
        assert health["tools"] == 150 and health["cut_at_max_pages"] == []
    finally:
        gateway.stop()


async def test_past_max_pages_the_catalog_is_cut_logged_and_shown_in_health(component_path):
    gateway = federated_gateway("python", [stdio_table("paged", PAGED, "150")])  # the default: 100
    try:
        health = upstream_health(gateway.url)["paged"]
        assert health["tools"] == 100 and health["cut_at_max_pages"] == ["tools"]
        assert "upstream paged (catalog): tools cut at max_pages (100 pages, 100 items)" in gateway.log()
    finally:
        gateway.stop()
