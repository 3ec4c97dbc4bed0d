"""Which election-timer ticks a Raft node applies, and when its timer wakes (issue 15).

Pure bookkeeping, no clock of its own: the node passes the time of each event. Ticks lie on a
fixed grid (tick n is due at `origin + n * interval`). Most ticks of a follower of a live
leader do nothing but count toward its election timeout (`RaftCore.idle_ticks`), so the timer
need not wake for each: it wakes for the last of them, the *acting* tick (the one that may
campaign or end `leader_in_touch`), and the counting ticks due by the time a message arrives
are applied before the message is stepped, so the core sees the ticks it would have seen with
one wake per tick, in the same order.

A deferral must not make a late event loop count time it did not live through. With one wake
per tick, a loop that was stalled (a stopped process, an overloaded host, a clock that jumped)
counted one tick for the late wake and skipped the rest; a follower whose leader's heartbeats
waited in a socket buffer during the stall did not campaign. Deferred ticks hide when the
stall began, so the rule is stricter, never looser:

- an event after the timer's wake time (the timer should have run and did not) is late: it
  applies one tick and skips every other tick due, whatever was deferred before;
- only the timer, waking on time, applies the acting tick; a message applies the counting
  ticks before it and leaves the acting tick to the timer (a heartbeat then resets the count).

The cost is that a stall during a leaderless stretch delays that follower's campaign by up to
an election timeout; elections stay as safe as ever (Raft needs no timing for safety).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TickTake:
    """What an event does with the ticks due: `apply` them in a row, and `skipped` ones that a
    late loop missed and that never count."""

    apply: int
    skipped: int


NOTHING = TickTake(0, 0)

_ROUNDING = 1e-6
"""A millionth of a tick: more than float rounding of `origin + n * interval`, far less than
any timer's own error."""


class TickSchedule:
    """The ticks passed so far and the tick the timer wakes for (module doc)."""

    __slots__ = ("interval", "origin", "passed", "wake_tick")

    def __init__(self, origin: float, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"tick interval must be positive, got {interval!r}")
        self.origin = origin
        self.interval = interval
        self.passed = 0
        """Ticks accounted for: applied, or skipped by a late loop."""
        self.wake_tick = 1
        """The tick the timer wakes for; those before it are deferred counting ticks."""

    def due_by(self, now: float) -> int:
        """The last tick due at `now` (0 before the first). A timer set for `time_of(n)` and
        woken then sees tick n due, despite rounding (a virtual clock wakes at exactly that
        time, and a tick found not yet due there would be waited for again forever)."""
        return max(0, math.floor((now - self.origin) / self.interval + _ROUNDING))

    def time_of(self, tick: int) -> float:
        """When `tick` is due."""
        return self.origin + tick * self.interval

    @property
    def deferring(self) -> bool:
        """Whether counting ticks wait for a later wake (a message may have to apply them)."""
        return self.wake_tick > self.passed + 1

    def on_timer(self, now: float) -> TickTake:
        """The timer woke at `now`: on time it applies every tick due, the acting one too."""
        return self._take(now, acting=True)

    def on_message(self, now: float) -> TickTake:
        """A message is about to be stepped at `now`: the counting ticks due before it."""
        return self._take(now, acting=False)

    def _take(self, now: float, *, acting: bool) -> TickTake:
        due = self.due_by(now)
        if due <= self.passed:
            return NOTHING
        if due > self.wake_tick:
            skipped = due - self.passed - 1
            self.passed = due
            return TickTake(1, skipped)
        last = due if acting else min(due, self.wake_tick - 1)
        count = max(0, last - self.passed)
        self.passed += count
        return TickTake(count, 0)

    def rearm(self, idle_ticks: int) -> bool:
        """Aim the timer at the last of the next `idle_ticks` ticks (`RaftCore.idle_ticks`);
        True when that moved its wake tick (the timer must be set again)."""
        if idle_ticks < 1:
            raise ValueError(f"idle_ticks must be at least 1, got {idle_ticks}")
        wake = self.passed + idle_ticks
        if wake == self.wake_tick:
            return False
        self.wake_tick = wake
        return True
