"""The fencer (hamgr/fencer/process.py) and its client (hamgr/fencer/client.py) against real
processes.

A real postmaster with real backends, fencers started the way the agent starts them (detached,
through FencerClient.ensure_running), agents as separate Python processes that get SIGKILLed or
SIGSTOPped, garbage on the real unix socket. Tests that only need "a process the fence may kill"
use a `sleep` process as the armed postmaster: the fencer goes by identity (PID + start time).
Every process a test starts is killed by PID (and start time) at teardown, even on failure.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from hamgr import clock
from hamgr import postgres as pg
from hamgr.fencer import guard as fenceguard
from hamgr.fencer.client import (
    FenceClockError,
    FencerClient,
    FenceRefused,
    FencerError,
    fence_at_for,
    oom_protection_problem,
    parse_status,
    postmaster_identity,
)
from hamgr.fencer.guard import parse_line
from hamgr.fencer.keeper import BACKOFF_MIN, FencerKeeper
from hamgr.fencer.postmasterproc import proc_stat
from hamgr.fencer.process import EXIT_ALREADY_RUNNING
from hamgr.fencer.protocol import MAX_SLEEP_MS, FenceStatus, ProtocolError, parse_command
from hamgr.postgres.sql import connect, query
from tests.tools.poll import wait_for_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FAST = pg.InitdbOptions(no_sync=True)
MakePg = Callable[..., pg.PgSettings]
# How late after fence_at the kill may come: generous, for a loaded 2-core CI machine.
FENCE_BOUND = 2.0
# How long a process may take to vanish after SIGKILL (it may linger as a zombie: that counts).
GONE_TIMEOUT = 10.0

AGENT = """
import asyncio, sys, time
from pathlib import Path
from hamgr import clock
from hamgr.fencer.client import FencerClient, postmaster_identity

async def main():
    sock, data_dir, run_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    period, ahead = float(sys.argv[4]), float(sys.argv[5])
    client = FencerClient(sock)
    fencer = await client.ensure_running(sys.executable, data_dir, run_dir)
    pid, start = postmaster_identity(data_dir)
    end = clock.now() + 30
    while clock.now() < end:
        status = await client.arm(clock.now() + ahead, pid, start)
        print(f"armed {fencer} {status.fence_at!r}", flush=True)
        if period <= 0:
            break
        await asyncio.sleep(period)
    await asyncio.sleep(30)

asyncio.run(main())
"""


# --- helpers ---------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat.alive


def start_time_of(pid: int) -> int:
    stat = proc_stat(pid)
    assert stat is not None, f"process {pid} is gone"
    return stat.start_time


def cluster_processes(data_dir: Path) -> list[int]:
    """Every live process working in `data_dir`: a postmaster chdirs there, its children too."""
    target = os.path.realpath(data_dir)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not alive(int(entry)):
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/cwd") == target:
                found.append(int(entry))
    return found


async def sleep_until(instant: float) -> None:
    await asyncio.sleep(max(0.0, instant - clock.now()))


@dataclass(frozen=True)
class FenceLine:
    fence_at: float
    now: float
    done: float
    text: str

    @property
    def killed(self) -> dict[int, list[int]]:
        """Postmaster PID -> the PIDs of the children killed with it."""
        return {
            int(pm): [int(pid) for pid in kids.replace(",", " ").split()]
            for pm, kids in KILLED_RE.findall(self.text)
        }


FENCE_RE = re.compile(r"FENCE fence_at=(\S+) now=(\S+) late_ms=\S+ done=(\S+): (.*)$")
KILLED_RE = re.compile(r"SIGKILL postmaster (\d+) then \d+ children \[([\d, ]*)\]")


def fence_lines(log: Path) -> list[FenceLine]:
    """The FENCE lines of a fencer log (one per deadline that passed)."""
    found = []
    for line in log.read_text().splitlines():
        match = FENCE_RE.search(line)
        if match:
            found.append(
                FenceLine(float(match[1]), float(match[2]), float(match[3]), match[4].strip())
            )
    return found


async def one_fence(log: Path, timeout: float = GONE_TIMEOUT) -> FenceLine:
    await wait_for_async(lambda: len(fence_lines(log)) > 0, timeout, f"a FENCE line in {log}")
    lines = fence_lines(log)
    assert len(lines) == 1, lines
    return lines[0]


def raw_exchange(sock_path: Path, payload: bytes) -> bytes:
    """Send raw bytes on a fresh connection; return everything until the fencer closes it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(sock_path))
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received


