"""The knobs of one core-simulator run (`SimConfig`) and the fault mixes seeds run with: a
per-seed mix of cluster sizes and fault rates (`profile`), and the bug-hunting profile
(`HUNT`, `hunt_profile`) that aims faults at the moments where Raft's rules matter.

Used by `hamgr.raft.sim.cores` and `hamgr.raft.sim.kv`; the node simulator has its own
(`hamgr.raft.sim.node`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from hamgr.raft.sim.breakers import RuleBreakers


@dataclass(frozen=True)
class SimConfig:
    """Knobs of one simulated run; `profile()` picks a random mix from the seed."""

    nodes: int = 3
    fault_ms: int = 4000
    liveness_ms: int = 6000
    election_tick: int = 10
    heartbeat_tick: int = 2
    drop: float = 0.03
    duplicate: float = 0.02
    delay_ms: tuple[int, int] = (1, 12)
    slow_fraction: float = 0.05
    fault_every_ms: tuple[int, int] = (150, 700)
    crash_in_ready: float = 0.002
    propose_every_ms: tuple[int, int] = (3, 25)
    read_every_ms: tuple[int, int] = (10, 60)
    snapshot_every: int = 40
    max_inflight: int = 4
    max_size_per_msg: int = 200
    membership_changes: bool = True
    fsync_ms: tuple[int, int] = (0, 0)
    slow_disk_ms: tuple[int, int] = (0, 0)
    """When set, a leader's own writes take this long (its disk lags its followers' acks)."""
    crash_new_leader: float = 0.0
    crash_new_leader_ms: tuple[int, int] = (1, 40)
    crash_mid_write: float = 0.0
    rule_checks: bool = True
    rule_breakers: RuleBreakers = field(default_factory=RuleBreakers)


def profile(seed: int, base: SimConfig | None = None) -> SimConfig:
    """A per-seed mix of cluster size and fault rates, so many seeds cover many shapes."""
    r = random.Random(seed ^ 0x5EED)
    cfg = base or SimConfig()
    return replace(
        cfg,
        nodes=r.choice((3, 3, 5)),
        drop=r.choice((0.0, 0.02, 0.1)),
        duplicate=r.choice((0.0, 0.02, 0.05)),
        crash_in_ready=r.choice((0.0, 0.002, 0.01)),
        snapshot_every=r.choice((15, 40, 1000)),
        fsync_ms=r.choice(((0, 0), (0, 0), (1, 8))),
    )


HUNT = SimConfig(
    max_size_per_msg=1,
    max_inflight=2,
    fault_every_ms=(30, 150),
    delay_ms=(1, 30),
    propose_every_ms=(1, 10),
    snapshot_every=0,
    fsync_ms=(1, 10),
    slow_disk_ms=(20, 120),
    crash_in_ready=0.002,
    crash_new_leader=0.3,
    crash_new_leader_ms=(1, 30),
    crash_mid_write=0.5,
    fault_ms=10_000,
    liveness_ms=20_000,  # one entry per message: a long uncommitted tail takes a while
)
"""A bug-hunting profile: one entry per message, small windows, slow links and disks, frequent
faults aimed at the moments where Raft's rules matter: slow disks on leaders (a leader's own write
lags its followers' acks), a crash while a batch is being written
(its acknowledgements must not be out yet) and a new leader's crash soon after it won (while it
is still bringing older-term entries to the others, as in the paper's figure 8)."""


def hunt_profile(
    seed: int, breakers: RuleBreakers | None = None, *, rule_checks: bool = True
) -> SimConfig:
    """HUNT with 5 members on odd seeds and 3 on even ones, and optional rule breakers;
    without `rule_checks` only Raft's end properties are checked (how the bugs show)."""
    return replace(
        HUNT,
        nodes=5 if seed % 2 else 3,
        rule_breakers=breakers or RuleBreakers(),
        rule_checks=rule_checks,
    )
