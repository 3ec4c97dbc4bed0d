"""RaftStorage: durable storage of one Raft member, a write-ahead log (entries, hard state) and
snapshots in one data directory.

Synchronous file I/O; the node driver calls it from a worker thread so that fsync never blocks
the event loop. A call returns only once what it wrote is durable (fsync'ed, and the directory
fsync'ed after any file create, rename or unlink).

This module holds the storage that writes: open (lock, recover, repair), save, compact, close,
and the poisoning after a failed write or fsync. The on-disk format (layout, record framing,
snapshot files) is in `hamgr.raft.wal.walformat`; reading a directory back and deciding what is
a torn tail and what is corruption is in `hamgr.raft.wal.walrecovery`; the errors are in
`hamgr.raft.wal.storageerrors`, and callers import them from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from array import array
from collections.abc import Sequence
from typing import NoReturn

from hamgr.raft.core.types import Entry, HardState, Snapshot, SnapshotMeta
from hamgr.raft.wal.storageerrors import (
    StorageClosedError,
    StorageError,
    StorageFatalError,
    StorageLockedError,
)
from hamgr.raft.wal.walformat import (
    TMP_SUFFIX,
    encode_entry,
    encode_hard_state,
    encode_header,
    encode_marker,
    encode_snapshot_file,
    segment_name,
    snapshot_name,
)
from hamgr.raft.wal.walrecovery import Recovered, Segment, list_dir, recover

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "LOCK_NAME",
    "MIN_SEGMENT_BYTES",
    "RaftStorage",
]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
"""A segment is rolled over once the next batch would take it past this size."""

MIN_SEGMENT_BYTES = 128
LOCK_NAME = "LOCK"


# -- the storage ------------------------------------------------------------------------------


class RaftStorage:
    """The durable log, hard state and snapshots of one Raft member, in one data directory.

    Create with `RaftStorage.open(path)`. Calls are serialised by an internal lock and meant to
    come from one worker thread; the exception is `stage_snapshot`, which writes a snapshot file
    from another thread while saves go on, so a large snapshot does not hold up the log.
    """

    def __init__(self, path: str, lock_fd: int, segment_bytes: int, rec: Recovered) -> None:
        """Internal: use `open()`, which recovers the directory first."""
        self._path = path
        self._lock_fd = lock_fd
        self._segment_bytes = segment_bytes
        self._mu = threading.Lock()
        self._stage_mu = threading.Lock()  # taken before _mu, never after it
        self._staged: set[tuple[int, int]] = set()  # (index, term) of staged snapshot files
        self._failed: BaseException | None = None
        self._closed = False
        self._dir_fd = -1
        self._fd = -1
        self._segments = rec.segments
        self._hard_state = rec.hard_state
        self._snap_meta = rec.snapshot.meta if rec.snapshot else SnapshotMeta()
        self._terms = array("Q", (e.term for e in rec.entries))
        self._initial: tuple[HardState, Snapshot | None, list[Entry]] | None = (
            rec.hard_state,
            rec.snapshot,
            rec.entries,
        )
        self._seg_size = rec.last_size
        self._seg_head_size = 0
        self._dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._repair(rec)
            if rec.last_has_head:
                self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
            else:
                # Without a whole head, the last segment alone would not know the hard state
                # once compaction deletes the segments before it: start a fresh one.
                self._roll(b"")
        except BaseException:
            self._close_fds(release_lock=False)  # open() releases the lock it took
            raise

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> RaftStorage:
        """Open (creating if needed) and recover the data directory at `path`.

        Raises CorruptStorageError (nothing on disk changed) when the directory holds damage
        other than a torn tail of the last segment, StorageLockedError when another process
        has it open, StorageFatalError when the disk fails while opening.
        """
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be at least {MIN_SEGMENT_BYTES}")
        full = os.path.abspath(os.fspath(path))
        try:
            _make_dir(full)
            lock_fd = _lock(full)
        except OSError as exc:
            raise StorageFatalError(f"cannot open Raft storage {full}: {exc}") from exc
        try:
            return cls(full, lock_fd, segment_bytes, recover(full))
        except OSError as exc:
            os.close(lock_fd)
            raise StorageFatalError(f"cannot open Raft storage {full}: {exc}") from exc
        except BaseException:
            os.close(lock_fd)
            raise

    # -- reads ------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The data directory."""
        return self._path

    @property
    def hard_state(self) -> HardState:
        """The hard state last saved."""
        return self._hard_state

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        """Where the current snapshot stands (index 0 when there is none)."""
        return self._snap_meta

    @property
    def first_index(self) -> int:
        """The index of the first entry the log can hold (the one after the snapshot)."""
        return self._snap_meta.index + 1

    @property
    def last_index(self) -> int:
        """The index of the last stored entry (or of the snapshot when no entry follows)."""
        return self._snap_meta.index + len(self._terms)

    def term(self, index: int) -> int | None:
        """The term of the entry (or snapshot) at `index`; None when not stored."""
        base = self._snap_meta.index
        if index == base:
            return self._snap_meta.term
        if base < index <= base + len(self._terms):
            return self._terms[index - base - 1]
        return None

    def initial_state(self) -> tuple[HardState, Snapshot | None, list[Entry]]:
        """What a restarting core needs: hard state, newest snapshot, the entries after it.

        Describes the state found by `open()`, so it is only available before the first
        `save()` or `compact()` that writes something.
        """
        with self._mu:
            self._check_usable()
            if self._initial is None:
                raise StorageError("initial_state() is only available before the first write")
            return self._initial

    # -- writes -----------------------------------------------------------------------------

    def save(
        self,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist one Ready batch: snapshot, then entries, then hard state; one fsync.

        A snapshot means the log now starts after `snapshot.meta.index` (InstallSnapshot): every
        stored entry is discarded. An entry at index i replaces every stored entry at i and
        above. Arguments that break these rules raise ValueError and write nothing.
        """
        staging = self._stage_mu if snapshot is not None else contextlib.nullcontext()
        with staging, self._mu:
            self._check_usable()
            base, last = self._snap_meta.index, self.last_index
            parts: list[bytes] = []
            if snapshot is not None:
                meta = snapshot.meta
                if meta.index <= base or meta.term < 1:
                    raise ValueError(
                        f"snapshot at index {meta.index} term {meta.term} is not newer than "
                        f"the stored snapshot at index {base}"
                    )
                base = last = meta.index
                parts.append(encode_marker(meta.index, meta.term, meta.index))
            if entries:
                _check_entries(entries, base, last)
                parts.extend(map(encode_entry, entries))
            if hard_state is not None:
                parts.append(encode_hard_state(hard_state))
            if not parts:
                return
            batch = b"".join(parts)
            try:
                if snapshot is not None:
                    self._write_snapshot_file(snapshot)
                next_index = entries[0].index if entries else last + 1
                self._append(batch, next_index)
            except OSError as exc:
                self._fail(exc)
            self._initial = None
            if snapshot is not None:
                self._snap_meta = snapshot.meta
                self._terms = array("Q")
            if entries:
                del self._terms[entries[0].index - base - 1 :]
                self._terms.extend(e.term for e in entries)
                seg = self._segments[-1]
                seg.max_index = max(seg.max_index, entries[-1].index)
            if hard_state is not None:
                self._hard_state = hard_state
            if snapshot is not None:
                self._drop_old()

    def stage_snapshot(self, snapshot: Snapshot) -> None:
        """Write the file of a snapshot `compact` will adopt, and make it durable.

        May run in another thread while `save` runs. Until `compact` records it in the log, the
        file counts for nothing: recovery removes a snapshot file the log does not name.
        """
        with self._stage_mu:
            with self._mu:
                self._check_usable()
            try:
                self._write_snapshot_file(snapshot)
            except OSError as exc:
                with self._mu:
                    self._fail(exc)
            self._staged.add((snapshot.meta.index, snapshot.meta.term))

    def compact(self, snapshot: Snapshot) -> None:
        """Adopt a snapshot the application took at an applied index, and drop what it covers.

        Writes the snapshot file unless `stage_snapshot` did. Keeps the entries after the
        snapshot, deletes whole segments holding only entries at or below it, and keeps the two
        newest snapshot files. A snapshot not newer than the stored one changes nothing. Raises
        ValueError if the snapshot is beyond the commit index or the log, or disagrees with the
        log's term at its index.
        """
        with self._stage_mu, self._mu:
            self._check_usable()
            meta = snapshot.meta
            base, last = self._snap_meta.index, self.last_index
            if meta.index <= base:
                return
            if meta.index > last or meta.index > self._hard_state.commit:
                raise ValueError(
                    f"cannot compact to index {meta.index}: last index {last}, "
                    f"commit index {self._hard_state.commit}"
                )
            stored_term = self._terms[meta.index - base - 1]
            if stored_term != meta.term:
                raise ValueError(
                    f"snapshot at index {meta.index} has term {meta.term}, the log {stored_term}"
                )
            try:
                if (meta.index, meta.term) not in self._staged:
                    self._write_snapshot_file(snapshot)
                self._append(encode_marker(meta.index, meta.term, last), last + 1)
            except OSError as exc:
                self._fail(exc)
            self._initial = None
            del self._terms[: meta.index - base]
            self._snap_meta = meta
            self._drop_old()

    def close(self) -> None:
        """Release the files and the directory lock. Safe to call twice, and after a failure.

        Waits for a `stage_snapshot` in progress."""
        with self._stage_mu, self._mu:
            if self._closed:
                return
            self._closed = True
            self._initial = None
            self._close_fds()

    def __enter__(self) -> RaftStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageFatalError(
                f"Raft storage {self._path} failed earlier ({self._failed}); refusing all use"
            ) from self._failed
        if self._closed:
            raise StorageClosedError(f"Raft storage {self._path} is closed")

    def _fail(self, exc: OSError) -> NoReturn:
        self._failed = exc
        log.critical(
            "Raft storage %s: write or fsync failed, refusing all use: %s", self._path, exc
        )
        raise StorageFatalError(f"Raft storage {self._path}: write or fsync failed: {exc}") from exc

    def _append(self, batch: bytes, next_index: int) -> None:
        """Write one batch with one write() and one fsync, rolling to a new segment if full."""
        if (
            self._seg_size + len(batch) > self._segment_bytes
            and self._seg_size > self._seg_head_size
        ):
            self._roll(batch, next_index)
            return
        _write_all(self._fd, batch)
        os.fdatasync(self._fd)
        self._seg_size += len(batch)

    def _roll(self, batch: bytes, next_index: int | None = None) -> None:
        """Start the next segment with a head and `batch`, fsync it and the directory."""
        seq = self._segments[-1].seq + 1 if self._segments else 0
        if next_index is None:
            next_index = self.last_index + 1
        seg = Segment(seq, next_index, os.path.join(self._path, segment_name(seq, next_index)))
        head = [encode_header(seq, next_index)]
        if self._snap_meta.index:
            head.append(encode_marker(self._snap_meta.index, self._snap_meta.term, self.last_index))
        head.append(encode_hard_state(self._hard_state))
        head_bytes = b"".join(head)
        fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _write_all(fd, head_bytes + batch)
            os.fdatasync(fd)
            os.fsync(self._dir_fd)
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segments.append(seg)
        self._seg_size = len(head_bytes) + len(batch)
        self._seg_head_size = len(head_bytes)

    def _write_snapshot_file(self, snapshot: Snapshot) -> None:
        final = os.path.join(self._path, snapshot_name(snapshot.meta.term, snapshot.meta.index))
        tmp = final + TMP_SUFFIX
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, encode_snapshot_file(snapshot))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        os.fsync(self._dir_fd)

    def _drop_old(self) -> None:
        """After a durable snapshot marker: delete covered segments and old snapshot files.

        Runs with both locks held, so no `stage_snapshot` is writing a file meanwhile."""
        index = self._snap_meta.index
        doomed: list[str] = []
        while len(self._segments) > 1 and self._segments[0].max_index <= index:
            doomed.append(self._segments.pop(0).path)
        try:
            snaps = sorted(list_dir(self._path)[1].items(), reverse=True)
            older = [p for (i, _), p in snaps if i < index]
            doomed += [p for (i, _), p in snaps if i > index] + older[1:]
            for p in doomed:
                os.unlink(p)
            if doomed:
                os.fsync(self._dir_fd)
        except OSError as exc:
            self._fail(exc)
        # Called with _stage_mu held: no staging runs now. What is left staged is newer.
        kept = {k for k, p in snaps if p not in doomed}
        self._staged = {k for k in self._staged if k[0] > index and k in kept}
        for p in doomed:
            log.debug("Raft storage: deleted %s (covered by snapshot at %d)", p, index)

    def _repair(self, rec: Recovered) -> None:
        """Cut a torn tail and remove leftovers, once recovery has checked everything."""
        if rec.cut is not None:
            seg_path, offset, cut_bytes, why = rec.cut
            fd = os.open(seg_path, os.O_WRONLY)
            try:
                os.ftruncate(fd, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            log.warning(
                "Raft storage: cut torn tail of %s at byte offset %d: %d bytes (%s)",
                seg_path,
                offset,
                cut_bytes,
                why,
            )
        for p in rec.remove:
            os.unlink(p)
            log.warning(
                "Raft storage: removed %s (written by an operation that never completed)", p
            )
        if rec.remove:
            os.fsync(self._dir_fd)

    def _close_fds(self, release_lock: bool = True) -> None:
        for fd in (self._fd, self._dir_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._dir_fd = -1
        if release_lock and self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = -1


def _check_entries(entries: Sequence[Entry], base: int, last: int) -> None:
    """Entries must be contiguous, after the snapshot, and leave no gap after the log."""
    first = entries[0].index
    if first <= base:
        raise ValueError(f"entry index {first} is at or below the snapshot index {base}")
    if first > last + 1:
        raise ValueError(f"entries start at {first}, leaving a gap after last index {last}")
    expect = first
    for e in entries:
        if e.index != expect or e.term < 1:
            raise ValueError(f"entry {e.index} term {e.term} breaks the batch (expected {expect})")
        expect += 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _make_dir(path: str) -> None:
    if os.path.isdir(path):
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    parent_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(parent_fd)
    finally:
        os.close(parent_fd)


def _lock(path: str) -> int:
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageLockedError(f"Raft storage {path} is in use by another process") from None
    except BaseException:
        os.close(fd)
        raise
    return fd
