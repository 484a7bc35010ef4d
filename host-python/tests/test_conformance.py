"""The official MCP conformance suite (@modelcontextprotocol/conformance, server scenarios) run
against the conformance fixture directly and through the gateway's virtual server for it, in
both edge modes: every scenario the fixture passes directly must pass through the gateway.

The suite and Node 22 come from npm (tests/e2e/conformance/install.sh, run by `make test`).
"""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO
from upstream_procs import federated_gateway, fixture_http, http_table

sys.path.insert(0, str(REPO / "tests" / "e2e" / "conformance"))
import run_suite

RESULTS = REPO / ".build" / "conformance" / "results.json"  # the direct-vs-gateway table, for the record

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def fixture():
    upstream = fixture_http()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def direct(fixture):
    results = run_suite.run(fixture.url)
    expected = run_suite.load_expected_failures()
    unexplained = {s: r["detail"] for s, r in results.items() if not r["passed"] and s not in expected}
    assert not unexplained, f"the fixture fails scenarios not in expected-failures.txt: {unexplained}"
    assert len(results) >= 30  # the suite's server scenarios, all of them
    return results


@pytest.mark.parametrize("mode", ["wasm", "python"])
def test_every_scenario_the_fixture_passes_directly_passes_through_the_gateway(mode, fixture, direct, component_path):
    gw = federated_gateway(mode, [http_table("fixture", fixture.url)])
    try:
        through = run_suite.run(gw.url + "/servers/fixture/mcp")
    finally:
        gw.stop()
    table = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for scenario in direct:
        row = table.setdefault(scenario, {})
        row["direct"] = direct[scenario]["passed"]
        row[f"gateway-{mode}"] = through.get(scenario, {}).get("passed")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(table, indent=1, sort_keys=True))
    assert set(through) == set(direct)
    regressions = {s: through[s]["detail"] for s in direct if direct[s]["passed"] and not through[s]["passed"]}
    assert regressions == {}
