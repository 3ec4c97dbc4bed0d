"""The simulator's safety checker: what must hold after every event, whatever the faults.

It keeps the history that all members share (who led each term, which entry every (index, term)
names, what was committed and applied at each index) and raises Violation at the first
contradiction. Besides Raft's end properties it checks rules the core promises, seen from
outside the core (`rule_*`): no vote or acknowledgement leaves a follower or candidate before
what it promises is on its disk (a leader's appends may leave before its own write); a leader's
commit index moves only to an entry of its own term, and only to an entry a quorum of voters
holds on disk (the leader's own copy counts only once durable).
"""

from __future__ import annotations

from hamgr.raft.core.log import RaftLog
from hamgr.raft.core.types import Entry, Message, MsgType
from hamgr.raft.sim.world import Disk


class Violation(Exception):
    """A safety property was broken."""


class SafetyChecker:
    """Raft's safety properties, checked incrementally from what members hand out and apply."""

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}
        self.applied: dict[int, tuple[int, bytes]] = {}  # index -> (term, state digest after it)
        # index -> (term of the entry, lowest term in which it was seen committed)
        self.committed: dict[int, tuple[int, int]] = {}
        self._commit_seen: dict[int, int] = {}  # member -> highest commit index recorded
        self._entries: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}

    def commit_observed(self, member: int, term: int, log: RaftLog) -> None:
        """Record what `member` (now in `term`) holds as committed; the same index must always
        name an entry of the same term (commit safety). Called as soon as the commit moves."""
        lo = self._commit_seen.get(member, 0) + 1
        if log.committed < lo:
            return
        self._commit_seen[member] = log.committed
        for index in range(max(lo, log.first_index()), log.committed + 1):
            entry_term = log.term(index)
            if entry_term is None:
                continue
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = (entry_term, term)
            elif known[0] != entry_term:
                raise Violation(
                    f"commit safety: {member} holds term {entry_term} committed at {index}, "
                    f"others term {known[0]}"
                )
            elif term < known[1]:
                self.committed[index] = (entry_term, term)

    def restarted(self, member: int) -> None:
        """A restarted member recovers an older commit index: look at its commits afresh."""
        self._commit_seen.pop(member, None)

    def entries_written(self, member: int, entries: list[Entry], prev_term: int | None) -> None:
        """Log matching: an (index, term) names one entry, always after the same term."""
        for e in entries:
            key = (e.index, e.term)
            seen = self._entries.get(key)
            if seen is None:
                self._entries[key] = (e.type, e.data, prev_term)
            elif seen[0] != e.type or seen[1] != e.data:
                raise Violation(
                    f"log matching: two different entries at index {e.index} term {e.term}"
                )
            elif prev_term is not None and seen[2] is not None and seen[2] != prev_term:
                raise Violation(
                    f"log matching: entry {e.index} term {e.term} follows term {prev_term} "
                    f"on {member} but term {seen[2]} elsewhere"
                )
            prev_term = e.term

    def became_leader(self, member: int, term: int, log: RaftLog) -> None:
        """Election safety and leader completeness, checked the moment `member` wins: it holds
        every entry committed in an earlier term (committed, not merely applied: an entry
        counts as soon as any member holds it committed, long before anyone applies it)."""
        other = self.leaders.setdefault(term, member)
        if other != member:
            raise Violation(f"two leaders in term {term}: {other} and {member}")
        snap_index = log.snapshot.meta.index
        for index, (entry_term, commit_term) in self.committed.items():
            if commit_term < term and index > snap_index and log.term(index) != entry_term:
                raise Violation(
                    f"leader completeness: leader {member} of term {term} lacks entry {index} "
                    f"(term {entry_term}) committed in term {commit_term}"
                )

    def snapshot_installed(self, member: int, index: int, digest: bytes) -> None:
        """A snapshot must equal the state every member reached at its index."""
        known = self.applied.get(index)
        if index and known is not None and known[1] != digest:
            raise Violation(f"snapshot at {index} on {member} differs from history")

    def entry_applied(self, member: int, e: Entry, prev_applied: int, digest: bytes) -> None:
        """State machine safety: same entry and same resulting state at every index."""
        if e.index != prev_applied + 1:
            raise Violation(f"{member} applies {e.index} after {prev_applied}")
        known = self.applied.setdefault(e.index, (e.term, digest))
        if known != (e.term, digest):
            raise Violation(
                f"state machine safety: {member} applied term {e.term} at {e.index}, "
                f"others applied term {known[0]} (or a different history)"
            )

    def read_served(self, member: int, read_index: int, newest_acked_before: int) -> None:
        """Linearizable reads: never older than a write acknowledged before the read began."""
        if read_index < newest_acked_before:
            raise Violation(
                f"stale read on {member}: read index {read_index} older than write "
                f"{newest_acked_before} acknowledged before the read began"
            )

    def rule_ack_durable(self, member: int, msg: Message, disk: Disk) -> None:
        """Persist before answering: a vote granted or entries acknowledged are on the disk
        when the message leaves (else a crash forgets them after others counted on them)."""
        hs = disk.hard_state
        if msg.reject or hs.term > msg.term:
            # A newer term on disk already rules out a second vote in msg.term, and entries
            # acknowledged to an older leader may since have been replaced by a newer one's.
            return
        if msg.type == MsgType.VOTE_RESP:
            if hs.term != msg.term or hs.vote != msg.to:
                raise Violation(
                    f"vote sent before persisted: {member} grants {msg.to} in term {msg.term}, "
                    f"its disk holds term {hs.term} vote {hs.vote}"
                )
        elif msg.type == MsgType.APP_RESP and msg.index > disk.last_index():
            raise Violation(
                f"ack sent before persisted: {member} acknowledges {msg.index}, "
                f"its disk ends at {disk.last_index()}"
            )

    def rule_commit_durable(
        self, member: int, log: RaftLog, voters: tuple[int, ...], disks: dict[int, Disk]
    ) -> None:
        """A leader commits an entry only once a quorum of voters holds it on disk. The leader
        may send its appends before its own write is durable (thesis 10.2.1), but its own
        copy counts toward the quorum only once it is on its disk."""
        index = log.committed
        term = log.term(index)
        if term is None:
            return
        holders = sorted(v for v in voters if v in disks and disks[v].holds(index, term))
        if 2 * len(holders) <= len(voters):
            raise Violation(
                f"commit before durable on a quorum: leader {member} committed {index} "
                f"(term {term}), on the disks of only {holders} of voters {sorted(voters)}"
            )

    def rule_leader_commit(self, member: int, term: int, log: RaftLog) -> None:
        """A leader commits by counting only an entry of its own term (figure 8)."""
        if log.term(log.committed) != term:
            raise Violation(
                f"leader {member} of term {term} moved its commit to {log.committed}, an entry "
                f"of term {log.term(log.committed)}"
            )
