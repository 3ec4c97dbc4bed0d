"""Standby setup and repair: follow a primary, clone one, rewind, manage replication slots.

A standby is configured by hamgr-recovery.conf (primary_conninfo, primary_slot_name,
recovery_target_timeline='latest') plus standby.signal. Passwords travel through the 0600
password file in the runtime dir, never through argv, environment or copied config files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

from hamgr.lsn import parse_optional_lsn
from hamgr.postgres import conf, render
from hamgr.postgres.control import is_initialized, is_running, start
from hamgr.postgres.control import reload as reload_server
from hamgr.postgres.controldata import controldata
from hamgr.postgres.errors import (
    BaseBackupError,
    ConfigError,
    RewindError,
    SlotError,
    SqlError,
    StateError,
)
from hamgr.postgres.files import prepare_empty_data_dir
from hamgr.postgres.process import program, resolve_run_as, run
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.sql import connect, fetch

_SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")


def validate_slot_name(name: str) -> None:
    """PostgreSQL's rule for slot names: lower-case letters, digits and '_', at most 63."""
    if not isinstance(name, str) or not _SLOT_RE.match(name):
        raise SlotError(
            f"invalid replication slot name {name!r}: use 1-63 lower-case letters, digits or '_'"
        )


def _validate_upstream(host: str, port: int) -> None:
    if not host or any(c in host for c in "\n\r\0"):
        raise ConfigError(f"primary host {host!r} is not a valid host name or address")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"primary port {port!r} is outside 1..65535")


def configure_standby(
    settings: PgSettings,
    primary_host: str,
    primary_port: int,
    slot_name: str | None = None,
    application_name: str | None = None,
) -> None:
    """Write the config that makes this node a standby of primary_host:primary_port.

    Takes effect at the next start (standby.signal) or, for a running standby, on reload.
    application_name defaults to settings.name (it is how the primary lists us).
    """
    _validate_upstream(primary_host, primary_port)
    if slot_name is not None:
        validate_slot_name(slot_name)
    if not settings.replication_password:
        raise ConfigError("replication_password is required for a standby to connect")
    if not is_initialized(settings):
        raise StateError(f"{settings.data_dir} holds no cluster to configure as a standby")
    conf.write_standby_config(
        settings, primary_host, primary_port, slot_name, application_name or settings.name
    )


async def follow(
    settings: PgSettings,
    primary_host: str,
    primary_port: int,
    slot_name: str | None = None,
    application_name: str | None = None,
    timeout: float = 60.0,
) -> None:
    """Make this node stream from primary_host:primary_port now.

    A running standby gets the new upstream by reload; a stopped node is started as a standby.
    A running primary is refused: stop it first (and rewind if its timeline diverged).
    """
    if is_running(settings) and (await controldata(settings)).state == "in production":
        raise StateError(
            "this server runs as a primary; stop it (and rewind it if needed) before it follows"
        )
    configure_standby(settings, primary_host, primary_port, slot_name, application_name)
    if is_running(settings):
        await reload_server(settings)
    else:
        await start(settings, wait=True, timeout=timeout)


async def clone_from(
    settings: PgSettings,
    primary_host: str,
    primary_port: int,
    slot_name: str | None = None,
    application_name: str | None = None,
    timeout: float = 600.0,
) -> None:
    """Fill an empty data dir with pg_basebackup from the primary and configure it as its
    standby (not started). With `slot_name` (which must exist on the primary) the slot holds
    the WAL for the backup and afterwards for streaming."""
    _validate_upstream(primary_host, primary_port)
    if slot_name is not None:
        validate_slot_name(slot_name)
    if not settings.replication_password:
        raise ConfigError("replication_password is required to clone from a primary")
    run_as = resolve_run_as(settings.os_user)
    program(settings, "pg_basebackup")
    if is_running(settings):
        raise StateError(f"cannot clone into {settings.data_dir}: a server runs on it")
    prepare_empty_data_dir(settings.data_dir, run_as, "a clone (pg_basebackup)")
    conf.write_passfile(settings, run_as)
    app = application_name or settings.name
    args = [
        "-D",
        str(settings.data_dir),
        "-d",
        render.primary_conninfo(settings, primary_host, primary_port, app),
        "-X",
        "stream",
        "--checkpoint=fast",
        "--no-password",
    ]
    if slot_name is not None:
        args += ["-S", slot_name]
    await run(
        settings,
        "pg_basebackup",
        args,
        timeout=timeout,
        what=f"pg_basebackup from {primary_host}:{primary_port} into {settings.data_dir}",
        error=BaseBackupError,
    )
    conf.write_config(settings)
    configure_standby(settings, primary_host, primary_port, slot_name, app)


