"""Run PostgreSQL's own programs as the unprivileged OS user.

PostgreSQL refuses to run as root. When the agent is root, every program runs as the
configured OS user (setuid/setgid, no supplementary groups, that user's HOME, a clean
environment); when the agent is not root, programs run as the agent itself. Only PostgreSQL's
binaries are ever run this way, never our Python, which may live where that user cannot read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hamgr.postgres.errors import (
    BinaryNotFoundError,
    CommandError,
    ConfigError,
    RootUserError,
)
from hamgr.postgres.settings import PgSettings

# Grace period after a deadline-driven kill before we stop waiting for the child.
_KILL_GRACE = 5.0


@dataclass(frozen=True)
class RunAs:
    """Who PostgreSQL's programs run as; `switch` says whether we must setuid to it."""

    user: str
    uid: int
    gid: int
    home: str
    switch: bool


def resolve_run_as(os_user: str) -> RunAs:
    """Resolve the OS user PostgreSQL runs as; refuses root (uid 0) with a clear error."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/", False)
    try:
        entry = pwd.getpwnam(os_user)
    except KeyError:
        raise ConfigError(
            f"os_user={os_user!r} does not exist on this host; create it "
            f"(e.g. `useradd --system {os_user}`) or configure another user"
        ) from None
    if entry.pw_uid == 0:
        raise RootUserError(
            f"os_user={os_user!r} has uid 0: PostgreSQL refuses to run as root, "
            "configure an unprivileged user such as 'postgres'"
        )
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/", True)


def program(settings: PgSettings, name: str) -> Path:
    """Path of PostgreSQL program `name` in settings.bin_dir, checked to exist and be executable."""
    path = settings.bin_dir / name
    if not path.is_file() or not os.access(path, os.X_OK):
        where = "does not exist" if not settings.bin_dir.is_dir() else f"has no {name}"
        raise BinaryNotFoundError(
            f"PostgreSQL program {name!r} not found: bin_dir {settings.bin_dir} {where} "
            "(set bin_dir to the directory holding initdb, pg_ctl and postgres; "
            "`pg_config --bindir` prints it)"
        )
    return path


def child_env(
    settings: PgSettings, run_as: RunAs, extra: Mapping[str, str] | None
) -> dict[str, str]:
    """A clean environment: no PG* variables of the agent leak in, messages in English."""
    env = {
        "PATH": f"{settings.bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": run_as.home,
        "USER": run_as.user,
        "LOGNAME": run_as.user,
        "LC_ALL": "C",
        "LANG": "C",
    }
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Completed:
    """A finished program: argv, exit code and its decoded output."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stderr, or stdout when stderr is empty: where PostgreSQL's programs explain."""
        return self.stderr if self.stderr.strip() else self.stdout


def _kill_group(pgid: int) -> None:
    """SIGKILL the process group we created for one program run."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run(
    settings: PgSettings,
    name: str,
    args: Sequence[str],
    *,
    timeout: float,
    what: str,
    error: type[CommandError] = CommandError,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run PostgreSQL program `name` with `args` as the OS user, bounded by `timeout` seconds.

    On a non-zero exit (when `check`) or at the deadline raises `error` naming `what`, the
    command line, the exit code and the output tail. stdin is /dev/null: nothing may prompt.
    """
    path = program(settings, name)
    return await run_argv(
        settings,
        [str(path), *args],
        timeout=timeout,
        what=what,
        error=error,
        check=check,
        env=env,
    )


def spawn_kwargs(run_as: RunAs) -> dict[str, object]:
    """The keyword arguments of asyncio.create_subprocess_exec that run a child as ``run_as``."""
    if run_as.switch:
        return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    return {}


async def run_argv(
    settings: PgSettings,
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    error: type[CommandError] = CommandError,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run ``argv`` as the OS user, as :func:`run` runs PostgreSQL's programs (same clean
    environment, own process group killed at the deadline). Also for operators' commands
    (replica and bootstrap methods, post_bootstrap): they run with PostgreSQL's privileges."""
    run_as = resolve_run_as(settings.os_user)
    argv = list(argv)
    path = argv[0]
    kwargs = spawn_kwargs(run_as)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd="/",
            env=child_env(settings, run_as, env),
            umask=0o077,
            # Own process group, so a deadline kill also reaches helpers it forked
            # (pg_basebackup's WAL streamer, initdb's backends). pg_ctl's postmaster calls
            # setsid() itself and so is never in this group.
            start_new_session=True,
            **kwargs,  # type: ignore[arg-type]
        )
    except OSError as exc:
        if isinstance(exc, PermissionError) and path.startswith(f"{settings.bin_dir}/"):
            raise BinaryNotFoundError(
                f"cannot execute {path} as OS user {run_as.user!r}: {exc} "
                "(it must be able to read and traverse bin_dir)"
            ) from exc
        raise error(what, argv, None, f"cannot execute as OS user {run_as.user!r}: {exc}") from exc
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        output = ""
        with contextlib.suppress(TimeoutError):
            out, err = await asyncio.wait_for(proc.communicate(), _KILL_GRACE)
            output = err.decode(errors="replace") or out.decode(errors="replace")
        raise error(what, argv, None, output, timed_out=True) from None
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        raise
    assert proc.returncode is not None
    done = Completed(
        argv, proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
    )
    if check and done.returncode != 0:
        raise error(what, argv, done.returncode, done.output)
    return done
