"""A 3-minute nemesis schedule on a cluster of hosts of their own, checked (issue 12).

Three members, each in its own network namespace, every connection between them through the
relay; synchronous mode strict. The schedule of `SEED` (`tests.chaos.nemesis`): a gentle phase
(link jitter, fsync stalls of up to 800 ms on the primary's member) in which the primary must
stay primary, then partitions, kills, freezes and slow disks.
The checkers must find no violation: never two members acknowledging writes at once, no
acknowledged write lost, one primary and every replica streaming within the bound after the
nemesis, no false failover.
`bench/chaos.py` runs the same with other seeds and lengths and prints the figures.
Skipped where network namespaces cannot be made (not root).
"""

from __future__ import annotations

import pytest

from tests.chaos import nemesis
from tests.chaos.harness import chaos_cluster, unavailable
from tests.chaos.runner import run_schedule

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SEED = 3
"""Partitions, kills, freezes, slow disks, and a full store disk on the primary's and then on a
replica's member (seed 11 has no full disk). Seed 3 once found a write the store client
reported as failed although it was applied: a member whose disk filled failed its pending
writes as "unavailable" although the leader had sent them on before its own write; they are
"outcome unknown" now (tests/raft/test_client_failed_leader.py)."""
SECONDS = 180.0


def test_a_three_minute_schedule_breaks_nothing() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    steps = nemesis.schedule(SEED, SECONDS)
    with chaos_cluster(3, seed=SEED) as cluster:
        report = run_schedule(cluster, steps, seed=SEED, seconds=SECONDS)
    found = "\n".join(map(str, report.findings))
    replay = f"replay: python bench/chaos.py --minutes 3 --seed {SEED}\n"
    schedule = nemesis.describe(steps)
    assert report.violations == 0, f"{replay}{found}\nschedule:\n{schedule}"
    assert report.false_failovers == 0, f"{replay}{found}\nschedule:\n{schedule}"
