"""timeline_diverged() and last_ran_as_primary(): when a member needs pg_rewind; unled_claim():
how long a bootstrap claim has gone without a leader (table tests); TimelineForks: where the
local timeline began, from its history file (files written here, no PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hamgr.dcs.model import ClusterView, TimelineEntry
from hamgr.ha.inputs import LocalPostgres
from hamgr.ha.observe import (
    TimelineForks,
    last_ran_as_primary,
    primary_down_since,
    timeline_diverged,
    unled_claim,
)
from hamgr.postgres import PgSettings
from tests.ha.builders import member, primary, replica, stopped, view

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
            True,
            id="standby-receiving-the-old-timeline-past-fork",
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


@pytest.mark.parametrize(
    ("name", "holder", "pg", "seen", "expected"),
    [
        ("stopped-holder-starts-counting", True, stopped(), None, 10.0),
        ("stopped-holder-keeps-the-first-instant", True, stopped(), 4.0, 4.0),
        (
            "in-crash-recovery-counts",
            True,
            LocalPostgres(initialized=True, data_dir_empty=False, running=True, role="unknown"),
            4.0,
            4.0,
        ),
        ("primary-up-resets", True, primary(), 4.0, None),
        ("standby-to-promote-resets", True, replica(), 4.0, None),
        ("not-holder-resets", False, stopped(), 4.0, None),
        ("bootstrap-not-counted", True, LocalPostgres(), 4.0, None),
    ],
)
def test_primary_down_since(
    name: str, holder: bool, pg: LocalPostgres, seen: float | None, expected: float | None
) -> None:
    """How long the key holder's PostgreSQL has not been up as primary (primary_start_timeout)."""
    assert primary_down_since(holder, pg, seen, 10.0) == expected, name


# -- where the timeline began: its history file, read once per timeline -----------------------


def _data_dir(tmp_path: Path, files: dict[int, str]) -> PgSettings:
    wal = tmp_path / "data" / "pg_wal"
    wal.mkdir(parents=True)
    for timeline, text in files.items():
        (wal / f"{timeline:08X}.history").write_text(text)
    return PgSettings(bin_dir=Path("/usr/bin"), data_dir=tmp_path / "data")


HISTORY_3 = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000060\tno recovery target\n"


async def test_timeline_fork_comes_from_the_last_line_of_the_history_file(tmp_path: Path) -> None:
    settings = _data_dir(tmp_path, {3: HISTORY_3, 4: "1\t0/3000000\tx\n3\t0/7000000\ty\n"})
    forks = TimelineForks()
    assert await forks.fork(settings, 1) is None
    assert await forks.fork(settings, None) is None
    fork = await forks.fork(settings, 3)
    assert fork is not None and (fork.timeline, fork.switch_lsn) == (2, 0x5000060)
    for _ in range(5):
        assert await forks.fork(settings, 3) == fork
    assert forks.reads == 1, "the same timeline's history file is read once"
    fork = await forks.fork(settings, 4)
    assert fork is not None and (fork.timeline, fork.switch_lsn) == (3, 0x7000000)
    assert forks.reads == 2


async def test_an_unreadable_history_file_is_tried_again_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _data_dir(tmp_path, {})
    forks = TimelineForks()
    for _ in range(3):
        assert await forks.fork(settings, 2) is None
    assert forks.reads == 3
    assert len([r for r in caplog.records if "where timeline 2 began" in r.getMessage()]) == 1
    (settings.data_dir / "pg_wal" / "00000002.history").write_text("1\t0/3000000\tx\n")
    fork = await forks.fork(settings, 2)
    assert fork is not None and fork.switch_lsn == 0x3000000


async def test_a_history_file_that_does_not_lead_to_its_timeline_is_ignored(
    tmp_path: Path,
) -> None:
    settings = _data_dir(tmp_path, {2: "5\t0/3000000\tnonsense\n"})
    assert await TimelineForks().fork(settings, 2) is None


def test_a_former_primary_judged_by_the_recorded_fork_of_its_own_timeline() -> None:
    """Recorded with the parent timeline of the leader's history file, a fork several timelines
    back still tells whether a returning former primary went past it."""
    two_hops = view(
        members=(member("a", "primary", timeline=3), member("b"), member("c")),
        history=(
            TimelineEntry(1, FORK, "failover to b", 0.0, "b"),
            TimelineEntry(2, FORK + 0x1000000, "failover to a", 0.0, "a"),
        ),
    )
    assert timeline_diverged(two_hops, running_standby(FORK - 8), True) is False
    assert timeline_diverged(two_hops, running_standby(FORK + 8), True) is True
