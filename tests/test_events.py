"""The agent's ring of recent events (hamgr/agent/events.py), without I/O: what each change between
two cluster views, and each of this agent's decisions, turns into; the ring's bounds."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from hamgr.agent.events import KINDS, EventLog, decision_change, view_changes
from hamgr.dcs import DynamicSettings, LeaderKey, SwitchoverRequest, TimelineEntry
from hamgr.dcs.model import ClusterView
from hamgr.ha.actions import (
    AcquireLeader,
    Decision,
    Demote,
    Promote,
    RenewLease,
    Rewind,
)
from tests.apifake import HISTORY, MB, cluster3

URLS = {n: f"http://127.0.0.1:{p}" for n, p in (("a", 8008), ("b", 8009), ("c", 8010))}
BASE = cluster3(URLS)


def with_member(view: ClusterView, name: str, **kw: object) -> ClusterView:
    members = tuple(
        dataclasses.replace(m, **kw) if m.name == name else m  # type: ignore[arg-type]
        for m in view.members
    )
    return dataclasses.replace(view, members=members)


SWITCHED = dataclasses.replace(
    with_member(with_member(BASE, "a", role="replica"), "b", role="primary", reason="promoted"),
    leader=LeaderKey("b", 12),
    history=(
        *HISTORY,
        TimelineEntry(2, 90 * MB, "switchover from a to b, requested by the operator", 1.8e9, "b"),
    ),
)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (BASE, []),
        (
            SWITCHED,
            [
                (
                    "switchover",
                    "b",
                    "timeline 3: b promoted (switchover from a to b, requested by the operator)",
                ),
                ("leader", "b", "b took the leader key from a (fencing token 12)"),
                ("role", "a", "a: primary -> replica (I am the leader)"),
                ("role", "b", "b: replica -> primary (promoted)"),
            ],
        ),
        (
            dataclasses.replace(
                BASE,
                leader=LeaderKey("c", 9),
                history=(*HISTORY, TimelineEntry(2, 1, "failover to c, automatic", 2.0, "c")),
            ),
            [
                ("failover", "c", "timeline 3: c promoted (failover to c, automatic)"),
                ("leader", "c", "c took the leader key from a (fencing token 9)"),
            ],
        ),
        (
            dataclasses.replace(BASE, leader=None),
            [("leader", "a", "the leader key of a is gone (expired or released)")],
        ),
        (
            dataclasses.replace(BASE, leader=LeaderKey("a", 8)),
            [("leader", "a", "a took the leader key again (fencing token 8)")],
        ),
        (
            dataclasses.replace(BASE, switchover=SwitchoverRequest("switchover", "a", "b")),
            [("request", "b", "switchover from a to b requested by operator")],
        ),
        (
            dataclasses.replace(
                BASE, switchover=SwitchoverRequest("switchover", "a", scheduled_at=4e9)
            ),
            [("request", "a", "switchover from a requested by operator (scheduled)")],
        ),
        (
            dataclasses.replace(BASE, settings=DynamicSettings(pause=True)),
            [("pause", None, "cluster paused: no automatic failover, PostgreSQL left alone")],
        ),
        (
            dataclasses.replace(BASE, members=BASE.members[:2]),
            [("member", "c", "c left (its agent stopped publishing)")],
        ),
        (
            with_member(BASE, "a", fencer="disarmed"),
            [
                (
                    "fencing",
                    "a",
                    "a's fencer disarmed: nothing stops PostgreSQL at the lease deadline",
                )
            ],
        ),
    ],
)
def test_view_changes(after: ClusterView, expected: list[tuple[str, str | None, str]]) -> None:
    assert view_changes(BASE, after) == expected
    assert all(kind in KINDS for kind, _, _ in view_changes(BASE, after))


def test_the_reverse_changes() -> None:
    """Joining, resuming and a request cleared read as such."""
    paused = dataclasses.replace(BASE, settings=DynamicSettings(pause=True))
    assert view_changes(paused, BASE) == [
        ("pause", None, "cluster resumed: automatic failover is back on")
    ]
    fewer = dataclasses.replace(BASE, members=BASE.members[:2])
    assert view_changes(fewer, BASE) == [("member", "c", "c joined as replica")]
    asked = dataclasses.replace(BASE, switchover=SwitchoverRequest("failover", None, "c"))
    assert view_changes(asked, BASE) == [("request", None, "failover to c: request cleared")]
    armed = with_member(BASE, "a", fencer="armed")
    assert view_changes(BASE, armed)[0][0] == "fencing"


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (Decision((RenewLease(),), "I am the leader"), None),
        (Decision((), "following a"), None),
        (
            Decision((AcquireLeader(), Promote()), "failover: I am the most advanced"),
            ("action", "b", "b: Promote: failover: I am the most advanced"),
        ),
        (
            Decision((Demote("immediate"),), "fencing: lease deadline has passed"),
            ("fencing", "b", "b: Demote: fencing: lease deadline has passed"),
        ),
        (
            Decision((Demote("immediate"),), "another member holds the key"),
            ("fencing", "b", "b: Demote: another member holds the key"),
        ),
        (
            Decision((Demote("fast", for_switchover=True),), "switchover to c"),
            ("action", "b", "b: Demote: switchover to c"),
        ),
        (
            Decision((Rewind("a"),), "diverged from a"),
            ("action", "b", "b: Rewind: diverged from a"),
        ),
    ],
)
def test_decision_change(decision: Decision, expected: tuple[str, str, str] | None) -> None:
    assert decision_change("b", decision) == expected


def test_the_log_numbers_bounds_and_deduplicates() -> None:
    ticks = itertools.count(100)
    log = EventLog("b", capacity=3, clock=lambda: float(next(ticks)))
    wait = Decision((), "following a")
    log.observe(BASE, wait)
    assert [(e.seq, e.kind, e.text) for e in log.since(0)] == [
        (1, "agent", "b started watching: leader a, timeline 2")
    ]
    promote = Decision((Promote(),), "promoting at 0/3000060")
    log.observe(BASE, promote)
    log.observe(BASE, Decision((Promote(),), "promoting at 0/3000100"))  # only an LSN moved
    assert log.last_seq == 2
    log.observe(BASE, wait)
    log.observe(BASE, promote)  # after a different decision, it counts again
    assert log.last_seq == 3
    log.observe(SWITCHED, wait)  # four events: the ring keeps the last three
    assert log.last_seq == 7
    kept = log.since(0)
    assert [e.seq for e in kept] == [5, 6, 7] and log.since(6) == kept[2:]
    assert kept[0].to_dict() == {
        "seq": 5,
        "at": kept[0].at,
        "kind": "leader",
        "member": "b",
        "text": "b took the leader key from a (fencing token 12)",
        "source": "b",
    }
    assert [e.at for e in kept] == sorted(e.at for e in kept)


def test_bad_capacity_and_kind_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity must be an integer >= 1, got 0"):
        EventLog("b", capacity=0)
    with pytest.raises(ValueError, match="kind must be one of agent, switchover"):
        EventLog("b").add("gossip", None, "x")


def test_the_store_going_away_and_coming_back() -> None:
    log = EventLog("a")
    log.observe(BASE, None)
    for _ in range(3):  # once, however many cycles fail
        log.store_unreachable("no quorum", stopped=False)
    log.store_unreachable("no quorum", stopped=True)
    log.observe(BASE, None)
    log.observe(BASE, None)
    assert [(e.kind, e.text) for e in log.since(1)] == [
        ("store", "a cannot read the store: no quorum"),
        ("fencing", "a: lease deadline passed and the store is unreachable: PostgreSQL stopped"),
        ("store", "a reads the cluster from the store again"),
    ]
