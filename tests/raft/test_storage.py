"""Tests of the durable Raft storage on real files: round trips, recovery, corruption, failures."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamgr.raft.core.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from hamgr.raft.wal.storage import RaftStorage
from hamgr.raft.wal.storageerrors import (
    CorruptStorageError,
    StorageClosedError,
    StorageError,
    StorageFatalError,
    StorageLockedError,
)
from hamgr.raft.wal.walrecovery import iter_segment_files

REPO = Path(__file__).resolve().parents[2]


def ents(first: int, last: int, term: int, size: int = 24) -> list[Entry]:
    """Entries first..last of `term`, each with data that names it."""
    return [
        Entry(term, i, data=f"t{term}i{i}".encode().ljust(size, b"."))
        for i in range(first, last + 1)
    ]


def snap(index: int, term: int, data: bytes = b"state") -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState((1, 2, 3), (4,))), data)


def dir_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a data directory but the lock, by name, with its contents."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != "LOCK"}


def segments(path: Path) -> list[Path]:
    return [Path(p) for p in iter_segment_files(path)]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def expect_refused(path: Path, **kw: int) -> CorruptStorageError:
    """Open must fail with CorruptStorageError and leave every file as it was."""
    before = dir_bytes(path)
    with pytest.raises(CorruptStorageError) as info:
        RaftStorage.open(path, **kw)
    assert dir_bytes(path) == before
    return info.value


# -- round trips and semantics --------------------------------------------------------------


def test_fresh_directory_starts_empty(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path / "d") as st_:
        assert st_.initial_state() == (HardState(), None, [])
        assert (st_.first_index, st_.last_index) == (1, 0)
    with RaftStorage.open(tmp_path / "d") as st_:
        assert st_.initial_state() == (HardState(), None, [])


def test_round_trip_across_reopen(tmp_path: Path) -> None:
    conf = Entry(2, 11, EntryType.CONF_CHANGE, b"\x01" + bytes(8))
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 0), ents(1, 5, 1), None)
        st_.save(HardState(2, 3, 8), [*ents(6, 10, 2), conf], None)
        st_.save(None, ents(12, 14, 2), None)
        st_.compact(snap(4, 1, b"app state at 4"))
        assert (st_.first_index, st_.last_index, st_.term(4), st_.term(12)) == (5, 14, 1, 2)
    with RaftStorage.open(tmp_path) as st_:
        hs, snapshot, entries = st_.initial_state()
        assert hs == HardState(2, 3, 8)
        assert snapshot == snap(4, 1, b"app state at 4")
        assert entries == [*ents(5, 5, 1), *ents(6, 10, 2), conf, *ents(12, 14, 2)]
        assert st_.snapshot_meta == snap(4, 1).meta and st_.hard_state == hs


def test_compaction_at_the_last_index_leaves_no_entries(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 6), ents(1, 6, 1), None)
        st_.compact(snap(6, 1))
        assert (st_.first_index, st_.last_index) == (7, 6)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 6), snap(6, 1), [])
        st_.save(None, ents(7, 7, 2), None)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 6), snap(6, 1), ents(7, 7, 2))


def test_entry_overwrites_suffix(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 3), ents(1, 10, 1), None)
        st_.save(HardState(2, 2, 3), ents(6, 8, 2), None)
        assert st_.last_index == 8
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state()[2] == ents(1, 5, 1) + ents(6, 8, 2)
        st_.save(None, ents(4, 4, 3), None)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state()[2] == ents(1, 3, 1) + ents(4, 4, 3)


@pytest.mark.parametrize("snap_term", [1, 3])
def test_install_snapshot_discards_the_whole_log(tmp_path: Path, snap_term: int) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 2), ents(1, 10, 1), None)
        # Term 1 matches the stored entry at 5, term 3 does not: both replace the whole log.
        st_.save(HardState(3, 0, 5), ents(6, 7, 3), snap(5, snap_term, b"leader state"))
        assert (st_.first_index, st_.last_index) == (6, 7)
    with RaftStorage.open(tmp_path) as st_:
        hs, snapshot, entries = st_.initial_state()
        assert (hs, snapshot, entries) == (
            HardState(3, 0, 5),
            snap(5, snap_term, b"leader state"),
            ents(6, 7, 3),
        )
        st_.save(None, [], snap(20, 4))  # beyond the log: nothing follows
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(3, 0, 5), snap(20, 4), [])


def test_segments_roll_and_compaction_deletes_covered_ones(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path, segment_bytes=1024) as st_:
        for first in range(1, 200, 5):
            st_.save(HardState(1, 1, first + 4), ents(first, first + 4, 1, size=40), None)
        rolled = segments(tmp_path)
        assert len(rolled) > 5
        assert all(p.stat().st_size <= 1024 for p in rolled[:-1])

        for index in (150, 160, 170):
            st_.compact(snap(index, 1, f"at {index}".encode()))
        left = segments(tmp_path)
        firsts = [int(p.name.split("-")[2][:16], 16) for p in left]
        # The oldest kept segment is the one that holds entry 171; all before it are gone.
        assert firsts[0] <= 171 < (firsts[1] if len(firsts) > 1 else 10**9)
        assert len(left) < len(rolled)
        assert sorted(p.name for p in tmp_path.glob("snap-*")) == [
            "snap-0000000000000001-00000000000000a0.snap",
            "snap-0000000000000001-00000000000000aa.snap",
        ]
    with RaftStorage.open(tmp_path, segment_bytes=1024) as st_:
        hs, snapshot, entries = st_.initial_state()
        assert hs == HardState(1, 1, 200)
        assert snapshot == snap(170, 1, b"at 170")
        assert entries == ents(171, 200, 1, size=40)


def test_bad_arguments_raise_value_error_and_write_nothing(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(2, 1, 6), ents(1, 10, 2), None)
        st_.compact(snap(3, 2))
        before = dir_bytes(tmp_path)
        bad_calls = [
            lambda: st_.save(None, ents(12, 13, 2), None),  # gap after 10
            lambda: st_.save(None, ents(2, 4, 2), None),  # at or below the snapshot
            lambda: st_.save(None, [*ents(5, 5, 2), *ents(7, 7, 2)], None),  # not contiguous
            lambda: st_.save(None, [Entry(0, 11)], None),  # term 0
            lambda: st_.save(None, [], snap(3, 2)),  # not newer than the stored snapshot
            lambda: st_.compact(snap(7, 2)),  # beyond commit 6
            lambda: st_.compact(snap(5, 1)),  # the log has term 2 at 5
        ]
        for call in bad_calls:
            with pytest.raises(ValueError):
                call()
        st_.compact(snap(2, 2))  # older than the stored snapshot: nothing to do
        assert dir_bytes(tmp_path) == before
        st_.save(HardState(2, 1, 11), ents(11, 11, 2), None)  # still usable
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(2, 1, 11), snap(3, 2), ents(4, 11, 2))


def test_initial_state_only_before_first_write_and_closed_refuses(tmp_path: Path) -> None:
    st_ = RaftStorage.open(tmp_path)
    st_.save(HardState(1, 0, 0), [], None)
    with pytest.raises(StorageError, match="before the first write"):
        st_.initial_state()
    st_.close()
    st_.close()
    with pytest.raises(StorageClosedError):
        st_.save(HardState(1, 0, 0), [], None)


# -- torn tails ----------------------------------------------------------------------------


def _base_with_tail(path: Path) -> tuple[int, int]:
    """Write some state, then one last 1-entry batch; returns the last batch's byte range."""
    with RaftStorage.open(path) as st_:
        st_.save(HardState(1, 1, 2), ents(1, 5, 1), None)
        start = segments(path)[-1].stat().st_size
        st_.save(None, ents(6, 6, 1, size=40), None)
        end = segments(path)[-1].stat().st_size
    return start, end