class Procs:
    """Processes a test started, by (PID, start time): SIGKILLed and reaped at teardown."""

    def __init__(self) -> None:
        self.known: list[tuple[int, int]] = []
        self.children: list[subprocess.Popen[bytes]] = []

    def track(self, pid: int) -> int:
        self.known.append((pid, start_time_of(pid)))
        return pid

    def sleeper(self) -> int:
        """A stand-in 'postmaster': a sleep process, our child."""
        proc = subprocess.Popen(["sleep", "60"])
        self.children.append(proc)
        return self.track(proc.pid)

    def kill_all(self) -> None:
        for pid, start in self.known:
            stat = proc_stat(pid)
            if stat is not None and stat.start_time == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = clock.now() + GONE_TIMEOUT
        for pid, start in self.known:
            while clock.now() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                stat = proc_stat(pid)
                if stat is None or stat.start_time != start or not stat.alive:
                    break
                time.sleep(0.02)
        for child in self.children:
            child.wait(GONE_TIMEOUT)


@pytest.fixture
def procs(pg_tmp_dir: Path) -> Iterator[Procs]:
    tracked = Procs()
    try:
        yield tracked
    finally:
        tracked.kill_all()


@pytest.fixture
def run_dir(pg_tmp_dir: Path) -> Path:
    """Where fencers put their socket, pid file and log (the agent would use PG's run dir)."""
    path = pg_tmp_dir / "fence"
    path.mkdir()
    return path


@pytest.fixture
def empty_data_dir(pg_tmp_dir: Path) -> Path:
    """A data dir with no postmaster.pid, for fencers that guard a stand-in process."""
    path = pg_tmp_dir / "nodata"
    path.mkdir()
    return path


async def primary(make_pg: MakePg) -> pg.PgSettings:
    settings = make_pg("p")
    await pg.initdb(settings, FAST)
    await pg.start(settings)
    return settings


async def start_fencer(procs: Procs, run_dir: Path, data_dir: Path) -> FencerClient:
    client = FencerClient(run_dir / "fencer.sock")
    procs.track(await client.ensure_running(sys.executable, data_dir, run_dir))
    return client


@contextlib.asynccontextmanager
async def running_agent(
    procs: Procs, run_dir: Path, data_dir: Path, period: float, ahead: float
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, float]]:
    """A separate agent process that starts the fencer and arms it for the data dir's postmaster
    (`ahead` seconds from now), again every `period` seconds if that is > 0; it prints each
    deadline the fencer holds.

    Yields (agent process, fencer PID, first fence_at); the agent is killed and reaped on exit.
    """
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AGENT,
        str(run_dir / "fencer.sock"),
        str(data_dir),
        str(run_dir),
        str(period),
        str(ahead),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        procs.track(agent.pid)
        assert agent.stdout is not None
        line = (await asyncio.wait_for(agent.stdout.readline(), 20)).decode().split()
        assert line and line[0] == "armed", line
        yield agent, procs.track(int(line[1])), float(line[2])
    finally:
        if agent.returncode is None:
            agent.kill()
        await asyncio.wait_for(agent.wait(), GONE_TIMEOUT)


# --- against a real postmaster ---------------------------------------------------------------


