"""Table tests of decide() in a standby cluster (``standby_cluster`` set), and of its settings.

As Patroni: the key holder is the standby leader, replicating from the remote primary and never
promoting; the others follow it; the failover race's winner re-points at the remote primary;
a fresh cluster is cloned from the remote primary; removing the section promotes.
"""

from __future__ import annotations

from typing import Any

import pytest

from hamgr.config.standby import SettingError, StandbyCluster, parse_slots, parse_standby_cluster
from hamgr.dcs.model import ClusterView
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError
from hamgr.ha.actions import (
    AcquireLeader,
    ClearSwitchover,
    CloneRemote,
    Demote,
    Detach,
    Follow,
    FollowRemote,
    ProbePeers,
    Promote,
    ReleaseLeader,
    RenewLease,
    SetInitialize,
    StartReplica,
    TakeInitialize,
)
from tests.ha.builders import (
    ARGS,
    BASE,
    EMPTY,
    KEY_A,
    MB,
    NOW,
    REQ,
    SYS,
    WALL,
    check,
    local,
    member,
    primary,
    probe,
    probes,
    replica,
    row,
    stopped,
    switchover,
    view,
)

REMOTE = StandbyCluster(host="127.0.1.1", port=5432, primary_slot_name="dc2")
STANDBY = DynamicSettings(standby_cluster=REMOTE)
MEMBERS = (member("a"), member("b"), member("c"))


BASE_LOW = BASE - 100
BASE_FAR = BASE - 2 * MB


def sview(**kw: Any) -> ClusterView:
    kw.setdefault("members", MEMBERS)
    return view(settings=STANDBY, position=None, **kw)


TABLE = [
    row(
        "fresh-cluster-clones-the-remote-primary",
        view(leader=None, initialize=None, settings=STANDBY, members=()),
        local("a", EMPTY),
        None,
        (TakeInitialize(""), AcquireLeader(), CloneRemote()),
        "bootstrap a standby cluster of 127.0.1.1:5432",
    ),
    row(
        "nofailover-member-waits-for-another-to-bootstrap",
        view(leader=None, initialize=None, settings=STANDBY, members=()),
        local("a", EMPTY, nofailover=True),
        None,
        (),
        "tagged nofailover, I wait",
    ),
    row(
        "fresh-cluster-without-host-waits",
        view(
            leader=None,
            initialize=None,
            settings=DynamicSettings(standby_cluster=StandbyCluster(restore_command="cp a b")),
            members=(),
        ),
        local("a", EMPTY),
        None,
        (),
        "bootstrapped with pg_basebackup from standby_cluster.host",
    ),
    row(
        "holder-of-a-claimed-empty-cluster-clones",
        sview(initialize=""),
        local("a", EMPTY, leader=True),
        None,
        (RenewLease(), CloneRemote()),
        "bootstrapping a standby cluster",
    ),
    row(
        "standby-leader-records-the-system",
        sview(initialize=""),
        local("a", replica(upstream="127.0.1.1:5432"), leader=True),
        None,
        (RenewLease(), SetInitialize(str(SYS))),
        "I am the standby leader (fencing token 7), replicating from remote primary 127.0.1.1",
    ),
    row(
        "standby-leader-stays-a-standby",
        sview(),
        local("a", replica(upstream="127.0.1.1:5432"), leader=True),
        None,
        (RenewLease(),),
        "I am the standby leader",
    ),
    row(
        "standby-leader-re-points-at-the-remote",
        sview(),
        local("a", replica(upstream=None, detached=True), leader=True),
        None,
        (RenewLease(), FollowRemote()),
        "re-pointing replication from nowhere to remote primary 127.0.1.1:5432",
    ),
    row(
        "stopped-standby-leader-starts-as-a-standby-of-the-remote",
        sview(),
        local("a", stopped(), leader=True),
        None,
        (RenewLease(), FollowRemote()),
        "starting PostgreSQL as a standby of remote primary",
    ),
    row(
        "a-primary-becomes-the-standby-leader",
        sview(),
        local("a", primary(), leader=True),
        None,
        (RenewLease(), Demote("fast")),
        "standby_cluster is set but my PostgreSQL runs as primary",
    ),
    row(
        "member-follows-the-standby-leader",
        sview(),
        local("b", replica(upstream="127.0.0.9:5432", detached=False)),
        None,
        (Follow("a"),),
        "re-pointing replication",
    ),
    row(
        "member-starts-as-a-standby-of-the-standby-leader",
        sview(),
        local("b", stopped()),
        None,
        (StartReplica("a"),),
        "standby of leader a",
    ),
    row(
        "race-winner-takes-the-key-without-promoting",
        sview(leader=None),
        local("b", replica(upstream=None)),
        probes(probe("c", lsn=0)),
        (AcquireLeader(),),
        "taking the leader key",
    ),
    row(
        "race-loser-waits",
        sview(leader=None),
        local("c", replica(upstream=None, lsn=0)),
        probes(probe("b")),
        (ProbePeers(),),
        "not racing: I am 48 MB behind member b",
    ),
    row(
        "removing-standby-cluster-promotes",
        view(members=MEMBERS, position=None),
        local("a", replica(upstream="127.0.1.1:5432"), leader=True),
        None,
        (RenewLease(), Promote()),
        "promoting my standby",
    ),
    row(
        "paused-standby-leader-keeps-its-key",
        view(
            members=MEMBERS,
            position=None,
            settings=DynamicSettings(standby_cluster=REMOTE, pause=True),
        ),
        local("a", replica(upstream="127.0.1.1:5432"), leader=True),
        None,
        (RenewLease(),),
        "paused: I am the leader",
    ),
    row(
        "holder-without-data-releases",
        sview(),
        local("a", EMPTY, leader=True),
        None,
        (ReleaseLeader(KEY_A),),
        "holds no cluster",
    ),
]


