"""The failover benchmark's pure figures: outage, lost writes, two members writing at once,
which server notices mark a commit as local-only, and the last line. No cluster: numbers in,
numbers out."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from ackstats import (
    ack_windows,
    longest_gap,
    missing,
    overlap_of_members,
    overlap_seconds,
)
from ackwriter import is_cancelled_sync_wait
from failover_report import Run, last_line


def test_longest_gap_ending_in_the_span_counts_even_if_it_began_before() -> None:
    times = [0.0, 1.0, 1.1, 4.0, 4.1, 10.0]
    assert longest_gap(times, after=1.05) == (4.1, 10.0)
    assert longest_gap(times, after=2.0, until=4.05) == (1.1, 4.0)  # straddles `after`
    assert longest_gap(times, after=4.05) == (4.1, 10.0)
    start, end = longest_gap(times, after=10.0)
    assert math.isnan(start) and math.isnan(end)


def test_missing_lists_acknowledged_rows_absent_from_the_final_primary() -> None:
    assert missing([5, 1, 3, 2], {1, 2}) == [3, 5]
    assert missing([], {1}) == []


def test_acks_merge_into_windows_split_at_long_gaps() -> None:
    assert ack_windows([0.0, 0.2, 0.4, 3.0, 3.5, 9.0], 1.0) == [(0.0, 0.4), (3.0, 3.5), (9.0, 9.0)]
    assert ack_windows([], 1.0) == []


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        ({"a": [(0.0, 5.0)], "b": [(6.0, 9.0)]}, 0.0),  # one after the other
        ({"a": [(0.0, 5.0)], "b": [(5.0, 9.0)]}, 0.0),  # touching is not overlapping
        ({"a": [(0.0, 5.0)], "b": [(3.0, 9.0)]}, 2.0),
        ({"a": [(0.0, 5.0), (7.0, 8.0)], "b": [(3.0, 9.0)]}, 3.0),
        ({"a": [(0.0, 10.0)], "b": [(1.0, 2.0)], "c": [(1.5, 4.0)]}, 3.0),  # union, not sum
        ({"a": [(0.0, 1.0)]}, 0.0),
        ({}, 0.0),
    ],
)
def test_overlap_is_the_time_two_members_or_more_took_writes(
    windows: dict[str, list[tuple[float, float]]], expected: float
) -> None:
    assert overlap_seconds(windows) == pytest.approx(expected)


def test_overlap_of_members_old_primary_writing_on_after_the_new_one_began() -> None:
    old = [i * 0.01 for i in range(1500)]  # 0 .. 14.99 s
    new = [10.0 + i * 0.01 for i in range(1000)]  # 10 .. 19.99 s
    assert overlap_of_members({"pg1": old, "pg2": new, "pg3": []}, 1.0) == pytest.approx(4.99)


@pytest.mark.parametrize(
    ("message", "detail", "local"),
    [
        (
            "canceling wait for synchronous replication due to user request",
            "The transaction has already committed locally, but might not have been "
            "replicated to the standby.",
            True,
        ),
        (
            "canceling the wait for synchronous replication and terminating connection due "
            "to administrator command",
            None,
            True,
        ),
        (None, "The transaction has already committed locally, but might not ...", True),
        ("there is no transaction in progress", None, False),
        ("canceling statement due to statement timeout", None, False),
    ],
)
def test_which_notices_mark_a_commit_local_only(
    message: str | None, detail: str | None, local: bool
) -> None:
    assert is_cancelled_sync_wait(message, detail) is local


def _run(scenario: str, lost: int, *, outage: float = 1.0, margin: float | None = None) -> Run:
    return Run(scenario, 1, "pg1", "pg2", outage=outage, lost=lost, fence_margin=margin)


def test_last_line_sums_sync_losses_over_every_scenario_and_skips_skipped_runs() -> None:
    skipped = _run("replica-store-leader-kill", 99, margin=0.1)
    skipped.skipped = True
    results = {
        "kill9": [_run("kill9", 1, outage=5.0), _run("kill9", 0, outage=7.0)],
        "switchover": [_run("switchover", 0, outage=1.2)],
        "freeze-all": [_run("freeze-all", 700)],
        "replica-store-leader-kill": [skipped, _run("replica-store-leader-kill", 0, margin=1.83)],
    }
    assert last_line(results, "on") == (
        "kill9_outage_median_s=6.00 switchover_outage_median_s=1.20 lost_writes=0 "
        "kill9_lost_writes=1 sync_lost_writes=701 store_leader_kill_min_fence_margin_s=1.830"
    )
    assert "sync_lost_writes=NA " in last_line(results, "off")


def test_last_line_says_nan_for_what_was_not_measured() -> None:
    assert last_line({"freeze": [_run("freeze", 0)]}, "quorum") == (
        "kill9_outage_median_s=nan switchover_outage_median_s=nan lost_writes=0 "
        "kill9_lost_writes=0 sync_lost_writes=0 store_leader_kill_min_fence_margin_s=nan"
    )


# -- bench/footprint.py's figures (bench/procstat.py) ---------------------------------------


def test_cpu_ticks_count_after_a_command_name_with_spaces_and_parentheses() -> None:
    from procstat import command_name, cpu_ticks, parent_pid

    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 3 0 1000 2000 300"
    assert cpu_ticks(stat) == 11 + 22 + 33 + 44
    assert parent_pid(stat) == 7
    assert command_name(stat) == "a (b) c"


def test_rss_and_cpu_percent() -> None:
    from procstat import cpu_percent, rss_kb

    assert rss_kb("Name:\tpython\nVmPeak:\t 9 kB\nVmRSS:\t  61234 kB\n") == 61234
    assert rss_kb("Name:\tzombie\n") == 0
    assert cpu_percent(150, 30.0, clk_tck=100) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="seconds"):
        cpu_percent(1, 0.0)


def test_metric_sum_adds_every_label_set_of_one_metric_only() -> None:
    from procstat import metric_sum

    text = (
        "# HELP x_count help\n# TYPE x_count counter\n"
        'x_count{a="1"} 3\nx_count{a="2"} 4.5\nx_count_total 100\nx_count 1e1\n'
    )
    assert metric_sum(text, "x_count") == pytest.approx(17.5)
    assert math.isnan(metric_sum(text, "missing"))


def test_descendants_walk_the_whole_subtree_and_ratio_guards() -> None:
    from procstat import descendants, mean, ratio

    parents = {2: 1, 3: 2, 4: 3, 5: 1, 6: 99}
    assert sorted(descendants(1, parents)) == [2, 3, 4, 5]
    assert descendants(4, parents) == []
    assert ratio(1.0, 2.0) == 0.5
    assert math.isnan(ratio(1.0, 0.0)) and math.isnan(ratio(math.nan, 1.0))
    assert math.isnan(mean([])) and mean([1.0, 3.0]) == 2.0