async def test_fence_kills_the_postmaster_and_every_backend(
    make_pg: MakePg, procs: Procs, run_dir: Path
) -> None:
    s = await primary(make_pg)
    client = await start_fencer(procs, run_dir, s.data_dir)
    idle = await connect(s)
    busy = await connect(s)
    try:
        backends = []
        for conn in (idle, busy):
            row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
            assert row is not None
            backends.append(row["pid"])
        # A backend busy in a loop does not notice its postmaster's death for a long while (an
        # idle one notices at once): only the fencer's SIGKILL stops it soon.
        await busy.execute("SET statement_timeout = '12s'")
        loop = asyncio.create_task(busy.execute("DO $$ BEGIN LOOP PERFORM 1; END LOOP; END $$"))
        identity = postmaster_identity(s.data_dir)
        assert identity is not None
        pm, start = identity
        assert pm == pg.postmaster_pid(s) and start == start_time_of(pm)
        before = cluster_processes(s.data_dir)
        assert pm in before and set(backends) <= set(before) and len(before) >= 5, before

        fence_at = clock.now() + 1.5
        assert await client.arm(fence_at, pm, start) == FenceStatus(fence_at, pm, start)
        # Shortly before the deadline the server still serves and all its processes live.
        await sleep_until(fence_at - 0.7)
        assert await query(s, "SELECT 1 AS one", what="probe") == [{"one": 1}]
        assert all(alive(pid) for pid in before) and not loop.done()
        assert clock.now() < fence_at, "the probe itself came too late to mean anything"

        await wait_for_async(
            lambda: not cluster_processes(s.data_dir),
            fence_at - clock.now() + GONE_TIMEOUT,
            "every process of the data dir to die",
        )
        gone_at = clock.now()
        with pytest.raises(psycopg.OperationalError):
            await idle.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            await loop
    finally:
        await idle.close()
        await busy.close()
    assert gone_at - fence_at < FENCE_BOUND, "the server outlived its deadline too long"
    fence = await one_fence(run_dir / "hamgr-fencer.log")
    assert fence.fence_at == fence_at
    assert fence_at <= fence.now <= fence.done < fence_at + FENCE_BOUND, fence
    assert fence.killed.keys() == {pm} and set(before) == {pm, *fence.killed[pm]}, fence
    assert await client.query() == FenceStatus(), "the fencer disarms after fencing"
    assert postmaster_identity(s.data_dir) is None
    await client.close()


async def test_rearm_moves_the_deadline_forward_only(
    make_pg: MakePg, procs: Procs, run_dir: Path
) -> None:
    s = await primary(make_pg)
    identity = postmaster_identity(s.data_dir)
    assert identity is not None
    client = await start_fencer(procs, run_dir, s.data_dir)
    first = clock.now() + 0.6
    second = first + 0.9
    await client.arm(first, *identity)
    assert (await client.arm(second, *identity)).fence_at == second
    with pytest.raises(FenceRefused, match="only moves forward"):
        await client.arm(first, *identity)
    assert (await client.query()).fence_at == second

    # Past the first deadline the server lives on...
    await sleep_until(first + 0.3)
    assert await query(s, "SELECT 1 AS one", what="probe") == [{"one": 1}]
    assert (await client.query()).armed and not fence_lines(run_dir / "hamgr-fencer.log")
    # ...and the second one fences it.
    await wait_for_async(
        lambda: not cluster_processes(s.data_dir),
        second - clock.now() + GONE_TIMEOUT,
        "the server to be fenced at the second deadline",
    )
    fence = await one_fence(run_dir / "hamgr-fencer.log")
    assert fence.fence_at == second and fence.now >= second
    await client.close()


async def test_killed_agent_leaves_the_fence_in_place(
    make_pg: MakePg, procs: Procs, run_dir: Path
) -> None:
    s = await primary(make_pg)
    async with running_agent(procs, run_dir, s.data_dir, period=0, ahead=1.2) as (
        agent,
        fencer,
        fence_at,
    ):
        assert fencer != agent.pid
        agent.kill()
        assert await agent.wait() == -signal.SIGKILL
        assert clock.now() < fence_at and cluster_processes(s.data_dir)
        await wait_for_async(
            lambda: not cluster_processes(s.data_dir),
            fence_at - clock.now() + GONE_TIMEOUT,
            "the fencer to kill the server of the dead agent",
        )
    fence = await one_fence(run_dir / "hamgr-fencer.log")
    assert fence.fence_at == fence_at and fence.now >= fence_at
    assert alive(fencer), "the fencer keeps running after fencing"


async def test_frozen_agent_cannot_hold_the_fence_off(
    make_pg: MakePg, procs: Procs, run_dir: Path
) -> None:
    s = await primary(make_pg)
    async with running_agent(procs, run_dir, s.data_dir, period=0.1, ahead=0.8) as (
        agent,
        _,
        first,
    ):
        # The agent keeps moving the deadline while it runs (it prints what the fencer holds).
        assert agent.stdout is not None
        latest = first
        while clock.now() < first + 0.2:
            line = await asyncio.wait_for(agent.stdout.readline(), 5)
            latest = float(line.split()[2])
        assert latest > first and cluster_processes(s.data_dir), "the server outlived `first`"
        agent.send_signal(signal.SIGSTOP)
        stopped_at = clock.now()
        await wait_for_async(
            lambda: not cluster_processes(s.data_dir),
            GONE_TIMEOUT,
            "the fencer to kill the server of the frozen agent",
        )
        assert agent.returncode is None and alive(agent.pid), "the agent is frozen, not dead"
    fence = await one_fence(run_dir / "hamgr-fencer.log")
    assert latest <= fence.fence_at <= stopped_at + 0.8 and fence.now >= fence.fence_at
    assert "replaces" not in (run_dir / "hamgr-fencer.log").read_text()


