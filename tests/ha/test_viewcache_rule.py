"""The HA loop's rule for deciding on a cached view (issue 15), without I/O: a decision made on
it may be carried out only when it holds nothing but a lease keepalive; anything that writes
the store, changes PostgreSQL or probes peers is decided again on a fresh read. The tables
show that what a stale view would hide (the leader key gone, a new leader, a switchover
asked) makes decide() act, so the loop reads afresh before acting on it."""

from __future__ import annotations

from typing import get_args

import pytest

from hamgr.dcs.model import ClusterView, DynamicSettings
from hamgr.ha.actions import Action, Decision, RenewLease
from hamgr.ha.decide import decide
from hamgr.ha.inputs import LocalState
from hamgr.ha.loop import CACHE_SAFE_ACTIONS, settles_on_cache, view_max_age
from tests.ha.builders import local, member, primary, replica, switchover, view


def test_only_a_keepalive_may_run_on_a_cached_view() -> None:
    """Every action kind but RenewLease sends the cycle back to the store."""
    kinds = get_args(Action)
    assert RenewLease in kinds and len(kinds) > 20
    assert (RenewLease,) == CACHE_SAFE_ACTIONS
    assert settles_on_cache(Decision((), "idle"))
    assert settles_on_cache(Decision((RenewLease(),), "holder, idle"))


# (what, the cached view, this member's state, may the cached view stand?)
TABLE: list[tuple[str, ClusterView, LocalState, bool]] = [
    ("replica following the leader", view(), local("b", replica(upstream="127.0.0.1:5432")), True),
    ("primary holding the key", view(), local("a", primary(), leader=True), True),
    ("replica, leader key gone", view(leader=None), local("b", replica()), False),
    (
        "replica, a new leader",
        view(leader="c", members=(member("a"), member("b"), member("c", "primary"))),
        local("b", replica(upstream="127.0.0.1:5432")),
        False,
    ),
    (
        "primary, a switchover asked",
        view(switchover=switchover()),
        local("a", primary(), leader=True),
        False,
    ),
    (
        "primary, the key not ours any more",
        view(revision=9),
        local("a", primary(), leader=True),
        False,
    ),
]


@pytest.mark.parametrize(("what", "v", "loc", "stands"), TABLE, ids=[t[0] for t in TABLE])
def test_what_a_cached_view_may_not_hide(
    what: str, v: ClusterView, loc: LocalState, stands: bool
) -> None:
    decision = decide(v, loc)
    assert settles_on_cache(decision) is stands, (what, decision.kinds(), decision.reason)


def test_a_cached_view_never_outlives_a_lease() -> None:
    """view_max_age stays below ttl - retry_timeout for every valid timing, so a leader key
    whose lease expired is seen gone before another lease could have come and gone."""
    for loop_wait, retry_timeout, ttl in [(1, 2, 6), (0.5, 0.5, 2), (2, 2, 9), (1, 1, 4)]:
        s = DynamicSettings(
            loop_wait=loop_wait,
            retry_timeout=retry_timeout,
            ttl=ttl,
            safety_margin=max(loop_wait, ttl / 4),
        )
        assert view_max_age(s) <= s.ttl - s.retry_timeout