AT_REMOTE = "127.0.1.1:5432"
ATTACHED = replica(upstream=AT_REMOTE, detached=False)
"""The standby leader streaming from the remote primary."""
FINAL = replica(upstream=None, detached=True)
"""The standby leader once it stopped receiving for a handover (its position is final)."""
CASCADED = (probe("b", detached=False), probe("c", detached=False))
"""The members streaming from the standby leader, as far as it is."""
HANDING = {"leader": True, "switchover_stopped_at": NOW - 1.0}

SWITCH = [
    row(
        "standby-switchover-asks-the-members",
        sview(switchover=REQ),
        local("a", ATTACHED, leader=True),
        None,
        (RenewLease(), ProbePeers()),
        "switchover from a to b requested: asking the members",
    ),
    row(
        "standby-switchover-stops-receiving-to-hand-over",
        sview(switchover=REQ),
        local("a", ATTACHED, leader=True),
        probes(*CASCADED),
        (RenewLease(), Detach(for_switchover=True)),
        "handing the standby leader's role over to b",
    ),
    row(
        "standby-manual-failover-hands-over-too",
        sview(switchover=switchover(None, "c")),
        local("a", ATTACHED, leader=True),
        probes(*CASCADED),
        (RenewLease(), Detach(for_switchover=True)),
        "failover to c: I stop receiving WAL from remote primary 127.0.1.1:5432",
    ),
    row(
        "standby-switchover-without-candidate-picks-the-best",
        sview(switchover=switchover("a", None)),
        local("a", ATTACHED, leader=True),
        probes(probe("b", BASE_LOW, detached=False), probe("c", detached=False)),
        (RenewLease(), Detach(for_switchover=True)),
        "over to c",
    ),
    row(
        "standby-switchover-refuses-a-lagging-candidate",
        sview(switchover=REQ),
        local("a", ATTACHED, leader=True),
        probes(probe("b", BASE_FAR, detached=False), probe("c", detached=False)),
        (RenewLease(), ClearSwitchover(REQ)),
        "switchover from a to b refused: b is 2 MB behind me",
    ),
    row(
        "standby-switchover-refuses-a-stopped-candidate",
        sview(switchover=REQ),
        local("a", ATTACHED, leader=True),
        probes(probe("b", state="stopped"), probe("c", detached=False)),
        (RenewLease(), ClearSwitchover(REQ)),
        "b is not a running standby",
    ),
    row(
        "standby-switchover-waits-for-the-target-to-reach-my-position",
        sview(switchover=REQ),
        local("a", FINAL, **HANDING),
        probes(probe("b", BASE_LOW, detached=False), probe("c", detached=False)),
        (RenewLease(), ProbePeers()),
        "waiting for a standby to reach my final position 0/3000000 (b at 0/2FFFF9C)",
    ),
    row(
        "standby-switchover-releases-once-the-target-has-my-wal",
        sview(switchover=REQ),
        local("a", FINAL, **HANDING),
        probes(*CASCADED),
        (RenewLease(), ReleaseLeader(KEY_A)),
        "b reached my final position 0/3000000: releasing the leader key",
    ),
    row(
        "standby-switchover-counts-replayed-wal-of-the-old-leader",
        sview(switchover=REQ),
        local("a", replica(upstream=None, replayed_lsn=BASE + 64), **HANDING),
        probes(*CASCADED),
        (RenewLease(), ProbePeers()),
        "waiting for a standby to reach my final position 0/3000040",
    ),
    row(
        "standby-switchover-without-candidate-skips-nofailover-members",
        sview(switchover=switchover("a", None)),
        local("a", FINAL, **HANDING),
        probes(probe("b", nofailover=True), probe("c", BASE_LOW)),
        (RenewLease(), ProbePeers()),
        "(b not eligible, c at 0/2FFFF9C)",
    ),
    row(
        "standby-switchover-does-not-release-to-a-candidate-tagged-nofailover-meanwhile",
        sview(switchover=REQ),
        local("a", FINAL, **HANDING),
        probes(probe("b", nofailover=True), probe("c")),
        (RenewLease(), ProbePeers()),
        "waiting for a standby to reach my final position 0/3000000 (b not eligible)",
    ),
    row(
        "standby-switchover-aborts-after-ttl-and-streams-again",
        sview(switchover=REQ),
        local("a", FINAL, leader=True, switchover_stopped_at=NOW - 7.0),
        probes(probe("b", BASE_LOW)),
        (RenewLease(), ClearSwitchover(REQ), FollowRemote()),
        "aborted: no standby reached my final position 0/3000000 within 6 s (b at 0/2FFFF9C)",
    ),
    row(
        "detached-holder-without-a-recorded-instant-checks-again",
        sview(switchover=REQ),
        local("a", FINAL, leader=True),
        probes(*CASCADED),
        (RenewLease(), Detach(for_switchover=True)),
        "handing the standby leader's role over to b",
    ),
    row(
        "scheduled-standby-switchover-waits-its-time",
        sview(switchover=switchover("a", "b", scheduled_at=WALL + 3600)),
        local("a", ATTACHED, leader=True),
        None,
        (RenewLease(),),
        "I am the standby leader (fencing token 7), replicating from remote primary "
        "127.0.1.1:5432; switchover from a to b scheduled at",
    ),
    row(
        "old-standby-leader-leaves-the-key-to-the-candidate",
        sview(leader=None, switchover=REQ),
        local("a", FINAL),
        probes(*CASCADED),
        (ProbePeers(),),
        "waiting: the operator requested switchover from a to b",
    ),
    row(
        "candidate-takes-the-key-without-promoting",
        sview(leader=None, switchover=REQ),
        local("b", replica(upstream=None)),
        probes(probe("a"), probe("c")),
        (AcquireLeader(),),
        "switchover from a to b requested by the operator: taking the leader key",
    ),
    row(
        "new-standby-leader-re-points-at-the-remote-and-clears-the-request",
        sview(leader="b", switchover=REQ),
        local("b", replica(upstream=None), leader=True),
        None,
        (RenewLease(), FollowRemote(), ClearSwitchover(REQ)),
        "re-pointing replication from nowhere to remote primary 127.0.1.1:5432; the switchover "
        "from a to b is over (I am the standby leader): clearing it",
    ),
    row(
        "old-standby-leader-follows-the-new-one",
        sview(leader="b", switchover=REQ),
        local("a", FINAL),
        None,
        (Follow("b"),),
        "re-pointing replication from nowhere to leader b",
    ),
]


