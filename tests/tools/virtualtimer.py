"""A `hamgr.dcs.common.Timer` on virtual time: `sleep` moves the clock instead of waiting.

A test hands it to the code under test (a `Deadline`, a `KvSession` or a backend's `RaftDcs` /
`EtcdDcs`, which pass it on to their transport, `poll_for_change`, a test `FaultProxy`) and then
reads, on this clock, how long the code let pass before it gave up, or that it paused at all:
exact, and without waiting for it or measuring wall time.
"""

from __future__ import annotations

import asyncio


class VirtualTimer:
    """Starts at 0.0; each `sleep(s)` adds `s` (and yields to the event loop once)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)
