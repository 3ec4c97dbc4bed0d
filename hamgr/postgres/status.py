"""Observe the local server: one `status()` call gives the HA loop everything it decides on.

`status` never raises for a stopped or unreachable server: it says so in the result (`role`
'stopped' or 'unknown' with `error`), because "PostgreSQL is down" is an observation, not a
failure of the observer.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from hamgr.lsn import parse_optional_lsn
from hamgr.postgres.control import is_initialized, postmaster_pid, read_pid_file
from hamgr.postgres.controldata import controldata
from hamgr.postgres.errors import SqlError, StateError
from hamgr.postgres.files import read_text
from hamgr.postgres.heldconn import HeldConnection
from hamgr.postgres.parse import (
    TimelineSwitch,
    newest_segment_timeline,
    parse_timeline_history,
    walfile_timeline,
)
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.sql import Connection, connect, fetch, fetch_one

Role = Literal["primary", "replica", "stopped", "unknown"]


@dataclass(frozen=True)
class ReplicationRow:
    """One row of pg_stat_replication: a standby (or pg_basebackup) streaming from us."""

    pid: int
    application_name: str
    client_addr: str | None
    state: str
    sent_lsn: int | None
    write_lsn: int | None
    flush_lsn: int | None
    replay_lsn: int | None
    sync_state: str | None
    reply_time: dt.datetime | None


@dataclass(frozen=True)
class WalReceiver:
    """pg_stat_wal_receiver on a standby: whom it streams from and how far."""

    status: str
    sender_host: str | None
    sender_port: int | None
    slot_name: str | None
    received_tli: int | None
    written_lsn: int | None
    flushed_lsn: int | None
    latest_end_lsn: int | None
    last_msg_receipt_time: dt.datetime | None


@dataclass(frozen=True)
class PgStatus:
    """A snapshot of the local server. LSNs are byte positions (ints)."""

    running: bool
    initialized: bool
    role: Role
    pid: int | None = None
    # postmaster.pid's status line: 'starting', 'ready', 'standby' or 'stopping'.
    pm_status: str | None = None
    in_recovery: bool | None = None
    timeline: int | None = None
    # Primary: pg_current_wal_lsn().
    wal_lsn: int | None = None
    # Replica: WAL received (flushed) from the upstream, and replayed.
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    last_replay_time: dt.datetime | None = None
    replay_paused: bool | None = None
    upstream: WalReceiver | None = None
    replication: tuple[ReplicationRow, ...] = ()
    start_time: dt.datetime | None = None
    system_identifier: int | None = None
    server_version: int | None = None
    # Primary: the standbys its commits wait for.
    sync_standby_names: str | None = None
    # Replica: primary_conninfo is set (False: detached on purpose, streams from nobody).
    upstream_configured: bool | None = None
    # Parameters changed in the config files whose new value needs a restart, sorted.
    pending_restart: tuple[str, ...] = ()
    # Why the details are missing although the server runs (e.g. still starting up).
    error: str | None = None

    @property
    def wal_position(self) -> int | None:
        """How much WAL this node has: written (primary) or received/replayed (replica)."""
        if self.role == "primary":
            return self.wal_lsn
        known = [lsn for lsn in (self.receive_lsn, self.replay_lsn) if lsn is not None]
        return max(known) if known else None


_COMMON_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       pg_postmaster_start_time() AS start_time,
       (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
       current_setting('server_version_num')::int AS server_version,
       ARRAY(SELECT name FROM pg_settings WHERE pending_restart ORDER BY name) AS pending_restart
"""
_PRIMARY_SQL = """
SELECT pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS walfile,
       current_setting('synchronous_standby_names') AS sync_names
"""
_REPLICA_SQL = """
SELECT pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_last_xact_replay_timestamp() AS replay_time,
       pg_get_wal_replay_pause_state() AS pause_state,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
       (SELECT min_recovery_end_timeline FROM pg_control_recovery()) AS recovery_tli,
       current_setting('primary_conninfo') <> '' AS upstream_configured
"""
_RECEIVER_SQL = """
SELECT status, sender_host, sender_port, slot_name, received_tli,
       written_lsn::text, flushed_lsn::text, latest_end_lsn::text, last_msg_receipt_time
FROM pg_stat_wal_receiver
"""
_REPLICATION_SQL = """
SELECT pid, application_name, host(client_addr) AS client_addr, state,
       sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
       sync_state, reply_time
FROM pg_stat_replication
ORDER BY application_name, pid
"""


async def status(settings: PgSettings, held: HeldConnection | None = None) -> PgStatus:
    """Observe the server; never raises for a stopped or unreachable one. With ``held``, over
    that persistent connection (opened again as needed), else over a new one closed after."""
    initialized = is_initialized(settings)
    pid = postmaster_pid(settings)
    if pid is None:
        return PgStatus(running=False, initialized=initialized, role="stopped")
    pid_file = read_pid_file(settings)
    pm_status = pid_file.status if pid_file else None
    base = PgStatus(
        running=True, initialized=initialized, role="unknown", pid=pid, pm_status=pm_status
    )
    if held is not None:
        try:
            return await held.run(
                pid, lambda conn: _observe(conn, base, settings.data_dir), "observing"
            )
        except SqlError as exc:
            return _with(base, error=str(exc))
    try:
        conn = await connect(settings)
    except SqlError as exc:
        return _with(base, error=str(exc))
    try:
        return await _observe(conn, base, settings.data_dir)
    except SqlError as exc:
        return _with(base, error=str(exc))
    finally:
        await conn.close()


def _with(base: PgStatus, **changes: object) -> PgStatus:
    return replace(base, **changes)  # type: ignore[arg-type]