def test_torn_tail_is_cut_at_every_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = tmp_path / "base"
    start, end = _base_with_tail(base)
    assert end - start > 40
    caplog.set_level(logging.WARNING, logger="hamgr.raft.wal.storage")
    for cut in range(start, end):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(base, work)
        seg = segments(work)[-1]
        os.truncate(seg, cut)
        caplog.clear()
        with RaftStorage.open(work) as st_:
            assert st_.initial_state() == (HardState(1, 1, 2), None, ents(1, 5, 1))
            assert seg.stat().st_size == start
            if cut > start:
                assert f"{seg} at byte offset {start}: {cut - start} bytes" in caplog.text
            st_.save(None, ents(6, 7, 2), None)
        with RaftStorage.open(work) as st_:
            assert st_.initial_state()[2] == ents(1, 5, 1) + ents(6, 7, 2)
        shutil.rmtree(work)


@pytest.mark.parametrize("tail", [bytes(4096), random.Random(7).randbytes(3000)])
def test_zeroed_or_garbage_tail_is_cut(tmp_path: Path, tail: bytes) -> None:
    _, end = _base_with_tail(tmp_path)
    seg = segments(tmp_path)[-1]
    with seg.open("ab") as f:
        f.write(tail)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state()[2] == ents(1, 5, 1) + ents(6, 6, 1, size=40)
    assert seg.stat().st_size == end