@dataclass(frozen=True)
class RewindResult:
    """What pg_rewind did: `rewound` is False when it found nothing to rewind."""

    rewound: bool
    output: str


async def rewind(
    settings: PgSettings, source_host: str, source_port: int, timeout: float = 600.0
) -> RewindResult:
    """Rewind this stopped data dir to the source server's timeline with pg_rewind.

    A target that crashed (or was stopped with mode 'immediate') is handled too: pg_rewind
    (PostgreSQL 13+) first runs crash recovery in single-user mode. Single-user mode refuses
    standby mode, so the standby config is cleared first. After success the managed config
    is rewritten (pg_rewind copies the source's config files) and the node is no standby:
    call `configure_standby` (or `follow`) next. On failure RewindError carries pg_rewind's
    output; a rewind that failed midway may leave the data dir unusable (re-clone it).
    """
    _validate_upstream(source_host, source_port)
    if not settings.rewind_secret:
        raise ConfigError(
            f"pg_rewind logs in to the source as {settings.rewind_role!r}, which needs a password"
        )
    run_as = resolve_run_as(settings.os_user)
    program(settings, "pg_rewind")
    if not is_initialized(settings):
        raise StateError(f"cannot rewind {settings.data_dir}: it holds no cluster")
    if is_running(settings):
        raise StateError(f"cannot rewind {settings.data_dir}: the server runs; stop it first")
    conf.clear_standby_config(settings)
    conf.write_passfile(settings, run_as)
    source = render.conninfo(
        host=source_host,
        port=source_port,
        user=settings.rewind_role,
        dbname="postgres",
        passfile=str(settings.passfile),
        connect_timeout=max(2, round(settings.connect_timeout)),
        application_name=f"{settings.name}-rewind",
    )
    done = await run(
        settings,
        "pg_rewind",
        ["-D", str(settings.data_dir), f"--source-server={source}"],
        timeout=timeout,
        what=f"pg_rewind of {settings.data_dir} from {source_host}:{source_port}",
        error=RewindError,
    )
    conf.write_config(settings)
    conf.clear_standby_config(settings)
    output = done.stdout + done.stderr
    return RewindResult(rewound="no rewind required" not in output, output=output)


@dataclass(frozen=True)
class SlotInfo:
    """One row of pg_replication_slots."""

    name: str
    slot_type: str
    active: bool
    active_pid: int | None
    restart_lsn: int | None
    wal_status: str | None


async def list_slots(settings: PgSettings) -> list[SlotInfo]:
    """All replication slots of the running server."""
    rows = await _slot_query(
        settings,
        "SELECT slot_name, slot_type, active, active_pid, restart_lsn::text AS restart_lsn, "
        "wal_status FROM pg_replication_slots ORDER BY slot_name",
        [],
        what="listing replication slots",
    )
    return [
        SlotInfo(
            name=row["slot_name"],
            slot_type=row["slot_type"],
            active=row["active"],
            active_pid=row["active_pid"],
            restart_lsn=parse_optional_lsn(row["restart_lsn"]),
            wal_status=row["wal_status"],
        )
        for row in rows
    ]


async def create_slot(settings: PgSettings, name: str) -> bool:
    """Create physical slot `name`, reserving WAL at once; False when it already exists."""
    validate_slot_name(name)
    existing = {slot.name: slot for slot in await list_slots(settings)}
    if name in existing:
        if existing[name].slot_type != "physical":
            raise SlotError(f"slot {name!r} exists but is {existing[name].slot_type}")
        return False
    try:
        await _slot_query(
            settings,
            "SELECT pg_create_physical_replication_slot(%s, true)",
            [name],
            what=f"creating replication slot {name!r}",
        )
    except SlotError as exc:
        if isinstance(exc.__cause__, psycopg.errors.DuplicateObject):
            return False
        raise
    return True


async def drop_slot(settings: PgSettings, name: str) -> bool:
    """Drop slot `name`; False when it did not exist. Raises SlotError while it is in use."""
    validate_slot_name(name)
    try:
        rows = await _slot_query(
            settings,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            [name],
            what=f"dropping replication slot {name!r}",
        )
    except SlotError as exc:
        if isinstance(exc.__cause__, psycopg.errors.UndefinedObject):
            return False
        raise
    return bool(rows)


async def _slot_query(
    settings: PgSettings, query: str, params: list[object], *, what: str
) -> list[psycopg.rows.DictRow]:
    if not is_running(settings):
        raise StateError(f"{what}: no server runs on {settings.data_dir}")
    conn = await connect(settings)
    try:
        return await fetch(conn, query, params, what=what)
    except SqlError as exc:
        raise SlotError(str(exc)) from exc.__cause__
    finally:
        await conn.close()
