"""Recovery of a Raft data directory: read and check everything, change nothing.

`recover` lists the directory, scans every WAL segment, decides whether damage is a torn tail of
the last segment (cut it: nothing in it was acknowledged) or corruption of acknowledged data
(refuse with CorruptStorageError), and replays the records into the state a restarting member
needs. It only *plans* the repairs (the cut, the files to remove); `RaftStorage` makes them once
the whole directory checked out, so a refused directory is left exactly as it was found.

Recovery replays the retained segments from the newest snapshot marker (entries at or below it are
skipped: they are inside the snapshot). A snapshot marker is written only after its snapshot file
is durable, and old segments are deleted only after the marker is durable, so a crash at any point
leaves a directory that recovers to the state of the last ``save`` or ``compact`` that returned.
The format itself is described in `hamgr.raft.wal.walformat`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hamgr.raft.core.types import Entry, EntryType, HardState, Snapshot
from hamgr.raft.wal.storageerrors import CorruptStorageError
from hamgr.raft.wal.walformat import (
    FORMAT_VERSION,
    FRAME,
    SEGMENT_RE,
    SNAP_RE,
    TAG_ENTRY,
    TAG_HARD,
    TAG_HEADER,
    TAG_SNAP,
    TMP_SUFFIX,
    Bad,
    decode_snapshot_file,
    read_frame,
    snapshot_name,
)


@dataclass(slots=True)
class Segment:
    """One WAL segment file, as named, and what the storage knows of its entries."""

    seq: int
    first_index: int
    path: str
    max_index: int = 0  # highest entry index written into this segment; 0 when none


@dataclass(slots=True)
class Recovered:
    """What a scan of the directory found, and the repairs to make once all of it checks out."""

    segments: list[Segment]
    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry]
    last_size: int = 0  # size of the last segment after repairs
    last_has_head: bool = False  # the last segment's head survived whole: keep appending to it
    cut: tuple[str, int, int, str] | None = None  # path, offset, bytes cut, why
    remove: list[str] = field(default_factory=list)


def scan(buf: memoryview) -> tuple[list[tuple[int, tuple[Any, ...]]], Bad | None]:
    """All records from the start of `buf` as (offset, record), and the first bad spot if any."""
    records: list[tuple[int, tuple[Any, ...]]] = []
    pos = 0
    while pos < len(buf):
        got = read_frame(buf, pos)
        if isinstance(got, Bad):
            return records, got
        records.append((pos, got[0]))
        pos = got[1]
    return records, None


def next_valid_frame(buf: memoryview, start: int) -> int | None:
    """The first offset >= `start` where a whole valid record sits, if any.

    Tells a torn tail (nothing valid after the damage) from damage inside acknowledged data.
    """
    for pos in range(start, len(buf) - FRAME.size):
        length = FRAME.unpack_from(buf, pos)[0]
        if 0 < length <= len(buf) - pos - FRAME.size and not isinstance(read_frame(buf, pos), Bad):
            return pos
    return None


def list_dir(path: str) -> tuple[list[Segment], dict[tuple[int, int], str], list[str]]:
    """Segments (by seq), snapshot files by (index, term), and leftover temp files."""
    segments: list[Segment] = []
    snapshots: dict[tuple[int, int], str] = {}
    temps: list[str] = []
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if m := SEGMENT_RE.match(name):
            segments.append(Segment(int(m[1], 16), int(m[2], 16), full))
        elif m := SNAP_RE.match(name):
            snapshots[(int(m[2], 16), int(m[1], 16))] = full
        elif name.endswith(TMP_SUFFIX) and SNAP_RE.match(name[: -len(TMP_SUFFIX)]):
            temps.append(full)
    segments.sort(key=lambda s: s.seq)
    return segments, snapshots, temps


def iter_segment_files(path: str | os.PathLike[str]) -> Iterator[str]:
    """The WAL segment files of a data directory, oldest first (for tools and tests)."""
    yield from (s.path for s in list_dir(os.fspath(path))[0])


def recover(path: str) -> Recovered:
    """Read and check the whole directory, changing nothing: CorruptStorageError on damage."""
    segments, snapshots, temps = list_dir(path)
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

    records: list[tuple[Segment, int, tuple[Any, ...]]] = []
    cut: tuple[str, int, int, str] | None = None
    last_size = 0
    last_has_head = False
    for pos, seg in enumerate(segments):
        is_last = pos == len(segments) - 1
        with open(seg.path, "rb") as f:
            buf = memoryview(f.read())
        found, bad = scan(buf)
        if bad is not None:
            after = None if bad.crc_ok else next_valid_frame(buf, bad.offset + 1)
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
        last_has_head = any(rec[0] == TAG_HARD for _, rec in found)
        for offset, rec in found[1:]:
            if rec[0] == TAG_HEADER:
                raise CorruptStorageError(seg.path, offset, "segment header in mid-segment")
            if rec[0] == TAG_ENTRY:
                seg.max_index = max(seg.max_index, rec[2])
            records.append((seg, offset, rec))

    hard_state, marker, entries = replay(records)
    snapshot: Snapshot | None = None
    if marker is not None:
        seg, offset, (_, index, term, _) = marker
        name = snapshot_name(term, index)
        snap_path = snapshots.get((index, term))
        if snap_path is None:
            raise CorruptStorageError(
                os.path.join(path, name),
                None,
                f"snapshot file named by the marker in {seg.path} at offset {offset} is missing",
            )
        with open(snap_path, "rb") as f:
            snapshot = decode_snapshot_file(snap_path, f.read(), index, term)
    base = snapshot.meta.index if snapshot else 0
    remove += [p for (index, _), p in snapshots.items() if index > base]  # never acknowledged
    return Recovered(
        segments, hard_state, snapshot, entries, last_size, last_has_head, cut, sorted(remove)
    )


def _check_header(seg: Segment, first: tuple[int, tuple[Any, ...]]) -> None:
    offset, rec = first
    if rec[0] != TAG_HEADER:
        raise CorruptStorageError(seg.path, offset, "segment does not start with a header")
    _, version, seq, first_index = rec
    if version != FORMAT_VERSION:
        raise CorruptStorageError(seg.path, offset, f"unsupported WAL format version {version}")
    if (seq, first_index) != (seg.seq, seg.first_index):
        raise CorruptStorageError(
            seg.path, offset, f"header says seq {seq} first index {first_index}, unlike the name"
        )


def replay(
    records: Sequence[tuple[Segment, int, tuple[Any, ...]]],
) -> tuple[HardState, tuple[Segment, int, tuple[Any, ...]] | None, list[Entry]]:
    """Rebuild hard state, the newest snapshot marker and the entries after it (pure).

    Entries at or below the newest marker are inside its snapshot and skipped; the markers'
    `last_kept` drops entries that an installed snapshot (or a truncation below the snapshot)
    discarded. An entry that does not follow the one before it is a gap: corruption.
    """
    marker = None
    for item in records:
        if item[2][0] == TAG_SNAP:
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
        if tag == TAG_ENTRY:
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
        elif tag == TAG_HARD:
            hard_state = HardState(rec[1], rec[2], rec[3])
        elif tag == TAG_SNAP:
            del entries[max(0, rec[3] - base) :]
    return hard_state, marker, entries
