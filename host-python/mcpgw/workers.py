"""`mcpgw serve --workers N`: N gateway processes serving one port.

The process the operator starts becomes a small **supervisor**; it never serves a request:

- it reserves the port: a socket bound with `SO_REUSEPORT` and never listening (so port 0
  resolves once, and no other program takes the port while a worker restarts);
- it starts N **workers**, each `python -m mcpgw.cli` with the operator's own arguments and
  environment plus its slot in `_MCPGW_WORKER` (not a setting); each is a complete gateway
  that binds the same address with `SO_REUSEPORT` and listens, so the kernel spreads new
  connections over the workers by a hash of the connection's addresses and ports (an even
  spread, which one shared accept queue does not give: an event loop that wakes first accepts
  everything waiting);
- a worker tells the supervisor it is serving (one byte on a pipe). Until every worker has
  served once, a worker that exits before serving is a start-up failure (a bad setting or
  config fails every worker the same way): the supervisor stops the others and exits with its
  code. A worker that dies later is logged and started again in its slot (at most once a
  second; a restart that fails before serving is retried after 1, 2, 4 ... up to 30 s);
- SIGTERM or SIGINT to the supervisor is passed to every worker as one SIGTERM (workers run in
  their own process group, so Ctrl-C in a terminal does not also reach them: a second signal
  would make uvicorn skip the drain); each drains as a single process does (running requests
  get `shutdown_grace_s`, streams close with `retry`); what is still running
  `shutdown_grace_s` + 10 s later is killed;
- every worker holds the read end of a pipe the supervisor never writes: if the supervisor is
  killed, the pipe ends and the workers drain and exit instead of serving on without it.

Workers share nothing but the port and Redis (`MCPGW_REDIS_URL`, required above one worker):
a connection is served by one worker from its first byte to its last.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .observability import multiprocess as shared_metrics
from .settings import Settings

log = logging.getLogger("mcpgw.workers")

ENV = "_MCPGW_WORKER"  # index,count,port,lifeline fd,ready fd: set by the supervisor only
RESTART_MIN_INTERVAL_S = 1.0  # a slot is restarted at most this often
RESTART_MAX_BACKOFF_S = 30.0  # after restarts that failed before serving, the longest wait
POLL_S = 0.1
KILL_AFTER_GRACE_S = 10.0  # beyond shutdown_grace_s, what a worker may take to exit on SIGTERM


@dataclass(frozen=True)
class Slot:
    """This process's place among the supervisor's workers."""

    index: int  # 1..count
    count: int
    port: int
    lifeline_fd: int
    ready_fd: int


def this_worker() -> Slot | None:
    """The slot the supervisor gave this process, or None when it is not a worker."""
    raw = os.environ.get(ENV)
    if not raw:
        return None
    index, count, port, lifeline, ready = (int(v) for v in raw.split(","))
    return Slot(index, count, port, lifeline, ready)


def identity() -> dict[str, int]:
    """For `/health` → `process` and the start-up log: which process answers, of how many."""
    slot = this_worker()
    return {"pid": os.getpid(), "worker": slot.index if slot else 1, "workers": slot.count if slot else 1}


def refusal(settings: Settings) -> str | None:
    """Why `--workers N` must not start, or None."""
    if settings.workers > 1 and not settings.redis_url:
        return (
            f"refusing --workers {settings.workers} without MCPGW_REDIS_URL: each process would keep its own "
            "sessions, and a request reaching another process would not find its session (404). Set --redis-url "
            "(docs/scale-out.md) or run one worker"
        )
    return None


def _address(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return family, address


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family, address = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def listening_socket(host: str, slot: Slot) -> socket.socket:
    """The worker's own socket on the shared port (uvicorn calls listen on it)."""
    return _reuseport_socket(host, slot.port)


def notify_ready(slot: Slot) -> None:
    try:
        os.write(slot.ready_fd, b"r")
        os.close(slot.ready_fd)
    except OSError:
        pass  # the supervisor is gone; the lifeline ends this worker


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_fd = -1
        self.ready = False
        self.started_at = 0.0
        self.failed_starts = 0  # restarts in a row that exited before serving
        self.exited_at: float | None = None  # when the supervisor saw this instance gone


