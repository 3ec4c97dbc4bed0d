"""Durable storage of one Raft member: a write-ahead log (entries, hard state) and snapshots.

Synchronous file I/O; the node driver calls it from a worker thread so that fsync never blocks
the event loop. A call returns only once what it wrote is durable (fsync'ed, and the directory
fsync'ed after any file create, rename or unlink).

On-disk layout of the data directory:

- ``LOCK``: held with ``flock`` while a process has the directory open.
- ``wal-<seq:016x>-<first_index:016x>.log``: segments of one record stream. ``seq`` counts up
  without holes; ``first_index`` is the index of the first entry expected in the segment. Each
  segment starts with a *head*: a header record, then the current snapshot marker (if any) and the
  current hard state, so that the newest segment alone knows the whole state but the entries.
- ``snap-<term:016x>-<index:016x>.snap``: a snapshot, written as ``.tmp``, fsync'ed, renamed.

Every record (and the single record of a snapshot file) is framed as
``[u32 length][u32 crc32c(payload)][payload]`` (little-endian), the payload being a msgpack array
whose first item is a tag:

- ``[0, version, seq, first_index]``: segment header;
- ``[1, term, index, type, data]``: an entry; it replaces every entry at ``index`` and above;
- ``[2, term, vote, commit]``: hard state;
- ``[3, index, term, last_kept]``: snapshot marker: the log now starts after ``index`` and ends at
  ``last_kept`` (``last_kept == index`` for an installed snapshot, which drops the whole log; the
  old last index for a compaction, which keeps the entries after the snapshot).

Recovery replays the retained segments from the newest snapshot marker (entries at or below it are
skipped: they are inside the snapshot). A snapshot marker is written only after its snapshot file
is durable, and old segments are deleted only after the marker is durable, so a crash at any point
leaves a directory that recovers to the state of the last ``save`` or ``compact`` that returned.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import struct
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import crc32c
import msgpack

from hamgr.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
"""A segment is rolled over once the next batch would take it past this size."""

MIN_SEGMENT_BYTES = 128
FORMAT_VERSION = 1
LOCK_NAME = "LOCK"

_FRAME = struct.Struct("<II")
_TAG_HEADER = 0
_TAG_ENTRY = 1
_TAG_HARD = 2
_TAG_SNAP = 3
_ENTRY_TYPES = frozenset(int(t) for t in EntryType)

_SEGMENT_RE = re.compile(r"^wal-([0-9a-f]{16})-([0-9a-f]{16})\.log$")
_SNAP_RE = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
_TMP_SUFFIX = ".tmp"


class StorageError(Exception):
    """Base class of the storage's errors."""


class CorruptStorageError(StorageError):
    """The data directory holds damage that recovery must not guess about; nothing was changed."""

    def __init__(self, path: str, offset: int | None, problem: str) -> None:
        where = path if offset is None else f"{path} at byte offset {offset}"
        super().__init__(f"corrupt Raft storage: {where}: {problem}")
        self.path = path
        self.offset = offset
        self.problem = problem


class StorageFatalError(StorageError):
    """A write or fsync failed: what is on disk is unknown, so the storage refuses all later use."""


class StorageLockedError(StorageError):
    """Another process (or another open in this one) holds the data directory."""


class StorageClosedError(StorageError):
    """The storage was used after close()."""


# -- records: pure encoding and decoding ------------------------------------------------------


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload


def _encode_header(seq: int, first_index: int) -> bytes:
    return _frame(msgpack.packb((_TAG_HEADER, FORMAT_VERSION, seq, first_index)))


def _encode_entry(entry: Entry) -> bytes:
    return _frame(msgpack.packb((_TAG_ENTRY, entry.term, entry.index, int(entry.type), entry.data)))


def _encode_hard_state(hs: HardState) -> bytes:
    return _frame(msgpack.packb((_TAG_HARD, hs.term, hs.vote, hs.commit)))


def _encode_marker(index: int, term: int, last_kept: int) -> bytes:
    return _frame(msgpack.packb((_TAG_SNAP, index, term, last_kept)))


