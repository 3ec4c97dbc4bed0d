"""A clock for real `RaftNode`s that a test moves forward instead of waiting: `time.monotonic`
plus an offset.

A test hands `for_node(i)` to each node (its `clock`), then `advance`s the offset to let a
lease's TTL pass on the nodes' clock at once, and `ticked(i)` waits until node i has run a tick
on the moved clock. Nothing is measured in wall time; real time still flows underneath, so a
test leaves a few seconds of it to spare before any deadline it must not reach.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from tests.tools.poll import wait_for_async


class SteppedClock:
    """`time.monotonic` plus `offset`; counts each node's reads."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.reads: Counter[int] = Counter()

    def for_node(self, i: int) -> Callable[[], float]:
        """Node `i`'s clock (its reads counted apart)."""

        def now() -> float:
            self.reads[i] += 1
            return time.monotonic() + self.offset

        return now

    def advance(self, seconds: float) -> None:
        """Move every node's clock `seconds` forward."""
        self.offset += seconds

    async def ticked(self, i: int) -> None:
        """Until node `i` has read the clock three more times: its tick loop reads it before
        and after each tick's sleep and expires leases right after the second read, without
        yielding, so by then a full tick has run on the clock as it is now."""
        seen = self.reads[i]
        await wait_for_async(lambda: self.reads[i] >= seen + 3, what=f"node {i} to tick")
