"""The KV simulator: the real KV store and lease clock under the simulator's faults, and proof
that its KV and lease checks have teeth."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import pytest

from hamgr.raft.kv.lease import LeaseClock
from hamgr.raft.sim.kv import KVMember, KVSimulator, _Op
from hamgr.raft.sim.profiles import profile
from hamgr.raft.sim.world import Member

SEEDS = 60


def _failures(sim: type[KVSimulator], seeds: range) -> list[tuple[int, str]]:
    out = []
    for seed in seeds:
        result = sim(seed, profile(seed)).run()
        if result is not None:
            out.append((seed, result))
    return out


def test_kv_sim_seeds_pass() -> None:
    assert _failures(KVSimulator, range(1, SEEDS + 1)) == [], (
        "replay with: python -m hamgr.raft.sim.kv --seed N --trace"
    )


def test_kv_sim_exercises_reads_and_leases() -> None:
    sims = [KVSimulator(seed, profile(seed)) for seed in range(1, 6)]
    assert [sim.run() for sim in sims] == [None] * 5
    assert sum(sim.kv_reads for sim in sims) > 100
    assert sum(sim.acked_writes for sim in sims) > 300
    assert sum(len(sim.revoked_at) for sim in sims) > 20  # leases expired and were revoked
    assert sum(len(sim.leased_keys) for sim in sims) > 20  # keys were attached to leases


class _TrustingClock(LeaseClock):
    """Bug: a new leader counts every lease from an election timeout ago, as if it knew when
    the old leader last heard a keepalive."""

    def become_leader(self, now: float, leases: Mapping[int, float]) -> None:
        super().become_leader(now - 0.2, leases)


class _TrustingLeader(KVSimulator):
    def _member_started(self, m: Member) -> None:
        super()._member_started(m)
        st = self.kvm[m.id]
        self.kvm[m.id] = KVMember(st.kv, _TrustingClock(retry_interval=0.1))


class _LocalReads(KVSimulator):
    """Bug: reads served from whatever member the client reaches, without ReadIndex."""

    def _client_read(self) -> None:
        if self.faults_on:
            self.schedule(self.between(self.cfg.read_every_ms), "read")
        up = [m for m in self.members.values() if m.up and m.core is not None]
        if not up:
            return
        m = self.rng.choice(up)
        key = self.rng.choice([b"k0", b"k1", b"k2", b"k3"])
        self._serve(
            m, self.kvm[m.id], _Op("read", self.now, key, need_revision=self.key_acked.get(key, 0))
        )


@pytest.mark.parametrize(
    ("sim", "found"),
    [(_TrustingLeader, "lease safety"), (_LocalReads, "stale KV read")],
)
def test_kv_checks_catch_a_broken_driver(sim: type[KVSimulator], found: str) -> None:
    failures = _failures(sim, range(1, 21))
    assert any(found in result for _, result in failures), failures


@pytest.mark.slow
def test_kv_sim_many_seeds() -> None:
    assert _failures(KVSimulator, range(10_001, 12_001)) == []


def test_kv_sim_cli_summary_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hamgr.raft.sim.kv", "--seeds", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "seeds=3 violations=0 liveness_failures=0"
