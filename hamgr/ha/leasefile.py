"""The agent's lease id on disk, so that a restarted agent takes its own lease back.

An agent that dies (kill -9, an upgrade, systemd's watchdog restart) while its PostgreSQL runs
as primary leaves the leader key attached to its lease in the store. The restarted agent reads
the id written here and renews that lease (``KvSession.adopt_lease``): if the renewal succeeds,
the leader key attached to it is still ours and PostgreSQL stays primary, with no demotion; if
the store says the lease is gone, so is every key attached to it.

The id is written (fsync'ed, mode 0600, atomically replaced) BEFORE the lease is granted, so
every lease this member may hold is the one on disk. The file names the scope and the member
too: a run directory reused for another member or cluster never hands over a foreign lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["LeaseFile"]

FILE_NAME = "hamgr-lease.json"


class LeaseFile:
    """``<run_dir>/hamgr-lease.json``: the lease id of member ``name`` in cluster ``scope``."""

    def __init__(self, run_dir: Path, scope: str, name: str) -> None:
        self.path = Path(run_dir) / FILE_NAME
        self.scope = scope
        self.name = name

    def save(self, lease_id: int) -> None:
        """Write ``lease_id`` durably (raises OSError: then the lease must not be granted)."""
        body = json.dumps({"scope": self.scope, "name": self.name, "lease": lease_id})
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(body + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self) -> int | None:
        """The lease id written by an earlier agent of this member, or None (none, or a file
        that is unreadable or belongs to another member or scope: logged, never trusted)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring the lease file %s: %s", self.path, exc)
            return None
        lease = data.get("lease") if isinstance(data, dict) else None
        if not isinstance(data, dict) or type(lease) is not int or lease < 1:
            log.warning("ignoring the lease file %s: no lease id in it", self.path)
            return None
        if (data.get("scope"), data.get("name")) != (self.scope, self.name):
            log.warning(
                "ignoring the lease file %s: it belongs to member %r of cluster %r, not %r of %r",
                self.path,
                data.get("name"),
                data.get("scope"),
                self.name,
                self.scope,
            )
            return None
        return lease

    def remove(self) -> None:
        """Forget the lease (after it was revoked on a clean stop)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
