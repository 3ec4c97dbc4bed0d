"""The nemesis's schedule and the checkers, without a cluster."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.chaos import checkers, nemesis


@given(seed=st.integers(0, 2**32), seconds=st.floats(10, 900))
@settings(max_examples=50, deadline=None)
def test_a_schedule_is_ordered_bounded_and_replayable(seed: int, seconds: float) -> None:
    steps = nemesis.schedule(seed, seconds)
    assert steps == nemesis.schedule(seed, seconds)
    assert all(a.at + a.hold <= b.at + 0.002 for a, b in itertools.pairwise(steps))  # rounding
    assert all(0 <= s.at < seconds and s.at + s.hold <= seconds + 0.002 for s in steps)
    phases = [s.phase for s in steps]
    assert phases == sorted(phases)  # every gentle step before every nemesis step
    for s in steps:
        assert 1 <= len(s.faults) <= 2
        for f in s.faults:
            assert f.kind in nemesis.KINDS
            if s.phase == "gentle" and f.kind == "fsync":
                low, high = nemesis.GENTLE_STALL
                assert f.role == "sticky" and low <= f.params["stall"] <= high


def test_a_long_schedule_uses_every_kind_of_fault() -> None:
    kinds = {f.kind for s in nemesis.schedule(5, 3600) for f in s.faults}
    assert kinds == set(nemesis.KINDS)


def test_bad_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="positive duration"):
        nemesis.schedule(1, 0)
    with pytest.raises(ValueError, match="gentle_share"):
        nemesis.schedule(1, 10, gentle_share=2)


def test_two_members_acknowledging_at_once_is_a_violation() -> None:
    apart = checkers.split_brain({"m1": [1.0, 1.1, 1.2], "m2": [5.0, 5.1]})
    assert apart.violations == 0
    together = checkers.split_brain({"m1": [1.0, 1.5, 2.0], "m2": [1.7, 1.8]})
    assert together.violations == 1 and "m1+m2" in together.detail


def test_lost_acknowledged_writes_are_violations_only_in_synchronous_mode() -> None:
    assert checkers.lost_writes([1, 2, 3], {1, 2, 3}, synchronous=True).violations == 0
    lost = checkers.lost_writes([1, 2, 3], {1}, synchronous=True)
    assert lost.violations == 2 and "2 of 3" in lost.detail
    counted = checkers.lost_writes([1, 2, 3], {1}, synchronous=False)
    assert counted.violations == 0 and "2 of 3" in counted.detail


def test_only_leader_changes_in_the_gentle_phase_are_false_failovers() -> None:
    samples = [(0.0, "m1"), (1.0, None), (2.0, "m1"), (3.0, "m2"), (9.0, "m3")]
    assert checkers.leader_changes(samples) == [(3.0, "m1", "m2"), (9.0, "m2", "m3")]
    finding, false = checkers.failovers(samples, gentle_until=5.0)
    assert false == 1 and finding.violations == 1
    assert checkers.failovers(samples, gentle_until=2.5)[1] == 0


def test_a_leader_that_stops_serving_in_the_gentle_phase_is_a_false_failover_too() -> None:
    serving = [(1.0, True), (2.0, False), (3.0, True), (4.0, False), (5.0, False), (6.0, True)]
    assert checkers.not_serving_spells(serving) == [4.0]  # one sample alone is not a spell
    samples = [(t, "m1") for t, _ in serving]
    finding, false = checkers.failovers(samples, gentle_until=10.0, serving=serving)
    assert false == 1 and "1 spells" in finding.detail
    assert checkers.failovers(samples, gentle_until=3.5, serving=serving)[1] == 0


def test_liveness_needs_settling_within_the_bound() -> None:
    assert checkers.liveness(12.0, 60, "m1").violations == 0
    assert checkers.liveness(None, 60, None).violations == 1
    assert checkers.liveness(61.0, 60, "m1").violations == 1
