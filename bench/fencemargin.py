"""How close a primary came to its own fence: its lease margin, sampled at a high rate.

The agent publishes `fence_remaining` in GET /patroni: its lease deadline (`fence_at`, the
instant its fencer kills PostgreSQL unless a keepalive succeeds first) minus now, computed when
it answers. A thread asks every `interval` seconds and records (CLOCK_MONOTONIC instant of the
answer, margin); a request that fails or a member without a deadline records None. The margin
is what the agent believes; its fencer holds the same deadline, armed after each keepalive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

MAX_SECONDS = 900.0
"""A sampler stops by itself after this long, whatever happens to the benchmark."""

Probe = Callable[[], tuple[int, Any]]


class FenceMarginSampler:
    """A daemon thread polling `probe` (GET /patroni on one member) until `stop()`."""

    def __init__(self, probe: Probe, interval: float = 0.02) -> None:
        self.probe = probe
        self.interval = interval
        self.samples: list[tuple[float, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fence-margin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (idempotent) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        ends = time.monotonic() + MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < ends:
            status, body = self.probe()
            answered = status == 200 and isinstance(body, dict)
            margin = body.get("fence_remaining") if answered else None
            value = float(margin) if isinstance(margin, int | float) else None
            self.samples.append((time.monotonic(), value))
            self._stop.wait(self.interval)

    def smallest(self, after: float, until: float = float("inf")) -> float | None:
        """The smallest margin answered in [after, until]; None when none was."""
        found = [m for t, m in self.samples if after <= t <= until and m is not None]
        return min(found) if found else None

    def unanswered(self, after: float, until: float = float("inf")) -> int:
        """How many samples in [after, until] got no margin (no answer or no deadline)."""
        return sum(1 for t, m in self.samples if after <= t <= until and m is None)
