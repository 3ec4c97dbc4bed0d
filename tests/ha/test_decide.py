"""Table tests of decide(): bootstrap, the key holder, and the replicas of a leader.

One row per branch: the exact actions and a fragment of the reason. The default cluster is a
(leader, revision 7, at 127.0.0.1:5432), b and c; see builders.py.
"""

from __future__ import annotations

import pytest

from hamgr.dcs.model import DynamicSettings, MemberTags, TimelineEntry
from hamgr.ha import (
    AcquireLeader,
    AppendHistory,
    Bootstrap,
    CloneFrom,
    Demote,
    DropBootstrapClaim,
    Follow,
    LocalPostgres,
    Promote,
    Reclone,
    ReleaseLeader,
    RenewLease,
    Rewind,
    SetInitialize,
    StartPostgres,
    StartReplica,
    StopPostgres,
    TakeInitialize,
    TransferStoreLeadership,
)
from tests.ha.builders import (
    ARGS,
    BASE,
    EMPTY,
    KEY_A,
    NO_LEADER,
    NOW,
    SYS,
    WALL,
    check,
    history,
    local,
    member,
    primary,
    replica,
    row,
    stopped,
    view,
)

CLONEFROM = MemberTags(clonefrom=True)
TTL = DynamicSettings().ttl

BOOTSTRAP = [
    row(
        "race-for-initialize",
        view(leader=None, initialize=None, members=()),
        local("a"),
        None,
        (TakeInitialize(""), AcquireLeader(), Bootstrap()),
        "racing for the initialize key",
    ),
    row(
        "nofailover-does-not-bootstrap",
        view(leader=None, initialize=None, members=()),
        local("a", nofailover=True),
        None,
        (),
        "tagged nofailover",
    ),
    row(
        "adopt-existing-data",
        view(leader=None, initialize=None, members=()),
        local("a", stopped()),
        None,
        (TakeInitialize(str(SYS)),),
        f"existing data directory (system {SYS})",
    ),
    row(
        "loser-waits-while-claimed",
        view(leader=None, initialize=""),
        local("b"),
        None,
        (),
        "another member is bootstrapping",
    ),
    row(
        "claim-without-leader-waits-within-ttl",
        view(leader=None, initialize="", initialize_revision=40),
        local("b", claim_unled_since=NOW - TTL + 0.5),
        None,
        (),
        "the claim is dropped if no leader appears within ttl",
    ),
    row(
        "orphaned-claim-dropped-after-ttl",
        view(leader=None, initialize="", initialize_revision=40),
        local("b", claim_unled_since=NOW - TTL),
        None,
        (DropBootstrapClaim(40),),
        "its claimant died; giving the bootstrap race back",
    ),
    row(
        "nofailover-member-drops-an-orphaned-claim-too",
        view(leader=None, initialize="", initialize_revision=40),
        local("c", nofailover=True, claim_unled_since=NOW - 3 * TTL),
        None,
        (DropBootstrapClaim(40),),
        "its claimant died",
    ),
    row(
        "claim-of-unknown-revision-is-kept",
        view(leader=None, initialize=""),
        local("b", claim_unled_since=NOW - 3 * TTL),
        None,
        (),
        "another member is bootstrapping",
    ),
    row(
        "primary-under-a-claim-without-leader-demotes",
        view(leader=None, initialize="", initialize_revision=40),
        local("a", primary(), claim_unled_since=NOW - 1.0),
        None,
        (Demote("immediate"),),
        "nobody holds the leader key while my PostgreSQL runs as primary",
    ),
    row(
        "winner-bootstraps",
        view(initialize="", members=()),
        local("a", leader=True),
        None,
        (RenewLease(), Bootstrap()),
        "won the initialize race",
    ),
    row(
        "winner-records-system-identifier",
        view(initialize=""),
        local("a", primary(), leader=True),
        None,
        (RenewLease(), SetInitialize(str(SYS))),
        "I am the leader",
    ),
    row(
        "loser-clones-from-leader",
        view(),
        local("b"),
        None,
        (CloneFrom("a"),),
        "cloning from a",
    ),
    row(
        "clone-from-tagged-member",
        view(members=(member("a", "primary"), member("b"), member("c", tags=CLONEFROM))),
        local("b"),
        None,
        (CloneFrom("c"),),
        "cloning from c (tagged clonefrom; leader is a)",
    ),
    row(
        "no-leader-nothing-to-clone",
        NO_LEADER,
        local("b"),
        None,
        (),
        "no leader to clone from",
    ),
    row(
        "foreign-system-running",
        view(),
        local("b", replica(system_identifier=42)),
        None,
        (StopPostgres("fast"),),
        f"refusing to join: my data directory belongs to system 42, the cluster is system {SYS}",
    ),
    row(
        "foreign-system-stopped",
        view(),
        local("b", stopped(system_identifier=42)),
        None,
        (),
        "staying stopped",
    ),
]

