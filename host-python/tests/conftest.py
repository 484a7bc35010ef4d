"""Shared fixtures: the built component, its test-only variants, the vectors, a real gateway process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from mcpgw.edge.backend import PACKAGED_COMPONENT
from mcpgw.edge.vectors import load_cases
from mcpgw.edge.wasm_core import WasmComponent
from mcpgw.settings import Settings

REPO = Path(__file__).resolve().parents[2]
VECTORS_DIR = REPO / "tests" / "vectors"
VARIANTS_DIR = Path(os.environ.get("MCPGW_TEST_VARIANTS", REPO / ".build" / "variants"))
CASES = load_cases(VECTORS_DIR)

# The production limits of a component instance, as Settings gives them.
LIMITS = {"fuel": Settings().edge_fuel, "memory_bytes": Settings().edge_memory_mb * 1024 * 1024}


def require_file(path: Path, how: str) -> Path:
    # A missing artifact is a broken set-up, not a reason to skip: fail loudly.
    if not path.is_file():
        pytest.fail(f"{path} is missing: {how}")
    return path


@pytest.fixture(scope="session")
def component_path() -> Path:
    return require_file(PACKAGED_COMPONENT, "run `make build` (the Makefile builds and copies the component)")


@pytest.fixture(scope="session")
def component(component_path: Path) -> WasmComponent:
    return WasmComponent.from_file(component_path, **LIMITS)


@pytest.fixture(scope="session")
def faults_component_path() -> Path:
    return require_file(VARIANTS_DIR / "transport_core_faults.wasm", "run `make variants`")


@pytest.fixture(scope="session")
def contract2_component_path() -> Path:
    return require_file(VARIANTS_DIR / "transport_core_contract2.wasm", "run `make variants`")


@pytest.fixture(scope="session")
def v2_component_path() -> Path:
    return require_file(VARIANTS_DIR / "transport_core_v2.wasm", "run `make variants`")


@pytest.fixture(scope="session")
def wrong_component_path() -> Path:
    return require_file(VARIANTS_DIR / "transport_core_wrong.wasm", "run `make variants`")


_BOUND = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class Gateway:
    """A real `mcpgw serve` process on loopback. It binds port 0 and we read the
    port it got from its log: no window for another process to take it."""

    def __init__(self, env: dict[str, str], args: list[str] | None = None):
        self.port = 0
        self.url = ""
        fd, name = tempfile.mkstemp(prefix="mcpgw-test-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log = open(self.log_path, "w+b")  # noqa: SIM115 - held open for the process's lifetime, closed in stop()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        full_env.update({"MCPGW_PORT": "0", "MCPGW_HOST": "127.0.0.1", **env})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcpgw.cli", "serve", *(args or [])],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> Gateway:
        return self.wait_ready_at("/health", timeout)

    def wait_ready_at(self, health_path: str, timeout: float = 60.0) -> Gateway:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            if not self.port:
                bound = _BOUND.search(self.log())
                if bound is None:
                    time.sleep(0.05)
                    continue
                self.port = int(bound.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
            try:
                if httpx.get(self.url + health_path, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not become ready:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_with(self, *needles: str, timeout: float = 20.0) -> str:
        """The log once it holds every one of `needles` (or as it is after `timeout` s): lines a
        request causes after its response has gone out, such as its access line, may be written
        after the client has read the answer."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if all(needle in text for needle in needles) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module", params=["wasm", "python"])
def gateway(request, component_path) -> Gateway:
    """The gateway in each edge mode (wasm is strict: it refuses to start without the component)."""
    gw = Gateway({"MCPGW_EDGE": request.param}).wait_ready()
    gw.mode = request.param
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def gateways(component_path):
    """Gateways by (edge mode, settings), started once and shared by every test that asks for
    the same pair, stopped at the end of the run."""
    started: dict[tuple, Gateway] = {}

    def get(mode: str, **env: str) -> Gateway:
        key = (mode, tuple(sorted(env.items())))
        if key not in started:
            gw = Gateway({"MCPGW_EDGE": mode, **env}).wait_ready()
            gw.mode = mode
            started[key] = gw
        return started[key]

    yield get
    for gw in started.values():
        gw.stop()


@pytest.fixture(params=["wasm", "python"])
def edge_mode(request) -> str:
    return request.param
