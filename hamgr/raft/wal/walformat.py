"""The on-disk format of the Raft storage: file names, record framing and encoding, snapshot files.

Pure: bytes in, bytes or records out, no file I/O. Kept apart from recovery
(`hamgr.raft.wal.walrecovery`) and from the storage that writes (`hamgr.raft.wal.storage`) so that
the format is defined in one place and can be read, and changed with a new ``FORMAT_VERSION``,
alone.

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
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import crc32c
import msgpack

from hamgr.raft.core.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from hamgr.raft.wal.storageerrors import CorruptStorageError

FORMAT_VERSION = 1

FRAME = struct.Struct("<II")
"""The frame header of every record: payload length, crc32c of the payload."""

TAG_HEADER = 0
TAG_ENTRY = 1
TAG_HARD = 2
TAG_SNAP = 3
_ENTRY_TYPES = frozenset(int(t) for t in EntryType)

SEGMENT_RE = re.compile(r"^wal-([0-9a-f]{16})-([0-9a-f]{16})\.log$")
SNAP_RE = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
TMP_SUFFIX = ".tmp"


def segment_name(seq: int, first_index: int) -> str:
    """The file name of WAL segment `seq` whose first entry is expected at `first_index`."""
    return f"wal-{seq:016x}-{first_index:016x}.log"


def snapshot_name(term: int, index: int) -> str:
    """The file name of the snapshot at `index`, `term`."""
    return f"snap-{term:016x}-{index:016x}.snap"


# -- records: encoding --------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """`payload` with its frame header in front."""
    return FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload


def encode_header(seq: int, first_index: int) -> bytes:
    """The framed header record that starts segment `seq`."""
    return frame(msgpack.packb((TAG_HEADER, FORMAT_VERSION, seq, first_index)))


def encode_entry(entry: Entry) -> bytes:
    """The framed record of one entry."""
    return frame(msgpack.packb((TAG_ENTRY, entry.term, entry.index, int(entry.type), entry.data)))


def encode_hard_state(hs: HardState) -> bytes:
    """The framed record of a hard state."""
    return frame(msgpack.packb((TAG_HARD, hs.term, hs.vote, hs.commit)))


def encode_marker(index: int, term: int, last_kept: int) -> bytes:
    """The framed snapshot marker: the log starts after `index` and ends at `last_kept`."""
    return frame(msgpack.packb((TAG_SNAP, index, term, last_kept)))


# -- records: decoding --------------------------------------------------------------------------


def _is_uint(value: object) -> bool:
    return type(value) is int and value >= 0


def decode_record(payload: memoryview) -> tuple[Any, ...]:
    """Decode one record's payload; raises ValueError naming what is malformed."""
    try:
        rec = msgpack.unpackb(payload, use_list=False)
    except Exception as exc:
        raise ValueError(f"undecodable record payload ({type(exc).__name__}: {exc})") from None
    if not isinstance(rec, tuple) or not rec or type(rec[0]) is not int:
        raise ValueError("record payload is not a tagged array")
    tag = rec[0]
    if tag == TAG_ENTRY:
        ok = len(rec) == 5 and all(map(_is_uint, rec[1:4])) and isinstance(rec[4], bytes)
        if ok and rec[3] not in _ENTRY_TYPES:
            raise ValueError(f"entry record has unknown entry type {rec[3]}")
    elif tag in (TAG_HEADER, TAG_HARD, TAG_SNAP):
        ok = len(rec) == 4 and all(map(_is_uint, rec[1:]))
        if ok and tag == TAG_SNAP and (rec[1] < 1 or rec[3] < rec[1]):
            raise ValueError(f"snapshot marker has impossible fields {rec[1:]}")
    else:
        raise ValueError(f"unknown record tag {tag}")
    if not ok:
        raise ValueError(f"malformed record with tag {tag}: {rec!r:.200}")
    return rec


@dataclass(frozen=True, slots=True)
class Bad:
    """Where and why a scan of a record stream stopped early."""

    offset: int
    problem: str
    crc_ok: bool  # the frame was intact and only its content is wrong: never a torn write


def read_frame(buf: memoryview, pos: int) -> tuple[tuple[Any, ...], int] | Bad:
    """Read the record framed at `pos`: (record, next offset), or why it is not a record."""
    left = len(buf) - pos
    if left < FRAME.size:
        return Bad(pos, f"incomplete record header ({left} of {FRAME.size} bytes)", False)
    length, stored = FRAME.unpack_from(buf, pos)
    if length == 0:
        return Bad(pos, "record length is 0", False)
    if length > left - FRAME.size:
        return Bad(
            pos,
            f"record of {length} bytes runs past the end of the file "
            f"({left - FRAME.size} bytes left)",
            False,
        )
    payload = buf[pos + FRAME.size : pos + FRAME.size + length]
    computed = crc32c.crc32c(payload)
    if computed != stored:
        return Bad(
            pos, f"checksum mismatch (stored {stored:#010x}, computed {computed:#010x})", False
        )
    try:
        rec = decode_record(payload)
    except ValueError as exc:
        return Bad(pos, str(exc), True)
    return rec, pos + FRAME.size + length


# -- snapshot files -----------------------------------------------------------------------------


def encode_snapshot_file(snapshot: Snapshot) -> bytes:
    """The whole contents of a snapshot file: one framed record."""
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
    return frame(payload)


def decode_snapshot_file(path: str, buf: bytes, index: int, term: int) -> Snapshot:
    """Decode and verify a snapshot file; raises CorruptStorageError naming what is wrong."""
    view = memoryview(buf)
    if len(view) < FRAME.size:
        raise CorruptStorageError(path, 0, f"snapshot file too short ({len(view)} bytes)")
    length, stored = FRAME.unpack_from(view, 0)
    if length != len(view) - FRAME.size:
        raise CorruptStorageError(
            path,
            0,
            f"snapshot length field says {length} bytes but the file holds "
            f"{len(view) - FRAME.size} after the header",
        )
    computed = crc32c.crc32c(view[FRAME.size :])
    if computed != stored:
        raise CorruptStorageError(
            path,
            FRAME.size,
            f"snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
        )
    try:
        version, s_index, s_term, voters, learners, data = msgpack.unpackb(view[FRAME.size :])
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
        raise CorruptStorageError(path, FRAME.size, f"bad snapshot payload: {exc}") from None
    except Exception as exc:
        raise CorruptStorageError(
            path, FRAME.size, f"undecodable snapshot payload ({type(exc).__name__}: {exc})"
        ) from None
    return Snapshot(SnapshotMeta(index, term, conf), data)
