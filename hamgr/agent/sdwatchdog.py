"""Feed systemd's watchdog only while the HA loop makes progress.

systemd restarts the agent when ``WATCHDOG=1`` stops for ``WatchdogSec``. Pinging from a plain
timer would prove only that the event loop runs; the HA loop could be stuck on an await that
never returns and the timer would go on. So the HA loop calls :meth:`LoopWatchdog.beat` at the
end of every cycle, and :meth:`LoopWatchdog.run` (a task on the same event loop) sends
``WATCHDOG=1`` every ``period`` only while the last beat is at most ``stale_after`` old. Either
way of hanging (the event loop blocked, or the loop's coroutine stuck) stops the pings and
systemd restarts the agent, at most ``stale_after + period + WatchdogSec`` after the last cycle.

Some steps of a cycle are long by nature and bounded by their own timeout (a base backup, a
rewind, PostgreSQL's start). Around them the loop declares the bound with
``with watchdog.allow(timeout):``, which keeps the pings going for that long and no longer.

Wiring (the agent owns the notifier, the loop calls ``beat``)::

    dog = LoopWatchdog.for_notifier(notifier, stale_after=settings.ttl)   # None: no watchdog
    task = asyncio.create_task(dog.run(stop)) if dog else None
    ...  # in HaLoop.cycle(), at its end:  if dog: dog.beat()

An agent restarted this way leaves PostgreSQL and the fencer running (the unit uses
``KillMode=process``): the fencer's last deadline still holds, and the new agent takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator

from hamgr.agent.sdnotify import Notifier

log = logging.getLogger(__name__)


class LoopWatchdog:
    """Sends ``WATCHDOG=1`` through ``notifier`` every ``period`` seconds while the last
    :meth:`beat` is at most ``stale_after`` seconds old (``clock`` is monotonic).

    The first cycle gets ``stale_after`` from construction. ``stale_after`` may be changed at
    any time (the loop's ttl can change at run time).
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        period: float,
        stale_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"period must be > 0 seconds, got {period!r}")
        if not (math.isfinite(stale_after) and stale_after > 0):
            raise ValueError(f"stale_after must be > 0 seconds, got {stale_after!r}")
        self.notifier = notifier
        self.period = period
        self.stale_after = stale_after
        self._clock = clock
        self._last_beat = clock()
        self._allowed_until = -math.inf
        self._stalled = False
        self.sent = 0

    @classmethod
    def for_notifier(
        cls,
        notifier: Notifier | None,
        *,
        stale_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> LoopWatchdog | None:
        """A watchdog feeder at half systemd's timeout; None when there is no notifier or
        systemd set no watchdog (``WatchdogSec=`` absent)."""
        if notifier is None:
            return None
        period = notifier.watchdog_interval()
        if period is None:
            return None
        return cls(notifier, period=period, stale_after=stale_after, clock=clock)

    def beat(self) -> None:
        """The HA loop completed a cycle."""
        self._last_beat = self._clock()
        if self._stalled:
            log.info("the HA loop runs again: feeding systemd's watchdog")
            self._stalled = False

    @contextlib.contextmanager
    def allow(self, seconds: float) -> Iterator[None]:
        """Around a step bounded by its own timeout of ``seconds``: the pings go on for that
        long (plus ``stale_after``); leaving the block counts as a beat."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        previous = self._allowed_until
        self._allowed_until = max(previous, self._clock() + seconds)
        try:
            yield
        finally:
            self._allowed_until = previous
            self.beat()

    def alive(self, now: float | None = None) -> bool:
        """Whether the loop counts as making progress at ``now`` (default: the clock)."""
        now = self._clock() if now is None else now
        return now - max(self._last_beat, self._allowed_until) <= self.stale_after

    def tick(self) -> bool:
        """One feeding step: ping when the loop is alive; True when a ping was sent."""
        now = self._clock()
        if not self.alive(now):
            if not self._stalled:
                age = now - self._last_beat
                log.error(
                    "the HA loop has not completed a cycle for %.1f s: no longer feeding "
                    "systemd's watchdog (the agent will be restarted)",
                    age,
                )
                self.notifier.status(f"HA loop stalled for {age:.0f} s: awaiting restart")
                self._stalled = True
            return False
        if self.notifier.watchdog():
            self.sent += 1
            return True
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``period`` until ``stop`` is set."""
        while not stop.is_set():
            self.tick()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period)
