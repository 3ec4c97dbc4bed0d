"""The simulator's safety checker: what must hold after every event, whatever the faults.

It keeps the history that all members share (who led each term, which entry every (index, term)
names, what was applied at each index) and raises Violation at the first contradiction.
"""

from __future__ import annotations

from hamgr.raft.log import RaftLog
from hamgr.raft.types import Entry


class Violation(Exception):
    """A safety property was broken."""


class SafetyChecker:
    """Raft's safety properties, checked incrementally from what members hand out and apply."""

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}
        self.applied: dict[int, tuple[int, bytes]] = {}  # index -> (term, state digest after it)
        self._entries: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}

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
        """Election safety and leader completeness."""
        other = self.leaders.setdefault(term, member)
        if other != member:
            raise Violation(f"two leaders in term {term}: {other} and {member}")
        snap_index = log.snapshot.meta.index
        for index, (entry_term, _) in self.applied.items():
            if index > snap_index and log.term(index) != entry_term:
                raise Violation(
                    f"leader completeness: leader {member} of term {term} lacks applied "
                    f"entry {index} (term {entry_term})"
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