@pytest.mark.parametrize(ARGS, SWITCH)
def test_standby_switchover(v, loc, peers, actions, fragment) -> None:  # type: ignore[no-untyped-def]
    check(v, loc, peers, actions, fragment)


@pytest.mark.parametrize(ARGS, TABLE)
def test_standby_cluster(v, loc, peers, actions, fragment) -> None:  # type: ignore[no-untyped-def]
    check(v, loc, peers, actions, fragment)


@pytest.mark.parametrize(
    "raw, key, problem",
    [
        ({"port": 5432}, "standby_cluster", "needs host"),
        ({"host": "a", "port": 0}, "standby_cluster.port", "must be >= 1, got 0"),
        ({"host": "a", "port": "x"}, "standby_cluster.port", "expected an integer"),
        ({"host": "a", "primary_slot_name": "Bad-Slot"}, "standby_cluster.primary_slot_name", ""),
        (
            {"host": "a", "create_replica_methods": ["wal_g"]},
            "standby_cluster.create_replica_methods",
            "only [basebackup]",
        ),
        (
            {"host": "a", "recovery_min_apply_delay": "soon"},
            "standby_cluster.recovery_min_apply_delay",
            "",
        ),
        ({"host": "a", "restore_command": ""}, "standby_cluster.restore_command", "non-empty"),
        (
            {"host": "a", "archive_cleanup_command": "x"},
            "standby_cluster.archive_cleanup_command",
            "unknown field (known: host, port,",
        ),
        ("host=a", "standby_cluster", "expected a mapping of keys"),
    ],
)
def test_bad_standby_cluster_is_refused_naming_the_key(raw: object, key: str, problem: str) -> None:
    with pytest.raises(SettingError) as err:
        parse_standby_cluster(raw)
    assert err.value.key == key
    assert problem in err.value.problem