@pytest.mark.parametrize("content", [b"", b"\x05\x00\x00"])
def test_segment_cut_short_at_creation_is_removed(tmp_path: Path, content: bytes) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 0), ents(1, 3, 1), None)
    stray = tmp_path / "wal-0000000000000001-0000000000000004.log"
    stray.write_bytes(content)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 0), None, ents(1, 3, 1))
        assert not stray.exists()
        st_.save(None, ents(4, 4, 1), None)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state()[2] == ents(1, 4, 1)


def test_hard_state_survives_a_segment_whose_head_was_torn(tmp_path: Path) -> None:
    hs = HardState(5, 2, 1000)
    with RaftStorage.open(tmp_path, segment_bytes=256) as st_:
        for i in range(1, 20):
            st_.save(hs, ents(i, i, 5), None)
    last = segments(tmp_path)[-1]
    data = last.read_bytes()
    header_end = 8 + int.from_bytes(data[:4], "little")
    os.truncate(last, header_end + 3)  # the head's other records were never written
    with RaftStorage.open(tmp_path, segment_bytes=256) as st_:
        hs_, _, entries = st_.initial_state()
        assert hs_ == hs
        st_.save(None, ents(entries[-1].index + 1, entries[-1].index + 1, 5), None)
        st_.compact(snap(st_.last_index, 5))  # deletes every older segment, and their hard states
    with RaftStorage.open(tmp_path, segment_bytes=256) as st_:
        assert st_.initial_state()[0] == hs


# -- corruption refuses to start and changes nothing ----------------------------------------


def _three_batches(path: Path, **kw: int) -> list[int]:
    """Three 1-entry batches; returns where each starts in the (single) segment."""
    starts = []
    with RaftStorage.open(path, **kw) as st_:
        for i in (1, 2, 3):
            starts.append(segments(path)[-1].stat().st_size)
            st_.save(None, ents(i, i, 1), None)
    return starts


def test_flipped_byte_before_valid_records_refuses(tmp_path: Path) -> None:
    starts = _three_batches(tmp_path)
    seg = segments(tmp_path)[-1]
    flip(seg, starts[1] + 12)  # inside the payload of entry 2; entry 3 is valid after it
    err = expect_refused(tmp_path)
    assert (err.path, err.offset) == (str(seg), starts[1])
    assert str(seg) in str(err) and f"offset {starts[1]}" in str(err) and "checksum" in str(err)


def test_garbled_length_before_valid_records_refuses(tmp_path: Path) -> None:
    starts = _three_batches(tmp_path)
    seg = segments(tmp_path)[-1]
    flip(seg, starts[1] + 3)  # the length now runs past the end of the file
    err = expect_refused(tmp_path)
    assert (err.path, err.offset) == (str(seg), starts[1])
    assert f"valid record follows at offset {starts[2]}" in str(err)


