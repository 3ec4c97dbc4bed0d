"""A gate on one member's storage writes, opened by the test: a disk whose fsync hangs (and
then returns, or fails as a full disk does). Test code only: production code has no switch."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Any

from hamgr.raft.wal.storage import RaftStorage


class DiskGate:
    """Holds every `save` of `storage` until `release()` (or `fail()`: ENOSPC from then on)."""

    def __init__(self, storage: RaftStorage) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        self._full = False
        self._save: Callable[..., Any] = storage.save
        storage.save = self._gated  # type: ignore[method-assign, assignment]

    @property
    def is_open(self) -> bool:
        """Has the gate been opened (by `release` or `fail`)?"""
        return self._open.is_set()

    def release(self) -> None:
        """Let the held write and every later one through."""
        self._open.set()

    def fail(self) -> None:
        """The held write and every later one fail as on a full disk."""
        self._full = True
        self._open.set()

    def _gated(self, *args: Any) -> Any:
        self.entered.set()
        if not self._open.wait(30.0):  # bounded: a broken test must not hang the thread
            raise TimeoutError("disk gate never opened")
        if self._full:
            raise OSError(errno.ENOSPC, "No space left on device (test disk gate)")
        return self._save(*args)
