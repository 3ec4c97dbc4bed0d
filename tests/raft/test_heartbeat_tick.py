"""A heartbeat longer than the tick (``RaftConfig.heartbeat_tick``): the leader sends fewer
heartbeats, and its followers still never campaign while it lives. The election timer keeps
its resolution, so a dead leader is replaced as soon as before (issue 15: an idle store member
costs fewer messages and wake-ups without slowing failover)."""

from __future__ import annotations

import pytest

from hamgr.raft.core.types import MsgType, Role
from tests.raft.harness import Cluster

ELECTION_TICK = 10


def _leader_of(c: Cluster) -> int:
    c.campaign(1)
    assert c.leader() == 1
    c.deliver()
    return 1


@pytest.mark.parametrize("heartbeat_tick", [1, 3, 4])
def test_leader_sends_one_heartbeat_per_heartbeat_tick(heartbeat_tick: int) -> None:
    c = Cluster([1, 2, 3], election_tick=ELECTION_TICK, heartbeat_tick=heartbeat_tick)
    leader = _leader_of(c)
    ticks = 6 * ELECTION_TICK
    sent = 0
    for _ in range(ticks):
        c.tick(leader)
        sent += sum(1 for m in c.outbox if m.type == MsgType.HEARTBEAT)
        c.deliver()
        for f in (2, 3):
            c.tick(f)  # followers' clocks run too: they must not campaign
        c.deliver()
    assert sent == 2 * (ticks // heartbeat_tick)
    assert c.leader() == leader
    assert {c.core(f).role for f in (2, 3)} == {Role.FOLLOWER}
    assert {c.core(i).term for i in (1, 2, 3)} == {c.core(leader).term}


@pytest.mark.parametrize("heartbeat_tick", [1, 4])
def test_dead_leader_is_replaced_within_the_same_ticks_whatever_the_heartbeat(
    heartbeat_tick: int,
) -> None:
    c = Cluster([1, 2, 3], election_tick=ELECTION_TICK, heartbeat_tick=heartbeat_tick, seed=7)
    leader = _leader_of(c)
    c.crash(leader)
    ticks = 0
    while c.leader() in (None, leader) and ticks < 4 * ELECTION_TICK:
        for f in (2, 3):
            c.tick(f)
        c.deliver()
        ticks += 1
    assert c.leader() in (2, 3)
    # A follower campaigns after its randomized timeout, in [election_tick, 2 * election_tick)
    # ticks of silence: the heartbeat interval does not enter into it.
    assert ticks < 2 * ELECTION_TICK + 1


def test_a_read_round_counts_as_the_heartbeat() -> None:
    """Each ReadIndex round is a heartbeat to every follower: while reads come at least once a
    heartbeat interval, no plain heartbeat is sent, and the followers never campaign."""
    heartbeat_tick = 3
    c = Cluster([1, 2, 3], election_tick=ELECTION_TICK, heartbeat_tick=heartbeat_tick)
    leader = _leader_of(c)
    plain = with_ctx = 0
    for i in range(6 * ELECTION_TICK):
        if i % (heartbeat_tick - 1) == 0:
            c.core(leader).read_index(f"read-{i}".encode())
            c.drive(leader)
        c.tick(leader)
        beats = [m for m in c.outbox if m.type == MsgType.HEARTBEAT]
        plain += sum(1 for m in beats if not m.context)
        with_ctx += sum(1 for m in beats if m.context)
        c.deliver()
        for f in (2, 3):
            c.tick(f)
        c.deliver()
    assert plain == 0
    assert with_ctx == 2 * len(range(0, 6 * ELECTION_TICK, heartbeat_tick - 1))
    assert c.leader() == leader
    assert {c.core(f).role for f in (2, 3)} == {Role.FOLLOWER}
    # Reads stop: the plain heartbeat is back one interval after the last round.
    c.core(leader).read_index(b"last")
    c.drive(leader)
    c.deliver()
    for _ in range(heartbeat_tick - 1):
        c.tick(leader)
        assert not [m for m in c.outbox if m.type == MsgType.HEARTBEAT]
    c.tick(leader)
    assert sum(1 for m in c.outbox if m.type == MsgType.HEARTBEAT and not m.context) == 2


def test_a_follower_defers_only_ticks_that_do_nothing_but_count() -> None:
    """RaftCore.idle_ticks: a driver may wake only for the last of that many ticks of a
    follower of a live leader (issue 15: no wake per tick while heartbeats flow). Every tick
    before the last sends nothing, changes no role and keeps leader_in_touch; the last is where
    leader_in_touch turns false; anything but such a follower ticks one at a time."""
    c = Cluster([1, 2, 3], election_tick=ELECTION_TICK, heartbeat_tick=3, seed=3)
    leader = _leader_of(c)
    assert c.core(leader).idle_ticks() == 1
    c.crash(leader)  # no heartbeat resets the followers' counts from here on
    for f in (2, 3):
        core = c.core(f)
        left = core.idle_ticks()
        assert left == ELECTION_TICK
        for i in range(left):
            assert core.leader_in_touch()
            assert core.idle_ticks() == left - i
            c.tick(f)
            if i < left - 1:
                assert not c.outbox
                assert core.role == Role.FOLLOWER
        assert not core.leader_in_touch() or core.role != Role.FOLLOWER
        assert core.idle_ticks() == 1