def test_flipped_byte_in_non_last_segment_refuses(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path, segment_bytes=256) as st_:
        for i in range(1, 30):
            st_.save(HardState(1, 1, i), ents(i, i, 1), None)
    first = segments(tmp_path)[0]
    size = first.stat().st_size
    flip(first, size - 1)  # the very last byte: a torn write would be excused in the last one
    err = expect_refused(tmp_path, segment_bytes=256)
    assert err.path == str(first) and "not the last segment" in str(err)
    assert err.offset is not None and 0 < err.offset < size


def test_corrupt_or_missing_snapshot_refuses(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 10), ents(1, 10, 1), None)
        st_.compact(snap(4, 1, b"older"))
        st_.compact(snap(8, 1, b"x" * 100))
    current = tmp_path / "snap-0000000000000001-0000000000000008.snap"
    assert (tmp_path / "snap-0000000000000001-0000000000000004.snap").exists()
    pristine = current.read_bytes()

    flip(current, 50)
    err = expect_refused(tmp_path)
    assert err.path == str(current) and "checksum" in str(err)

    current.write_bytes(pristine[:-1])
    err = expect_refused(tmp_path)
    assert err.path == str(current) and "length" in str(err)

    current.unlink()
    err = expect_refused(tmp_path)
    assert err.path == str(current) and "missing" in str(err)

    current.write_bytes(pristine)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state()[1] == snap(8, 1, b"x" * 100)


def test_missing_segment_refuses(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path, segment_bytes=256) as st_:
        for i in range(1, 30):
            st_.save(HardState(1, 1, i), ents(i, i, 1), None)
    segs = segments(tmp_path)
    assert len(segs) >= 3
    kept = segs[1].read_bytes()
    segs[1].unlink()
    err = expect_refused(tmp_path, segment_bytes=256)
    assert "sequence jumps from 0 to 2" in str(err)
    segs[1].write_bytes(kept)

    segs[0].unlink()  # no snapshot covers its entries: a gap at the start
    err = expect_refused(tmp_path, segment_bytes=256)
    assert err.path == str(segs[1]) and "gap" in str(err)


def test_leftovers_of_unfinished_snapshots_are_removed(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 10), ents(1, 10, 1), None)
        st_.compact(snap(4, 1))
    # A crash after the snapshot file's rename but before its WAL marker, and one before rename.
    orphan = tmp_path / "snap-0000000000000001-0000000000000009.snap"
    temp = tmp_path / "snap-0000000000000001-000000000000000a.snap.tmp"
    orphan.write_bytes(b"never acknowledged")
    temp.write_bytes(b"half written")
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 10), snap(4, 1), ents(5, 10, 1))
    assert not orphan.exists() and not temp.exists()


# -- snapshots staged from another thread ---------------------------------------------------


def test_staged_snapshot_is_adopted_without_being_written_again(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 10), ents(1, 10, 1), None)
        st_.stage_snapshot(snap(6, 1, b"staged state"))
        (staged,) = tmp_path.glob("snap-*.snap")
        inode = staged.stat().st_ino
        st_.compact(snap(6, 1, b"staged state"))
        assert staged.stat().st_ino == inode
        assert (st_.first_index, st_.last_index) == (7, 10)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (
            HardState(1, 1, 10),
            snap(6, 1, b"staged state"),
            ents(7, 10, 1),
        )


def test_staged_snapshot_never_adopted_is_removed_on_recovery(tmp_path: Path) -> None:
    """A crash between staging and compact: the log does not name the file, so it is a leftover."""
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 10), ents(1, 10, 1), None)
        st_.compact(snap(4, 1))
        st_.stage_snapshot(snap(8, 1, b"never adopted"))
        assert len(list(tmp_path.glob("snap-*.snap"))) == 2
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 10), snap(4, 1), ents(5, 10, 1))
    assert len(list(tmp_path.glob("snap-*.snap"))) == 1