def _is_uint(value: object) -> bool:
    return type(value) is int and value >= 0


def _decode_record(payload: memoryview) -> tuple[Any, ...]:
    """Decode one record's payload; raises ValueError naming what is malformed."""
    try:
        rec = msgpack.unpackb(payload, use_list=False)
    except Exception as exc:
        raise ValueError(f"undecodable record payload ({type(exc).__name__}: {exc})") from None
    if not isinstance(rec, tuple) or not rec or type(rec[0]) is not int:
        raise ValueError("record payload is not a tagged array")
    tag = rec[0]
    if tag == _TAG_ENTRY:
        ok = len(rec) == 5 and all(map(_is_uint, rec[1:4])) and isinstance(rec[4], bytes)
        if ok and rec[3] not in _ENTRY_TYPES:
            raise ValueError(f"entry record has unknown entry type {rec[3]}")
    elif tag in (_TAG_HEADER, _TAG_HARD, _TAG_SNAP):
        ok = len(rec) == 4 and all(map(_is_uint, rec[1:]))
        if ok and tag == _TAG_SNAP and (rec[1] < 1 or rec[3] < rec[1]):
            raise ValueError(f"snapshot marker has impossible fields {rec[1:]}")
    else:
        raise ValueError(f"unknown record tag {tag}")
    if not ok:
        raise ValueError(f"malformed record with tag {tag}: {rec!r:.200}")
    return rec


@dataclass(frozen=True, slots=True)
class _Bad:
    """Where and why a scan of a record stream stopped early."""

    offset: int
    problem: str
    crc_ok: bool  # the frame was intact and only its content is wrong: never a torn write


def _read_frame(buf: memoryview, pos: int) -> tuple[tuple[Any, ...], int] | _Bad:
    """Read the record framed at `pos`: (record, next offset), or why it is not a record."""
    left = len(buf) - pos
    if left < _FRAME.size:
        return _Bad(pos, f"incomplete record header ({left} of {_FRAME.size} bytes)", False)
    length, stored = _FRAME.unpack_from(buf, pos)
    if length == 0:
        return _Bad(pos, "record length is 0", False)
    if length > left - _FRAME.size:
        return _Bad(
            pos,
            f"record of {length} bytes runs past the end of the file "
            f"({left - _FRAME.size} bytes left)",
            False,
        )
    payload = buf[pos + _FRAME.size : pos + _FRAME.size + length]
    computed = crc32c.crc32c(payload)
    if computed != stored:
        return _Bad(
            pos, f"checksum mismatch (stored {stored:#010x}, computed {computed:#010x})", False
        )
    try:
        rec = _decode_record(payload)
    except ValueError as exc:
        return _Bad(pos, str(exc), True)
    return rec, pos + _FRAME.size + length


def _scan(buf: memoryview) -> tuple[list[tuple[int, tuple[Any, ...]]], _Bad | None]:
    """All records from the start of `buf` as (offset, record), and the first bad spot if any."""
    records: list[tuple[int, tuple[Any, ...]]] = []
    pos = 0
    while pos < len(buf):
        got = _read_frame(buf, pos)
        if isinstance(got, _Bad):
            return records, got
        records.append((pos, got[0]))
        pos = got[1]
    return records, None


def _next_valid_frame(buf: memoryview, start: int) -> int | None:
    """The first offset >= `start` where a whole valid record sits, if any.

    Tells a torn tail (nothing valid after the damage) from damage inside acknowledged data.
    """
    for pos in range(start, len(buf) - _FRAME.size):
        length = _FRAME.unpack_from(buf, pos)[0]
        if 0 < length <= len(buf) - pos - _FRAME.size and not isinstance(
            _read_frame(buf, pos), _Bad
        ):
            return pos
    return None


def _encode_snapshot_file(snapshot: Snapshot) -> bytes:
    meta = snapshot.meta
    payload = msgpack.packb(
        (
            FORMAT_VERSION,
            meta.index,
            meta.term,
            list(meta.conf.voters),
            list(meta.conf.learners),
            snapshot.data,
        )
    )
    return _frame(payload)


