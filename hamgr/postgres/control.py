"""Lifecycle of the local server: initdb, start, stop, restart, reload, promote, checkpoint.

Every operation is idempotent where that makes sense (start of a running server returns its
PID, stop of a stopped one does nothing) and bounded by a timeout. The server is started with
`pg_ctl start -l <runtime_dir>/postgresql.log`; pg_ctl detaches it (setsid), so it survives a
restart of the agent.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Literal

from psycopg import sql as pgsql

from hamgr.postgres import conf
from hamgr.postgres.controldata import controldata
from hamgr.postgres.errors import (
    CommandError,
    InitdbError,
    NotRunningError,
    PgTimeoutError,
    PromoteError,
    ReloadError,
    StartError,
    StateError,
    StopError,
)
from hamgr.postgres.files import (
    prepare_empty_data_dir,
    read_text,
    remove_file,
    write_file,
)
from hamgr.postgres.initdbopts import InitdbOptions
from hamgr.postgres.parse import PidFile, parse_pid_file
from hamgr.postgres.process import program, resolve_run_as, run
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.sql import connect, connect_retrying, fetch, fetch_one

StopMode = Literal["smart", "fast", "immediate"]
STOP_MODES: tuple[StopMode, ...] = ("smart", "fast", "immediate")
LOG_TAIL_BYTES = 4096


def read_pid_file(settings: PgSettings) -> PidFile | None:
    """postmaster.pid of the data dir, or None when absent or unreadable."""
    text = read_text(settings.data_dir / "postmaster.pid")
    if text is None:
        return None
    try:
        return parse_pid_file(text)
    except ValueError:
        return None


def _is_postgres_process(pid: int) -> bool:
    """Whether `pid` is a live process running the postgres binary (guards against PID reuse
    after a crash left a stale postmaster.pid)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        return False
    except PermissionError:
        return True
    name = os.path.basename(exe.removesuffix(" (deleted)"))
    return name in ("postgres", "postmaster")


def running_pid_file(settings: PgSettings) -> PidFile | None:
    """postmaster.pid of the data dir when the postmaster it names runs on this data dir,
    else None: one read of the file for both the PID and the status line it holds."""
    pid_file = read_pid_file(settings)
    if pid_file is None or not _is_postgres_process(pid_file.pid):
        return None
    # A postmaster.pid copied along with a data dir names the other copy's server.
    if pid_file.data_dir and os.path.realpath(pid_file.data_dir) != os.path.realpath(
        settings.data_dir
    ):
        return None
    return pid_file


def postmaster_pid(settings: PgSettings) -> int | None:
    """PID of the running postmaster of this data dir, or None when it is not running."""
    pid_file = running_pid_file(settings)
    return None if pid_file is None else pid_file.pid


def is_running(settings: PgSettings) -> bool:
    """True when a postmaster runs on this data dir (postmaster.pid + live postgres process)."""
    return postmaster_pid(settings) is not None


def is_initialized(settings: PgSettings) -> bool:
    """True when the data dir holds a cluster (PG_VERSION exists)."""
    return (settings.data_dir / "PG_VERSION").exists()


def _log_offset(settings: PgSettings) -> int:
    try:
        return settings.log_file.stat().st_size
    except FileNotFoundError:
        return 0


def server_log_since(settings: PgSettings, offset: int) -> str:
    """What the server logged since byte `offset` (at most the last LOG_TAIL_BYTES)."""
    try:
        with settings.log_file.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, size - LOG_TAIL_BYTES))
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _log_note(settings: PgSettings, offset: int) -> str:
    text = server_log_since(settings, offset).strip()
    if not text:
        return f"(server log {settings.log_file} has nothing new)"
    lines = text.splitlines()[-15:]
    return f"server log {settings.log_file} tail:\n" + "\n".join(lines)


async def initdb(
    settings: PgSettings, options: InitdbOptions | None = None, timeout: float = 300.0
) -> None:
    """Create a new cluster in an empty (or missing) data dir and write hamgr's config.

    `options` default to the settings' own (``settings.initdb``: hamgr's defaults with the
    configured ``bootstrap.initdb`` options). Data checksums are on by default, and
    wal_log_hints is on in hamgr.conf, so pg_rewind works. The superuser gets its password
    through a temporary 0600 file, never argv.
    """
    options = options or settings.initdb
    run_as = resolve_run_as(settings.os_user)
    program(settings, "initdb")
    if is_initialized(settings):
        raise StateError(f"{settings.data_dir} already holds a cluster (PG_VERSION exists)")
    prepare_empty_data_dir(settings.data_dir, run_as, "initdb")
    conf.ensure_runtime_dir(settings, run_as)
    args = [
        "-D",
        str(settings.data_dir),
        "-U",
        settings.superuser,
        f"--auth-local={'scram-sha-256' if settings.superuser_password else 'trust'}",
        "--auth-host=scram-sha-256",
    ]
    pwfile = settings.runtime_dir / ".initdb-password"
    if settings.superuser_password:
        write_file(pwfile, settings.superuser_password + "\n", run_as)
        args.append(f"--pwfile={pwfile}")
    args += options.args()
    try:
        await run(
            settings,
            "initdb",
            args,
            timeout=timeout,
            what=f"initdb of {settings.data_dir}",
            error=InitdbError,
        )
    finally:
        remove_file(pwfile)
    conf.write_config(settings)