async def test_fence_also_kills_the_postmaster_that_postmaster_pid_names(
    make_pg: MakePg, procs: Procs, run_dir: Path
) -> None:
    """The agent restarted PostgreSQL and froze before it armed the new identity."""
    s = await primary(make_pg)
    stale = procs.sleeper()
    client = await start_fencer(procs, run_dir, s.data_dir)
    fence_at = clock.now() + 0.3
    await client.arm(fence_at, stale, start_time_of(stale) + 1)
    await wait_for_async(lambda: not cluster_processes(s.data_dir), GONE_TIMEOUT, "the fence")
    fence = await one_fence(run_dir / "hamgr-fencer.log")
    assert "postmaster.pid names" in fence.text and fence.now >= fence_at
    assert alive(stale), "a process that only shares the armed PID is never killed"
    await client.close()


async def test_postmaster_identity(make_pg: MakePg, procs: Procs, empty_data_dir: Path) -> None:
    s = await primary(make_pg)
    pid = pg.postmaster_pid(s)
    assert pid is not None and postmaster_identity(s.data_dir) == (pid, start_time_of(pid))
    await pg.stop(s, "fast")
    assert postmaster_identity(s.data_dir) is None
    # A postmaster.pid whose PID now belongs to another process names no postmaster.
    other = procs.sleeper()
    (empty_data_dir / "postmaster.pid").write_text(f"{other}\n{empty_data_dir}\n")
    assert postmaster_identity(empty_data_dir) is None


# --- with a stand-in process: protocol, takeover, identity -----------------------------------