class Supervisor:
    def __init__(self, settings: Settings, argv: list[str]) -> None:
        self.settings = settings
        self.argv = argv
        self.count = settings.workers
        self.stopping = False
        self.started_all = False  # every worker has served once: later failures are restarted
        self.reserved = _reuseport_socket(settings.host, settings.port)
        self.port = self.reserved.getsockname()[1]
        self.lifeline_r, self.lifeline_w = os.pipe()
        self.workers = [_Worker(i + 1) for i in range(self.count)]
        # A 2026-07-28 requestState must verify on every worker (a retry may reach any): without
        # MCPGW_REQUEST_STATE_KEY the supervisor gives its workers one random key of its own.
        self.shared_env = {} if settings.request_state_key else {"MCPGW_REQUEST_STATE_KEY": secrets.token_urlsafe(32)}

    def start(self, worker: _Worker) -> None:
        ready_r, ready_w = os.pipe()
        os.set_blocking(ready_r, False)
        slot = f"{worker.index},{self.count},{self.port},{self.lifeline_r},{ready_w}"
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "mcpgw.cli", *self.argv],
            env={**os.environ, **self.shared_env, ENV: slot},
            pass_fds=(self.lifeline_r, ready_w),
            process_group=0,  # the terminal's Ctrl-C reaches the supervisor only
        )
        os.close(ready_w)
        worker.ready_fd, worker.ready, worker.started_at, worker.exited_at = ready_r, False, time.monotonic(), None

    def _check_ready(self, worker: _Worker) -> None:
        if worker.ready or worker.ready_fd < 0:
            return
        try:
            got = os.read(worker.ready_fd, 1)
        except BlockingIOError:
            return
        if got:
            worker.ready, worker.failed_starts = True, 0
            assert worker.proc is not None
            log.info("worker %d/%d (pid %d) serving", worker.index, self.count, worker.proc.pid)
            if not self.started_all and all(w.ready for w in self.workers):
                self.started_all = True
                log.info("all %d workers serving on port %d", self.count, self.port)
        self._close_ready(worker)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("%s: draining %d workers", signal.Signals(signum).name, self.count)
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        log.info(
            "mcpgw supervisor (pid %d): %d workers on http://%s:%d%s/mcp, each its own process (SO_REUSEPORT)",
            os.getpid(),
            self.count,
            self.settings.host,
            self.port,
            self.settings.path_prefix,
        )
        if self.shared_env:
            log.info("requestState key: MCPGW_REQUEST_STATE_KEY unset; one generated here, the same in every worker")
        code = 0
        remove_metrics_dir = shared_metrics.prepare(self.settings)  # before any worker starts
        try:
            for worker in self.workers:
                self.start(worker)
            while not self.stopping:
                for worker in self.workers:
                    self._check_ready(worker)
                    assert worker.proc is not None
                    exit_code = worker.proc.poll()
                    if exit_code is None or self.stopping:
                        continue
                    self._check_ready(worker)  # it may have become ready, then died
                    if not worker.ready and not self.started_all:
                        log.error(
                            "worker %d exited with %s during start-up: stopping (see its log above)",
                            worker.index,
                            _describe(exit_code),
                        )
                        self._close_ready(worker)
                        self.stopping = True
                        code = exit_code if exit_code > 0 else 1
                        break
                    if worker.exited_at is None:
                        worker.exited_at = time.monotonic()
                        shared_metrics.worker_exited(worker.proc.pid)
                        if worker.ready:
                            log.warning(
                                "worker %d (pid %d) exited with %s: starting it again (its running requests are "
                                "lost; its sessions continue on the other workers)",
                                worker.index,
                                worker.proc.pid,
                                _describe(exit_code),
                            )
                        else:  # a restart that failed before serving
                            worker.failed_starts += 1
                            log.error(
                                "worker %d exited with %s before serving: retrying in %g s",
                                worker.index,
                                _describe(exit_code),
                                self._backoff(worker),
                            )
                    due = max(worker.started_at + RESTART_MIN_INTERVAL_S, worker.exited_at + self._backoff(worker))
                    if time.monotonic() >= due:
                        self.start(worker)
                time.sleep(POLL_S)
        finally:
            self._stop_all()
            if remove_metrics_dir is not None:
                remove_metrics_dir()
        return code

    @staticmethod
    def _backoff(worker: _Worker) -> float:
        """After restarts that failed before serving: 1, 2, 4 ... 30 s; else none."""
        if worker.failed_starts == 0:
            return 0.0
        return float(min(RESTART_MAX_BACKOFF_S, 2 ** (worker.failed_starts - 1)))

    def _stop_all(self) -> None:
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_s + KILL_AFTER_GRACE_S
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not exit after SIGTERM: killing it", proc.pid)
                proc.kill()
                proc.wait()
        for worker in self.workers:
            self._close_ready(worker)
        os.close(self.lifeline_w)
        os.close(self.lifeline_r)
        self.reserved.close()
        log.info("all workers stopped")


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def supervise(settings: Settings, argv: list[str]) -> int:
    try:
        supervisor = Supervisor(settings, argv)
    except OSError as exc:
        log.error("cannot bind %s:%d: %s", settings.host, settings.port, exc)
        return 1
    return supervisor.run()
