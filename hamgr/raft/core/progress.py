"""What a leader knows about each follower's log, and the flow control that follows from it.

A follower is in one of three states (as in etcd-io/raft):
- PROBE: we do not know where its log matches ours; send one append at a time and wait;
- REPLICATE: it is in step; stream appends optimistically, at most `max_inflight` unacknowledged;
- SNAPSHOT: its next entry is compacted away; a snapshot is on its way, send nothing else.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    """Replication state of one follower, seen from the leader."""

    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Progress:
    """Match and next index of one follower plus its flow-control window."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "max_inflight",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "snapshot_elapsed",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0
        self.recent_active = False
        self.is_learner = is_learner
        self.max_inflight = max_inflight
        self.inflights: deque[int] = deque()

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.name}, "
            f"inflight={len(self.inflights)})"
        )

    def become_probe(self) -> None:
        """Fall back to probing, resuming after what we know it has."""
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        """Start streaming after the matched index."""
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, snapshot_index: int) -> None:
        """A snapshot up to `snapshot_index` is being sent."""
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0
        self.inflights.clear()

    def is_paused(self) -> bool:
        """Should the leader hold back further appends to this follower for now?"""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return len(self.inflights) >= self.max_inflight
        return True

    def sent_entries(self, last_index: int) -> None:
        """Account for an append carrying entries up to `last_index`."""
        if self.state == ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.append(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged entries up to `index`; True when match grew."""
        updated = False
        if index > self.match:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self.inflights and self.inflights[0] <= index:
            self.inflights.popleft()
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower refused an append at `rejected`; step back. False for stale refusals."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True
