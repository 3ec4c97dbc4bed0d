"""timeline_diverged() and last_ran_as_primary(): when a member needs pg_rewind; unled_claim():
how long a bootstrap claim has gone without a leader (table tests)."""

from __future__ import annotations

from typing import Any

import pytest

from hamgr.dcs.model import ClusterView, TimelineEntry
from hamgr.ha.inputs import LocalPostgres
from hamgr.ha.observe import last_ran_as_primary, timeline_diverged, unled_claim
from tests.ha.builders import member, view

FORK = 0x5000000
LEADER_ON_TL2 = view(
    members=(member("a", "primary", timeline=2), member("b"), member("c")),
    history=(TimelineEntry(1, FORK, "failover to a", 0.0, "a"),),
)


def pg(**kw: Any) -> LocalPostgres:
    kw.setdefault("timeline", 1)
    return LocalPostgres(initialized=True, data_dir_empty=False, **kw)


def running_standby(lsn: int, **kw: Any) -> LocalPostgres:
    return pg(running=True, role="replica", received_lsn=lsn, replayed_lsn=lsn, **kw)


@pytest.mark.parametrize(
    ("local", "was_primary", "diverged"),
    [
        pytest.param(
            running_standby(FORK + 100, upstream="127.0.0.1:5432"),
            False,
            False,
            id="streaming-standby-never-diverges",
        ),
        pytest.param(running_standby(FORK - 100), False, False, id="standby-before-fork"),
        pytest.param(running_standby(FORK + 100), False, True, id="standby-replayed-past-fork"),
        pytest.param(
            running_standby(FORK + 100, timeline=2), False, False, id="standby-on-new-timeline"
        ),
        pytest.param(running_standby(FORK - 100), True, False, id="former-primary-before-fork"),
        pytest.param(running_standby(FORK + 100), True, True, id="former-primary-past-fork"),
        pytest.param(
            pg(cluster_state="shut down", checkpoint_lsn=FORK - 40),
            True,
            False,
            id="clean-shutdown-before-fork",
        ),
        pytest.param(
            pg(cluster_state="shut down", checkpoint_lsn=FORK + 40),
            True,
            True,
            id="clean-shutdown-past-fork",
        ),
        pytest.param(
            pg(cluster_state="in production", checkpoint_lsn=FORK - 900),
            True,
            False,
            id="crashed-primary-is-judged-again-once-running",
        ),
        pytest.param(running_standby(FORK + 100, timeline=2), True, False, id="same-timeline"),
    ],
)
def test_timeline_diverged(local: LocalPostgres, was_primary: bool, diverged: bool) -> None:
    assert timeline_diverged(LEADER_ON_TL2, local, was_primary) is diverged


def test_unknown_fork_point_counts_as_diverged() -> None:
    no_history = view(members=(member("a", "primary", timeline=2), member("b"), member("c")))
    assert timeline_diverged(no_history, running_standby(FORK), True) is True
    # Not for a standby: without a known fork point it is left to follow by itself.
    assert timeline_diverged(no_history, running_standby(FORK), False) is False


@pytest.mark.parametrize(
    ("local", "before", "after"),
    [
        pytest.param(pg(running=True, role="primary", current_lsn=FORK), False, True, id="primary"),
        pytest.param(pg(cluster_state="in production"), False, True, id="crashed-primary"),
        pytest.param(pg(cluster_state="shut down"), False, True, id="clean-primary-shutdown"),
        pytest.param(pg(cluster_state="shut down in recovery"), False, False, id="stopped-standby"),
        pytest.param(
            running_standby(FORK, upstream="127.0.0.1:5432", timeline=2),
            True,
            False,
            id="streams-the-leaders-timeline",
        ),
        pytest.param(
            running_standby(FORK, upstream="127.0.0.1:5432", timeline=1),
            True,
            True,
            id="still-on-the-old-timeline",
        ),
    ],
)
def test_last_ran_as_primary(local: LocalPostgres, before: bool, after: bool) -> None:
    assert last_ran_as_primary(LEADER_ON_TL2, local, before) is after


CLAIM = view(leader=None, initialize="", initialize_revision=40)


@pytest.mark.parametrize(
    ("name", "seen_view", "before", "expected"),
    [
        ("first-seen", CLAIM, None, (40, 10.0)),
        ("same-claim-keeps-its-instant", CLAIM, (40, 3.0), (40, 3.0)),
        (
            "a-new-claim-starts-over",
            view(leader=None, initialize="", initialize_revision=41),
            (40, 3.0),
            (41, 10.0),
        ),
        (
            "a-leader-resets",
            view(leader="a", initialize="", initialize_revision=40),
            (40, 3.0),
            None,
        ),
        (
            "bootstrapped-resets",
            view(leader=None, initialize="7301", initialize_revision=45),
            (40, 3.0),
            None,
        ),
        ("no-claim", view(leader=None, initialize=None), (40, 3.0), None),
        ("revision-unknown", view(leader=None, initialize=""), None, None),
    ],
)
def test_unled_claim(
    name: str,
    seen_view: ClusterView,
    before: tuple[int, float] | None,
    expected: tuple[int, float] | None,
) -> None:
    assert unled_claim(seen_view, before, 10.0) == expected, name
