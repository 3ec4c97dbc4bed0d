"""The node simulator: real RaftNodes on a virtual-time loop under faults, replayable from a
seed, and proof that its checks catch bugs planted in the node."""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hamgr.raft.core.types import Entry, HardState, Snapshot
from hamgr.raft.sim.disk import SimStorage
from hamgr.raft.sim.loop import VirtualLoop, VirtualLoopStalled
from hamgr.raft.sim.node import NodeSim, hunt_profile, profile
from hamgr.raft.sim.nodecli import run_seed
from hamgr.raft.sim.world import Disk


@pytest.fixture(autouse=True)
def _quiet_nodes() -> Iterator[None]:
    """A planted bug makes nodes log critical errors; the checks report them instead."""
    logger = logging.getLogger("hamgr.raft")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    yield
    logger.setLevel(level)


def test_virtual_loop_jumps_to_the_next_timer_and_orders_executor_calls() -> None:
    done: list[tuple[str, float]] = []
    loop = VirtualLoop(io_delay=lambda fn, args: args[0])

    def work(delay: float, name: str) -> str:
        done.append((name, loop.time()))
        return name

    async def main() -> list[str]:
        await asyncio.sleep(3600)  # an hour of virtual time, no real wait
        ex = object()  # one executor: calls finish in submission order, one after the other
        a = loop.run_in_executor(ex, work, 2.0, "a")  # type: ignore[arg-type]
        b = loop.run_in_executor(ex, work, 1.0, "b")  # type: ignore[arg-type]
        return list(await asyncio.gather(a, b))

    try:
        assert loop.run_until_complete(main()) == ["a", "b"]
    finally:
        loop.close()
    assert done == [("a", 3602.0), ("b", 3603.0)]


def test_virtual_loop_refuses_to_wait_forever() -> None:
    loop = VirtualLoop()
    try:
        with pytest.raises(VirtualLoopStalled):
            loop.run_until_complete(loop.create_future())
    finally:
        loop.close()


def test_sim_storage_crash_loses_or_tears_the_write_in_flight() -> None:
    entries = [Entry(index=i, term=1) for i in (1, 2, 3)]
    torn = SimStorage(Disk(HardState(), Snapshot()))
    torn.submitted(HardState(term=1, commit=3), entries, None)
    assert torn.crash(random.Random(1), torn=1.0).startswith("torn write")
    assert 1 <= torn.disk.last_index() <= 3 and torn.disk.hard_state == HardState()
    lost = SimStorage(Disk(HardState(), Snapshot()))
    lost.submitted(HardState(term=1), entries, None)
    assert lost.crash(random.Random(1), torn=0.0).startswith("write of 4 records lost")
    assert lost.disk.last_index() == 0


def test_node_sim_seeds_pass_and_exercise_the_node() -> None:
    sims = [NodeSim(seed, profile(seed)) for seed in (1, 2, 3)]
    assert [sim.run() for sim in sims] == [None] * 3, (
        "replay with: python -m hamgr.raft.sim.node --seed N --trace"
    )
    assert sum(sim.acked_writes for sim in sims) > 150
    assert sum(sim.history.reads for sim in sims) > 100
    assert sum(len(sim.history.revoked_at) for sim in sims) > 10  # leases expired and revoked
    assert sum(sim.crashes for sim in sims) > 5


def test_node_sim_replays_a_seed_exactly() -> None:
    first, second = NodeSim(5, profile(5)), NodeSim(5, profile(5))
    assert first.run() == second.run()
    assert first.summary() == second.summary()


@pytest.mark.parametrize(
    ("bug", "found"),
    [
        ("send_before_persist", "sent before persisted"),
        ("ack_before_commit", ""),  # a lost write, or a stale read
        ("read_without_quorum", ""),  # a stale read, or a lease kept alive by a deposed leader
        ("leases_kept_after_step_down", "lease safety"),
    ],
)
def test_node_sim_catches_a_planted_bug(bug: str, found: str) -> None:
    """Caught within the first 12 hunt seeds (each is caught in 40% of them or more;
    `--hunt --bug-report` prints the rates), stopping at the first catch."""
    results = []
    for seed in range(1, 13):
        result = run_seed(seed, NodeSim, hunt_profile, bug)
        results.append(result)
        if result is not None and result.startswith("violation") and found in result:
            return
    pytest.fail(f"{bug} not caught in 12 seeds: {results}")


@pytest.mark.slow
def test_node_sim_many_seeds() -> None:
    failures = [(s, r) for s in range(1001, 1201) if (r := run_seed(s, NodeSim, profile))]
    failures += [(s, r) for s in range(1, 51) if (r := run_seed(s, NodeSim, hunt_profile))]
    assert failures == []


@pytest.mark.slow
def test_node_sim_catches_planted_bugs_in_most_hunt_seeds() -> None:
    seeds = range(1, 41)
    for bug, at_least in (
        ("send_before_persist", 36),  # 40/40 when measured
        ("ack_before_commit", 36),  # 20/20 (of 20)
        ("read_without_quorum", 25),  # 34/40
        ("leases_kept_after_step_down", 10),  # 17/40
    ):
        caught = [
            s for s in seeds if (run_seed(s, NodeSim, hunt_profile, bug) or "").startswith("v")
        ]
        assert len(caught) >= at_least, (bug, caught)


def test_node_sim_cli_summary_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hamgr.raft.sim.node", "--seeds", "1", "--first", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "seeds=1 violations=0 liveness_failures=0"