LEADER = [
    row(
        "renews-lease",
        view(),
        local("a", primary(), leader=True),
        None,
        (RenewLease(),),
        "I am the leader (fencing token 7)",
    ),
    row(
        "fence-deadline-passed",
        view(),
        local("a", primary(), leader=True, fence_at=NOW - 0.5),
        None,
        (Demote("immediate"),),
        "fencing: no keepalive succeeded before my lease deadline (0.5 s ago)",
    ),
    row(
        "fence-deadline-unknown",
        view(),
        local("a", primary(), leader_revision=7),
        None,
        (Demote("immediate"),),
        "know no lease deadline",
    ),
    row(
        "promotes-its-standby",
        view(),
        local("a", replica(upstream=None), leader=True),
        None,
        (RenewLease(), Promote()),
        "promoting my standby",
    ),
    row(
        "starts-stopped-primary",
        view(),
        local("a", stopped(), leader=True),
        None,
        (RenewLease(), StartPostgres()),
        "starting PostgreSQL as primary",
    ),
    row(
        "no-start-after-deadline",
        view(),
        local("a", stopped(), leader=True, fence_at=NOW),
        None,
        (RenewLease(),),
        "my lease deadline has passed",
    ),
    row(
        "key-gone-demotes",
        NO_LEADER,
        local("a", primary(), leader=True),
        None,
        (Demote("immediate"),),
        "my lease is lost: nobody holds the leader key",
    ),
    row(
        "key-taken-demotes",
        view(leader="b", revision=9),
        local("a", primary(), leader=True),
        None,
        (Demote("immediate"),),
        "my lease is lost: b holds the leader key (revision 9)",
    ),
    row(
        "key-of-same-name-other-revision-demotes",
        view(revision=8),
        local("a", primary(), leader=True),
        None,
        (Demote("immediate"),),
        "my lease is lost",
    ),
    row(
        "records-new-timeline",
        view(history=history(1)),
        local("a", primary(timeline=3, timeline_switch_lsn=BASE + 100), leader=True),
        None,
        (RenewLease(), AppendHistory(TimelineEntry(2, BASE + 100, "failover to a", WALL, "a"))),
        "I am the leader",
    ),
    row(
        "moves-store-leadership-away",
        view(),
        local("a", primary(), leader=True, store_leader_here=True),
        None,
        (RenewLease(), TransferStoreLeadership("b")),
        "I am the leader",
    ),
    row(
        "keeps-store-leadership-without-standby",
        view(members=(member("a", "primary"), member("b", state="stopped"))),
        local("a", primary(), leader=True, store_leader_here=True),
        None,
        (RenewLease(),),
        "I am the leader",
    ),
    row(
        "recreates-initialize-key",
        view(initialize=None),
        local("a", primary(), leader=True),
        None,
        (RenewLease(), TakeInitialize(str(SYS))),
        "I am the leader",
    ),
    row(
        "key-from-earlier-session",
        view(),
        local("a", replica(upstream=None)),
        None,
        (),
        "names me from an earlier session (revision 7)",
    ),
    row(
        "key-without-data-is-released",
        view(),
        local("a", EMPTY, leader=True),
        None,
        (ReleaseLeader(KEY_A),),
        "holds no cluster: releasing it",
    ),
]

REPLICA = [
    row("follows", view(), local("b", replica()), None, (), "following leader a"),
    row(
        "re-points",
        view(),
        local("b", replica(upstream="127.0.0.3:5432")),
        None,
        (Follow("a"),),
        "re-pointing replication from 127.0.0.3:5432 to leader a at 127.0.0.1:5432",
    ),
    row("starts", view(), local("b", stopped()), None, (StartReplica("a"),), "standby of leader a"),
    row(
        "rewinds-stopped",
        view(),
        local("b", stopped(), timeline_diverged=True),
        None,
        (Rewind("a"),),
        "diverged from leader a's: rewinding",
    ),
    row(
        "no-rewind-while-leader-is-down",
        view(members=(member("a", "primary", "stopped"), member("b"), member("c"))),
        local("b", stopped(), timeline_diverged=True),
        None,
        (),
        "whose PostgreSQL is not running yet; waiting before pg_rewind",
    ),
    row(
        "stops-then-rewinds",
        view(),
        local("b", replica(), timeline_diverged=True),
        None,
        (StopPostgres("fast"), Rewind("a")),
        "rewinding with pg_rewind",
    ),
    row(
        "reclones-after-rewind-failure",
        view(),
        local(
            "b",
            stopped(),
            timeline_diverged=True,
            rewind_failed=True,
            reclone_on_rewind_failure=True,
        ),
        None,
        (Reclone("a"),),
        "pg_rewind failed: cloning it again",
    ),
    row(
        "stays-stopped-after-rewind-failure",
        view(),
        local("b", stopped(), timeline_diverged=True, rewind_failed=True),
        None,
        (),
        "pg_rewind failed; staying stopped: re-cloning is not allowed",
    ),
    row(
        "stays-stopped-rewind-disabled",
        view(),
        local("b", replica(), timeline_diverged=True, use_pg_rewind=False),
        None,
        (StopPostgres("fast"),),
        "pg_rewind is disabled (use_pg_rewind); staying stopped",
    ),
    row(
        "leader-address-unknown",
        view(members=(member("b"), member("c"))),
        local("b", stopped()),
        None,
        (),
        "leader a has not published its address yet",
    ),
    row(
        "does-not-touch-foreign-data-dir",
        view(),
        local("b", LocalPostgres(initialized=False, data_dir_empty=False)),
        None,
        (),
        "not empty but holds no PostgreSQL cluster",
    ),
    row(
        "old-primary-demotes",
        view(),
        local("b", primary()),
        None,
        (Demote("immediate"),),
        "a holds the leader key (revision 7) while my PostgreSQL runs as primary",
    ),
]


@pytest.mark.parametrize(ARGS, BOOTSTRAP)
def test_bootstrap(v, loc, peers, actions, fragment) -> None:
    check(v, loc, peers, actions, fragment)


@pytest.mark.parametrize(ARGS, LEADER)
def test_leader(v, loc, peers, actions, fragment) -> None:
    check(v, loc, peers, actions, fragment)


@pytest.mark.parametrize(ARGS, REPLICA)
def test_replica(v, loc, peers, actions, fragment) -> None:
    check(v, loc, peers, actions, fragment)
