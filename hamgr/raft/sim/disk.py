"""An in-memory stand-in for the WAL (`RaftStorage`) under a real `RaftNode`, with crashes.

A member's `Disk` (`hamgr.raft.sim.world`, the base simulator's) holds exactly what completed
saves made durable; it outlives the node, so a restarted node recovers from it. Each start opens
a `SimStorage` over it. Saves run on the virtual loop's executor after a simulated fsync delay
(`hamgr.raft.sim.loop`); a save that has not finished when the member crashes is lost, or, with a
torn write, leaves a prefix of its records (snapshot marker, entries, hard state, in the order
the WAL writes them), as the WAL's recovery keeps a torn tail.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence

from hamgr.raft.core.types import Entry, HardState, Ready, Snapshot
from hamgr.raft.sim.world import Disk

__all__ = ["SimStorage", "StorageCrashedError"]


class StorageCrashedError(RuntimeError):
    """A call reached the storage of a member that has crashed (its process is gone)."""


class SimStorage:
    """`NodeStorage` over a `Disk`: durable when a save completes, torn when crashed mid-way."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.crashed = False
        self.saves = 0
        self._in_flight: deque[Ready] = deque()
        self._opened = True

    def submitted(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None
    ) -> None:
        """A save was handed to the executor: it is in flight until `save` runs."""
        self._in_flight.append(
            Ready(hard_state=hard_state, entries=list(entries), snapshot=snapshot)
        )

    def initial_state(self) -> tuple[HardState, Snapshot | None, list[Entry]]:
        """What the disk holds now."""
        d = self.disk
        snap = d.snapshot if d.snapshot.meta.index else None
        return d.hard_state, snap, list(d.entries)

    def save(
        self,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """The batch is durable now (its simulated fsync finished)."""
        self._check()
        rd = Ready(hard_state=hard_state, entries=list(entries), snapshot=snapshot)
        if self._in_flight:
            self._in_flight.popleft()
        self.disk.persist(rd)
        self.saves += 1

    def stage_snapshot(self, snapshot: Snapshot) -> None:
        """Nothing to stage: `compact` stores the snapshot itself."""
        self._check()

    def compact(self, snapshot: Snapshot) -> None:
        """Adopt a snapshot at an applied index (never beyond the durable commit)."""
        self._check()
        if snapshot.meta.index <= self.disk.snapshot.meta.index:
            return
        if snapshot.meta.index > self.disk.hard_state.commit:
            raise ValueError(
                f"cannot compact to {snapshot.meta.index}: commit {self.disk.hard_state.commit}"
            )
        self.disk.compact(snapshot)

    def close(self) -> None:
        """Nothing to release."""
        self._opened = False

    def crash(self, rng: random.Random, torn: float) -> str:
        """The process died: the save being written (if any) is lost, or with probability
        `torn` leaves a prefix of its records; nothing later reaches the disk. Returns what
        happened, for the trace."""
        self.crashed = True
        if not self._in_flight:
            return "no write in flight"
        rd = self._in_flight[0]
        self._in_flight.clear()
        records = Disk.records(rd)
        if records > 1 and rng.random() < torn:
            kept = rng.randrange(1, records)
            self.disk.persist_prefix(rd, kept)
            return f"torn write: {kept} of {records} records kept"
        return f"write of {records} records lost"

    def _check(self) -> None:
        if self.crashed:
            raise StorageCrashedError("the member crashed")
