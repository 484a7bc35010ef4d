"""Per-upstream call counters for /health and the operator console: calls relayed, how many
failed (the upstream answered an error, timed out or went away), and latency percentiles over
the most recent calls (a bounded window: memory does not grow with traffic)."""

from __future__ import annotations

from collections import deque
from typing import Any

WINDOW = 256  # latencies kept per upstream


class CallStats:
    def __init__(self) -> None:
        self.total = 0
        self.errors = 0
        self._recent: deque[float] = deque(maxlen=WINDOW)

    def record(self, seconds: float, ok: bool) -> None:
        self.total += 1
        if not ok:
            self.errors += 1
        self._recent.append(seconds)

    def health(self) -> dict[str, Any]:
        recent = sorted(self._recent)
        n = len(recent)
        return {
            "total": self.total,
            "errors": self.errors,
            "latency_ms_p50": round(recent[n // 2] * 1000, 2) if n else None,
            "latency_ms_p90": round(recent[min(n - 1, n * 9 // 10)] * 1000, 2) if n else None,
        }
