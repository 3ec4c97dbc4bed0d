"""Table tests of decide(): switchover and failover requests, from the leader's and the
candidates' side."""

from __future__ import annotations

import pytest

from hamgr.dcs.model import PrimaryPosition, SwitchoverRequest, TimelineEntry
from hamgr.ha import (
    AcquireLeader,
    AppendHistory,
    ClearSwitchover,
    Demote,
    ProbePeers,
    Promote,
    RecordPosition,
    ReleaseLeader,
    RenewLease,
    StartPostgres,
)
from hamgr.ha.decide import promotion_reason
from hamgr.ha.inputs import PeerProbe
from tests.ha.builders import (
    ARGS,
    BASE,
    KEY_A,
    MB,
    NOW,
    REQ,
    WALL,
    check,
    local,
    primary,
    probe,
    probes,
    replica,
    row,
    stopped,
    switchover,
    view,
)

CHECKPOINT = BASE  # the shutdown checkpoint record starts here; 0x68 bytes long
PAST_CHECKPOINT = BASE + 0x68
STOPPED_FOR_IT = {"leader": True, "switchover_stopped_at": NOW - 1.0}

SWITCHOVER = [
    row(
        "leader-probes-first",
        view(switchover=REQ),
        local("a", primary(), leader=True),
        None,
        (RenewLease(), ProbePeers()),
        "switchover from a to b requested: asking the members",
    ),
    row(
        "leader-stops-with-checkpoint",
        view(switchover=REQ),
        local("a", primary(), leader=True),
        probes(probe("b"), probe("c")),
        (RenewLease(), Demote("fast", for_switchover=True)),
        "stopping PostgreSQL with a shutdown checkpoint, handing over to b",
    ),
    row(
        "refused-candidate-lagging",
        view(switchover=REQ),
        local("a", primary(), leader=True),
        probes(probe("b", BASE - 5 * MB), probe("c")),
        (RenewLease(), ClearSwitchover(REQ)),
        "switchover from a to b refused: b is 5 MB behind me (maximum_lag_on_failover 1 MB)",
    ),
    row(
        "refused-candidate-nofailover",
        view(switchover=REQ),
        local("a", primary(), leader=True),
        probes(probe("b", nofailover=True)),
        (RenewLease(), ClearSwitchover(REQ)),
        "refused: b is tagged nofailover",
    ),
    row(
        "refused-candidate-not-a-member",
        view(switchover=switchover("a", "x")),
        local("a", primary(), leader=True),
        None,
        (RenewLease(), ClearSwitchover(switchover("a", "x"))),
        "refused: x is not a member",
    ),
    row(
        "best-standby-without-candidate",
        view(switchover=switchover("a", None)),
        local("a", primary(), leader=True),
        probes(probe("b", BASE - 100), probe("c", BASE)),
        (RenewLease(), Demote("fast", for_switchover=True)),
        "handing over to c",
    ),
    row(
        "scheduled-later",
        view(switchover=switchover(scheduled_at=WALL + 60)),
        local("a", primary(), leader=True),
        None,
        (RenewLease(),),
        "switchover from a to b scheduled at 2023-11-14 22:14:20 UTC",
    ),
    row(
        "waits-for-checkpoint",
        view(switchover=REQ),
        local("a", stopped(checkpoint_lsn=CHECKPOINT), **STOPPED_FOR_IT),
        probes(probe("b", CHECKPOINT), probe("c", PAST_CHECKPOINT)),
        (RenewLease(), ProbePeers()),
        "waiting for a standby to receive my shutdown checkpoint 0/3000000 (b at 0/3000000)",
    ),
    row(
        "releases-after-checkpoint",
        view(switchover=REQ),
        local("a", stopped(checkpoint_lsn=CHECKPOINT), **STOPPED_FOR_IT),
        probes(probe("b", PAST_CHECKPOINT)),
        (RenewLease(), ReleaseLeader(KEY_A)),
        "b received my shutdown checkpoint 0/3000000: releasing the leader key",
    ),
    row(
        "no-release-to-a-candidate-tagged-nofailover-since",
        view(switchover=REQ),
        local("a", stopped(checkpoint_lsn=CHECKPOINT), **STOPPED_FOR_IT),
        probes(probe("b", PAST_CHECKPOINT, nofailover=True)),
        (RenewLease(), ProbePeers()),
        "waiting for a standby to receive my shutdown checkpoint 0/3000000 (b not eligible)",
    ),
    row(
        "no-release-to-a-member-no-longer-a-standby",
        view(switchover=switchover("a", None)),
        local("a", stopped(checkpoint_lsn=CHECKPOINT), **STOPPED_FOR_IT),
        probes(probe("b", PAST_CHECKPOINT, role="primary"), probe("c", CHECKPOINT)),
        (RenewLease(), ProbePeers()),
        "waiting for a standby to receive my shutdown checkpoint 0/3000000 (b not eligible, c at "
        "0/3000000)",
    ),
    row(
        "aborts-after-ttl",
        view(switchover=REQ),
        local("a", stopped(checkpoint_lsn=CHECKPOINT), leader=True, switchover_stopped_at=NOW - 7),
        probes(probe("b", CHECKPOINT)),
        (RenewLease(), ClearSwitchover(REQ), StartPostgres()),
        "aborted: no standby received my shutdown checkpoint 0/3000000 within 6 s (b at "
        "0/3000000); starting again as primary",
    ),
    row(
        "aborts-after-ttl-naming-a-candidate-that-did-not-answer",
        view(switchover=REQ),
        local("a", stopped(checkpoint_lsn=CHECKPOINT), leader=True, switchover_stopped_at=NOW - 7),
        probes(PeerProbe(name="b", reachable=False)),
        (RenewLease(), ClearSwitchover(REQ), StartPostgres()),
        "within 6 s (b did not answer); starting again as primary",
    ),
    row(
        "withdrawn-restarts-primary",
        view(),
        local("a", stopped(checkpoint_lsn=CHECKPOINT), **STOPPED_FOR_IT),
        None,
        (RenewLease(), StartPostgres()),
        "starting PostgreSQL as primary",
    ),
    row(
        "candidate-takes-free-key",
        view(leader=None, switchover=REQ),
        local("b", replica(PAST_CHECKPOINT)),
        probes(probe("a", None, state="stopped", role="stopped"), probe("c", PAST_CHECKPOINT)),
        (AcquireLeader(), Promote()),
        "switchover from a to b requested by the operator: taking the leader key",
    ),
    row(
        "others-wait-for-candidate",
        view(leader=None, switchover=REQ),
        local("c", replica(PAST_CHECKPOINT)),
        probes(probe("b", PAST_CHECKPOINT)),
        (ProbePeers(),),
        "waiting: the operator requested switchover from a to b",
    ),
    row(
        "old-leader-stays-out",
        view(leader=None, switchover=switchover("a", None)),
        local("a", replica(PAST_CHECKPOINT, upstream=None)),
        probes(probe("b", PAST_CHECKPOINT), probe("c", BASE)),
        (ProbePeers(),),
        "I was the leader of the switchover: not racing",
    ),
    row(
        "race-without-old-leader",
        view(leader=None, switchover=switchover("a", None)),
        local("b", replica(PAST_CHECKPOINT)),
        probes(probe("a", PAST_CHECKPOINT), probe("c", BASE)),
        (AcquireLeader(), Promote()),
        "most advanced eligible member",
    ),
    row(
        "new-leader-clears-request",
        view(leader="b", switchover=REQ),
        local("b", primary(), leader=True),
        None,
        (RenewLease(), ClearSwitchover(REQ)),
        "the switchover from a to b is over (I am the leader): clearing it",
    ),
    row(
        "new-leader-records-the-switchover-then-clears-it",
        view(leader="b", switchover=REQ),
        local("b", primary(timeline=2, timeline_switch_lsn=PAST_CHECKPOINT), leader=True),
        None,
        (
            RenewLease(),
            AppendHistory(
                TimelineEntry(
                    1,
                    PAST_CHECKPOINT,
                    "switchover from a to b, requested by the operator",
                    WALL,
                    "b",
                )
            ),
            ClearSwitchover(REQ),
            RecordPosition(PrimaryPosition("b", 2, BASE)),
        ),
        "is over",
    ),
    row(
        "stale-request-cleared",
        view(switchover=switchover("c", "b")),
        local("a", primary(), leader=True),
        None,
        (RenewLease(), ClearSwitchover(switchover("c", "b"))),
        "is over",
    ),
    row(
        "failover-request-while-leader-runs",
        view(switchover=switchover(None, "b")),
        local("a", primary(), leader=True),
        probes(probe("b"), probe("c")),
        (RenewLease(), Demote("fast", for_switchover=True)),
        "failover to b: stopping PostgreSQL",
    ),
    row(
        "forced-failover-to-less-advanced",
        view(leader=None, switchover=switchover(None, "c")),
        local("c", replica(BASE)),
        probes(probe("b", BASE + 10 * MB)),
        (AcquireLeader(), Promote()),
        "failover to c requested by the operator",
    ),
    row(
        "most-advanced-defers-to-forced-candidate",
        view(leader=None, switchover=switchover(None, "c")),
        local("b", replica(BASE + 10 * MB)),
        probes(probe("c", BASE)),
        (ProbePeers(),),
        "waiting: the operator requested failover to c",
    ),
    row(
        "scheduled-failover-not-yet",
        view(leader=None, switchover=switchover(None, "c", scheduled_at=WALL + 60)),
        local("c", replica(BASE)),
        probes(probe("b", BASE + 100)),
        (ProbePeers(),),
        "waiting: b is ahead of me",
    ),
    row(
        "unhealthy-candidate-falls-back-to-race",
        view(leader=None, switchover=switchover(None, "c")),
        local("b", replica()),
        probes(probe("c", state="stopped")),
        (AcquireLeader(), Promote()),
        "requested candidate c is not a healthy standby, racing without it",
    ),
    row(
        "nofailover-candidate-does-not-race",
        view(leader=None, switchover=switchover(None, "c")),
        local("c", replica(BASE + MB), nofailover=True),
        probes(probe("b", BASE)),
        (ProbePeers(),),
        "not racing: I am tagged nofailover",
    ),
]