def _decode_snapshot_file(path: str, buf: bytes, index: int, term: int) -> Snapshot:
    """Decode and verify a snapshot file; raises CorruptStorageError naming what is wrong."""
    view = memoryview(buf)
    if len(view) < _FRAME.size:
        raise CorruptStorageError(path, 0, f"snapshot file too short ({len(view)} bytes)")
    length, stored = _FRAME.unpack_from(view, 0)
    if length != len(view) - _FRAME.size:
        raise CorruptStorageError(
            path,
            0,
            f"snapshot length field says {length} bytes but the file holds "
            f"{len(view) - _FRAME.size} after the header",
        )
    computed = crc32c.crc32c(view[_FRAME.size :])
    if computed != stored:
        raise CorruptStorageError(
            path,
            _FRAME.size,
            f"snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
        )
    try:
        version, s_index, s_term, voters, learners, data = msgpack.unpackb(view[_FRAME.size :])
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported snapshot format version {version}")
        if (s_index, s_term) != (index, term):
            raise ValueError(
                f"snapshot holds index {s_index} term {s_term}, its name says {index} {term}"
            )
        if not isinstance(data, bytes) or not all(map(_is_uint, [*voters, *learners])):
            raise ValueError("malformed snapshot fields")
        conf = ConfState(tuple(voters), tuple(learners))
    except (ValueError, TypeError) as exc:
        raise CorruptStorageError(path, _FRAME.size, f"bad snapshot payload: {exc}") from None
    except Exception as exc:
        raise CorruptStorageError(
            path, _FRAME.size, f"undecodable snapshot payload ({type(exc).__name__}: {exc})"
        ) from None
    return Snapshot(SnapshotMeta(index, term, conf), data)


def _segment_name(seq: int, first_index: int) -> str:
    return f"wal-{seq:016x}-{first_index:016x}.log"


def _snapshot_name(term: int, index: int) -> str:
    return f"snap-{term:016x}-{index:016x}.snap"


# -- recovery: read and check everything, change nothing ----------------------------------------


@dataclass(slots=True)
class _Segment:
    seq: int
    first_index: int
    path: str
    max_index: int = 0  # highest entry index written into this segment; 0 when none


@dataclass(slots=True)
class _Recovered:
    """What a scan of the directory found, and the repairs to make once all of it checks out."""

    segments: list[_Segment]
    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry]
    last_size: int = 0  # size of the last segment after repairs
    last_has_head: bool = False  # the last segment's head survived whole: keep appending to it
    cut: tuple[str, int, int, str] | None = None  # path, offset, bytes cut, why
    remove: list[str] = field(default_factory=list)


def _list_dir(path: str) -> tuple[list[_Segment], dict[tuple[int, int], str], list[str]]:
    """Segments (by seq), snapshot files by (index, term), and leftover temp files."""
    segments: list[_Segment] = []
    snapshots: dict[tuple[int, int], str] = {}
    temps: list[str] = []
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if m := _SEGMENT_RE.match(name):
            segments.append(_Segment(int(m[1], 16), int(m[2], 16), full))
        elif m := _SNAP_RE.match(name):
            snapshots[(int(m[2], 16), int(m[1], 16))] = full
        elif name.endswith(_TMP_SUFFIX) and _SNAP_RE.match(name[: -len(_TMP_SUFFIX)]):
            temps.append(full)
    segments.sort(key=lambda s: s.seq)
    return segments, snapshots, temps


