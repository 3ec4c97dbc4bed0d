"""PostgreSQL's side of synchronous replication: ``synchronous_standby_names``, and detaching a
standby from its upstream.

hamgr owns ``synchronous_standby_names`` (it is refused in ``parameters``): it lives alone in
``hamgr-sync.conf``, included by postgresql.conf, so that changing it touches nothing else.
A standby's copy is emptied whenever it is (re)configured as a standby (pg_basebackup and
pg_rewind copy the primary's files), so that a promoted standby never inherits the list of the
primary it replaced. A running primary's copy is only ever changed by
:func:`set_synchronous_standby_names`, never rewritten on the side: the HA loop orders that
change against the store's record (see :mod:`hamgr.ha.syncrep`).
"""

from __future__ import annotations

import asyncio
import time

from hamgr.lsn import parse_optional_lsn
from hamgr.postgres import conf
from hamgr.postgres.errors import PgTimeoutError
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.sql import connect, fetch, fetch_one

_POLL = 0.01


def quote_standby_name(name: str) -> str:
    """An application name as a ``synchronous_standby_names`` entry: double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def render_standby_names(method: str, count: int, names: tuple[str, ...]) -> str:
    """``FIRST n (a, b)`` / ``ANY n (a, b)``; ``""`` for none; ``*`` stands for any standby."""
    if not names:
        return ""
    listed = ", ".join(n if n == "*" else quote_standby_name(n) for n in names)
    return f"{method} {count} ({listed})"


async def set_synchronous_standby_names(
    settings: PgSettings, value: str, timeout: float = 10.0
) -> int:
    """Make the running primary wait for ``value``; returns its WAL insert position read once
    the new value is in force.

    The file is written, the server reloaded, and the setting read back until it shows the
    new value (a backend applies a reload between two statements). The position returned lies
    after the change: every commit acknowledged before it, and every one after it under the new
    rule, is covered by a standby whose flush position passes it.
    """
    conf.write_sync_conf(settings, value)
    end = time.monotonic() + timeout
    conn = await connect(settings)
    try:
        await fetch(conn, "SELECT pg_reload_conf()", what="reloading the configuration")
        while True:
            row = await fetch_one(
                conn,
                "SELECT current_setting('synchronous_standby_names') AS names, "
                "pg_current_wal_lsn()::text AS lsn",
                what="reading synchronous_standby_names",
            )
            if row["names"] == value:
                lsn = parse_optional_lsn(row["lsn"])
                assert lsn is not None
                return lsn
            if time.monotonic() > end:
                raise PgTimeoutError(
                    f"synchronous_standby_names still reads {row['names']!r}, not {value!r}, "
                    f"{timeout:g} s after a reload"
                )
            await asyncio.sleep(_POLL)
    finally:
        await conn.close()


async def detach(settings: PgSettings, timeout: float = 10.0) -> None:
    """Make the running standby stop receiving WAL from its upstream, and stay a standby.

    Before a failover in synchronous mode every standby detaches, so that a primary that is
    frozen but alive cannot collect acknowledgements from it after it was counted in the race
    (see :mod:`hamgr.ha.syncrep`). Returns once the WAL receiver is gone.
    """
    conf.write_detached_config(settings)
    end = time.monotonic() + timeout
    conn = await connect(settings)
    try:
        await fetch(conn, "SELECT pg_reload_conf()", what="reloading the configuration")
        while True:
            row = await fetch_one(conn, _DETACHED_SQL, what="reading the WAL receiver")
            if row["detached"]:
                return
            if time.monotonic() > end:
                raise PgTimeoutError(f"the WAL receiver still runs {timeout:g} s after detaching")
            await asyncio.sleep(_POLL)
    finally:
        await conn.close()


_DETACHED_SQL = """
SELECT current_setting('primary_conninfo') = ''
       AND NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) AS detached
"""
