"""The simulator over many seeds, its determinism, and proof that its checker has teeth."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from hamgr.raft.config import RaftConfig
from hamgr.raft.core import RaftCore
from hamgr.raft.sim import Simulator, hunt_profile, run_seed
from hamgr.raft.simbreakers import RuleBreakers, RuleBreakingCore, make_core

CI_SEEDS = 500
SLOW_SEEDS = int(os.environ.get("HAMGR_SIM_SLOW_SEEDS", "5000"))


def _hunt(breakers: RuleBreakers, seed: int) -> str | None:
    return Simulator(seed, hunt_profile(seed, breakers)).run()


def _run_range(first: int, count: int) -> list[tuple[int, str]]:
    failures = []
    for seed in range(first, first + count):
        result = run_seed(seed)
        if result is not None:
            failures.append((seed, result))
    return failures


@pytest.mark.parametrize("chunk", range(5))
def test_sim_seeds_pass(chunk: int) -> None:
    per = CI_SEEDS // 5
    failures = _run_range(1 + chunk * per, per)
    assert failures == [], "replay with: python -m hamgr.raft.sim --seed N --trace"


@pytest.mark.slow
def test_sim_many_seeds() -> None:
    assert _run_range(10_001, SLOW_SEEDS) == []


def test_hunt_profile_is_clean_without_breakers() -> None:
    """The bug-hunting profile finds nothing in a correct core (no false alarms)."""
    assert [s for s in range(1, 41) if _hunt(RuleBreakers(), s) is not None] == []


def test_same_seed_same_trace() -> None:
    traces: list[list[str]] = [[], []]
    results = [run_seed(77, trace=t.append) for t in traces]
    assert results[0] == results[1]
    assert len(traces[0]) > 500
    assert traces[0] == traces[1]
    other: list[str] = []
    run_seed(78, trace=other.append)
    assert other != traces[0]


@pytest.mark.parametrize(
    ("breaker", "max_seeds"),
    [
        ("forget_vote_on_restart", 100),
        ("send_before_persist", 300),
        ("skip_log_up_to_date_check", 50),
        ("commit_old_term_by_counting", 800),
    ],
)
def test_checker_catches_broken_rule(breaker: str, max_seeds: int) -> None:
    breakers = RuleBreakers(**{breaker: True})
    for seed in range(1, max_seeds + 1):
        result = _hunt(breakers, seed)
        if result is not None and result.startswith("violation"):
            return
    pytest.fail(f"no violation found for {breaker} within {max_seeds} seeds")


def test_cli_summary_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hamgr.raft.sim", "--seeds", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "seeds=3 violations=0 liveness_failures=0"


def test_cli_reports_failing_seed_with_replay_command() -> None:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "hamgr.raft.sim", "--seeds", "3", "--hunt"),
            *("--break-rule", "skip_log_up_to_date_check"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "replay: python -m hamgr.raft.sim --seed" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("seeds=3 violations=")


def test_rule_breakers_live_outside_the_production_core() -> None:
    """The core and its config have no switch that turns a rule off: a subclass does it."""
    assert not {"rule_breakers", "breakers"} & set(RaftConfig.__dataclass_fields__)
    plain = make_core(RaftConfig(id=1), random.Random(1), RuleBreakers())
    assert type(plain) is RaftCore
    broken = make_core(RaftConfig(id=1), random.Random(1), RuleBreakers(send_before_persist=True))
    assert isinstance(broken, RuleBreakingCore)
