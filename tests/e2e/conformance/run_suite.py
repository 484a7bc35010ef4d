"""Run the official MCP conformance suite's server scenarios against a URL.

    run_suite.py --url http://127.0.0.1:PORT/mcp [--scenario NAME ...] --json OUT
                 [--expected-failures expected-failures.txt]

Writes {scenario: {"passed": bool, "detail": str}} to OUT. Importable:
`run(url, scenarios=None) -> dict` returns the same map, for pytest.

The suite (and a Node 22 runtime, which it requires) live in
<repo>/.build/conformance, installed by install.sh beside this file; `run`
calls install.sh itself when they are missing. Results are read from the
suite's own machine-readable output: `server ... -o DIR` writes
DIR/server-<scenario>-<timestamp>/checks.json, a list of checks whose
`status` is SUCCESS, FAILURE, WARNING or INFO. As in the suite's own exit
code, a scenario passes when it produced checks and none is a FAILURE;
warnings are reported in the detail only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PREFIX = REPO / ".build" / "conformance"
NODE = PREFIX / "node_modules" / "node" / "bin" / "node"
SUITE_JS = PREFIX / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
INSTALL_SH = HERE / "install.sh"
EXPECTED_FAILURES = HERE / "expected-failures.txt"

INSTALL_TIMEOUT = 900  # s; a cold npm install of node@22 + the suite
LIST_TIMEOUT = 60  # s
SCENARIO_TIMEOUT = 90  # s per scenario; the slowest (server-sse-polling) waits at most ~15 s by design
DETAIL_MAX = 400  # chars

# createResultDir(): `server-<scenario>-<ISO timestamp with ':' and '.' replaced by '-'>`
RESULT_DIR_RE = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
# `list --server` prints `  - <name> [<spec versions>]`
LIST_LINE_RE = re.compile(r"^\s*-\s+(?P<name>\S+)")


def ensure_installed() -> None:
    """Install the suite and Node 22 (idempotent) if either is missing."""
    if NODE.is_file() and SUITE_JS.is_file():
        return
    print(f"conformance suite missing; running {INSTALL_SH}", file=sys.stderr)
    subprocess.run(["bash", str(INSTALL_SH)], check=True, timeout=INSTALL_TIMEOUT, stdout=sys.stderr)


def _suite(*args: str, timeout: float, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One bounded invocation of the suite's CLI under Node 22."""
    return subprocess.run(
        [str(NODE), str(SUITE_JS), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,  # the caller reads the exit status and the report
        env={**os.environ, "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"},
    )


def list_server_scenarios() -> list[str]:
    """Every server scenario the installed suite knows, active and pending alike."""
    ensure_installed()
    with tempfile.TemporaryDirectory(prefix="conformance-list-") as tmp:
        proc = _suite("list", "--server", timeout=LIST_TIMEOUT, cwd=Path(tmp))
    if proc.returncode != 0:
        raise RuntimeError(f"conformance list failed ({proc.returncode}): {proc.stderr.strip()[-DETAIL_MAX:]}")
    names = [m["name"] for line in proc.stdout.splitlines() if (m := LIST_LINE_RE.match(line))]
    if not names:
        raise RuntimeError(f"conformance list printed no scenarios: {proc.stdout[-DETAIL_MAX:]!r}")
    return names


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def summarize_checks(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Verdict for one scenario from its checks.json content."""
    by_status = {s: [c for c in checks if c.get("status") == s] for s in ("SUCCESS", "FAILURE", "WARNING")}
    ok, failed, warned = (len(by_status[s]) for s in ("SUCCESS", "FAILURE", "WARNING"))
    if not checks:
        return {"passed": False, "detail": "scenario produced no checks"}
    if failed:
        reasons = "; ".join(
            f"{c.get('id')}: {c.get('errorMessage') or c.get('description')}" for c in by_status["FAILURE"]
        )
        return {"passed": False, "detail": _shorten(f"{failed} failed, {ok} passed: {reasons}")}
    detail = f"{ok}/{ok + failed} checks passed"
    if warned:
        detail += f", {warned} warning(s): " + "; ".join(
            f"{c.get('id')}: {c.get('errorMessage') or c.get('description')}" for c in by_status["WARNING"]
        )
    return {"passed": True, "detail": _shorten(detail)}


def _collect(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """scenario -> checks, from every result directory the suite wrote."""
    found: dict[str, list[dict[str, Any]]] = {}
    for checks_file in sorted(out_dir.glob("server-*/checks.json")):
        match = RESULT_DIR_RE.match(checks_file.parent.name)
        if match is None:
            continue
        try:
            found[match["scenario"]] = json.loads(checks_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            found[match["scenario"]] = [
                {"id": "checks.json", "status": "FAILURE", "errorMessage": f"unreadable: {exc}"}
            ]
    return found


def run_scenario(url: str, scenario: str, timeout: float = SCENARIO_TIMEOUT) -> dict[str, Any]:
    """Run one scenario in its own suite process and judge it from checks.json."""
    ensure_installed()
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        out = Path(tmp) / "results"
        try:
            proc = _suite(
                "server", "--url", url, "--scenario", scenario, "-o", str(out), timeout=timeout, cwd=Path(tmp)
            )
        except subprocess.TimeoutExpired:
            return {"passed": False, "detail": f"suite timed out after {timeout:g}s"}
        checks = _collect(out).get(scenario) if out.is_dir() else None
    if checks is None:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-DETAIL_MAX:]
        return {"passed": False, "detail": _shorten(f"no checks.json (exit {proc.returncode}): {tail}")}
    verdict = summarize_checks(checks)
    # The suite exits 1 exactly when a check FAILED; disagreeing means we misread it.
    if verdict["passed"] != (proc.returncode == 0):
        return {
            "passed": False,
            "detail": _shorten(f"suite exit {proc.returncode} contradicts checks: {verdict['detail']}"),
        }
    return verdict


def run(
    url: str, scenarios: list[str] | None = None, *, timeout: float = SCENARIO_TIMEOUT
) -> dict[str, dict[str, Any]]:
    """Run `scenarios` (default: every server scenario) against `url`.

    Returns {scenario: {"passed": bool, "detail": str}} in suite order.
    Each scenario gets its own bounded suite process, so one hang or crash
    cannot hide the others' results.
    """
    known = list_server_scenarios()
    wanted = known if scenarios is None else list(scenarios)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ValueError(f"unknown server scenario(s) {unknown}; the suite has {known}")
    return {scenario: run_scenario(url, scenario, timeout) for scenario in wanted}


def load_expected_failures(path: Path = EXPECTED_FAILURES) -> dict[str, str]:
    """scenario -> reason, from `name  # reason` lines (blank and #-only lines ignored)."""
    expected: dict[str, str] = {}
    if not path.is_file():
        return expected
    for line in path.read_text().splitlines():
        name, _, reason = line.partition("#")
        if name.strip():
            expected[name.strip()] = reason.strip()
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="MCP endpoint, e.g. http://127.0.0.1:8000/mcp")
    parser.add_argument("--scenario", action="append", help="scenario to run (repeatable; default: all)")
    parser.add_argument("--json", required=True, type=Path, help="where to write the results map")
    parser.add_argument("--timeout", type=float, default=SCENARIO_TIMEOUT, help="seconds per scenario")
    parser.add_argument(
        "--expected-failures",
        type=Path,
        help="exit 0 when exactly the scenarios listed there fail (default: exit 0 only if all pass)",
    )
    opts = parser.parse_args(argv)

    results = run(opts.url, opts.scenario, timeout=opts.timeout)
    opts.json.write_text(json.dumps(results, indent=2) + "\n")

    width = max(map(len, results))
    for scenario, verdict in results.items():
        print(f"{scenario:<{width}}  {'PASS' if verdict['passed'] else 'FAIL'}  {verdict['detail']}")
    failed = {s for s, v in results.items() if not v["passed"]}
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")

    if opts.expected_failures is None:
        return 1 if failed else 0
    expected = set(load_expected_failures(opts.expected_failures)) & set(results)
    for scenario in sorted(failed - expected):
        print(f"unexpected failure: {scenario}", file=sys.stderr)
    for scenario in sorted(expected - failed):
        print(f"expected failure now passes (update {opts.expected_failures.name}): {scenario}", file=sys.stderr)
    return 0 if failed == expected else 1


if __name__ == "__main__":
    sys.exit(main())
