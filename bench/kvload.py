"""Shared pieces of the store benchmarks: timed load with N concurrent callers, and its figures.

Figures are printed, never asserted: benchmarks measure, tests check behaviour.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

VALUE = os.urandom(256)


@dataclass
class Figures:
    """Throughput and latency of one measurement."""

    callers: int
    ops: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float

    def line(self, label: str) -> str:
        """One aligned line for the report."""
        return (
            f"{label:<34} callers={self.callers:<3} ops/s={self.ops_per_s:>8.0f} "
            f"p50={self.p50_ms:6.2f}ms p99={self.p99_ms:7.2f}ms"
        )

    def to_json(self) -> str:
        """For member processes reporting to the driver."""
        return json.dumps(asdict(self))


def figures(callers: int, latencies: list[float], seconds: float) -> Figures:
    """Summarise latencies (seconds) gathered over `seconds`."""
    if not latencies:
        return Figures(callers, 0, seconds, 0.0, float("nan"), float("nan"))
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Figures(
        callers,
        len(ordered),
        seconds,
        len(ordered) / seconds,
        statistics.median(ordered) * 1000,
        p99 * 1000,
    )


async def run_async(
    op: Callable[[int, int], Awaitable[object]], callers: int, seconds: float
) -> Figures:
    """Run `op(caller, n)` from `callers` coroutines for `seconds`; each call is timed."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def caller(c: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            await op(c, n)
            latencies.append(time.monotonic() - t0)
            n += 1

    started = time.monotonic()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    return figures(callers, latencies, time.monotonic() - started)


def run_threads(op: Callable[[int, int], object], callers: int, seconds: float) -> Figures:
    """Run blocking `op(caller, n)` from `callers` threads for `seconds`."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller(c: int) -> None:
        n = 0
        mine = []
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            op(c, n)
            mine.append(time.monotonic() - t0)
            n += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=caller, args=(c,), daemon=True) for c in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return figures(callers, latencies, time.monotonic() - started)
