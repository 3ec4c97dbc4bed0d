"""The errors of the Raft storage (`hamgr.raft.wal.storage`), in a module of their own.

The on-disk format, recovery and the storage itself all raise them, so they sit below all three;
callers import them from here.
"""

from __future__ import annotations

__all__ = [
    "CorruptStorageError",
    "StorageClosedError",
    "StorageError",
    "StorageFatalError",
    "StorageLockedError",
]


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
