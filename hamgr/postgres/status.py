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
from hamgr.postgres.control import is_initialized, running_pid_file
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


# Everything `status` needs in one round trip (it runs every loop): the server-wide facts, the
# primary's or the replica's positions (CASE keeps the functions that refuse to run in the
# other role from running), the WAL receiver (at most one row) and one row per standby
# streaming from us (none: one row with NULLs there).
_OBSERVE_SQL = """
SELECT s.in_recovery,
       pg_postmaster_start_time() AS start_time,
       (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
       current_setting('server_version_num')::int AS server_version,
       ARRAY(SELECT name FROM pg_settings WHERE pending_restart ORDER BY name) AS pending_restart,
       CASE WHEN NOT s.in_recovery THEN pg_current_wal_lsn()::text END AS lsn,
       CASE WHEN NOT s.in_recovery THEN pg_walfile_name(pg_current_wal_lsn()) END AS walfile,
       current_setting('synchronous_standby_names') AS sync_names,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_last_xact_replay_timestamp() AS replay_time,
       CASE WHEN s.in_recovery THEN pg_get_wal_replay_pause_state() END AS pause_state,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
       (SELECT min_recovery_end_timeline FROM pg_control_recovery()) AS recovery_tli,
       current_setting('primary_conninfo') <> '' AS upstream_configured,
       w.pid AS w_pid, w.status AS w_status, w.sender_host AS w_sender_host,
       w.sender_port AS w_sender_port, w.slot_name AS w_slot_name,
       w.received_tli AS w_received_tli, w.written_lsn::text AS w_written_lsn,
       w.flushed_lsn::text AS w_flushed_lsn, w.latest_end_lsn::text AS w_latest_end_lsn,
       w.last_msg_receipt_time AS w_last_msg_receipt_time,
       r.pid AS r_pid, r.application_name AS r_application_name,
       host(r.client_addr) AS r_client_addr, r.state AS r_state,
       r.sent_lsn::text AS r_sent_lsn, r.write_lsn::text AS r_write_lsn,
       r.flush_lsn::text AS r_flush_lsn, r.replay_lsn::text AS r_replay_lsn,
       r.sync_state AS r_sync_state, r.reply_time AS r_reply_time
FROM (SELECT pg_is_in_recovery() AS in_recovery) s
LEFT JOIN pg_stat_wal_receiver w ON true
LEFT JOIN pg_stat_replication r ON true
ORDER BY r.application_name, r.pid
"""


async def status(settings: PgSettings, held: HeldConnection | None = None) -> PgStatus:
    """Observe the server; never raises for a stopped or unreachable one. With ``held``, over
    that persistent connection (opened again as needed), else over a new one closed after."""
    initialized = is_initialized(settings)
    pid_file = running_pid_file(settings)
    if pid_file is None:
        return PgStatus(running=False, initialized=initialized, role="stopped")
    pid = pid_file.pid
    base = PgStatus(
        running=True, initialized=initialized, role="unknown", pid=pid, pm_status=pid_file.status
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
    rows = await fetch(conn, _OBSERVE_SQL, what="reading server state")
    if not rows:
        raise SqlError("reading server state: the query returned no row")
    row = rows[0]
    replication = tuple(
        ReplicationRow(
            pid=r["r_pid"],
            application_name=r["r_application_name"],
            client_addr=r["r_client_addr"],
            state=r["r_state"],
            sent_lsn=parse_optional_lsn(r["r_sent_lsn"]),
            write_lsn=parse_optional_lsn(r["r_write_lsn"]),
            flush_lsn=parse_optional_lsn(r["r_flush_lsn"]),
            replay_lsn=parse_optional_lsn(r["r_replay_lsn"]),
            sync_state=r["r_sync_state"],
            reply_time=r["r_reply_time"],
        )
        for r in rows
        if r["r_pid"] is not None
    )
    observed = _with(
        base,
        in_recovery=row["in_recovery"],
        start_time=row["start_time"],
        system_identifier=int(row["system_identifier"]),
        server_version=row["server_version"],
        replication=replication,
        pending_restart=tuple(row["pending_restart"] or ()),
    )
    if not row["in_recovery"]:
        return _with(
            observed,
            role="primary",
            wal_lsn=parse_optional_lsn(row["lsn"]),
            timeline=walfile_timeline(row["walfile"]),
            sync_standby_names=row["sync_names"],
        )
    upstream = None
    if row["w_pid"] is not None:
        upstream = WalReceiver(
            status=row["w_status"],
            sender_host=row["w_sender_host"],
            sender_port=row["w_sender_port"],
            slot_name=row["w_slot_name"],
            received_tli=row["w_received_tli"],
            written_lsn=parse_optional_lsn(row["w_written_lsn"]),
            flushed_lsn=parse_optional_lsn(row["w_flushed_lsn"]),
            latest_end_lsn=parse_optional_lsn(row["w_latest_end_lsn"]),
            last_msg_receipt_time=row["w_last_msg_receipt_time"],
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
