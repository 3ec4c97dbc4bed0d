"""The fencer: a tiny process that kills the primary's PostgreSQL when its lease deadline passes.

Run as `python -m hamgr.fencer --socket PATH --data-dir PGDATA [--log-file F] [--detach]`, as
root or as PostgreSQL's OS user (it must signal the postmaster and read its /proc entries). It
writes its PID to `PATH.pid`, locked for its lifetime, so a second fencer on the same socket exits
at once with status 3. `hamgr.fencer.client.FencerClient` starts it and speaks to it.

Why a separate process: the agent measures every lease keepalive from when it was sent and, after
each success, hands the fencer `fence_at = sent + ttl - safety_margin`, an instant on the
deadline clock of `hamgr.clock` (CLOCK_BOOTTIME on Linux: system-wide, so it means the same here
as in the agent, and it counts time the machine was suspended). If the agent
freezes (SIGSTOP, a stuck event loop, swapping) or dies while PostgreSQL keeps running, it cannot
stop anything; the fencer still holds the last deadline and, when it passes without a newer one,
SIGKILLs the postmaster and every process under it. It does nothing else, imports only the
standard library (and `hamgr.clock`, `hamgr.fencer.protocol` and `hamgr.fencer.postmasterproc`,
stdlib only) and never blocks on anything but its own poll, so it has nothing to get stuck on.

Protocol: one unix stream socket (mode 0600), one agent connection at a time (a new connection
replaces the old one: that is how a restarted agent takes over), ASCII command lines, one reply
line each: see hamgr/fencer/protocol.py (parsing and answering the commands, pure). This module
is the process around it: the socket, the poll loop, the deadline's enforcement, the guard.

When the deadline passes the fencer kills (see `hamgr.fencer.postmasterproc.kill_postmaster`) the
armed postmaster if its identity still matches and also the postmaster that the data dir's
postmaster.pid names now, when that process is verifiably the postmaster of this data dir
(postgres binary, working directory = the data dir). The second covers an agent that restarted
PostgreSQL and froze before it armed the new identity. Then it logs one line with the
timestamps, becomes disarmed and keeps running.

The postmaster dies with the fencer: at start the fencer starts a guard child
(`hamgr.fencer.guard`) that holds the read end of a pipe and is told every change of the guarded
postmaster; when the fencer dies in any way (kill -9, the OOM killer) while armed, the pipe's
end of file makes the guard SIGKILL that postmaster at once, so killing the fencer alone never
leaves a primary running unfenced. A guard that dies is started again (see fenceguard.py for why
this design rather than a parent-death signal on the postmaster).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from hamgr import clock
from hamgr.fencer.postmasterproc import KillResult, kill_postmaster, postmaster_identity
from hamgr.fencer.protocol import (
    MAX_LINE,
    Arm,
    Cap,
    FenceStatus,
    ProtocolError,
    Simple,
    parse_command,
)

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
EXIT_ALREADY_RUNNING = 3
# A guard (hamgr/fencer/guard.py) that dies within this many seconds of its start this many times
# in a row is not started again (the fence itself does not depend on it).
GUARD_QUICK_DEATH = 1.0
GUARD_MAX_QUICK_DEATHS = 5


def pid_file_for(socket_path: Path) -> Path:
    """Where the fencer of `socket_path` writes its PID: beside the socket."""
    return socket_path.with_name(socket_path.name + ".pid")


class AlreadyRunning(RuntimeError):
    """Another fencer holds the pid file lock of this socket."""


class Fencer:
    """The single-threaded poll loop: one listening socket, one agent connection, one deadline."""

    def __init__(self, socket_path: Path, data_dir: Path, log: TextIO) -> None:
        self.socket_path = socket_path
        self.pid_path = pid_file_for(socket_path)
        self.data_dir = data_dir
        self.log_stream = log
        self.state = FenceStatus()
        self.poller = select.poll()
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None
        self.buffer = b""
        self.pid_fd: int | None = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.guard_log: Path | None = None
        self.guard: subprocess.Popen[bytes] | None = None
        self.guard_w: int | None = None
        self.guard_started = 0.0
        self.guard_quick_deaths = 0

    def log(self, message: str) -> None:
        """One line: wall clock, the deadline clock (``clock=``), our PID, the message."""
        wall = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        # A full disk or a vanished log must never stop the fence: such lines are lost.
        with contextlib.suppress(OSError, ValueError):
            self.log_stream.write(
                f"{wall} clock={clock.now():.6f} hamgr-fencer[{os.getpid()}]: {message}\n"
            )
            self.log_stream.flush()

    # Setup and teardown.

    def _lock_pid_file(self) -> None:
        """Take an exclusive lock on the pid file (the lock is held for our whole life)."""
        for _ in range(5):
            fd = os.open(self.pid_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise AlreadyRunning(
                    f"another fencer (pid {holder}) holds {self.pid_path}; not starting"
                ) from None
            # An exiting fencer may have unlinked the file we locked: lock the current one.
            try:
                same = os.stat(self.pid_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.pid_fd = fd
                return
            os.close(fd)
        raise OSError(f"could not lock {self.pid_path}: it keeps being replaced")

    def setup(self) -> None:
        """Lock the pid file, bind the socket (0600), install signal handling."""
        self._lock_pid_file()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        listener.listen(4)
        listener.setblocking(False)
        self.listener = listener
        self.poller.register(listener, select.POLLIN)
        for sock in (self.wake_r, self.wake_w):
            sock.setblocking(False)
        self.poller.register(self.wake_r, select.POLLIN)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._protect_from_oom()
        self._start_guard()

    # The guard: the postmaster dies with this process (see hamgr/fencer/guard.py).

    def _start_guard(self) -> None:
        """Start the guard child, holding the read end of a pipe only we write to."""
        read_fd, write_fd = os.pipe()
        command = [sys.executable, "-m", "hamgr.fencer.guard", "--fd", str(read_fd)]
        command += ["--data-dir", str(self.data_dir)]
        if self.guard_log is not None:
            command += ["--log-file", str(self.guard_log)]
        try:
            self.guard = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(read_fd,),
                cwd="/",
            )
        except OSError as exc:
            self.log(f"WARNING: cannot start the guard ({exc}); the fence holds without it")
            os.close(write_fd)
            return
        finally:
            os.close(read_fd)
        os.set_blocking(write_fd, False)
        self.guard_w = write_fd
        self.guard_started = clock.now()
        # POLLERR comes when the guard (the only reader) is gone.
        self.poller.register(write_fd, 0)
        self.log(f"guard started: pid {self.guard.pid}")
        self._tell_guard()

    def _tell_guard(self) -> None:
        """Hand the guard the postmaster identity we guard now (never blocks)."""
        if self.guard_w is None:
            return
        s = self.state
        line = f"ARM {s.pid} {s.start_time}\n" if s.armed else "DISARM\n"
        try:
            os.write(self.guard_w, line.encode())
        except (BlockingIOError, BrokenPipeError) as exc:
            self.log(f"cannot tell the guard ({exc!r}); it is started again if it died")

    def _guard_died(self) -> None:
        """The guard's end of the pipe closed: reap it and start a new one (bounded)."""
        assert self.guard_w is not None
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(self.guard_w)
        os.close(self.guard_w)
        self.guard_w = None
        status = None
        if self.guard is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = self.guard.wait(1.0)
        quick = clock.now() - self.guard_started < GUARD_QUICK_DEATH
        self.guard_quick_deaths = self.guard_quick_deaths + 1 if quick else 0
        if self.guard_quick_deaths >= GUARD_MAX_QUICK_DEATHS:
            self.log(
                f"WARNING: the guard exited (status {status}) {self.guard_quick_deaths} times "
                "right after its start; not starting it again (the fence holds without it)"
            )
            return
        self.log(f"the guard exited (status {status}); starting a new one")
        self._start_guard()

    def _protect_from_oom(self) -> None:
        """Best effort: the OOM killer must not pick the fencer (that would drop the fence)."""
        try:
            with open("/proc/self/oom_score_adj", "w") as handle:
                handle.write("-1000")
        except OSError as exc:
            # Loud: the agent also reads our oom_score_adj and logs a warning once.
            self.log(
                f"WARNING: cannot set oom_score_adj to -1000 ({exc.strerror}; needs "
                "CAP_SYS_RESOURCE): the OOM killer may pick this fencer; continuing"
            )

    def teardown(self) -> None:
        """Remove our socket and pid file (only while we still hold the lock on it); the guard
        sees its pipe close and exits (we exit only while disarmed)."""
        self._drop_connection()
        if self.guard_w is not None:
            os.close(self.guard_w)
            self.guard_w = None
        if self.listener is not None:
            self.listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        if self.pid_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.pid_path)
            os.close(self.pid_fd)

    # The loop.

    def run(self) -> int:
        """Serve until EXIT or a SIGTERM while disarmed."""
        self.log(
            f"started: socket {self.socket_path}, data dir {self.data_dir}, "
            f"pid file {self.pid_path}"
        )
        while True:
            now = clock.now()
            if self.state.due(now):
                self.fence(now)
                continue
            events = self.poller.poll(self.state.timeout_ms(now))
            # A deadline that passed while we slept wins over input that arrived meanwhile.
            if self.state.due(clock.now()):
                continue
            for fd, _mask in events:
                try:
                    if self._event(fd):
                        return 0
                except Exception as exc:
                    # Nothing that comes in may end the fence: log, drop the agent, go on.
                    self.log(f"error handling input ({exc!r}); dropped the agent connection")
                    self._drop_connection()

    def _event(self, fd: int) -> bool:
        """Handle one ready descriptor; True when the fencer should exit."""
        if self.listener is not None and fd == self.listener.fileno():
            self._accept()
        elif fd == self.wake_r.fileno():
            return self._signals()
        elif self.conn is not None and fd == self.conn.fileno():
            return self._read()
        elif fd == self.guard_w:
            self._guard_died()
        return False

    def fence(self, now: float) -> None:
        """The deadline passed: kill the postmaster(s), log one line, disarm."""
        fence_at, pid, start = self.state.fence_at, self.state.pid, self.state.start_time
        assert fence_at is not None and pid is not None and start is not None
        # First: whatever happens below, the same deadline must not fire again and again.
        self.state = FenceStatus()
        killed: list[KillResult] = []
        notes: list[str] = []
        self._kill(pid, start, killed, notes)
        if not killed:
            notes.append(f"armed postmaster {pid} (start {start}) is gone or its PID was reused")
        try:
            current = postmaster_identity(self.data_dir)
        except OSError as exc:
            current = None
            notes.append(f"cannot check the postmaster of {self.data_dir}: {exc}")
        if current is not None and current != (pid, start):
            notes.append(f"postmaster.pid names {current[0]}, not the armed {pid}")
            self._kill(*current, killed, notes)
        done = clock.now()
        self._tell_guard()
        what = "; ".join(
            f"SIGKILL postmaster {k.postmaster} then {len(k.children)} children "
            f"{list(k.children)}" + (f" (errors: {', '.join(k.errors)})" if k.errors else "")
            for k in killed
        )
        # Exact (repr) instants, so a reader can compare them with what it armed.
        self.log(
            f"FENCE fence_at={fence_at!r} now={now!r} late_ms={(now - fence_at) * 1000:.1f} "
            f"done={done!r}: {what or 'nothing to kill'}"
            + (f" [{'; '.join(notes)}]" if notes else "")
        )

    @staticmethod
    def _kill(pid: int, start: int, killed: list[KillResult], notes: list[str]) -> None:
        try:
            result = kill_postmaster(pid, start)
        except Exception as exc:
            notes.append(f"killing postmaster {pid} failed: {exc!r}")
            return
        if result is not None:
            killed.append(result)

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:
            # E.g. out of file descriptors: the next poll retries.
            self.log(f"cannot accept a connection: {exc}")
            return
        if self.conn is not None:
            self.log("new agent connection replaces the previous one")
            self._drop_connection()
        else:
            self.log(f"agent connected; {self.state.describe()}")
        conn.setblocking(False)
        self.conn = conn
        self.buffer = b""
        self.poller.register(conn, select.POLLIN)

    def _drop_connection(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(self.conn)
            self.conn.close()
            self.conn = None
            self.buffer = b""

    def _send(self, line: str) -> bool:
        """Send one reply line without ever blocking; False (connection dropped) if it can't."""
        assert self.conn is not None
        data = (line + "\n").encode()
        try:
            sent = self.conn.send(data)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            sent = -1
        if sent != len(data):
            self.log("agent connection does not take our replies; dropped it (deadline kept)")
            self._drop_connection()
            return False
        return True

    def _read(self) -> bool:
        """Handle input on the agent connection; True when the fencer should exit."""
        assert self.conn is not None
        try:
            data = self.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self.log(f"agent connection closed; keeping {self.state.describe()}")
            self._drop_connection()
            return False
        self.buffer += data
        while self.conn is not None:
            line, newline, rest = self.buffer.partition(b"\n")
            if not newline:
                if len(self.buffer) > MAX_LINE:
                    self._reject(f"line longer than {MAX_LINE} bytes without a newline")
                return False
            self.buffer = rest
            try:
                if len(line) > MAX_LINE:
                    raise ProtocolError(f"line longer than {MAX_LINE} bytes")
                command = parse_command(line)
                before = self.state
                self.state, reply, leave = before.apply(command, clock.now())
            except ProtocolError as exc:
                self._reject(str(exc))
                return False
            # ARM and QUERY come several times a second: only the rare events are logged.
            rare = isinstance(command, Simple) and command.verb in ("DISARM", "EXIT")
            guarded = (before.armed, before.pid, before.start_time)
            rare |= isinstance(command, Arm) and guarded != (True, command.pid, command.start_time)
            rare |= isinstance(command, Cap)
            if rare or reply.startswith("REFUSED"):
                self.log(f"{line.decode().strip()} -> {reply}")
            if guarded != (self.state.armed, self.state.pid, self.state.start_time):
                self._tell_guard()
            if not self._send(reply):
                return False
            if leave:
                return True
        return False

    def _reject(self, reason: str) -> None:
        self.log(
            f"bad input from the agent: {reason}; closing its connection, keeping "
            f"{self.state.describe()}"
        )
        self._send(f"ERR {reason}")
        self._drop_connection()

    def _signals(self) -> bool:
        """Drain the signal wakeup socket; True when a SIGTERM/SIGINT may end the fencer."""
        received = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := self.wake_r.recv(64):
                received += chunk
        stop = [s for s in received if s in (signal.SIGTERM, signal.SIGINT)]
        if not stop:
            return False
        name = signal.Signals(stop[0]).name
        if self.state.armed:
            self.log(
                f"{name} refused: armed until {self.state.fence_at!r} (stopping would drop the "
                "fence); the agent must DISARM first"
            )
            return False
        self.log(f"{name} while disarmed: exiting")
        return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hamgr.fencer",
        description="Kill the local PostgreSQL when the agent's lease deadline passes.",
    )
    parser.add_argument("--socket", required=True, type=Path, help="unix socket to listen on")
    parser.add_argument("--data-dir", required=True, type=Path, help="PostgreSQL data dir")
    parser.add_argument("--log-file", type=Path, help="append log lines here (default stderr)")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="run in the background: exit 0 once the fencer listens (it is then no child of "
        "the caller's), or with the fencer's own status if it could not start",
    )
    args = parser.parse_args(argv)
    for name in ("socket", "data_dir"):
        if not getattr(args, name).is_absolute():
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)} must be absolute")
    if len(str(args.socket).encode()) > MAX_SOCKET_PATH:
        parser.error(f"--socket {args.socket} is longer than {MAX_SOCKET_PATH} bytes")
    if not args.socket.parent.is_dir():
        parser.error(f"--socket {args.socket}: directory {args.socket.parent} does not exist")
    return args


def detach() -> int:
    """Fork into a new session. Returns, in the child, the fd to report readiness on; the parent
    waits and exits: 0 once the child wrote to it, else with the child's exit status."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        os.setsid()
        return write_fd
    os.close(write_fd)
    if os.read(read_fd, 1):
        os._exit(0)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code > 0 else 1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (0, 1 on a startup error, 3 if already running)."""
    args = parse_args(argv)
    try:
        log: TextIO = open(args.log_file, "a") if args.log_file else sys.stderr  # noqa: SIM115
    except OSError as exc:
        print(f"hamgr-fencer: cannot open log file {args.log_file}: {exc}", file=sys.stderr)
        return 1
    ready_fd = detach() if args.detach else None
    fencer = Fencer(args.socket, args.data_dir, log)
    fencer.guard_log = args.log_file
    try:
        fencer.setup()
    except AlreadyRunning as exc:
        fencer.log(str(exc))
        return EXIT_ALREADY_RUNNING
    except OSError as exc:
        fencer.log(f"cannot start: {exc}")
        fencer.teardown()
        return 1
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    try:
        return fencer.run()
    finally:
        fencer.teardown()
        fencer.log("stopped")
