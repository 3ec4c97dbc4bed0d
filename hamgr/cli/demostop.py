"""Stopping the demo cluster as a whole: replicas first, then the primary, then nothing left.

Why this order. On SIGTERM a primary's agent hands over to a healthy replica (a switchover),
which is what stopping ONE host should do. Stopping every agent at once turns that into a
handover to a replica that is itself stopping, while the store (one member per agent) loses its
majority: the primary waits the switchover out and the logs fill with store errors. So the
replicas go first, one at a time, each until its process has exited (its PostgreSQL stopped,
its member key deleted while the store still had a majority); then the primary, which finds
nobody to hand over to and stops at once (see `hamgr.agent`: a member that reaches no majority
of the store does not wait on it).

Then whatever still runs from the demo's data directories (a postmaster, a fencer) is killed by
PID, its identity checked in /proc first, so stopping never leaves anything running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hamgr.fencer.postmasterproc import kill_postmaster, postmaster_identity, proc_stat
from hamgr.fencer.process import pid_file_for
from hamgr.postgres.settings import default_run_dir

AGENT_GRACE = 30.0
"""Seconds an agent gets to exit after SIGTERM before it is killed (a clean stop takes ~1 s)."""

FENCER_GRACE = 5.0
"""Seconds a fencer left behind gets to exit after SIGTERM before SIGKILL."""


@dataclass
class DemoMember:
    """One agent the demo started: its process, its PostgreSQL data directory, its REST API."""

    name: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    api: str
    ssl_context: ssl.SSLContext | None = None
    """Trusts the demo's CA when the REST API speaks https."""

    @property
    def fencer_socket(self) -> Path:
        """The fencer's socket (the agent's default run directory, `<data_dir>.run`)."""
        return default_run_dir(self.data_dir) / "hamgr-fencer.sock"


def answers_200(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether GET `url` answers 200 within a second (https checked with `context`)."""
    try:
        with urllib.request.urlopen(url, timeout=1, context=context):
            return True
    except (urllib.error.URLError, OSError):
        return False


def stop_order(members: list[DemoMember]) -> list[DemoMember]:
    """The running agents, replicas (and anything not primary) first, the primary last."""
    running = [m for m in members if m.proc.poll() is None]
    primaries = [m for m in running if answers_200(m.api + "/primary", m.ssl_context)]
    return [m for m in running if m not in primaries] + primaries


def stop_agent(member: DemoMember, grace: float = AGENT_GRACE) -> int:
    """SIGTERM one agent and wait for it to exit; SIGKILL after `grace` seconds. Exit status."""
    with contextlib.suppress(ProcessLookupError):
        member.proc.send_signal(signal.SIGTERM)
    try:
        return member.proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        member.proc.kill()
        return member.proc.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stop_fencer(socket: Path) -> int | None:
    """SIGTERM (then SIGKILL) the fencer whose pid file sits beside `socket`; its PID or None.

    Only a live process whose command line names `socket` is signalled (not a reused PID)."""
    try:
        pid = int(pid_file_for(socket).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    stat = proc_stat(pid)
    if stat is None or not stat.alive or str(socket) not in _cmdline(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + FENCER_GRACE
    while time.monotonic() < deadline:
        now = proc_stat(pid)
        if now is None or not now.alive or now.start_time != stat.start_time:
            return pid
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return pid


def kill_leftovers(members: list[DemoMember]) -> list[str]:
    """Kill any postmaster or fencer of `members` still running; what was killed, as text."""
    killed = []
    for m in members:
        ident = postmaster_identity(m.data_dir)
        if ident is not None and kill_postmaster(*ident) is not None:
            killed.append(f"{m.name}'s postmaster (pid {ident[0]})")
        pid = _stop_fencer(m.fencer_socket)
        if pid is not None:
            killed.append(f"{m.name}'s fencer (pid {pid})")
    return killed


def stop_cluster(members: list[DemoMember], say: Callable[[str], None] = print) -> float:
    """Stop every agent in `stop_order`, then kill leftovers; the seconds it all took.

    Further SIGINT/SIGTERM are ignored meanwhile: a second Ctrl-C must not abandon the agents
    half-stopped (the stop is bounded by AGENT_GRACE per agent anyway)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = time.monotonic()
        order = stop_order(members)
        if order:
            say(f"stopping {', '.join(m.name for m in order)} (replicas first, primary last) ...")
        for m in order:
            status = stop_agent(m)
            if status != 0:
                say(f"{m.name}'s agent exited with status {status}; see {m.name}.log")
        for what in kill_leftovers(members):
            say(f"killed {what}, left running by its agent")
        elapsed = time.monotonic() - started
        say(f"stopped in {elapsed:.1f} s")
        return elapsed
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
