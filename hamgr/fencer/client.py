"""The agent's side of the fencer (hamgr/fencer/process.py): start it, hand it deadlines, ask it.

The primary's agent measures each lease keepalive from when it was SENT and, after each success,
calls `FencerClient.arm(fence_at_for(sent, ttl, margin), *postmaster_identity(data_dir))`. If the
agent then stops arming (frozen, dead, cut off), the fencer SIGKILLs the postmaster and all its
processes once `fence_at` passes. Arm calls are cheap (several per second with the fast
profile): one connection stays open and is reopened on failure.

Stopping the fence: `disarm()` first (after PostgreSQL was stopped or cleanly demoted), then
`shutdown()`; an armed fencer refuses to exit, on EXIT and on SIGTERM alike, because stopping it
would drop the fence. If the fencer cannot be reached, `arm` raises FencerError: the agent must
then treat the fence as gone and stop PostgreSQL's writes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from pathlib import Path

import hamgr
from hamgr import clock
from hamgr.fencer.postmasterproc import postmaster_identity
from hamgr.fencer.process import EXIT_ALREADY_RUNNING, pid_file_for
from hamgr.fencer.protocol import FenceStatus

__all__ = [
    "FenceClockError",
    "FenceRefused",
    "FencerClient",
    "FencerError",
    "fence_at_for",
    "oom_protection_problem",
    "parse_status",
    "postmaster_identity",
]

log = logging.getLogger(__name__)

LOG_NAME = "hamgr-fencer.log"
LOG_TAIL_BYTES = 2000


class FencerError(Exception):
    """The fencer could not be reached, did not start, or broke the protocol."""


class FenceRefused(FencerError):
    """The fencer refused a command (an older deadline; EXIT while armed)."""


class FenceClockError(FencerError):
    """The running fencer counts deadlines on another clock and cannot be replaced (armed)."""


def parse_status(line: str) -> FenceStatus:
    """A state reply (`ARMED <fence_at> <pid> <start_time>` or `DISARMED`) -> FenceStatus."""
    words = line.split()
    if words == ["DISARMED"]:
        return FenceStatus()
    if len(words) == 4 and words[0] == "ARMED":
        try:
            return FenceStatus(float(words[1]), int(words[2]), int(words[3]))
        except ValueError:
            pass
    if words and words[0] == "REFUSED":
        raise FenceRefused(f"fencer refused: {line.removeprefix('REFUSED').strip()}")
    if words and words[0] == "ERR":
        raise FencerError(f"fencer rejected our command: {line.removeprefix('ERR').strip()}")
    raise FencerError(f"unexpected reply from the fencer: {line[:200]!r}")


def fence_at_for(sent: float, ttl: float, safety_margin: float) -> float:
    """The fence deadline after a keepalive sent at `sent` (hamgr.clock) succeeded.

    Nobody else can take the leader key before the Raft leader's clock passes `sent + ttl`; the
    margin covers the fencer's reaction time and clock rate differences.
    """
    if not 0 <= safety_margin < ttl:
        raise ValueError(f"safety_margin {safety_margin} must lie in [0, ttl={ttl})")
    return sent + ttl - safety_margin


class FencerClient:
    """One agent's connection to the fencer at `socket_path`; safe to share within one loop."""

    def __init__(self, socket_path: Path | str, timeout: float = 1.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._launch: tuple[str | Path, Path, Path] | None = None
        self._oom_checked = False

    @property
    def pid_path(self) -> Path:
        return pid_file_for(self.socket_path)

    def fencer_pid(self) -> int | None:
        """The PID in the fencer's pid file, or None when there is none."""
        try:
            text = self.pid_path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    async def ensure_running(
        self, python: str | Path, data_dir: Path, run_dir: Path, timeout: float = 10.0
    ) -> int:
        """Connect to the fencer, starting one if none answers; returns its PID.

        A started fencer detaches (`--detach`: a new session, not our child), so it outlives
        this agent; it logs to `<run_dir>/hamgr-fencer.log`. Raises FencerError when none
        answers within `timeout`, with the end of that log. The arguments are remembered for
        `restart`. The first time a fencer answers, a fencer the OOM killer may pick is logged
        as a warning (see `oom_protection_problem`).
        """
        self._launch = (python, data_dir, run_dir)
        pid = await self._ensure_running(python, data_dir, run_dir, timeout)
        if not self._oom_checked:
            self._oom_checked = True
            problem = oom_protection_problem(pid)
            if problem is not None:
                log.warning("%s", problem)
        return pid

    async def restart(self, timeout: float = 10.0) -> int:
        """Start a fencer as `ensure_running` did the first time (after the last one died)."""
        if self._launch is None:
            raise FencerError("no fencer was started by this agent: nothing to start again")
        return await self._ensure_running(*self._launch, timeout)

    async def _ensure_running(
        self, python: str | Path, data_dir: Path, run_dir: Path, timeout: float
    ) -> int:
        try:
            running: FenceStatus | None = await self.query()
        except FencerError:
            running = None
        if running is not None:
            problem = await self.clock_problem()
            if problem is None:
                return self._known_pid()
            await self._replace(running, problem, timeout)
        log_file = run_dir / LOG_NAME
        env = dict(os.environ)
        # So `-m hamgr.fencer` finds this very package even when it is not installed.
        package_root = str(Path(hamgr.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        command = [str(python), "-m", "hamgr.fencer", "--socket", str(self.socket_path)]
        command += ["--data-dir", str(data_dir), "--log-file", str(log_file), "--detach"]
        try:
            with open(log_file, "ab") as log:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    cwd=run_dir,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise FencerError(f"cannot start the fencer ({' '.join(command)}): {exc}") from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The launcher exits once the fencer listens, or with the fencer's failure status.
        while proc.poll() is None:
            if loop.time() > deadline:
                proc.kill()
                proc.wait()
                raise FencerError(
                    f"the fencer did not start within {timeout}s; {log_file} ends with: "
                    f"{_tail(log_file)}"
                )
            await asyncio.sleep(0.01)
        # Status 3: another fencer holds the socket (or won a start race): use that one.
        if proc.returncode not in (0, EXIT_ALREADY_RUNNING):
            raise FencerError(
                f"the fencer exited with status {proc.returncode} at start; {log_file} ends "
                f"with: {_tail(log_file)}"
            )
        while True:
            try:
                await self.query()
                problem = await self.clock_problem()
                if problem is not None:
                    raise FencerError(f"the fencer on {self.socket_path} {problem}")
                return self._known_pid()
            except FenceClockError:
                raise
            except FencerError as exc:
                if loop.time() > deadline:
                    raise FencerError(
                        f"no fencer answered on {self.socket_path} within {timeout}s ({exc})"
                    ) from exc
            await asyncio.sleep(0.02)

    async def _replace(self, running: FenceStatus, problem: str, timeout: float) -> None:
        """Ask a running fencer whose deadlines mean something else than ours to exit.

        Only a disarmed one: an armed one guards a primary on its own clock, and dropping that
        fence is not this agent's call (FenceClockError says what to do instead).
        """
        pid = self.fencer_pid()
        if running.armed:
            raise FenceClockError(
                f"the running fencer (pid {pid}) on {self.socket_path} {problem}, and it is armed "
                f"until {running.fence_at!r} on its clock: not replacing it. Stop PostgreSQL, "
                "then that fencer (it exits on SIGTERM once PostgreSQL is gone and it is "
                "disarmed), and start the agent again"
            )
        log.warning("the running fencer (pid %s) %s: asking it to exit", pid, problem)
        await self.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pid is not None and self.fencer_pid() == pid:
            if loop.time() > deadline:
                raise FencerError(f"the old fencer (pid {pid}) did not exit within {timeout}s")
            await asyncio.sleep(0.02)

    async def clock(self) -> tuple[str, float] | None:
        """The name of the fencer's deadline clock and its reading now (``CLOCK``); None from
        an older fencer that does not know the command (it counts on CLOCK_MONOTONIC)."""
        reply = await self._request("CLOCK")
        words = reply.split()
        if words and words[0] == "ERR":
            return None
        try:
            if len(words) == 3 and words[0] == "CLOCK":
                return words[1], float(words[2])
        except ValueError:
            pass
        raise FencerError(f"unexpected reply to CLOCK: {reply[:200]!r}")

    async def clock_problem(self) -> str | None:
        """Why the fencer's deadlines would not mean what this agent means (None: they do).

        The fencer must read the same clock as ``hamgr.clock.now()`` here, to the instant: its
        reading must fall between ours just before and just after asking.
        """
        before = clock.now()
        answer = await self.clock()
        after = clock.now()
        if answer is None:
            return "does not name its clock (older than this agent): it counts on CLOCK_MONOTONIC"
        name, theirs = answer
        if name != clock.NAME:
            return f"counts its deadlines on {name}, this agent on {clock.NAME}"
        if not before <= theirs <= after:
            return (
                f"reads {name} as {theirs!r}, this agent read it as {before!r}..{after!r} "
                "(another time namespace?)"
            )
        return None

    def _known_pid(self) -> int:
        pid = self.fencer_pid()
        if pid is None:
            raise FencerError(f"the fencer answers but its pid file {self.pid_path} is unreadable")
        return pid

    async def arm(self, fence_at: float, postmaster_pid: int, start_time: int) -> FenceStatus:
        """Move the deadline to `fence_at` (hamgr.clock.now()) for this postmaster identity.

        Raises FenceRefused when `fence_at` is older than the armed deadline, FencerError when
        the fencer cannot be reached (then the fence is not known to hold: act accordingly).
        """
        return parse_status(await self._request(f"ARM {fence_at!r} {postmaster_pid} {start_time}"))

    async def cap(self, fence_at: float) -> FenceStatus:
        """Move an armed deadline back to `fence_at` if it lies later (never forward): the
        lease now grants less than the armed deadline assumed (see hamgr/ha/leaseclock.py)."""
        return parse_status(await self._request(f"CAP {fence_at!r}"))

    async def disarm(self) -> FenceStatus:
        """Drop the deadline: PostgreSQL was stopped, or demoted cleanly, by the agent itself."""
        return parse_status(await self._request("DISARM"))

    async def query(self) -> FenceStatus:
        """The fencer's deadline and postmaster identity (how a restarted agent takes over)."""
        return parse_status(await self._request("QUERY"))

    async def shutdown(self) -> None:
        """Ask a disarmed fencer to exit; FenceRefused while it is armed (DISARM first)."""
        reply = await self._request("EXIT", retry=False)
        if reply != "BYE":
            parse_status(reply)
            raise FencerError(f"unexpected reply to EXIT: {reply!r}")
        await self.close()

    async def close(self) -> None:
        """Close the connection (the fencer keeps its deadline)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.timeout)

    async def _request(self, line: str, retry: bool = True) -> str:
        """Send one command line, return the reply line; reconnects once on a broken link."""
        async with self._lock:
            failure: Exception | None = None
            for _ in range(2 if retry else 1):
                try:
                    return await asyncio.wait_for(self._exchange(line), self.timeout)
                except (OSError, EOFError, TimeoutError) as exc:
                    await self.close()
                    failure = exc
                    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                        break  # no fencer listens: a second try would not change that
            reason = str(failure) or type(failure).__name__
            verb = line.split()[0]
            raise FencerError(f"fencer on {self.socket_path} unreachable ({verb}): {reason}")

    async def _exchange(self, line: str) -> str:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_unix_connection(self.socket_path)
        self._writer.write(line.encode() + b"\n")
        await self._writer.drain()
        reply = await self._reader.readline()
        if not reply.endswith(b"\n"):
            raise EOFError("the fencer closed the connection")
        text = reply.decode("ascii", errors="replace").strip()
        if text.startswith("ERR"):
            # The fencer closes the connection after ERR; do so too.
            await self.close()
        return text


def oom_protection_problem(pid: int) -> str | None:
    """Why the fencer `pid` may be chosen by the OOM killer (None: it is protected, -1000).

    The fencer sets its own oom_score_adj to -1000 at start, which needs CAP_SYS_RESOURCE; the
    shipped systemd unit (User=postgres, no capabilities) does not grant it, and the fencer could
    then be killed first under memory pressure, dropping the fence (the agent starts it again).
    """
    try:
        text = open(f"/proc/{pid}/oom_score_adj").read().strip()  # noqa: SIM115
    except OSError as exc:
        return f"cannot read the fencer's oom_score_adj (pid {pid}): {exc.strerror}"
    if text == "-1000":
        return None
    return (
        f"the fencer (pid {pid}) is not protected from the OOM killer (oom_score_adj {text}, "
        "not -1000: lowering it needs CAP_SYS_RESOURCE, which the agent's user lacks); under "
        "memory pressure it may be killed first. The agent starts it again when it dies; to "
        "protect it, grant CAP_SYS_RESOURCE (systemd: AmbientCapabilities= and "
        "CapabilityBoundingSet=CAP_SYS_RESOURCE in a drop-in) or run the agent as root"
    )


def _tail(path: Path) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - LOG_TAIL_BYTES))
            return handle.read().decode(errors="replace").strip() or "(empty)"
    except OSError as exc:
        return f"(unreadable: {exc})"
