"""The Raft log as the core sees it: a snapshot, the entries after it, and three marks.

Pure bookkeeping, no I/O. The driver persists what `unstable_entries()` hands out and reports back
through `stable_to()`; the core never counts an entry as its own acknowledgement before that.

Marks, always ordered `snapshot.index <= applied <= committed <= last_index` and
`stable <= last_index`:
- committed: highest index known to be stored on a quorum;
- applied: highest index handed to the application;
- stable: highest index known to be durable locally with the same content as in memory.
"""

from __future__ import annotations

import itertools

from hamgr.raft.core.types import Entry, Snapshot


class LogInvariantError(AssertionError):
    """A rule of the log was about to be broken (a bug, never a normal condition)."""


class RaftLog:
    """Entries in memory, from `first_index` on, after an optional snapshot."""

    def __init__(self, snapshot: Snapshot, entries: list[Entry], committed: int) -> None:
        snap_index = snapshot.meta.index
        if entries:
            if entries[0].index > snap_index + 1:
                raise LogInvariantError(
                    f"log gap: snapshot ends at {snap_index}, entries start at {entries[0].index}"
                )
            entries = [e for e in entries if e.index > snap_index]
        for prev, cur in itertools.pairwise(entries):
            if cur.index != prev.index + 1:
                raise LogInvariantError(f"log gap between entries {prev.index} and {cur.index}")
            if cur.term < prev.term:
                raise LogInvariantError(f"term goes backwards at entry {cur.index}")
        self.snapshot = snapshot
        self._entries: list[Entry] = entries
        self._offset = snap_index + 1  # index of self._entries[0]
        self.committed = max(committed, snap_index)
        if self.committed > self.last_index():
            raise LogInvariantError(
                f"commit index {committed} beyond the last entry {self.last_index()}"
            )
        self.applied = snap_index
        self.stable = self.last_index()
        self._unstable_from = self.last_index() + 1
        self.pending_snapshot: Snapshot | None = None

    # -- reading ---------------------------------------------------------------------------

    def first_index(self) -> int:
        """The first index still held as an entry (compacted ones live in the snapshot)."""
        return self._offset

    def last_index(self) -> int:
        """The index of the last entry (or of the snapshot when no entry follows it)."""
        return self._offset + len(self._entries) - 1

    def last_term(self) -> int:
        """The term of the last entry (or of the snapshot)."""
        return self._entries[-1].term if self._entries else self.snapshot.meta.term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`, or None when compacted away or not yet written."""
        if index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        pos = index - self._offset
        if 0 <= pos < len(self._entries):
            return self._entries[pos].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        """True when the entry at `index` exists and has `term`."""
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        """The entry at `index` (which must be held)."""
        return self._entries[index - self._offset]

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi), at least one when any, at most `max_bytes` of data after the first."""
        if lo < self._offset:
            raise LogInvariantError(f"slice from {lo} below first index {self._offset}")
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return []
        out = self._entries[lo - self._offset : hi - self._offset]
        if max_bytes is None:
            return out
        size = 0
        for n, e in enumerate(out):
            size += len(e.data) + 16
            if n > 0 and size > max_bytes:
                return out[:n]
        return out

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction: is a log ending at (last_index, last_term) at least ours?"""
        return last_term > self.last_term() or (
            last_term == self.last_term() and last_index >= self.last_index()
        )

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= `index` whose term is <= `term` (a follower's reject hint)."""
        index = min(index, self.last_index())
        while index > self.snapshot.meta.index:
            t = self.term(index)
            if t is None or t <= term:
                break
            index -= 1
        return index

    # -- writing ---------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> int:
        """Append entries that follow on from the log or replace an uncommitted suffix."""
        if not entries:
            return self.last_index()
        first = entries[0].index
        if first <= self.committed:
            raise LogInvariantError(
                f"refusing to overwrite committed entry {first} (committed={self.committed})"
            )
        if first > self.last_index() + 1:
            raise LogInvariantError(f"append at {first} leaves a gap after {self.last_index()}")
        del self._entries[first - self._offset :]
        self._entries.extend(entries)
        self._unstable_from = min(self._unstable_from, first)
        self.stable = min(self.stable, first - 1)
        return self.last_index()

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """A follower's handling of an append: None when (index, log_term) does not match.

        Otherwise skips entries we already hold, truncates at the first conflict only, appends
        the rest, advances commit to what the leader proved, and returns the last new index.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            self.append([e for e in entries if e.index >= conflict])
        self.commit_to(min(committed, last_new))
        return last_new

    def _find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry that is new or differs in term from ours; 0 if none."""
        for e in entries:
            if e.index < self._offset:
                continue  # compacted into the snapshot, hence committed and equal
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def commit_to(self, index: int) -> bool:
        """Advance the commit mark (never backwards); True when it moved."""
        if index <= self.committed:
            return False
        if index > self.last_index():
            raise LogInvariantError(f"commit {index} beyond last index {self.last_index()}")
        self.committed = index
        return True

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader (InstallSnapshot)."""
        self.snapshot = snapshot
        self._entries = []
        self._offset = snapshot.meta.index + 1
        self.committed = snapshot.meta.index
        self.pending_snapshot = snapshot
        self.stable = min(self.stable, snapshot.meta.index)
        self._unstable_from = snapshot.meta.index + 1

    def compact(self, snapshot: Snapshot, retain: int) -> None:
        """Adopt a snapshot the application took and drop entries before it, keeping `retain`."""
        index = snapshot.meta.index
        if index > self.applied:
            raise LogInvariantError(f"snapshot at {index} beyond applied index {self.applied}")
        if index < self.snapshot.meta.index:
            return
        self.snapshot = snapshot
        # Entries not yet handed out for writing stay (a leader applies ahead of its write).
        keep_from = max(self._offset, min(index + 1 - retain, self._unstable_from))
        del self._entries[: keep_from - self._offset]
        self._offset = keep_from

    # -- handing out and taking back -------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        """Entries the driver has not yet been asked to persist."""
        if self._unstable_from > self.last_index():
            return []
        return self._entries[self._unstable_from - self._offset :]

    def mark_handed_out(self) -> int:
        """Record that unstable entries went into a Ready; returns the last index handed out."""
        self._unstable_from = self.last_index() + 1
        return self.last_index()

    def stable_to(self, index: int) -> None:
        """The driver made entries up to `index` durable (lowered by any truncation since)."""
        self.stable = max(self.stable, min(index, self._unstable_from - 1))

    def next_committed(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet applied, at most about `max_bytes` of data."""
        lo = max(self.applied + 1, self._offset)
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, max_bytes)
