"""Table tests of decide(): the failover race without a leader, and pause mode."""

from __future__ import annotations

import pytest

from hamgr.dcs.model import MemberTags, PrimaryPosition
from hamgr.ha import (
    AcquireLeader,
    Demote,
    ProbePeers,
    Promote,
    ReleaseLeader,
    RenewLease,
    StartReplica,
    decide,
)
from tests.ha.builders import (
    ARGS,
    BASE,
    KEY_A,
    MB,
    NO_LEADER,
    NOW,
    PAUSED,
    REQ,
    check,
    history,
    local,
    primary,
    probe,
    probes,
    replica,
    row,
    stopped,
    view,
)

RACE = [
    row(
        "tie-goes-to-the-higher-failover-priority",
        NO_LEADER,
        local("c", replica(), tags=MemberTags(failover_priority=5)),
        probes(probe("b")),
        (AcquireLeader(), Promote()),
        "tied with b; first by priority, then name",
    ),
    row(
        "lower-priority-waits-for-an-equal-peer",
        NO_LEADER,
        local("b", replica()),
        probes(probe("c", failover_priority=5)),
        (ProbePeers(),),
        "c is as far as me",
    ),
    row(
        "more-wal-beats-a-higher-priority",
        NO_LEADER,
        local("b", replica(BASE + 100)),
        probes(probe("c", failover_priority=5)),
        (AcquireLeader(), Promote()),
        "I am the most advanced eligible member",
    ),
    row(
        "failover-priority-0-never-takes-over",
        NO_LEADER,
        local("b", replica(BASE + 100), tags=MemberTags(failover_priority=0)),
        probes(probe("c")),
        (ProbePeers(),),
        "not racing: I am of failover_priority 0",
    ),
    row(
        "behind-the-position-recorded-in-the-store-with-no-peer",
        view(leader=None, position=PrimaryPosition("a", 1, BASE + 2 * MB)),
        local("b", replica()),
        probes(probe("a", reachable=False), probe("c", reachable=False)),
        (ProbePeers(),),
        "2 MB behind the last position a recorded as primary",
    ),
    row(
        "probes-first",
        NO_LEADER,
        local("b", replica()),
        None,
        (ProbePeers(),),
        "asking the other members for their state",
    ),
    row(
        "most-advanced-wins",
        NO_LEADER,
        local("b", replica(BASE + 100)),
        probes(probe("a", reachable=False), probe("c", BASE)),
        (AcquireLeader(), Promote()),
        "I am the most advanced eligible member at 0/3000064 on timeline 1",
    ),
    row(
        "ahead-peer-wins",
        NO_LEADER,
        local("b", replica(BASE)),
        probes(probe("c", BASE + 100)),
        (ProbePeers(),),
        "waiting: c is ahead of me (0/3000064 vs 0/3000000)",
    ),
    row(
        "tie-goes-to-first-name",
        NO_LEADER,
        local("b", replica()),
        probes(probe("c")),
        (AcquireLeader(), Promote()),
        "tied with c; first by priority, then name",
    ),
    row(
        "tie-loser-waits",
        NO_LEADER,
        local("c", replica()),
        probes(probe("b")),
        (ProbePeers(),),
        "b is as far as me (0/3000000) and first by priority, then name",
    ),
    row(
        "lagging-nobody-eligible",
        NO_LEADER,
        local("b", replica(BASE - 5 * MB)),
        probes(probe("c", BASE, nofailover=True)),
        (ProbePeers(),),
        "no failover: no member is eligible (I am 5 MB behind member c "
        "(maximum_lag_on_failover 1 MB); c is tagged nofailover)",
    ),
    row(
        "lagging-other-wins",
        NO_LEADER,
        local("b", replica(BASE - 5 * MB)),
        probes(probe("c", BASE)),
        (ProbePeers(),),
        "not racing: I am 5 MB behind member c (maximum_lag_on_failover 1 MB)",
    ),
    row(
        "nofailover-never-races",
        NO_LEADER,
        local("b", replica(BASE + MB), nofailover=True),
        probes(probe("c", BASE)),
        (ProbePeers(),),
        "not racing: I am tagged nofailover",
    ),
    row(
        "stopped-starts-as-standby",
        NO_LEADER,
        local("b", stopped()),
        None,
        (StartReplica(None),),
        "to take part in the failover race",
    ),
    row(
        "primary-still-alive",
        NO_LEADER,
        local("b", replica()),
        probes(probe("a", BASE + 10, role="primary"), probe("c")),
        (ProbePeers(),),
        "no failover: member a still runs as primary",
    ),
    row(
        "keyless-primary-demotes",
        NO_LEADER,
        local("a", primary()),
        None,
        (Demote("immediate"),),
        "nobody holds the leader key while my PostgreSQL runs as primary",
    ),
    row(
        "timeline-behind",
        view(leader=None, history=history(1)),
        local("b", replica(BASE + 100, timeline=1)),
        probes(probe("c", BASE, timeline=2)),
        (ProbePeers(),),
        "not racing: I am on timeline 1, behind timeline 2",
    ),
    row(
        "unreachable-peer-ignored",
        NO_LEADER,
        local("b", replica()),
        probes(probe("c", BASE + 10 * MB, reachable=False)),
        (AcquireLeader(), Promote()),
        "most advanced eligible member",
    ),
    row(
        "stopped-peer-not-counted",
        NO_LEADER,
        local("b", replica()),
        probes(probe("c", BASE + 10 * MB, state="stopped")),
        (AcquireLeader(), Promote()),
        "most advanced eligible member",
    ),
]