@pytest.mark.parametrize(ARGS, SWITCHOVER)
def test_switchover(v, loc, peers, actions, fragment) -> None:
    check(v, loc, peers, actions, fragment)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        pytest.param(None, "failover to b, automatic: the leader key had expired", id="none"),
        pytest.param(
            switchover("a", "b"),
            "switchover from a to b, requested by the operator",
            id="switchover-to-me",
        ),
        pytest.param(
            switchover("a", None),
            "switchover from a to b, requested by the operator",
            id="switchover-to-the-best",
        ),
        pytest.param(
            switchover("a", None, requested_by="shutdown"),
            "switchover from a to b, requested by the leader's agent on its shutdown",
            id="agent-shutdown",
        ),
        pytest.param(
            switchover(None, "b"), "failover to b, requested by the operator", id="failover-to-me"
        ),
        pytest.param(switchover("a", "c"), "failover to b, automatic", id="request-named-another"),
        pytest.param(
            switchover("a", "b", scheduled_at=WALL + 60),
            "failover to b, automatic",
            id="request-not-due-yet",
        ),
    ],
)
def test_promotion_reason(request_: SwitchoverRequest | None, reason: str) -> None:
    text = promotion_reason(view(leader="b", switchover=request_), "b", WALL)
    assert text.startswith(reason)
    # The metrics count a promotion as a failover unless its reason starts with "switchover".
    assert text.startswith("switchover") == (request_ is not None and reason[0] == "s")
