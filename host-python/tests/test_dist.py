"""`make dist`: the wheel installed into a fresh virtualenv, outside the repository, serves with
the wasm edge active and the operator console present; the sdist carries the same files.

The install is a plain `pip install <wheel>` (dependencies from the package index, as an operator
would; a few seconds with pip's cache, bounded at 4 minutes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from conftest import REPO, stop_process

DIST = REPO / "dist"
TOKEN = "dist-test-admin-token-0123456789"
SHIPPED = (
    "mcpgw/edge/wasm/transport_core.wasm",
    "mcpgw/edge/vectors/paths.json",
    "mcpgw/console/static/index.html",
    "mcpgw/console/static/app.js",
    "mcpgw/console/static/style.css",
)


def _one(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if len(found) != 1:
        pytest.fail(f"expected one {pattern} in {DIST}, found {[p.name for p in found]}: run `make dist`")
    return found[0]


@pytest.fixture(scope="module")
def wheel() -> Path:
    return _one("mcpgw-*.whl")


def test_the_wheel_and_the_sdist_carry_the_component_vectors_and_console(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert all(f in names for f in SHIPPED), sorted(set(SHIPPED) - names)
    with tarfile.open(_one("mcpgw-*.tar.gz")) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert all(f in members for f in SHIPPED), sorted(set(SHIPPED) - members)


def test_the_installed_wheel_serves_with_the_wasm_edge_and_the_console(wheel, tmp_path):
    # Nothing of this process's Python set-up leaks in (a PYTHONPATH naming the repository would
    # make pip think mcpgw is installed already, and the gateway import the repository's copy).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPGW_", "PYTHON", "VIRTUAL_ENV"))}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import mcpgw; print(mcpgw.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed copy, not the repository's

    env.update({"MCPGW_HOST": "127.0.0.1", "MCPGW_PORT": "0", "MCPGW_EDGE": "wasm", "MCPGW_ADMIN_TOKEN": TOKEN})
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(venv / "bin" / "mcpgw"), "serve"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        url = _wait_bound(proc, log_path)
        health = _wait_health(url)
        assert health["edge"]["backend"] == "wasm", health["edge"]
        assert re.fullmatch(r"\d+ vectors passed", health["edge"]["component"]["self_test"]), health["edge"]
        page = httpx.get(url + "/admin/")
        assert page.status_code == 200 and "<title>mcpgw console</title>" in page.text
        assert httpx.get(url + "/admin/console/app.js").status_code == 200
        assert httpx.get(url + "/admin/console/overview").status_code == 401
        overview = httpx.get(url + "/admin/console/overview", headers={"authorization": f"Bearer {TOKEN}"})
        assert overview.status_code == 200 and overview.json()["health"]["edge"]["backend"] == "wasm"
        log_text = log_path.read_text(errors="replace")
        assert "edge backend: wasm" in log_text and str(venv) in log_text  # the component it shipped
        assert "operator console on /admin/" in log_text
    finally:
        stop_process(proc)


def _wait_bound(proc: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if found := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", text):
            return f"http://127.0.0.1:{found.group(1)}"
        if proc.poll() is not None:
            pytest.fail(f"mcpgw serve exited with {proc.returncode}:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"mcpgw serve did not start:\n{log_path.read_text(errors='replace')}")


def _wait_health(url: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url + "/health", timeout=2).json()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