PAUSE = [
    row(
        "leader-renews",
        view(dcs=PAUSED),
        local("a", primary(), leader=True),
        None,
        (RenewLease(),),
        "paused: I am the leader, no automatic actions",
    ),
    row(
        "leader-not-primary-releases",
        view(dcs=PAUSED),
        local("a", stopped(), leader=True),
        None,
        (ReleaseLeader(KEY_A),),
        "instead of promoting it back",
    ),
    row(
        "no-failover",
        view(leader=None, dcs=PAUSED),
        local("b", replica()),
        probes(probe("c")),
        (),
        "paused: no leader, and no automatic failover while paused",
    ),
    row(
        "running-primary-takes-free-key",
        view(leader=None, dcs=PAUSED),
        local("a", primary()),
        None,
        (AcquireLeader(),),
        "my PostgreSQL runs as primary: taking the key",
    ),
    row(
        "no-demote",
        view(leader="b", dcs=PAUSED),
        local("a", primary()),
        None,
        (),
        "not demoting while paused",
    ),
    row(
        "hands-off-past-the-deadline",  # the fencer is disarmed too (ActionRunner.set_paused)
        view(dcs=PAUSED),
        local("a", primary(), leader=True, fence_at=NOW - 1),
        None,
        (RenewLease(),),
        "paused: I am the leader",
    ),
    row(
        "hands-off-without-a-deadline",  # a restarted agent that could not take its lease back
        view(dcs=PAUSED),
        local("a", primary()),
        None,
        (),
        "not demoting while paused",
    ),
    row("no-start", view(dcs=PAUSED), local("b", stopped()), None, (), "paused: no automatic"),
    row(
        "switchover-waits",
        view(dcs=PAUSED, switchover=REQ),
        local("a", primary(), leader=True),
        None,
        (RenewLease(),),
        "the switchover from a to b waits until resume",
    ),
    row(
        "foreign-system",
        view(dcs=PAUSED),
        local("b", replica(system_identifier=42)),
        None,
        (),
        "paused: refusing to join",
    ),
]


@pytest.mark.parametrize(ARGS, RACE)
def test_race(v, loc, peers, actions, fragment) -> None:
    check(v, loc, peers, actions, fragment)


@pytest.mark.parametrize(ARGS, PAUSE)
def test_pause(v, loc, peers, actions, fragment) -> None:
    check(v, loc, peers, actions, fragment)


def test_own_probe_entry_is_ignored() -> None:
    """A probe that says I am far ahead (or unreachable) does not change my own standing."""
    peers = probes(probe("b", BASE + 10 * MB, reachable=False), probe("c", BASE + 100))
    assert decide(NO_LEADER, local("b", replica()), peers).actions == (ProbePeers(),)
