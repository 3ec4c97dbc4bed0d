"""Tuning of one Raft member."""

from __future__ import annotations

from dataclasses import dataclass

from hamgr.raft.core.types import NONE


@dataclass(frozen=True)
class RaftConfig:
    """Tuning of one member. Ticks are the driver's unit of time (e.g. 100 ms)."""

    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_apply_bytes_per_ready: int = 4 << 20
    snapshot_retain_entries: int = 0
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.id <= NONE:
            raise ValueError(f"node id must be a positive integer, got {self.id}")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must exceed heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")
