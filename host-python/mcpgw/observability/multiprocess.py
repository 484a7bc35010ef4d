"""Metrics with several workers (`mcpgw serve --workers N`): the supervisor's side of
prometheus-client's multiprocess mode (metrics.py is each worker's side).

With more than one worker and metrics on, the supervisor gives the workers a fresh directory of
their own in PROMETHEUS_MULTIPROC_DIR (unless the operator set one), so a scrape answered by any
worker sums them all; it marks a worker that exits as dead (its gauges leave the sums, its
counts stay) and removes the directory it made when it stops."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable

from ..settings import Settings
from .metrics import MULTIPROC_ENV, multiprocess_dir

log = logging.getLogger("mcpgw.metrics")


def prepare(settings: Settings) -> Callable[[], None] | None:
    """Before the workers start: the shared directory (made here unless set); returns what
    removes the directory made here (None: nothing to remove)."""
    if settings.metrics == "off" or settings.workers < 2:
        return None
    given = multiprocess_dir()
    if given is not None:
        log.info("metrics: %d workers share %s=%s (it must be empty at start)", settings.workers, MULTIPROC_ENV, given)
        return None
    path = tempfile.mkdtemp(prefix="mcpgw-metrics-")
    os.environ[MULTIPROC_ENV] = path  # the workers inherit it
    log.info("metrics: %d workers share %s (multiprocess mode; removed at exit)", settings.workers, path)

    def remove() -> None:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)

    return remove


def worker_exited(pid: int) -> None:
    """A worker is gone (it exited or was killed): its live gauges no longer count."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # unannotated
