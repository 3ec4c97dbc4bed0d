"""Deferred election ticks (`hamgr.raft.server.ticks`, issue 15): which ticks each event applies.

Tables for the schedule alone; then real Raft cores driven on a virtual clock the way `RaftNode`
drives them (timer wakes, messages stepped with the counting ticks due before them), once
deferring and once with one wake per tick, as before issue 15:
- on time, both see the same ticks in the same order: every message sent is the same, at the
  same time, a crashed leader's successor elected at the same tick;
- with members' event loops stalled and the clock jumping (the stepped clock of the node tests,
  a stopped or overloaded host), a live leader's followers never campaign. The change reverted
  in session 7 applied deferred ticks after a jump and made a follower campaign; this finds it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.raft.core.types import Message, MsgType, Role
from hamgr.raft.server.ticks import TickSchedule, TickTake
from tests.raft.harness import Cluster

ELECTION_TICK = 10
HEARTBEAT_TICK = 3


def _aimed_at(wake: int) -> TickSchedule:
    s = TickSchedule(0.0, 1.0)
    s.rearm(wake)
    assert s.wake_tick == wake
    return s


@pytest.mark.parametrize(
    ("wake", "event", "at", "take", "passed"),
    [
        # a follower deferring ticks 1..10, its timer aimed at tick 10
        (10, "message", 0.5, TickTake(0, 0), 0),  # nothing due yet
        (10, "message", 4.2, TickTake(4, 0), 4),  # counting ticks 1-4 before the message
        (10, "message", 10.3, TickTake(9, 0), 9),  # the acting tick is the timer's
        (10, "timer", 10.0, TickTake(10, 0), 10),  # on time: all, the acting one too
        (10, "timer", 9.9999, TickTake(9, 0), 9),  # a hair early: not yet the acting one
        (10, "timer", 11.0, TickTake(1, 10), 11),  # late: one tick, the rest skipped
        (10, "message", 11.5, TickTake(1, 10), 11),  # late, seen by a message: the same
        (10, "timer", 500.0, TickTake(1, 499), 500),  # a clock jump
        # one wake per tick (a leader, a candidate): as before deferring existed
        (1, "timer", 1.0, TickTake(1, 0), 1),
        (1, "message", 1.5, TickTake(0, 0), 0),
        (1, "timer", 3.5, TickTake(1, 2), 3),
    ],
)
def test_which_ticks_an_event_takes(
    wake: int, event: str, at: float, take: TickTake, passed: int
) -> None:
    s = _aimed_at(wake)
    got = s.on_timer(at) if event == "timer" else s.on_message(at)
    assert (got, s.passed) == (take, passed)


@given(st.floats(0.0, 1e6), st.sampled_from([0.1, 0.01, 0.3, 1 / 3, 0.07]), st.integers(1, 10**6))
def test_a_timer_woken_at_the_time_of_its_tick_sees_that_tick_due(
    origin: float, interval: float, tick: int
) -> None:
    """Float rounding must not leave tick n not due at time_of(n): a virtual clock wakes at
    exactly that time, and the node would wait for the same tick again and again."""
    s = TickSchedule(origin, interval)
    assert s.due_by(s.time_of(tick)) == tick


def test_rearm_aims_at_the_last_idle_tick_and_says_when_it_moved() -> None:
    s = TickSchedule(5.0, 0.1)
    assert not s.deferring and s.wake_tick == 1
    assert not s.rearm(1)  # unchanged
    assert s.rearm(10) and s.wake_tick == 10 and s.deferring
    assert s.time_of(10) == pytest.approx(6.0)
    s.on_message(5.45)
    assert s.passed == 4
    assert s.rearm(10) and s.wake_tick == 14  # a heartbeat reset the count
    with pytest.raises(ValueError, match="at least 1"):
        s.rearm(0)
    with pytest.raises(ValueError, match="positive"):
        TickSchedule(0.0, 0.0)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(0.0, 30.0), st.integers(1, ELECTION_TICK)),
        max_size=40,
    )
)
def test_ticks_are_never_counted_twice_and_a_late_event_applies_one(
    events: list[tuple[bool, float, int]],
) -> None:
    """Whatever the events: ticks applied plus skipped are exactly the ticks that became due;
    an event that skips applies one tick; a message never takes the acting tick on time."""
    s = TickSchedule(0.0, 1.0)
    now = 0.0
    for timer, step, idle in events:
        now += step
        before, wake = s.passed, s.wake_tick
        take = s.on_timer(now) if timer else s.on_message(now)
        assert take.apply >= 0 and take.skipped >= 0
        assert s.passed - before == take.apply + take.skipped
        assert s.passed <= max(before, s.due_by(now))
        if take.skipped:
            assert take.apply == 1 and s.passed == s.due_by(now) > wake
        elif not timer:
            assert s.passed < wake
        s.rearm(idle)


# -- cores on a virtual clock ---------------------------------------------------------------


@dataclass
class _Member:
    schedule: TickSchedule
    timer: int = 0  # the pending wake's generation; 0: none
    stalls: list[tuple[float, float]] = field(default_factory=list)


class _Driven:
    """A 3-member cluster of real cores driven like `RaftNode`: one event heap on a virtual
    clock (ticks of 1.0; events at one time in member order), messages delivered after a
    delay drawn from their content. `defer=False` drives with one
    wake per tick (the reference). A member's stall postpones its events to the stall's end,
    in their order, as an event loop that did not run."""

    def __init__(self, seed: int, *, defer: bool, stalls: dict[int, list[tuple[float, float]]]):
        self.defer = defer
        self.c = Cluster(
            [1, 2, 3], election_tick=ELECTION_TICK, heartbeat_tick=HEARTBEAT_TICK, seed=seed
        )
        self.c.campaign(1)
        self.c.deliver()
        assert self.c.leader() == 1
        self.seed = seed
        self.heap: list[tuple[float, int, int, str, Message | int]] = []
        self.seq = itertools.count()
        self.members = {
            i: _Member(TickSchedule(0.0, 1.0), stalls=stalls.get(i, [])) for i in (1, 2, 3)
        }
        self.sent: list[tuple[float, int, int, MsgType, int]] = []
        self.now = 0.0
        self.crashed: set[int] = set()
        for i in self.members:
            self._arm(i)

    def _push(self, at: float, kind: str, member: int, payload: Message | int) -> None:
        heapq.heappush(self.heap, (at, member, next(self.seq), kind, payload))

    def _arm(self, i: int) -> None:
        m = self.members[i]
        idle = self.c.core(i).idle_ticks() if self.defer else 1
        moved = m.schedule.rearm(idle)
        if m.timer and not moved:
            return
        m.timer += 1
        self._push(max(self.now, m.schedule.time_of(m.schedule.wake_tick)), "timer", i, m.timer)

    def _send(self) -> None:
        for msg in self.c.outbox:
            self.sent.append((round(self.now, 6), msg.frm, msg.to, msg.type, msg.term))
            self._push(self.now + self._delay(msg), "message", msg.to, msg)
        self.c.outbox.clear()

    def _delay(self, msg: Message) -> float:
        """A delay drawn from the message itself, so that both drivings, sending the same
        messages, deliver them alike."""
        key = (self.seed, self.now, msg.frm, msg.to, msg.type, msg.term, msg.index, msg.commit)
        return random.Random(repr(key)).uniform(0.05, 0.9)

    def _apply(self, i: int, take: TickTake) -> None:
        self.c.tick(i, take.apply)

    def run(self, until: float, crash: tuple[float, int] | None = None) -> None:
        while self.heap and self.heap[0][0] <= until:
            at, i, seq, kind, payload = heapq.heappop(self.heap)
            if crash is not None and at >= crash[0] and crash[1] not in self.crashed:
                self.crashed.add(crash[1])
                self.c.crash(crash[1])
            if i in self.crashed:
                continue
            m = self.members[i]
            late = next((b for a, b in m.stalls if a <= at < b), None)
            if late is not None:
                heapq.heappush(self.heap, (late, i, seq, kind, payload))
                continue
            self.now = at
            if kind == "timer":
                if payload != m.timer:
                    continue  # re-armed since
                m.timer = 0
                self._apply(i, m.schedule.on_timer(at))
            else:
                assert isinstance(payload, Message)
                if m.schedule.deferring and m.timer:
                    self._apply(i, m.schedule.on_message(at))
                self.c.core(i).step(payload)
                self.c.drive(i)
            self._arm(i)
            self._send()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.one_of(st.none(), st.floats(20.0, 120.0)))
def test_deferring_sees_the_ticks_one_wake_per_tick_sees(seed: int, crash_at: float | None) -> None:
    """On time, deferring changes nothing a core does: the same messages at the same times,
    and with the leader crashed, the same successor at the same tick."""
    crash = None if crash_at is None else (crash_at, 1)
    runs = []
    for defer in (True, False):
        d = _Driven(seed, defer=defer, stalls={})
        d.run(200.0, crash)
        runs.append(d)
    deferred, reference = runs
    assert deferred.sent == reference.sent
    if crash is not None:
        leaders = [d.c.leader() for d in runs]
        assert leaders[0] == leaders[1] and leaders[0] in (2, 3)


def _stall_sets() -> st.SearchStrategy[dict[int, list[tuple[float, float]]]]:
    window = st.tuples(st.floats(5.0, 150.0), st.floats(0.5, 60.0)).map(
        lambda w: (w[0], w[0] + w[1])
    )
    return st.fixed_dictionaries({3: st.lists(window, max_size=3)})


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), _stall_sets(), st.lists(st.floats(5.0, 150.0), max_size=3))
def test_stalls_and_clock_jumps_never_make_a_live_leaders_follower_campaign(
    seed: int, stalls: dict[int, list[tuple[float, float]]], jumps: list[float]
) -> None:
    """A follower stalled on its own, and every member at once (a clock jump of a few
    election timeouts): the leader lives, a quorum hears it, its messages arrive within a tick,
    so no vote is ever asked and no term moves, deferring or not. (Both followers stalled while
    the leader runs on is a partition: the leader rightly steps down.)"""
    for at in jumps:
        for i in (1, 2, 3):
            stalls.setdefault(i, []).append((at, at + 5 * ELECTION_TICK))
    for defer in (True, False):
        d = _Driven(seed, defer=defer, stalls=stalls)
        term = d.c.core(1).term
        d.run(220.0)
        asked = [s for s in d.sent if s[3] in (MsgType.PRE_VOTE, MsgType.VOTE)]
        assert not asked, f"defer={defer}: {asked[:3]}"
        assert d.c.core(1).role == Role.LEADER and d.c.core(1).term == term
