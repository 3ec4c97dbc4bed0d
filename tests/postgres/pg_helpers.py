"""Helpers for tests that run real PostgreSQL servers (imported by conftest.py and tests).

Kept in a plain module, not conftest.py, so test files can import them by name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TypeVar

from hamgr.postgres import PgSettings
from hamgr.postgres.control import postmaster_pid

T = TypeVar("T")


def find_pg_bindir() -> Path | None:
    """PostgreSQL's bin dir (one that holds `postgres`), or None when none is installed."""
    candidates = []
    if os.environ.get("HAMGR_PG_BINDIR"):
        candidates.append(os.environ["HAMGR_PG_BINDIR"])
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
        candidates.append(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    candidates += reversed(versions)
    for candidate in candidates:
        if candidate and os.access(os.path.join(candidate, "postgres"), os.X_OK):
            return Path(candidate)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether `pid` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def kill_server(settings: PgSettings, grace: float = 10.0) -> None:
    """Stop the server of `settings` by PID: immediate shutdown, then SIGKILL if it lingers."""
    pid = postmaster_pid(settings)
    if pid is None or not _alive(pid):
        return
    children = _children(pid)
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        for victim in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
