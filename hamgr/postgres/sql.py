"""SQL connections to the local server: unix socket, superuser, short timeouts, clear errors.

Every connection is bounded (connect_timeout, statement_timeout) so a hung server cannot stall
the HA loop; `connect_retrying` waits for a server that is coming up, with backoff and a
deadline (tenacity).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg import sql as pgsql
from psycopg.rows import DictRow, dict_row
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from hamgr.postgres.errors import PgTimeoutError, SqlError
from hamgr.postgres.settings import PgSettings

Connection = psycopg.AsyncConnection[DictRow]
# What hamgr passes to execute(): literal SQL text or a composed statement.
Query = str | pgsql.SQL | pgsql.Composed
_ROWS: tuple[int, ...] = (
    pq.ExecStatus.TUPLES_OK,
    pq.ExecStatus.SINGLE_TUPLE,
    pq.ExecStatus.TUPLES_CHUNK,
)
"""Result statuses that carry rows, even none (as psycopg's ``cursor.description`` reads them)."""


class ConnectError(SqlError):
    """Could not connect to the local server (not up yet, shutting down, auth...)."""


async def connect(settings: PgSettings) -> Connection:
    """Open an autocommit connection as the superuser over the local unix socket."""
    params: dict[str, Any] = {
        "host": str(settings.socket_dir),
        "port": settings.port,
        "user": settings.superuser,
        "dbname": "postgres",
        # libpq treats values below 2 as 2.
        "connect_timeout": max(2, math.ceil(settings.connect_timeout)),
        "application_name": "hamgr",
        "options": f"-c statement_timeout={int(settings.statement_timeout * 1000)}",
    }
    if settings.superuser_password:
        params["password"] = settings.superuser_password
    try:
        return await asyncio.wait_for(
            psycopg.AsyncConnection.connect(autocommit=True, row_factory=dict_row, **params),
            settings.connect_timeout + 1,
        )
    except (psycopg.Error, TimeoutError, OSError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise ConnectError(
            f"cannot connect to PostgreSQL on socket {settings.socket_dir} port {settings.port} "
            f"as {settings.superuser!r}: {reason}"
        ) from exc


async def connect_retrying(settings: PgSettings, timeout: float) -> Connection:
    """`connect`, retried with backoff until `timeout` seconds have passed."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.05, max=0.5),
            retry=retry_if_exception_type(ConnectError),
            reraise=True,
        ):
            with attempt:
                return await connect(settings)
    except ConnectError as exc:
        raise PgTimeoutError(f"no connection within {timeout:.1f}s: {exc}") from exc
    raise AssertionError("unreachable: tenacity either returns or raises")


async def fetch(
    conn: Connection, query: Query, params: Sequence[Any] | None = None, *, what: str
) -> list[DictRow]:
    """Run one statement and return its rows; psycopg errors become SqlError naming `what`."""
    try:
        cursor = await conn.execute(query, params)
        # The result's status, not `cursor.description`, which builds a Column object per
        # column only to be compared with None: for the HA loop's observation query every
        # second, that was a third of the Python time spent on it (issue 15).
        result = cursor.pgresult
        has_rows = result is not None and bool(result.nfields or result.status in _ROWS)
        return await cursor.fetchall() if has_rows else []
    except psycopg.Error as exc:
        raise SqlError(f"{what} failed: {str(exc).strip()}") from exc


async def fetch_one(
    conn: Connection, query: Query, params: Sequence[Any] | None = None, *, what: str
) -> DictRow:
    """`fetch` for a statement that returns exactly one row."""
    rows = await fetch(conn, query, params, what=what)
    if len(rows) != 1:
        raise SqlError(f"{what}: expected one row, got {len(rows)}")
    return rows[0]


async def query(
    settings: PgSettings, query: Query, params: Sequence[Any] | None = None, *, what: str
) -> list[DictRow]:
    """Connect, run one statement, close: for one-off administrative statements."""
    conn = await connect(settings)
    try:
        return await fetch(conn, query, params, what=what)
    finally:
        await conn.close()