def _recover(path: str) -> _Recovered:
    """Read and check the whole directory, changing nothing: CorruptStorageError on damage."""
    segments, snapshots, temps = _list_dir(path)
    remove = list(temps)
    for prev, seg in itertools.pairwise(segments):
        if seg.seq != prev.seq + 1:
            raise CorruptStorageError(
                seg.path, None, f"segment sequence jumps from {prev.seq} to {seg.seq}: missing"
            )
    if not segments and snapshots:
        raise CorruptStorageError(
            path, None, "snapshot files but no WAL segment: the log has been lost"
        )

    records: list[tuple[_Segment, int, tuple[Any, ...]]] = []
    cut: tuple[str, int, int, str] | None = None
    last_size = 0
    last_has_head = False
    for pos, seg in enumerate(segments):
        is_last = pos == len(segments) - 1
        with open(seg.path, "rb") as f:
            buf = memoryview(f.read())
        found, bad = _scan(buf)
        if bad is not None:
            after = None if bad.crc_ok else _next_valid_frame(buf, bad.offset + 1)
            if not is_last or bad.crc_ok or after is not None:
                detail = f"; a valid record follows at offset {after}" if after is not None else ""
                where = "" if is_last else " (not the last segment, so not a torn write)"
                raise CorruptStorageError(seg.path, bad.offset, bad.problem + where + detail)
            if found:
                cut = (seg.path, bad.offset, len(buf) - bad.offset, bad.problem)
        if not found:
            if is_last and (pos > 0 or seg.seq == 0):
                # A segment whose creation was cut short: nothing in it was ever acknowledged.
                remove.append(seg.path)
                segments.pop()
                break
            raise CorruptStorageError(seg.path, 0, "segment holds no valid record")
        _check_header(seg, found[0])
        last_size = bad.offset if bad is not None else len(buf)
        # A head is written in one piece and ends with a hard state: torn tails cut prefixes.
        last_has_head = any(rec[0] == _TAG_HARD for _, rec in found)
        for offset, rec in found[1:]:
            if rec[0] == _TAG_HEADER:
                raise CorruptStorageError(seg.path, offset, "segment header in mid-segment")
            if rec[0] == _TAG_ENTRY:
                seg.max_index = max(seg.max_index, rec[2])
            records.append((seg, offset, rec))

    hard_state, marker, entries = _replay(records)
    snapshot: Snapshot | None = None
    if marker is not None:
        seg, offset, (_, index, term, _) = marker
        name = _snapshot_name(term, index)
        snap_path = snapshots.get((index, term))
        if snap_path is None:
            raise CorruptStorageError(
                os.path.join(path, name),
                None,
                f"snapshot file named by the marker in {seg.path} at offset {offset} is missing",
            )
        with open(snap_path, "rb") as f:
            snapshot = _decode_snapshot_file(snap_path, f.read(), index, term)
    base = snapshot.meta.index if snapshot else 0
    remove += [p for (index, _), p in snapshots.items() if index > base]  # never acknowledged
    return _Recovered(
        segments, hard_state, snapshot, entries, last_size, last_has_head, cut, sorted(remove)
    )


def _check_header(seg: _Segment, first: tuple[int, tuple[Any, ...]]) -> None:
    offset, rec = first
    if rec[0] != _TAG_HEADER:
        raise CorruptStorageError(seg.path, offset, "segment does not start with a header")
    _, version, seq, first_index = rec
    if version != FORMAT_VERSION:
        raise CorruptStorageError(seg.path, offset, f"unsupported WAL format version {version}")
    if (seq, first_index) != (seg.seq, seg.first_index):
        raise CorruptStorageError(
            seg.path, offset, f"header says seq {seq} first index {first_index}, unlike the name"
        )


def _replay(
    records: Sequence[tuple[_Segment, int, tuple[Any, ...]]],
) -> tuple[HardState, tuple[_Segment, int, tuple[Any, ...]] | None, list[Entry]]:
    """Rebuild hard state, the newest snapshot marker and the entries after it (pure).

    Entries at or below the newest marker are inside its snapshot and skipped; the markers'
    `last_kept` drops entries that an installed snapshot (or a truncation below the snapshot)
    discarded. An entry that does not follow the one before it is a gap: corruption.
    """
    marker = None
    for item in records:
        if item[2][0] == _TAG_SNAP:
            if marker is not None and item[2][1] < marker[2][1]:
                seg, offset, _ = item
                raise CorruptStorageError(
                    seg.path, offset, f"snapshot marker {item[2][1]} older than {marker[2][1]}"
                )
            marker = item
    base = marker[2][1] if marker else 0
    hard_state = HardState()
    entries: list[Entry] = []
    for seg, offset, rec in records:
        tag = rec[0]
        if tag == _TAG_ENTRY:
            _, term, index, etype, data = rec
            if index <= base:
                continue
            last = base + len(entries)
            if index > last + 1:
                raise CorruptStorageError(
                    seg.path, offset, f"entry {index} leaves a gap after index {last}"
                )
            del entries[index - base - 1 :]
            entries.append(Entry(term, index, EntryType(etype), data))
        elif tag == _TAG_HARD:
            hard_state = HardState(rec[1], rec[2], rec[3])
        elif tag == _TAG_SNAP:
            del entries[max(0, rec[3] - base) :]
    return hard_state, marker, entries


