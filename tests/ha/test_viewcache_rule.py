"""The HA loop's rule for deciding on a cached view (issue 15), without I/O: a decision made on
it may be carried out only when it holds nothing but a lease keepalive; anything that writes
the store, changes PostgreSQL or probes peers is decided again on a fresh read. The tables
show that what a stale view would hide (the leader key gone, a new leader, a switchover
asked) makes decide() act, so the loop reads afresh before acting on it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast, get_args

import pytest

from hamgr.dcs.model import ClusterView, DynamicSettings
from hamgr.dcs.restartrequest import RestartRequest, iso_time
from hamgr.ha.actions import Action, Decision, RenewLease
from hamgr.ha.decide import decide
from hamgr.ha.execute import ActionRunner, LeaseState
from hamgr.ha.inputs import LocalState
from hamgr.ha.loop import (
    CACHE_SAFE_ACTIONS,
    HaLoop,
    Identity,
    settles_on_cache,
    view_max_age,
)
from hamgr.postgres import PgSettings
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


class _Store:
    """A stand-in Dcs: `cached` is what cached_cluster answers; reads are counted."""

    def __init__(self, cached: ClusterView | None, fresh: ClusterView) -> None:
        self.cached, self.fresh = cached, fresh
        self.reads = 0

    def cached_cluster(self, max_age: float) -> ClusterView | None:
        return self.cached

    async def get_cluster(self) -> ClusterView:
        self.reads += 1
        return self.fresh


def _loop(store: _Store) -> HaLoop:
    pg = PgSettings(bin_dir=Path("/nonexistent/bin"), data_dir=Path("/nonexistent/data"))
    runner = SimpleNamespace(
        lease=LeaseState(),
        pg=pg,
        refused_parameters=None,
        methods=SimpleNamespace(clone_without_leader=False),
        bootstrap_unfinished=lambda: False,
    )
    loop = HaLoop(
        Identity("b", "http://127.0.0.2:8008", "127.0.0.2:5432"),
        cast(Any, store),
        pg,
        cast(ActionRunner, runner),
        cast(Any, None),
        settings=DynamicSettings(),
    )
    loop.last_decision = Decision((), "following")
    return loop


FOLLOWING = replica(upstream="127.0.0.1:5432")


@pytest.mark.parametrize(
    ("what", "reused"),
    [
        ("quiet", True),
        ("not started by a quiet watch", False),
        ("first cycle", False),
        ("cache says no", False),
        ("reinitialize asked", False),
        ("restart scheduled", False),
        ("previous run's lease to resume", False),
        ("leader key gone in the cached view", False),
    ],
)
async def test_when_a_cycle_decides_on_the_cached_view(what: str, reused: bool) -> None:
    gone = what == "leader key gone in the cached view"
    cached = view(leader=None, settings_revision=3) if gone else view(settings_revision=3)
    store = _Store(None if what == "cache says no" else cached, view(settings_revision=3))
    loop = _loop(store)
    if what == "first cycle":
        loop.last_decision = None
    if what == "reinitialize asked":
        loop.reinit_requested = True
    if what == "restart scheduled":
        assert loop.restarts.schedule(RestartRequest(iso_time(2e9)))
    if what == "previous run's lease to resume":
        loop._resume_lease = 42
    got, settled = await loop._view(FOLLOWING, what != "not started by a quiet watch")
    assert (store.reads == 0) is reused, what
    assert (settled is not None) is reused
    assert got is (cached if reused else store.fresh)