async def start(settings: PgSettings, wait: bool = True, timeout: float = 60.0) -> int | None:
    """Start the server; returns the postmaster PID (None if `wait` is False and it is not up yet).

    With `wait`, returns once the server accepts connections (a standby: once it is consistent
    and serves read-only queries). If that does not happen within `timeout`, raises StartError;
    a server that is still starting is left running (its log tail is in the message).
    A server that already runs is left alone and its PID returned at once, without waiting.
    """
    pid = postmaster_pid(settings)
    if pid is not None:
        return pid
    program(settings, "pg_ctl")
    if not is_initialized(settings):
        raise StateError(f"cannot start: {settings.data_dir} holds no cluster (run initdb)")
    conf.ensure_runtime_dir(settings)
    offset = _log_offset(settings)
    args = ["start", "-D", str(settings.data_dir), "-l", str(settings.log_file), "-s"]
    args += ["-w", "-t", str(max(1, round(timeout)))] if wait else ["-W"]
    try:
        await run(
            settings,
            "pg_ctl",
            args,
            timeout=timeout + 10,
            what=f"starting PostgreSQL on {settings.data_dir}",
            error=StartError,
        )
    except CommandError as exc:
        still = postmaster_pid(settings)
        state = f"a postmaster (PID {still}) is still running" if still else "no server runs"
        raise StartError(
            exc.what,
            exc.argv,
            exc.returncode,
            exc.output,
            timed_out=exc.timed_out,
            extra=f"{state}; {_log_note(settings, offset)}",
        ) from None
    return postmaster_pid(settings)


async def stop(settings: PgSettings, mode: StopMode = "fast", timeout: float = 60.0) -> bool:
    """Stop the server with pg_ctl's `mode`; returns False when it was not running.

    'smart' waits for clients to leave, 'fast' disconnects them and checkpoints (a clean
    shutdown), 'immediate' aborts without a checkpoint (the cluster needs crash recovery on
    the next start, and pg_rewind runs that for itself). Raises StopError at the deadline.
    """
    if mode not in STOP_MODES:
        raise ValueError(f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}")
    if not is_running(settings):
        return False
    offset = _log_offset(settings)
    try:
        await run(
            settings,
            "pg_ctl",
            [
                "stop",
                "-D",
                str(settings.data_dir),
                "-m",
                mode,
                "-s",
                "-w",
                "-t",
                str(max(1, round(timeout))),
            ],
            timeout=timeout + 10,
            what=f"stopping PostgreSQL ({mode}) on {settings.data_dir}",
            error=StopError,
        )
    except CommandError as exc:
        if not is_running(settings):
            return True
        raise StopError(
            exc.what,
            exc.argv,
            exc.returncode,
            exc.output,
            timed_out=exc.timed_out,
            extra=_log_note(settings, offset),
        ) from None
    return True


async def restart(
    settings: PgSettings, mode: StopMode = "fast", timeout: float = 60.0
) -> int | None:
    """Stop (if running) and start again, each bounded by `timeout`."""
    await stop(settings, mode, timeout)
    return await start(settings, wait=True, timeout=timeout)


async def reload(settings: PgSettings, timeout: float = 10.0) -> None:
    """Make the running server re-read its config files (SIGHUP through pg_ctl)."""
    if not is_running(settings):
        raise NotRunningError(f"cannot reload: no server runs on {settings.data_dir}")
    await run(
        settings,
        "pg_ctl",
        ["reload", "-D", str(settings.data_dir), "-s"],
        timeout=timeout,
        what=f"reloading PostgreSQL on {settings.data_dir}",
        error=ReloadError,
    )


async def promote(
    settings: PgSettings, timeout: float = 60.0, checkpoint_after: bool = True
) -> bool:
    """Promote a running standby to primary and wait until it accepts writes.

    Returns False when the server already was a primary. On success the standby config is
    cleared (hamgr-recovery.conf emptied; PostgreSQL removes standby.signal itself).

    With `checkpoint_after` a CHECKPOINT follows: promotion does not wait for one, and until
    it has run the control file still names the old timeline, so pg_rewind against this
    server would wrongly report "same timeline, no rewind required". A caller that wants the
    shortest promotion passes False and calls `checkpoint` itself soon after.
    """
    deadline = time.monotonic() + timeout
    if not is_running(settings):
        raise NotRunningError(f"cannot promote: no server runs on {settings.data_dir}")
    state = (await controldata(settings)).state
    if state == "in production":
        return False
    await run(
        settings,
        "pg_ctl",
        ["promote", "-D", str(settings.data_dir), "-s", "-w", "-t", str(max(1, round(timeout)))],
        timeout=timeout + 10,
        what=f"promoting PostgreSQL on {settings.data_dir}",
        error=PromoteError,
    )
    conn = await connect_retrying(settings, max(0.5, deadline - time.monotonic()))
    try:
        while True:
            row = await fetch_one(conn, "SELECT pg_is_in_recovery() AS r", what="pg_is_in_recovery")
            if not row["r"]:
                break
            if time.monotonic() > deadline:
                raise PgTimeoutError(f"still in recovery {timeout:.0f}s after promote")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    conf.clear_standby_config(settings)
    if checkpoint_after:
        # Its own bound: the promotion already succeeded, a slow checkpoint must not look
        # like a failed promotion because the promotion used up most of the deadline.
        await checkpoint(settings, timeout=timeout)
    return True


async def checkpoint(settings: PgSettings, timeout: float = 120.0) -> None:
    """Run CHECKPOINT (a restartpoint on a standby), allowed up to `timeout` seconds."""
    if not is_running(settings):
        raise NotRunningError(f"cannot checkpoint: no server runs on {settings.data_dir}")
    conn = await connect(settings)
    try:
        await fetch(
            conn,
            pgsql.SQL("SET statement_timeout = {}").format(int(timeout * 1000)),
            what="SET statement_timeout",
        )
        await fetch(conn, "CHECKPOINT", what="CHECKPOINT")
    finally:
        await conn.close()