# -- the storage ------------------------------------------------------------------------------


class RaftStorage:
    """The durable log, hard state and snapshots of one Raft member, in one data directory.

    Create with `RaftStorage.open(path)`. Not for concurrent use from several threads at once
    (calls are serialised by an internal lock, but meant to come from one worker thread).
    """

    def __init__(self, path: str, lock_fd: int, segment_bytes: int, rec: _Recovered) -> None:
        """Internal: use `open()`, which recovers the directory first."""
        self._path = path
        self._lock_fd = lock_fd
        self._segment_bytes = segment_bytes
        self._mu = threading.Lock()
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
            return cls(full, lock_fd, segment_bytes, _recover(full))
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
        with self._mu:
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
                parts.append(_encode_marker(meta.index, meta.term, meta.index))
            if entries:
                _check_entries(entries, base, last)
                parts.extend(map(_encode_entry, entries))
            if hard_state is not None:
                parts.append(_encode_hard_state(hard_state))
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

    def compact(self, snapshot: Snapshot) -> None:
        """Adopt a snapshot the application took at an applied index, and drop what it covers.

        Keeps the entries after the snapshot, deletes whole segments holding only entries at or
        below it, and keeps the two newest snapshot files. A snapshot not newer than the stored
        one changes nothing. Raises ValueError if the snapshot is beyond the commit index or the
        log, or disagrees with the log's term at its index.
        """
        with self._mu:
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
                self._write_snapshot_file(snapshot)
                self._append(_encode_marker(meta.index, meta.term, last), last + 1)
            except OSError as exc:
                self._fail(exc)
            self._initial = None
            del self._terms[: meta.index - base]
            self._snap_meta = meta
            self._drop_old()

    def close(self) -> None:
        """Release the files and the directory lock. Safe to call twice, and after a failure."""
        with self._mu:
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
        seg = _Segment(seq, next_index, os.path.join(self._path, _segment_name(seq, next_index)))
        head = [_encode_header(seq, next_index)]
        if self._snap_meta.index:
            head.append(
                _encode_marker(self._snap_meta.index, self._snap_meta.term, self.last_index)
            )
        head.append(_encode_hard_state(self._hard_state))
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
        final = os.path.join(self._path, _snapshot_name(snapshot.meta.term, snapshot.meta.index))
        tmp = final + _TMP_SUFFIX
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, _encode_snapshot_file(snapshot))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        os.fsync(self._dir_fd)

    def _drop_old(self) -> None:
        """After a durable snapshot marker: delete covered segments and old snapshot files."""
        index = self._snap_meta.index
        doomed: list[str] = []
        while len(self._segments) > 1 and self._segments[0].max_index <= index:
            doomed.append(self._segments.pop(0).path)
        try:
            snaps = sorted(_list_dir(self._path)[1].items(), reverse=True)
            older = [p for (i, _), p in snaps if i < index]
            doomed += [p for (i, _), p in snaps if i > index] + older[1:]
            for p in doomed:
                os.unlink(p)
            if doomed:
                os.fsync(self._dir_fd)
        except OSError as exc:
            self._fail(exc)
        for p in doomed:
            log.debug("Raft storage: deleted %s (covered by snapshot at %d)", p, index)

    def _repair(self, rec: _Recovered) -> None:
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


def iter_segment_files(path: str | os.PathLike[str]) -> Iterator[str]:
    """The WAL segment files of a data directory, oldest first (for tools and tests)."""
    yield from (s.path for s in _list_dir(os.fspath(path))[0])
