"""The fence guard: binds the guarded postmaster's life to the fencer's.

Run by the fencer itself (`python -m hamgr.fencer.guard --fd N --data-dir D [--log-file F]`), as its
child, holding the read end of a pipe whose only write end the fencer holds. The fencer writes
one line whenever the postmaster it guards changes: ``ARM <pid> <start_time>`` or ``DISARM``. When
the pipe reaches end of file the fencer is gone (killed, crashed, or exited cleanly, which it only
does while disarmed): if it was armed, the guard SIGKILLs that postmaster and every process
below it (and the data dir's current postmaster, when verifiably a different one of this data
dir, as the fencer does), logs one line and exits.

Why this design, and not the alternatives:

- The postmaster started as the fencer's child with PR_SET_PDEATHSIG: PostgreSQL is started by
  the agent through pg_ctl (which forks a shell, then the postmaster), so the postmaster is the
  fencer's grandchild at best and the parent-death signal is cleared by that fork and by the
  change of user to postgres. It would also tie every PostgreSQL start to a running fencer and a
  restarted fencer could never adopt an already running postmaster.
- A pidfd on the fencer, held by PostgreSQL: PostgreSQL cannot be taught to watch one.
- End of file on a pipe is what the kernel delivers for every way a process dies (SIGKILL, OOM
  kill, a crash), with no polling and no race on reused PIDs; the guard blocks in one read and
  does nothing else, so it has nothing to get stuck on. It names the postmaster by identity (pid
  and start time), so a reused PID is never killed.

So killing the fencer alone stops the primary's PostgreSQL at once (the agent then starts a new
fencer and PostgreSQL again, or gives the leader key up: see hamgr/fencer/keeper.py). Killing the
guard alone changes nothing: the fencer keeps its deadline, sees the pipe break and starts a new
guard. What this does not cover: both killed at once (e.g. SIGKILL to their process group) while
the agent is frozen too; and a frozen (SIGSTOP) fencer, whose pipe stays open. Stdlib only, like
the fencer.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
from pathlib import Path
from typing import TextIO

from hamgr import clock
from hamgr.fencer.postmasterproc import kill_postmaster, postmaster_identity

Identity = tuple[int, int]


def parse_line(line: bytes, armed: Identity | None) -> Identity | None:
    """The guarded identity after one line from the fencer (an unknown line changes nothing)."""
    words = line.split()
    if words == [b"DISARM"]:
        return None
    if len(words) == 3 and words[0] == b"ARM" and words[1].isdigit() and words[2].isdigit():
        return int(words[1]), int(words[2])
    return armed


def _log(stream: TextIO, message: str) -> None:
    wall = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    with contextlib.suppress(OSError, ValueError):
        stream.write(f"{wall} clock={clock.now():.6f} hamgr-fenceguard[{os.getpid()}]: {message}\n")
        stream.flush()


def guard(fd: int, data_dir: Path, log: TextIO) -> Identity | None:
    """Follow the fencer's lines until end of file; returns the identity armed at that point."""
    armed: Identity | None = None
    buffer = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return armed
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            armed = parse_line(line, armed)


def kill_guarded(armed: Identity, data_dir: Path) -> str:
    """Kill the guarded postmaster (and the data dir's current one if it differs); what was done."""
    done = []
    targets = [armed]
    with contextlib.suppress(OSError):
        current = postmaster_identity(data_dir)
        if current is not None and current != armed:
            targets.append(current)
    for pid, start in targets:
        try:
            result = kill_postmaster(pid, start)
        except Exception as exc:
            done.append(f"killing postmaster {pid} failed: {exc!r}")
            continue
        if result is None:
            done.append(f"postmaster {pid} (start {start}) is gone")
        else:
            done.append(f"SIGKILL postmaster {pid} then {len(result.children)} children")
    return "; ".join(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hamgr.fencer.guard")
    parser.add_argument("--fd", required=True, type=int, help="read end of the fencer's pipe")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--log-file", type=Path)
    args = parser.parse_args(argv)
    try:
        log: TextIO = open(args.log_file, "a") if args.log_file else sys.stderr  # noqa: SIM115
    except OSError:
        log = sys.stderr
    armed = guard(args.fd, args.data_dir, log)
    if armed is None:
        return 0
    _log(
        log,
        f"FENCER GONE while armed for postmaster {armed[0]} (start {armed[1]}): "
        f"{kill_guarded(armed, args.data_dir)}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