async def _observe(conn: Connection, base: PgStatus, data_dir: Path) -> PgStatus:
    common = await fetch_one(conn, _COMMON_SQL, what="reading server state")
    replication = tuple(
        ReplicationRow(
            pid=row["pid"],
            application_name=row["application_name"],
            client_addr=row["client_addr"],
            state=row["state"],
            sent_lsn=parse_optional_lsn(row["sent_lsn"]),
            write_lsn=parse_optional_lsn(row["write_lsn"]),
            flush_lsn=parse_optional_lsn(row["flush_lsn"]),
            replay_lsn=parse_optional_lsn(row["replay_lsn"]),
            sync_state=row["sync_state"],
            reply_time=row["reply_time"],
        )
        for row in await fetch(conn, _REPLICATION_SQL, what="reading pg_stat_replication")
    )
    observed = _with(
        base,
        in_recovery=common["in_recovery"],
        start_time=common["start_time"],
        system_identifier=int(common["system_identifier"]),
        server_version=common["server_version"],
        replication=replication,
        pending_restart=tuple(common["pending_restart"] or ()),
    )
    if not common["in_recovery"]:
        row = await fetch_one(conn, _PRIMARY_SQL, what="reading the primary's WAL position")
        return _with(
            observed,
            role="primary",
            wal_lsn=parse_optional_lsn(row["lsn"]),
            timeline=walfile_timeline(row["walfile"]),
            sync_standby_names=row["sync_names"],
        )
    row = await fetch_one(conn, _REPLICA_SQL, what="reading the replica's WAL positions")
    receivers = await fetch(conn, _RECEIVER_SQL, what="reading pg_stat_wal_receiver")
    upstream = None
    if receivers:
        rec = receivers[0]
        upstream = WalReceiver(
            status=rec["status"],
            sender_host=rec["sender_host"],
            sender_port=rec["sender_port"],
            slot_name=rec["slot_name"],
            received_tli=rec["received_tli"],
            written_lsn=parse_optional_lsn(rec["written_lsn"]),
            flushed_lsn=parse_optional_lsn(rec["flushed_lsn"]),
            latest_end_lsn=parse_optional_lsn(rec["latest_end_lsn"]),
            last_msg_receipt_time=rec["last_msg_receipt_time"],
        )
    # The WAL receiver knows the timeline it streams; without one, the timeline recovery has
    # reached (the minimum recovery point's, which moves as WAL is replayed) or the last
    # restartpoint's, whichever is newer: a standby that followed a switch is on the new one.
    timeline = max(row["checkpoint_tli"], row["recovery_tli"] or 0)
    if upstream is not None and upstream.received_tli:
        timeline = max(timeline, upstream.received_tli)
    else:
        # Not streaming (detached before a failover race, or its upstream down): the newest
        # WAL segment it received names the timeline it got to; the restartpoint's can be older.
        timeline = max(timeline, _received_timeline(data_dir) or 0)
    return _with(
        observed,
        role="replica",
        receive_lsn=parse_optional_lsn(row["receive_lsn"]),
        replay_lsn=parse_optional_lsn(row["replay_lsn"]),
        last_replay_time=row["replay_time"],
        replay_paused=row["pause_state"] != "not paused",
        upstream=upstream,
        timeline=timeline,
        upstream_configured=row["upstream_configured"],
    )


_PENDING_SQL = "SELECT ARRAY(SELECT name FROM pg_settings WHERE pending_restart ORDER BY name) AS x"


async def pending_restart(settings: PgSettings) -> tuple[str, ...]:
    """The parameters the running server would change only on a restart (pg_settings'
    ``pending_restart``), sorted: right after a restart, to report it honestly at once."""
    conn = await connect(settings)
    try:
        row = await fetch_one(conn, _PENDING_SQL, what="reading pg_settings.pending_restart")
    finally:
        await conn.close()
    return tuple(row["x"] or ())


_REFUSED_SQL = """
SELECT name, error FROM pg_file_settings
WHERE error IS NOT NULL AND sourcefile LIKE '%%/' || %s
  AND name NOT IN (SELECT name FROM pg_settings WHERE context = 'postmaster')
ORDER BY sourceline
"""


async def refused_settings(settings: PgSettings, file_name: str) -> dict[str, str]:
    """What the running server refuses in config file ``file_name``, name -> its error
    ("unrecognized configuration parameter", "setting could not be applied"). Read from
    pg_file_settings, which parses the files when asked (no wait for a reload to land). A
    parameter that only a restart changes (context ``postmaster``) counts as "could not be
    applied" there until then, even before the server marks it pending_restart: it is not
    refused (its value is checked at start only; see settings.validate_parameters)."""
    conn = await connect(settings)
    try:
        rows = await fetch(conn, _REFUSED_SQL, (file_name,), what="reading pg_file_settings")
    finally:
        await conn.close()
    return {row["name"]: row["error"] for row in rows}


def _received_timeline(data_dir: Path) -> int | None:
    try:
        return newest_segment_timeline(e.name for e in os.scandir(data_dir / "pg_wal"))
    except OSError:
        return None


async def timeline_history(
    settings: PgSettings, timeline: int | None = None
) -> list[TimelineSwitch]:
    """The switches that led to `timeline` (default: the server's current one), oldest first.

    Read from pg_wal/<timeline>.history; timeline 1 has no history. For a stopped server the
    current timeline is the control file's latest checkpoint timeline.
    """
    if timeline is None:
        observed = await status(settings)
        timeline = observed.timeline
        if timeline is None:
            timeline = (await controldata(settings)).timeline
    if timeline <= 1:
        return []
    path = settings.data_dir / "pg_wal" / f"{timeline:08X}.history"
    text = read_text(path)
    if text is None:
        raise StateError(f"timeline {timeline} has no history file {path}")
    return parse_timeline_history(text)