def test_installed_snapshot_overtakes_a_staged_one(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 10), ents(1, 10, 1), None)
        st_.stage_snapshot(snap(8, 1, b"ours"))
        st_.save(HardState(2, 0, 20), [], snap(20, 2, b"the leader's"))
        st_.compact(snap(8, 1, b"ours"))  # older than the installed one: changes nothing
        assert st_.snapshot_meta == snap(20, 2).meta
        st_.save(None, ents(21, 22, 2), None)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (
            HardState(2, 0, 20),
            snap(20, 2, b"the leader's"),
            ents(21, 22, 2),
        )
    # The staged file may stay as the older of the two snapshot files kept; it is never used.
    assert (tmp_path / "snap-0000000000000002-0000000000000014.snap").exists()


def test_staging_runs_alongside_saves(tmp_path: Path) -> None:
    big = snap(50, 1, os.urandom(8 << 20))
    with RaftStorage.open(tmp_path) as st_:
        st_.save(HardState(1, 1, 50), ents(1, 50, 1), None)
        stager = threading.Thread(target=st_.stage_snapshot, args=(big,))
        stager.start()
        for i in range(51, 251):
            st_.save(HardState(1, 1, i), ents(i, i, 1), None)
        stager.join(60)
        assert not stager.is_alive()
        st_.compact(big)
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 250), big, ents(51, 250, 1))


def test_staging_write_error_is_fatal(tmp_path: Path) -> None:
    st_ = RaftStorage.open(tmp_path)
    st_.save(HardState(1, 1, 3), ents(1, 3, 1), None)
    with file_size_limit(4096), pytest.raises(StorageFatalError):
        st_.stage_snapshot(snap(3, 1, bytes(10000)))
    assert_refuses_everything(st_)
    st_.close()
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 3), None, ents(1, 3, 1))
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("snap-*"))


# -- failures of the disk ------------------------------------------------------------------


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past `limit` bytes fail with EFBIG (a real write error, as on a full disk)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def assert_refuses_everything(st_: RaftStorage) -> None:
    for call in (
        lambda: st_.save(HardState(9, 9, 0), [], None),
        lambda: st_.compact(snap(1, 1)),
        st_.initial_state,
    ):
        with pytest.raises(StorageFatalError, match="refusing"):
            call()


def test_write_error_is_fatal(tmp_path: Path) -> None:
    st_ = RaftStorage.open(tmp_path)
    st_.save(HardState(1, 1, 3), ents(1, 3, 1), None)
    size = segments(tmp_path)[-1].stat().st_size
    with file_size_limit(size + 20), pytest.raises(StorageFatalError) as info:
        st_.save(HardState(1, 1, 3), ents(4, 40, 1), None)
    assert isinstance(info.value.__cause__, OSError)
    assert_refuses_everything(st_)
    st_.close()
    with RaftStorage.open(tmp_path) as st_:  # the partial batch is a torn tail, cut on open
        assert st_.initial_state() == (HardState(1, 1, 3), None, ents(1, 3, 1))


def test_snapshot_write_error_is_fatal(tmp_path: Path) -> None:
    st_ = RaftStorage.open(tmp_path)
    st_.save(HardState(1, 1, 3), ents(1, 3, 1), None)
    with file_size_limit(4096), pytest.raises(StorageFatalError):
        st_.save(None, [], snap(10, 2, bytes(10000)))
    assert_refuses_everything(st_)
    st_.close()
    with RaftStorage.open(tmp_path) as st_:
        assert st_.initial_state() == (HardState(1, 1, 3), None, ents(1, 3, 1))
    assert not list(tmp_path.glob("*.tmp"))


def _fd_of(path: Path) -> int:
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == str(path.resolve()):
                return int(name)
    raise AssertionError(f"no descriptor open on {path}")


def test_fsync_error_is_fatal(tmp_path: Path) -> None:
    st_ = RaftStorage.open(tmp_path)
    st_.save(HardState(1, 1, 3), ents(1, 3, 1), None)
    seg_fd = _fd_of(segments(tmp_path)[-1])
    read_end, write_end = os.pipe()
    try:
        os.dup2(write_end, seg_fd)  # writes now land in a pipe, and fsync of a pipe fails
        with pytest.raises(StorageFatalError) as info:
            st_.save(HardState(1, 1, 3), ents(4, 4, 1), None)
        assert isinstance(info.value.__cause__, OSError)
        assert os.read(read_end, 65536)  # the write itself went through; its fsync did not
        assert_refuses_everything(st_)
    finally:
        st_.close()
        os.close(read_end)
        os.close(write_end)