async def test_disarm_stops_fencing_and_sigterm_then_ends_the_fencer(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    victim = procs.sleeper()
    client = await start_fencer(procs, run_dir, empty_data_dir)
    fencer = client.fencer_pid()
    assert fencer is not None
    fence_at = clock.now() + 0.4
    await client.arm(fence_at, victim, start_time_of(victim))
    assert await client.disarm() == FenceStatus()
    await sleep_until(fence_at + 0.2)
    # The fencer answered after the old deadline, so its loop ran past it without fencing.
    assert await client.query() == FenceStatus()
    assert alive(victim) and not fence_lines(run_dir / "hamgr-fencer.log")
    os.kill(fencer, signal.SIGTERM)
    await wait_for_async(lambda: not alive(fencer), GONE_TIMEOUT, "the disarmed fencer to exit")
    assert not (run_dir / "fencer.sock").exists() and not client.pid_path.exists()
    await client.close()


async def test_new_client_takes_over_a_running_fencer(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    victim = procs.sleeper()
    start = start_time_of(victim)
    first = await start_fencer(procs, run_dir, empty_data_dir)
    fencer = first.fencer_pid()
    fence_at = clock.now() + 30
    await first.arm(fence_at, victim, start)

    # A restarted agent: finds the running fencer instead of starting another one.
    second = FencerClient(run_dir / "fencer.sock")
    assert await second.ensure_running(sys.executable, empty_data_dir, run_dir) == fencer
    assert await second.query() == FenceStatus(fence_at, victim, start)
    assert (await second.arm(fence_at + 1, victim, start)).fence_at == fence_at + 1
    # The old client's connection was replaced; it reconnects and sees the new deadline.
    assert (await first.query()).fence_at == fence_at + 1
    # A second fencer on the same socket refuses to start and leaves the first one alone.
    sock = run_dir / "fencer.sock"
    direct = subprocess.run(
        [sys.executable, "-m", "hamgr.fencer", "--socket", str(sock), "--data-dir", "/tmp"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert direct.returncode == EXIT_ALREADY_RUNNING and f"pid {fencer}" in direct.stderr
    assert (await second.query()).fence_at == fence_at + 1

    with pytest.raises(FenceRefused, match="DISARM first"):
        await second.shutdown()
    await second.disarm()
    await second.shutdown()
    assert fencer is not None
    await wait_for_async(lambda: not alive(fencer), GONE_TIMEOUT, "the fencer to exit on EXIT")
    with pytest.raises(FencerError, match="unreachable"):
        await first.query()
    assert alive(victim)
    await first.close()


async def test_garbage_gets_err_and_the_deadline_holds(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    victim = procs.sleeper()
    client = await start_fencer(procs, run_dir, empty_data_dir)
    fencer = client.fencer_pid()
    assert fencer is not None
    fence_at = clock.now() + 2.0
    armed = FenceStatus(fence_at, victim, start_time_of(victim))
    await client.arm(fence_at, victim, start_time_of(victim))
    sock = run_dir / "fencer.sock"
    cases = {
        b"\xff\xfe\x00garbage\n": b"ERR command is not ASCII",
        b"HELLO\n": b"ERR unknown command 'HELLO'",
        b"ARM 1 2\n": b"ERR ARM takes 3 arguments",
        b"ARM nan 5 5\n": b"ERR fence_at must be a positive finite number",
        f"ARM {time.time()!r} {victim} 1\n".encode(): b"ERR fence_at",
        b"ARM 1e9 -4 1\n": b"ERR postmaster_pid must be a non-negative integer",
        b"QUERY now\n": b"ERR QUERY takes no arguments",
        b"Q" * 500: b"ERR line longer than 128 bytes",
    }
    for payload, expected in cases.items():
        reply = raw_exchange(sock, payload)
        assert reply.startswith(expected) and reply.endswith(b"\n"), (payload, reply)
        assert reply.count(b"\n") == 1, "one ERR line, then the connection is closed"
    # A good command after garbage on the same connection is not reached: ERR closes at once.
    assert raw_exchange(sock, b"EXIT now\nDISARM\n").startswith(b"ERR EXIT takes no")
    assert await client.query() == armed

    # A SIGTERM while armed is refused: stopping the fencer would drop the fence.
    os.kill(fencer, signal.SIGTERM)
    log = run_dir / "hamgr-fencer.log"
    await wait_for_async(lambda: "SIGTERM refused" in log.read_text(), 5, "the refusal")
    assert await client.query() == armed

    await wait_for_async(lambda: not alive(victim), fence_at - clock.now() + GONE_TIMEOUT, "fence")
    fence = await one_fence(log)
    assert fence.fence_at == fence_at and fence.now >= fence_at
    assert fence.killed == {victim: []}
    await client.close()


async def test_reused_pid_is_not_killed(procs: Procs, run_dir: Path, empty_data_dir: Path) -> None:
    bystander = procs.sleeper()
    victim = procs.sleeper()
    client = await start_fencer(procs, run_dir, empty_data_dir)
    log = run_dir / "hamgr-fencer.log"
    # Same PID, other start time: what a postmaster's PID looks like once reused.
    await client.arm(clock.now() + 0.2, bystander, start_time_of(bystander) - 1)
    fence = await one_fence(log)
    assert "nothing to kill" in fence.text and "PID was reused" in fence.text
    assert alive(bystander)
    # The same fencer does kill a process whose identity matches (the check above means it).
    await client.arm(clock.now() + 0.2, victim, start_time_of(victim))
    await wait_for_async(lambda: not alive(victim), GONE_TIMEOUT, "the matching process to die")
    assert alive(bystander)
    await client.close()


async def test_client_errors_are_clear(run_dir: Path, empty_data_dir: Path) -> None:
    client = FencerClient(run_dir / "fencer.sock", timeout=0.5)
    with pytest.raises(FencerError, match=r"unreachable \(ARM\)"):
        await client.arm(clock.now() + 1, 1234, 5)
    # A fencer that cannot start (its socket directory is missing) is reported with its log.
    with pytest.raises(FencerError, match=r"(?s)exited with status 2 at start.*does not exist"):
        await FencerClient(run_dir / "missing" / "f.sock").ensure_running(
            sys.executable, empty_data_dir, run_dir, timeout=20
        )


# --- one clock for deadlines, in the agent and in the fencer ---------------------------------


async def test_fencer_and_agent_read_the_same_deadline_clock(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    """The fencer names its clock, and reads it at an instant between our readings just before
    and just after asking: a deadline the agent hands over means the same instant there."""
    client = await start_fencer(procs, run_dir, empty_data_dir)
    before = clock.now()
    answer = await client.clock()
    after = clock.now()
    assert answer is not None
    name, theirs = answer
    assert name == clock.NAME
    if sys.platform == "linux":
        assert name == "CLOCK_BOOTTIME"
    assert before <= theirs <= after
    assert await client.clock_problem() is None
    # A deadline handed over is taken on that clock: ahead by what we meant, it has not fired.
    victim = procs.sleeper()
    status = await client.arm(clock.now() + 30, victim, start_time_of(victim))
    answer = await client.clock()
    assert answer is not None and status.fence_at is not None
    assert 0 < status.fence_at - answer[1] <= 30
    await client.disarm()
    await client.close()


class OldFencer:
    """A stand-in for a fencer of an older hamgr on the real socket path: it speaks the protocol
    without CLOCK (it counts on CLOCK_MONOTONIC). `armed` sets what QUERY answers; EXIT, while
    disarmed, removes its socket and pid file as the real one does."""

    def __init__(self, sock_path: Path, armed: bool) -> None:
        self.sock_path = sock_path
        self.armed = armed
        self.server: asyncio.AbstractServer | None = None
        self.commands: list[str] = []

    async def __aenter__(self) -> OldFencer:
        self.server = await asyncio.start_unix_server(self._serve, str(self.sock_path))
        (self.sock_path.parent / (self.sock_path.name + ".pid")).write_text("4242\n")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := (await reader.readline()).decode().strip():
            self.commands.append(line)
            if line == "QUERY":
                reply = "ARMED 12.5 100 7" if self.armed else "DISARMED"
            elif line == "EXIT" and not self.armed:
                reply = "BYE"
                self.sock_path.unlink()
                (self.sock_path.parent / (self.sock_path.name + ".pid")).unlink()
            else:
                writer.write(f"ERR unknown command {line.split()[0]!r}\n".encode())
                break
            writer.write(reply.encode() + b"\n")
            await writer.drain()
        writer.close()


async def test_a_disarmed_fencer_on_another_clock_is_replaced(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    sock = run_dir / "fencer.sock"
    async with OldFencer(sock, armed=False) as old:
        client = FencerClient(sock)
        pid = procs.track(await client.ensure_running(sys.executable, empty_data_dir, run_dir))
    assert old.commands[:3] == ["QUERY", "CLOCK", "EXIT"]
    assert pid != 4242
    assert await client.clock_problem() is None
    await client.close()


async def test_an_armed_fencer_on_another_clock_is_left_alone_with_a_clear_error(
    run_dir: Path, empty_data_dir: Path
) -> None:
    sock = run_dir / "fencer.sock"
    async with OldFencer(sock, armed=True) as old:
        client = FencerClient(sock)
        with pytest.raises(FenceClockError, match=r"(?s)pid 4242.*CLOCK_MONOTONIC.*armed until"):
            await client.ensure_running(sys.executable, empty_data_dir, run_dir)
        await client.close()
    assert "EXIT" not in old.commands


# --- the fencer supervised (hamgr/fencer/keeper.py) ------------------------------------------


async def test_a_killed_fencer_is_started_again_and_takes_arms(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    """kill -9 of the fencer: the keeper starts a new one (counted, logged), which arms."""
    client = FencerClient(run_dir / "fencer.sock")
    first = procs.track(await client.ensure_running(sys.executable, empty_data_dir, run_dir))
    keeper = FencerKeeper(client)
    assert await keeper.alive(5.0) and keeper.restarts == 0
    os.kill(first, signal.SIGKILL)
    await wait_for_async(lambda: not alive(first), GONE_TIMEOUT, "the killed fencer to vanish")
    keeper.failed(clock.now())
    assert await keeper.alive(5.0), "no new fencer was started"
    second = client.fencer_pid()
    assert second is not None and second != first
    procs.track(second)
    assert keeper.restarts == 1
    sleeper = procs.sleeper()
    status = await client.arm(clock.now() + 30, sleeper, start_time_of(sleeper))
    keeper.armed_ok()
    assert status.armed and keeper.failing_since is None
    await client.disarm()
    await client.shutdown()


def guard_pids(run_dir: Path) -> list[int]:
    """The guards the fencer's log says it started, in order."""
    text = (run_dir / "hamgr-fencer.log").read_text()
    return [int(p) for p in re.findall(r"guard started: pid (\d+)", text)]


async def test_killing_the_fencer_alone_kills_the_armed_postmaster(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    """The postmaster is bound to the fencer's life: kill -9 of an armed fencer (deadline far
    ahead) and its guard SIGKILLs the guarded postmaster at once, logs it, and exits."""
    client = FencerClient(run_dir / "fencer.sock")
    fencer = procs.track(await client.ensure_running(sys.executable, empty_data_dir, run_dir))
    [guard] = guard_pids(run_dir)
    procs.track(guard)
    sleeper = procs.sleeper()
    await client.arm(clock.now() + 300, sleeper, start_time_of(sleeper))
    await client.close()
    os.kill(fencer, signal.SIGKILL)
    await wait_for_async(lambda: not alive(sleeper), GONE_TIMEOUT, "the guarded process to die")
    await wait_for_async(lambda: not alive(guard), GONE_TIMEOUT, "the guard to exit")
    text = (run_dir / "hamgr-fencer.log").read_text()
    assert f"FENCER GONE while armed for postmaster {sleeper}" in text, text


async def test_a_disarmed_fencer_that_dies_leaves_postgres_alone(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    client = FencerClient(run_dir / "fencer.sock")
    fencer = procs.track(await client.ensure_running(sys.executable, empty_data_dir, run_dir))
    [guard] = guard_pids(run_dir)
    procs.track(guard)
    sleeper = procs.sleeper()
    await client.arm(clock.now() + 300, sleeper, start_time_of(sleeper))
    await client.disarm()
    await client.close()
    os.kill(fencer, signal.SIGKILL)
    await wait_for_async(lambda: not alive(guard), GONE_TIMEOUT, "the guard to exit")
    assert alive(sleeper), "a disarmed fencer's death killed the process it no longer guards"


async def test_a_killed_guard_is_started_again_and_still_guards(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    """kill -9 of the guard: the fencer (deadline kept) starts a new guard and tells it the
    armed identity; killing the fencer then still kills the guarded process."""
    client = FencerClient(run_dir / "fencer.sock")
    fencer = procs.track(await client.ensure_running(sys.executable, empty_data_dir, run_dir))
    [first] = guard_pids(run_dir)
    procs.track(first)
    sleeper = procs.sleeper()
    await client.arm(clock.now() + 300, sleeper, start_time_of(sleeper))
    os.kill(first, signal.SIGKILL)
    await wait_for_async(lambda: len(guard_pids(run_dir)) == 2, GONE_TIMEOUT, "a new guard")
    second = procs.track(guard_pids(run_dir)[1])
    assert (await client.query()).pid == sleeper and alive(sleeper)
    await client.close()
    os.kill(fencer, signal.SIGKILL)
    await wait_for_async(lambda: not alive(sleeper), GONE_TIMEOUT, "the guarded process to die")
    await wait_for_async(lambda: not alive(second), GONE_TIMEOUT, "the new guard to exit")


async def test_a_fencer_that_cannot_start_is_retried_with_a_backoff(
    run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No fencer can be started: revive says so, and the next attempt waits for the backoff;
    the time without a fence is what releases the leader key (one ttl)."""
    keeper = FencerKeeper(FencerClient(run_dir / "never.sock"))  # never started: cannot restart
    caplog.set_level("INFO", logger="hamgr.fencer.keeper")
    assert not await keeper.alive(1.0)
    assert f"next attempt in {BACKOFF_MIN:.1f} s" in caplog.text
    attempts = caplog.text.count("starting a new one")
    assert not await keeper.revive(1.0)
    assert caplog.text.count("starting a new one") == attempts, "retried before the backoff"
    keeper.failed(100.0)
    keeper.failed(101.0)
    assert keeper.failing_since == 100.0
    assert not keeper.unfenced_too_long(101.9, 2.0) and keeper.unfenced_too_long(102.0, 2.0)
    keeper.armed_ok()
    assert not keeper.unfenced_too_long(500.0, 2.0)


async def test_a_fencer_open_to_the_oom_killer_is_reported(
    procs: Procs, run_dir: Path, empty_data_dir: Path
) -> None:
    """With CAP_SYS_RESOURCE the fencer protects itself (-1000); without it (User=postgres, or a
    container without the capability, as here) its log says so as a WARNING and the agent's
    check names the problem and the remedy (the agent logs it once, at the first start)."""
    client = FencerClient(run_dir / "fencer.sock")
    pid = procs.track(await client.ensure_running(sys.executable, empty_data_dir, run_dir))
    own = oom_protection_problem(pid)
    warned = "WARNING: cannot set oom_score_adj" in (run_dir / "hamgr-fencer.log").read_text()
    assert warned == (own is not None), own
    sleeper = procs.sleeper()
    Path(f"/proc/{sleeper}/oom_score_adj").write_text("100")
    problem = oom_protection_problem(sleeper)
    assert problem is not None and "oom_score_adj 100" in problem
    assert "CAP_SYS_RESOURCE" in problem
    await client.shutdown()


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "empty command"),
        (b"ARM 1.5 10", "takes 3 arguments"),
        (b"ARM x 10 1", "'x' is not a number"),
        (b"ARM inf 10 1", "positive finite"),
        (b"ARM -1 10 1", "positive finite"),
        (b"ARM 1.5 1 1", "cannot be a postmaster"),
        (b"ARM 1.5 10 1.5", "start_time must be a non-negative integer"),
        (b"DISARM 1", "DISARM takes no arguments"),
        (b"arm 1 2 3", "unknown command 'arm'"),
        (b"QUERY\x07", "control characters"),
        ("ARM 1 2 é".encode(), "not ASCII"),
    ],
)
def test_parse_command_names_the_fault(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        parse_command(line)


def test_the_guard_follows_the_fencer_lines_and_imports_only_the_standard_library() -> None:
    assert parse_line(b"ARM 100 7", None) == (100, 7)
    assert parse_line(b"DISARM", (100, 7)) is None
    assert parse_line(b"ARM x 7", (100, 7)) == (100, 7), "a garbled line changes nothing"
    assert parse_line(b"", (100, 7)) == (100, 7)
    tree = ast.parse(Path(fenceguard.__file__).read_text())
    hamgr_imports = {
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("hamgr")
    }
    assert hamgr_imports <= {"hamgr", "hamgr.fencer.postmasterproc"}, hamgr_imports


def test_fence_state_rules() -> None:
    state = FenceStatus()

    def send(line: bytes, now: float = 10.0) -> tuple[str, bool]:
        nonlocal state
        state, reply, leave = state.apply(parse_command(line), now)
        return reply, leave

    assert send(b"CLOCK", now=9.5) == (f"CLOCK {clock.NAME} 9.5", False)
    assert send(b"ARM 10.5 100 7") == ("ARMED 10.5 100 7", False)
    assert state.timeout_ms(10.4) == 100 and not state.due(10.49) and state.due(10.5)
    # poll() sleeps on CLOCK_MONOTONIC, which stops in a suspend: never long at a time.
    assert state.timeout_ms(10.0) == MAX_SLEEP_MS
    reply, _ = send(b"ARM 10.25 100 7")
    assert reply.startswith("REFUSED") and state.fence_at == 10.5
    assert send(b"EXIT")[0].startswith("REFUSED armed")
    # CAP only ever moves the deadline back (a shorter ttl, a larger margin), never forward.
    assert send(b"CAP 11.0") == ("ARMED 10.5 100 7", False)
    assert send(b"CAP 10.25") == ("ARMED 10.25 100 7", False)
    with pytest.raises(ProtocolError, match="CAP takes 1 argument"):
        parse_command(b"CAP")
    with pytest.raises(ProtocolError, match="fence_at must be a positive"):
        parse_command(b"CAP -1")
    with pytest.raises(ProtocolError, match=r"hamgr\.clock\.now\(\)"):
        send(b"ARM 1700000000.0 100 7")
    assert state.fence_at == 10.25  # a refused command changes nothing
    assert send(b"DISARM") == ("DISARMED", False)
    assert state.timeout_ms(10.0) is None
    assert send(b"CAP 10.1") == ("DISARMED", False)
    assert send(b"EXIT") == ("BYE", True)
    assert parse_status("ARMED 10.5 100 7") == FenceStatus(10.5, 100, 7)
    assert parse_status("DISARMED") == FenceStatus()
    with pytest.raises(FencerError, match="unexpected reply"):
        parse_status("ARMED x")
    assert fence_at_for(100.0, 2.0, 0.5) == 101.5
    with pytest.raises(ValueError, match="safety_margin"):
        fence_at_for(100.0, 2.0, 2.0)
