"""Run a hamgr command with a slow disk under its store: a test wrapper, not a production switch.

    python -m tests.chaos.slowfsync --dir STORE_DIR --control FILE -- agent --config X.yaml

Patches `os.fsync` and `os.fdatasync` in this process, then runs ``python -m hamgr`` with the
arguments after ``--``. Each fsync of a file descriptor whose file lies under STORE_DIR (the
store member's data directory: its log segments, hard state, snapshots and the directory
itself) first sleeps the number of seconds written in FILE (a decimal number; missing, empty
or unreadable: 0), re-read at most every `REREAD` seconds, so a nemesis can change the stall
while the member runs. Processes the agent starts (fencer, PostgreSQL) are not affected.
The store's storage calls fsync from a worker thread, so a stall delays exactly what a slow disk
would: its persisted batches, hence its votes and append acknowledgements.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REREAD = 0.1


class Stall:
    """The stall in force, read from the control file (cached for `REREAD` seconds)."""

    def __init__(self, control: Path, under: Path) -> None:
        self.control = control
        self.under = str(under.resolve()).rstrip("/") + "/"
        self._value = 0.0
        self._read_at = -1.0
        self._lock = threading.Lock()

    def seconds(self) -> float:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= REREAD:
                self._read_at = now
                try:
                    self._value = max(0.0, float(self.control.read_text().strip() or 0))
                except (OSError, ValueError):
                    self._value = 0.0
            return self._value

    def applies_to(self, fd: int) -> bool:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False
        return (path.rstrip("/") + "/").startswith(self.under)

    def wrap(self, real: Callable[[int], None]) -> Callable[[int], None]:
        def slow(fd: int) -> None:
            if self.applies_to(fd):
                stall = self.seconds()
                if stall > 0:
                    time.sleep(stall)
            real(fd)

        return slow


def install(control: Path, under: Path) -> Stall:
    """Patch os.fsync and os.fdatasync in this process; the `Stall` that drives them."""
    stall = Stall(control, under)
    os.fsync = stall.wrap(os.fsync)  # type: ignore[assignment]
    os.fdatasync = stall.wrap(os.fdatasync)  # type: ignore[assignment]
    return stall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, type=Path, help="the store's data directory")
    ap.add_argument("--control", required=True, type=Path, help="file holding the stall (s)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then hamgr's arguments")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give hamgr's arguments after --")
    install(args.control, args.dir)
    sys.argv = ["hamgr", *command]
    runpy.run_module("hamgr", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