# -- the lock ------------------------------------------------------------------------------


def test_lock_keeps_a_second_opener_out(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from hamgr.raft.wal.storage import RaftStorage, StorageLockedError\n"
        "try:\n"
        "    RaftStorage.open(sys.argv[1]).close()\n"
        "except StorageLockedError:\n"
        "    print('locked')\n"
        "else:\n"
        "    print('opened')\n"
    )

    def other_process() -> str:
        out = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=True,
        )
        return out.stdout.strip()

    st_ = RaftStorage.open(tmp_path)
    try:
        with pytest.raises(StorageLockedError, match=str(tmp_path)):
            RaftStorage.open(tmp_path)
        assert other_process() == "locked"
    finally:
        st_.close()
    assert other_process() == "opened"
    RaftStorage.open(tmp_path).close()


# -- the model test --------------------------------------------------------------------------


@dataclass
class Model:
    """What the storage should hold, kept the simplest way."""

    hs: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def base(self) -> int:
        return self.snapshot.meta.index if self.snapshot else 0

    @property
    def last(self) -> int:
        return self.base + len(self.entries)

    def save(self, hs: HardState | None, entries: list[Entry], snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self.snapshot, self.entries = snapshot, []
        if entries:
            del self.entries[entries[0].index - self.base - 1 :]
            self.entries += entries
        if hs is not None:
            self.hs = hs

    def compact(self, snapshot: Snapshot) -> None:
        del self.entries[: snapshot.meta.index - self.base]
        self.snapshot = snapshot


def _check_live(st_: RaftStorage, model: Model) -> None:
    assert (st_.hard_state, st_.first_index, st_.last_index) == (
        model.hs,
        model.base + 1,
        model.last,
    )
    assert st_.snapshot_meta == (model.snapshot.meta if model.snapshot else SnapshotMeta())
    assert [st_.term(e.index) for e in model.entries] == [e.term for e in model.entries]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_operations_match_a_model(tmp_path: Path, data: st.DataObject) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path))
    model = Model()
    st_ = RaftStorage.open(path, segment_bytes=300)
    try:
        for _ in range(data.draw(st.integers(1, 25), label="steps")):
            op = data.draw(st.sampled_from(["append", "append", "install", "compact", "reopen"]))
            hs = data.draw(
                st.none()
                | st.builds(HardState, st.integers(0, 5), st.integers(0, 3), st.integers(0, 40))
            )
            term = data.draw(st.integers(1, 5))
            if op == "append":
                first = data.draw(st.integers(model.base + 1, model.last + 1))
                count = data.draw(st.integers(0, 6))
                batch = [
                    Entry(term, i, data=data.draw(st.binary(max_size=60)))
                    for i in range(first, first + count)
                ]
                st_.save(hs, batch, None)
                model.save(hs, batch, None)
            elif op == "install":
                index = data.draw(st.integers(model.base + 1, model.last + 3))
                installed = snap(index, term, data.draw(st.binary(max_size=80)))
                batch = ents(index + 1, index + data.draw(st.integers(0, 3)), term)
                st_.save(hs, batch, installed)
                model.save(hs, batch, installed)
            elif op == "compact" and model.base < min(model.last, model.hs.commit):
                top = min(model.last, model.hs.commit)
                index = data.draw(st.integers(model.base + 1, top) | st.just(top))
                taken = snap(index, model.entries[index - model.base - 1].term, b"app")
                st_.compact(taken)
                model.compact(taken)
                assert len(list(path.glob("snap-*"))) <= 2
            elif op == "reopen":
                st_.close()
                st_ = RaftStorage.open(path, segment_bytes=300)
                assert st_.initial_state() == (model.hs, model.snapshot, model.entries)
            _check_live(st_, model)
        st_.close()
        st_ = RaftStorage.open(path, segment_bytes=300)
        assert st_.initial_state() == (model.hs, model.snapshot, model.entries)
    finally:
        st_.close()
        shutil.rmtree(path)
