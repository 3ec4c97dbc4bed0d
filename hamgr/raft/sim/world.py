"""The simulated members: a disk that keeps only what Ready batches persisted, a tiny state
machine whose state is a digest of everything applied, and the client bookkeeping of a member.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

from hamgr.raft.core.config import RaftConfig
from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.types import Entry, HardState, Ready, Snapshot
from hamgr.raft.sim.breakers import RuleBreakers, make_core


@dataclass(frozen=True)
class MemberTuning:
    """What a simulated member's core is configured with."""

    election_tick: int
    heartbeat_tick: int
    max_inflight: int
    max_size_per_msg: int
    rule_breakers: RuleBreakers


@dataclass
class Disk:
    """What one member has made durable: exactly what its Ready batches said to persist."""

    hard_state: HardState
    snapshot: Snapshot
    entries: list[Entry] = field(default_factory=list)

    def persist(self, rd: Ready) -> None:
        """Apply a Ready's persistence part, atomically (one fsync)."""
        self.persist_prefix(rd, self.records(rd))

    @staticmethod
    def records(rd: Ready) -> int:
        """How many WAL records the Ready's batch is: snapshot marker, entries, hard state."""
        return (rd.snapshot is not None) + len(rd.entries) + (rd.hard_state is not None)

    def persist_prefix(self, rd: Ready, kept: int) -> None:
        """What a torn write of the batch leaves: its first `kept` records, in the order the
        storage writes them (snapshot marker, entries, hard state); an entry replaces every
        stored entry at its index and above."""
        if kept <= 0:
            return
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = []
            kept -= 1
        entries = list(rd.entries[:kept])
        kept -= len(entries)
        if entries:
            first = entries[0].index
            self.entries = [e for e in self.entries if e.index < first] + entries
        if kept > 0 and rd.hard_state is not None:
            self.hard_state = rd.hard_state

    def holds(self, index: int, term: int) -> bool:
        """Is the entry (`index`, `term`) durable here (or covered by the snapshot)?"""
        snap = self.snapshot.meta
        if index < snap.index or (index == snap.index and term == snap.term):
            return True
        pos = index - (self.entries[0].index if self.entries else snap.index + 1)
        return 0 <= pos < len(self.entries) and self.entries[pos].term == term

    def last_index(self) -> int:
        """The last index held (in an entry, or the snapshot's)."""
        return self.entries[-1].index if self.entries else self.snapshot.meta.index

    def compact(self, snap: Snapshot) -> None:
        """The application saved a snapshot; entries it covers may go."""
        self.snapshot = snap
        self.entries = [e for e in self.entries if e.index > snap.meta.index]


@dataclass
class App:
    """A member's state machine: the applied index and a digest chained over all entries."""

    applied: int = 0
    digest: bytes = b"\0" * 8

    def encode(self) -> bytes:
        """Snapshot data (16 bytes; a richer state machine appends its own after them)."""
        return struct.pack(">Q", self.applied) + self.digest

    @classmethod
    def decode(cls, data: bytes) -> App:
        """Restore from snapshot data."""
        if not data:
            return cls()
        return cls(struct.unpack(">Q", data[:8])[0], data[8:16])


def chain_digest(digest: bytes, e: Entry) -> bytes:
    h = hashlib.blake2b(digest, digest_size=8)
    h.update(struct.pack(">QQB", e.index, e.term, e.type))
    h.update(e.data)
    return h.digest()


class Member:
    """One simulated member: its core, its disk, its application and its client bookkeeping."""

    def __init__(self, node_id: int, disk: Disk, rng: random.Random, tuning: MemberTuning) -> None:
        self.id = node_id
        self.disk = disk
        self.up = False
        self.removed = False
        self.was_member = False  # once a member, absence from its own conf means removal
        self.led_term = 0  # the last term in which it was seen becoming leader
        self.leader_commit = 0  # its commit index when last seen as that leader
        self.syncing = False
        self.pipelined = False  # the batch being written is a leader's, already sent and applied
        self.in_flight: Ready | None = None  # the batch being written, if any
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.app = App()
        self._rng = rng
        self._tuning = tuning
        self.proposals: dict[int, tuple[int, bytes]] = {}
        self.reads: dict[bytes, int] = {}

    def start(self) -> None:
        """(Re)start from disk, as a real process would after a crash."""
        c = self._tuning
        cfg = RaftConfig(
            id=self.id,
            election_tick=c.election_tick,
            heartbeat_tick=c.heartbeat_tick,
            max_inflight_msgs=c.max_inflight,
            max_size_per_msg=c.max_size_per_msg,
            max_apply_bytes_per_ready=2000,
        )
        d = self.disk
        self.core = make_core(
            cfg,
            random.Random(self._rng.getrandbits(64)),
            c.rule_breakers,
            hard_state=d.hard_state,
            snapshot=d.snapshot,
            entries=list(d.entries),
        )
        self.app = App.decode(d.snapshot.data)
        self.proposals = {}
        self.reads = {}
        self.up = True
        self.syncing = self.pipelined = False
        self.in_flight = None
        self.led_term = 0
        self.incarnation += 1

    def stop(self) -> None:
        """Crash: everything not on disk is gone."""
        self.up = False
        self.core = None
        self.syncing = self.pipelined = False
        self.in_flight = None
        self.proposals = {}
        self.reads = {}
