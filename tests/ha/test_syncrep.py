"""Synchronous replication's pure parts: the primary's plan (tables), the failover gate (tables),
and a model check of the order-of-operations promise under random faults (hypothesis).

The model check runs a primary whose commits wait on the rule the plan sets, standbys that
receive WAL at random, go down and come back, settings that change, and a crash of the agent
between any two writes of one plan. After every step: every acknowledged commit is on at least
``acks`` members of the store's record, the record names every standby PostgreSQL waits for,
and no member that the failover gate admits lacks an acknowledged commit.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.dcs.model import ClusterView, MemberTags, SyncState
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha import decide
from hamgr.ha.actions import (
    AcquireLeader,
    Detach,
    ProbePeers,
    Promote,
    RenewLease,
    SetStandbyNames,
    SetSyncState,
)
from hamgr.ha.inputs import LocalPostgres, LocalState, Standby, SyncBarrier
from hamgr.ha.syncrep import plan_primary, sync_gate
from tests.ha.builders import BASE, NOW, WALL, local, member, primary, probe, probes, replica, view

ON = {"synchronous_mode": "on"}
QUORUM = {"synchronous_mode": "quorum"}


def streaming(*names: str, lsn: int = BASE) -> tuple[Standby, ...]:
    return tuple(Standby(n, "streaming", lsn) for n in names)


def leader_local(pg: LocalPostgres, barrier: SyncBarrier | None = None) -> LocalState:
    return local("a", pg, leader=True, sync_barrier=barrier)


# --- the primary's plan -----------------------------------------------------------------------


def test_mode_on_widens_the_record_then_tells_postgres() -> None:
    v = view(dcs=ON)
    pg = primary(sync_standby_names="", standbys=streaming("b", "c"))
    plan = plan_primary(v, leader_local(pg))
    assert plan.actions == (
        SetSyncState(SyncState("a", ("b",), 0), 0),
        SetStandbyNames('FIRST 1 ("b")'),
    )


def test_record_strengthened_only_once_the_standby_passed_the_barrier() -> None:
    v = view(dcs=ON, sync=SyncState("a", ("b",), 0), sync_revision=40)
    names = 'FIRST 1 ("b")'
    barrier = SyncBarrier(names, BASE + 100)
    behind = primary(sync_standby_names=names, standbys=streaming("b", "c", lsn=BASE + 99))
    plan = plan_primary(v, leader_local(behind, barrier))
    assert plan.actions == ()
    assert "waiting for b to confirm it caught up" in plan.note
    caught_up = replace(behind, standbys=streaming("b", "c", lsn=BASE + 100))
    plan = plan_primary(v, leader_local(caught_up, barrier))
    assert plan.actions == (SetSyncState(SyncState("a", ("b",), 1), 40),)


def test_unknown_barrier_sets_the_same_names_again_to_learn_one() -> None:
    names = 'FIRST 1 ("b")'
    v = view(dcs=ON, sync=SyncState("a", ("b",), 1), sync_revision=40)
    pg = primary(sync_standby_names=names, standbys=streaming("b"))
    assert plan_primary(v, leader_local(pg)).actions == (SetStandbyNames(names),)


def test_a_dead_synchronous_standby_is_replaced_store_first() -> None:
    names = 'FIRST 1 ("b")'
    v = view(dcs=ON, sync=SyncState("a", ("b",), 1), sync_revision=40)
    pg = primary(sync_standby_names=names, standbys=streaming("c"))
    plan = plan_primary(v, leader_local(pg, SyncBarrier(names, BASE)))
    assert plan.actions == (
        SetSyncState(SyncState("a", ("b", "c"), 1), 40),
        SetStandbyNames('FIRST 1 ("c")'),
    )


def test_strict_mode_keeps_waiting_when_no_standby_is_left() -> None:
    names = 'FIRST 1 ("b")'
    v = view(dcs={**ON, "synchronous_mode_strict": True}, sync=SyncState("a", ("b",), 1))
    pg = primary(sync_standby_names=names, standbys=())
    plan = plan_primary(v, leader_local(pg, SyncBarrier(names, BASE)))
    assert plan.actions == ()
    assert "synchronous_mode_strict: commits wait" in plan.note


def test_strict_mode_without_any_standby_waits_for_any() -> None:
    v = view(dcs={**ON, "synchronous_mode_strict": True})
    plan = plan_primary(v, leader_local(primary(sync_standby_names="")))
    assert plan.actions == (SetSyncState(SyncState("a"), 0), SetStandbyNames("*"))


def test_non_strict_mode_goes_asynchronous_when_no_standby_is_left() -> None:
    names = 'FIRST 1 ("b")'
    v = view(dcs=ON, sync=SyncState("a", ("b",), 1), sync_revision=40)
    pg = primary(sync_standby_names=names, standbys=())
    plan = plan_primary(v, leader_local(pg, SyncBarrier(names, BASE)))
    assert plan.actions == (SetSyncState(SyncState("a", ("b",), 0), 40), SetStandbyNames(""))


@pytest.mark.parametrize(
    "tags, lag_limit, expect",
    [
        ({"b": MemberTags(nosync=True)}, -1, 'FIRST 1 ("c")'),
        ({"b": MemberTags(nofailover=True)}, -1, 'FIRST 1 ("c")'),
        ({"b": MemberTags(failover_priority=0)}, -1, 'FIRST 1 ("c")'),
        ({}, 1000, 'FIRST 1 ("c")'),  # b lags 4096 bytes, more than the limit
        ({}, -1, 'FIRST 1 ("c")'),  # no limit: both qualify, the most advanced (c) is chosen
        ({"c": MemberTags(nosync=True)}, -1, 'FIRST 1 ("b")'),  # the lagging one, if alone
    ],
)
def test_mode_on_picks_an_eligible_standby(
    tags: dict[str, MemberTags], lag_limit: int, expect: str
) -> None:
    members = (
        member("a", "primary"),
        member("b", tags=tags.get("b", MemberTags())),
        member("c", tags=tags.get("c", MemberTags())),
    )
    v = view(dcs={**ON, "maximum_lag_on_syncnode": lag_limit}, members=members)
    lagging_b = (Standby("b", "streaming", BASE - 4096), Standby("c", "streaming", BASE))
    pg = primary(sync_standby_names="", standbys=lagging_b)
    actions = plan_primary(v, leader_local(pg)).actions
    names = [a for a in actions if isinstance(a, SetStandbyNames)]
    assert names == [SetStandbyNames(expect)]


def test_quorum_lists_every_eligible_standby() -> None:
    v = view(dcs={**QUORUM, "synchronous_node_count": 1})
    pg = primary(sync_standby_names="", standbys=streaming("b", "c"))
    plan = plan_primary(v, leader_local(pg))
    assert plan.actions[-1] == SetStandbyNames('ANY 1 ("b", "c")')


def test_mode_off_drops_the_record_first_then_postgres_stops_waiting() -> None:
    v = view(sync=SyncState("a", ("b",), 1), sync_revision=40)
    pg = primary(sync_standby_names='FIRST 1 ("b")')
    assert plan_primary(v, leader_local(pg)).actions == (
        SetSyncState(None, 40),
        SetStandbyNames(""),
    )
    assert plan_primary(view(), leader_local(pg)).actions == (SetStandbyNames(""),)


def test_decide_promotes_only_after_recording_a_fresh_promise() -> None:
    v = view(leader=None, dcs=ON, sync=SyncState("a", ("b", "c"), 2), sync_revision=40)
    me = local("b", replica(detached=True))
    d = decide(v, me, probes(probe("c", detached=True)))
    assert d.actions == (AcquireLeader(), SetSyncState(SyncState("b"), 40), Promote())


def test_decide_detaches_before_the_race_in_synchronous_mode() -> None:
    v = view(leader=None, dcs=ON, sync=SyncState("a", ("b",), 1))
    d = decide(v, local("b", replica(detached=False)), None)
    assert d.actions == (Detach(),)
    d = decide(v, local("b", replica(detached=True)), None)
    assert d.actions == (ProbePeers(),)


def test_holder_that_is_still_a_standby_records_before_promoting() -> None:
    v = view(
        leader="b", dcs={**ON, "synchronous_mode_strict": True}, sync=SyncState("a", ("b",), 1)
    )
    me = local("b", replica(), leader=True)
    d = decide(v, me, None)
    assert d.actions == (RenewLease(), SetSyncState(SyncState("b"), 0), Promote(strict=True))


# --- the failover gate ------------------------------------------------------------------------


def gate(rec: SyncState | None, mode: str, me: LocalState, *ps: object) -> str:
    v = view(leader=None, dcs={"synchronous_mode": mode}, sync=rec)
    return sync_gate(v, me, probes(*ps), me.name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rec, mode, me, peers, problem",
    [
        (None, "on", local("b", replica(detached=True)), (), "records no synchronous standby"),
        (SyncState("a"), "on", local("b", replica(detached=True)), (), "no automatic failover"),
        (
            SyncState("a", ("c",), 1),
            "on",
            local("b", replica(detached=True)),
            (),
            "not a synchronous standby of a",
        ),
        (SyncState("a", ("b",), 1), "on", local("b", replica(detached=True)), (), ""),
        (SyncState("a", ("b",), 1), "on", local("b", replica(detached=False)), (), "needs 1"),
        (
            SyncState("a", ("b", "c"), 1),
            "quorum",
            local("b", replica(detached=True)),
            (),
            "needs 2",
        ),
        (
            SyncState("a", ("b", "c"), 1),
            "quorum",
            local("b", replica(detached=True)),
            (probe("c", detached=False),),
            "needs 2",
        ),
        (
            SyncState("a", ("b", "c"), 1),
            "quorum",
            local("b", replica(detached=True)),
            (probe("c", detached=True),),
            "",
        ),
        (
            SyncState("a", ("b", "c"), 1),
            "quorum",
            local("b", replica(detached=True)),
            (probe("c", BASE + 1, detached=True),),
            "behind synchronous member c",
        ),
        (SyncState("a", ("b", "c"), 2), "quorum", local("b", replica(detached=True)), (), ""),
        (SyncState("a", ("b", "c"), 1), "off", local("b", replica()), (), ""),
    ],
)
def test_gate(
    rec: SyncState | None, mode: str, me: LocalState, peers: tuple[object, ...], problem: str
) -> None:
    said = gate(rec, mode, me, *peers)
    if problem:
        assert problem in said
    else:
        assert said == ""


# --- model check: the promise under random faults -----------------------------------------------

STANDBYS = ("b", "c", "d")
_RULE = re.compile(r"^(FIRST|ANY) (\d+) \((.*)\)$")


def waits_for(names: str) -> tuple[str, int, tuple[str, ...]]:
    """(method, count, listed) of a synchronous_standby_names value we render."""
    if names == "":
        return ("NONE", 0, ())
    if names == "*":
        return ("FIRST", 1, ("*",))
    m = _RULE.match(names)
    assert m is not None, names
    listed = tuple(x.strip().strip('"') for x in m.group(3).split(","))
    return (m.group(1), int(m.group(2)), listed)


@dataclass
class World:
    """A primary 'a' and its standbys: positions as integers, commits as positions."""

    settings: DynamicSettings
    tags: dict[str, MemberTags]
    up: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(STANDBYS, True))
    flush: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STANDBYS, 0))
    lsn: int = 0
    names: str = ""
    record: SyncState | None = None
    record_rev: int = 0
    revision: int = 10
    barrier: SyncBarrier | None = None
    pending: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def satisfied(self, at: int) -> bool:
        method, count, listed = waits_for(self.names)
        if method == "NONE":
            return True
        holders = [
            s
            for s in STANDBYS
            if self.up[s] and self.flush[s] >= at
            if "*" in listed or s in listed
        ]
        return len(holders) >= count

    def settle(self) -> None:
        still = []
        for c in self.pending:
            (self.acked if self.satisfied(c) else still).append(c)
        self.pending = still

    def view(self) -> ClusterView:
        members = (member("a", "primary"), *(member(s, tags=self.tags[s]) for s in STANDBYS))
        return view(
            settings=self.settings,
            members=members,
            sync=self.record,
            sync_revision=self.record_rev,
        )

    def local(self) -> LocalState:
        standbys = tuple(Standby(s, "streaming", self.flush[s]) for s in STANDBYS if self.up[s])
        pg = primary(lsn=self.lsn, sync_standby_names=self.names, standbys=standbys)
        return LocalState(
            "a", NOW, WALL, pg, leader_revision=7, fence_at=NOW + 3, sync_barrier=self.barrier
        )

    def run_plan(self, crash_after: int) -> None:
        plan = plan_primary(self.view(), self.local())
        for i, action in enumerate(plan.actions):
            if i >= crash_after:
                self.barrier = None  # a restarted agent knows no barrier
                return
            if isinstance(action, SetSyncState):
                if action.expected_revision != self.record_rev:
                    return
                self.revision += 1
                self.record = action.state
                self.record_rev = self.revision if action.state is not None else 0
            elif isinstance(action, SetStandbyNames):
                self.names = action.names
                self.barrier = SyncBarrier(action.names, self.lsn)
            self.settle()
            self.check()

    def check(self) -> None:
        rec = self.record
        if not self.settings.synchronous or rec is None:
            return
        _, _, listed = waits_for(self.names)
        assert rec.acks == 0 or set(listed) - {"*"} <= set(rec.members), (self.names, rec)
        for c in self.acked:
            holders = sum(1 for m in rec.members if self.flush.get(m, 0) >= c)
            assert holders >= rec.acks, (c, rec, self.flush, self.names)

    def check_failover(self) -> None:
        """Every candidate the gate admits, with any detached subset of peers, has it all."""
        rec = self.record
        if not self.settings.synchronous or rec is None or not self.acked:
            return
        v = replace(self.view(), leader=None, position=None)
        top = max(self.acked)
        for cand in STANDBYS:
            others = [s for s in STANDBYS if s != cand]
            for k in range(len(others) + 1):
                for seen in itertools.combinations(others, k):
                    me = LocalState(cand, NOW, WALL, replica(self.flush[cand], detached=True))
                    peers = probes(*(probe(s, self.flush[s], detached=True) for s in seen))
                    if sync_gate(v, me, peers, cand) == "":
                        assert self.flush[cand] >= top, (cand, seen, rec, self.flush, top)


EVENTS = st.one_of(
    st.tuples(st.just("commit")),
    st.tuples(st.just("receive"), st.sampled_from(STANDBYS), st.integers(0, 3)),
    st.tuples(st.just("down"), st.sampled_from(STANDBYS)),
    st.tuples(st.just("up"), st.sampled_from(STANDBYS)),
    st.tuples(st.just("plan"), st.integers(0, 2)),
    st.tuples(st.just("mode"), st.sampled_from(["off", "on", "quorum"]), st.integers(1, 3)),
)


@settings(max_examples=400, deadline=None)
@given(
    strict=st.booleans(),
    nosync=st.sampled_from([None, *STANDBYS]),
    events=st.lists(EVENTS, min_size=5, max_size=60),
)
def test_the_record_never_promises_more_than_postgres_delivered(
    strict: bool, nosync: str | None, events: list[tuple[object, ...]]
) -> None:
    tags = {s: MemberTags(nosync=s == nosync) for s in STANDBYS}
    w = World(DynamicSettings(synchronous_mode="on", synchronous_mode_strict=strict), tags)
    for ev in events:
        kind = ev[0]
        if kind == "commit":
            w.lsn += 10
            w.pending.append(w.lsn)
        elif kind == "receive":
            s, steps = str(ev[1]), int(ev[2])  # type: ignore[call-overload]
            if w.up[s]:
                w.flush[s] = min(w.lsn, w.flush[s] + 10 * steps)
        elif kind == "down":
            w.up[str(ev[1])] = False
        elif kind == "up":
            w.up[str(ev[1])] = True
        elif kind == "plan":
            w.run_plan(crash_after=99 if ev[1] else 1)
        elif kind == "mode":
            w.settings = msgspec.structs.replace(
                w.settings,
                synchronous_mode=ev[1],
                synchronous_node_count=ev[2],  # type: ignore[arg-type]
            )
        w.settle()
        w.check()
    w.check_failover()