@pytest.mark.parametrize(
    "raw, key, problem",
    [
        (
            {"k": {"type": "logical", "database": "d", "plugin": "p"}},
            "slots.k.database",
            "unsupported",
        ),
        ({"k": {"type": "logical"}}, "slots.k.type", "logical slots are not supported"),
        ({"k": {}}, "slots.k.type", 'expected "physical"'),
        ({"K-1": {"type": "physical"}}, "slots.K-1", "slot name"),
        ({"k": "physical"}, "slots.k", "expected {type: physical}"),
        (["k"], "slots", "expected a mapping"),
    ],
)
def test_bad_slots_are_refused_naming_the_key(raw: object, key: str, problem: str) -> None:
    with pytest.raises(SettingError) as err:
        parse_slots(raw)
    assert err.value.key == key
    assert problem in err.value.problem


def test_settings_round_trip_in_patronis_shape() -> None:
    raw = {
        "standby_cluster": {"host": "10.0.0.1", "port": 5433, "recovery_min_apply_delay": 500},
        "slots": {"b": {"type": "physical"}, "a": {"type": "physical"}},
    }
    s = DynamicSettings.from_dict(raw)
    assert s.standby_cluster == StandbyCluster(
        host="10.0.0.1", port=5433, recovery_min_apply_delay="500"
    )
    assert s.slots == ("a", "b")
    out = s.to_dict()
    assert out["slots"] == {"a": {"type": "physical"}, "b": {"type": "physical"}}
    assert out["standby_cluster"]["host"] == "10.0.0.1"
    assert DynamicSettings.from_dict(out) == s
    assert DynamicSettings.from_dict({"standby_cluster": None}).standby_cluster is None
    with pytest.raises(ModelError, match=r"standby_cluster\.port: must be <= 65535, got 70000"):
        DynamicSettings.from_dict({"standby_cluster": {"host": "a", "port": 70000}})
