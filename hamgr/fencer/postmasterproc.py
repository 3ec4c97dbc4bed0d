"""The postmaster of a data directory in /proc, and killing it with every process below it.

Stdlib only, like the fencer that uses it (`hamgr.fencer`); `hamgr.fencer.client` uses it too. A
process is named by its identity, (pid, start time in clock ticks after boot, field 22 of
/proc/<pid>/stat), so a PID reused by another process is never signalled.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "POSTGRES_BINARIES",
    "KillResult",
    "ProcStat",
    "all_processes",
    "descendants",
    "identity_matches",
    "kill_postmaster",
    "postmaster_identity",
    "proc_stat",
    "read_postmaster_pid",
]

POSTGRES_BINARIES = ("postgres", "postmaster")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the fencer needs."""

    pid: int
    state: str
    ppid: int
    start_time: int  # clock ticks after boot

    @property
    def alive(self) -> bool:
        """False for zombies (exited, not yet reaped) and dead tasks."""
        return self.state not in ("Z", "X", "x")


def proc_stat(pid: int) -> ProcStat | None:
    """/proc/<pid>/stat of a process, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    fields = raw.rsplit(b")", 1)[1].split()
    return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[19]))


def all_processes() -> list[ProcStat]:
    """Every process visible in /proc right now."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None:
                found.append(stat)
    return found


def descendants(pid: int, processes: Iterable[ProcStat]) -> list[int]:
    """PIDs of every live process below `pid` (children, their children...), parents first."""
    children: dict[int, list[int]] = {}
    for proc in processes:
        if proc.alive:
            children.setdefault(proc.ppid, []).append(proc.pid)
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            if child not in found and child != pid:
                found.append(child)
                queue.append(child)
    return found


def identity_matches(pid: int, start_time: int) -> bool:
    """Whether `pid` is still the live process that started at `start_time` (not a reused PID)."""
    stat = proc_stat(pid)
    return stat is not None and stat.alive and stat.start_time == start_time


def read_postmaster_pid(data_dir: Path) -> int | None:
    """The PID on the first line of <data_dir>/postmaster.pid, or None (no file, no PID).

    Raises PermissionError when the file exists but we may not read it."""
    try:
        text = (data_dir / "postmaster.pid").read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    first = text.split("\n", 1)[0].strip().lstrip("-")
    return int(first) if first.isdigit() and int(first) > 1 else None


def postmaster_identity(data_dir: Path) -> tuple[int, int] | None:
    """(pid, start_time) of the postmaster running on `data_dir`, or None when none runs.

    The PID comes from postmaster.pid, the start time from /proc/<pid>/stat. The process must run
    the postgres binary with the data dir as its working directory (a postmaster chdirs there), so
    a stale postmaster.pid whose PID was reused by another process yields None. Raises
    PermissionError when /proc does not let us check (run as root or as PostgreSQL's OS user).
    """
    pid = read_postmaster_pid(data_dir)
    if pid is None:
        return None
    stat = proc_stat(pid)
    if stat is None or not stat.alive:
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (FileNotFoundError, ProcessLookupError):
        return None
    if os.path.basename(exe.removesuffix(" (deleted)")) not in POSTGRES_BINARIES:
        return None
    if cwd.removesuffix(" (deleted)") != os.path.realpath(data_dir):
        return None
    # The process may have exited and its PID been reused while we looked.
    if not identity_matches(pid, stat.start_time):
        return None
    return pid, stat.start_time


def _signal_all(handles: list[tuple[int, int | None]], signum: int) -> list[str]:
    """Send `signum` through each (pid, pidfd) pair; returns errors as text."""
    errors = []
    for pid, pidfd in handles:
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(pid, signum)
        except ProcessLookupError:
            pass
        except OSError as exc:
            errors.append(f"pid {pid}: {exc.strerror}")
    return errors


def _pidfd(pid: int) -> int | None:
    """A pidfd for `pid` (signals through it cannot reach a later owner of the PID), or None."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


@dataclass(frozen=True)
class KillResult:
    """What `kill_postmaster` did."""

    postmaster: int
    children: tuple[int, ...]
    errors: tuple[str, ...]


def kill_postmaster(pid: int, start_time: int) -> KillResult | None:
    """SIGKILL a postmaster and every process below it; None when the identity does not match.

    Order: SIGSTOP the postmaster (it can neither fork nor reap any more, so its children's PIDs
    stay theirs), collect its descendants from /proc and open pidfds to them, SIGKILL the
    postmaster (so it cannot restart anything), then SIGKILL the descendants (so no backend keeps
    accepting writes after the postmaster died).
    """
    pm_fd = _pidfd(pid)
    try:
        # Checked after opening the pidfd: if it matches now, the pidfd is that process.
        if not identity_matches(pid, start_time):
            return None
        pm = [(pid, pm_fd)]
        errors = _signal_all(pm, signal.SIGSTOP)
        kids = descendants(pid, all_processes())
        kid_handles = [(kid, _pidfd(kid)) for kid in kids]
        try:
            errors += _signal_all(pm, signal.SIGKILL)
            errors += _signal_all(kid_handles, signal.SIGKILL)
        finally:
            for _, fd in kid_handles:
                if fd is not None:
                    os.close(fd)
        return KillResult(pid, tuple(kids), tuple(errors))
    finally:
        if pm_fd is not None:
            os.close(pm_fd)
