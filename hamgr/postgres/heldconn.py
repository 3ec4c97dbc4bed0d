"""One connection to the local server held open for the HA loop's observations.

Opening a connection every loop costs a backend fork and a SCRAM handshake on both sides each
second, on every host, all day. The held connection is opened once and checked before each
use: it is dropped and opened again when it broke (the server restarted or terminated it, an
error left it unusable) or when the postmaster it was opened against is no longer the one
running. Every use is bounded on the client side too (`statement_timeout` + 1 s), so a server
that stops answering costs the loop that long at most, never more; the connection is given up
then (its cancellation winds down in the background). The owner closes it when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.pq import ConnStatus, TransactionStatus

from hamgr.postgres.errors import SqlError
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.sql import Connection, connect

log = logging.getLogger(__name__)

T = TypeVar("T")

CLIENT_GRACE = 1.0
"""Seconds a use may run past the server's statement_timeout before the client gives up."""
CLOSE_TIMEOUT = 1.0
"""Seconds closing a dropped connection may take (it never holds the loop longer)."""


class NoAnswerError(SqlError):
    """The server did not answer a use of the held connection within the client's bound."""


class HeldConnection:
    """A persistent, health-checked connection to the local server (see the module doc).

    ``opened`` counts the connections opened so far and ``dropped`` those given up (tests and
    metrics read them: an idle loop opens none after its first).
    """

    def __init__(self, settings: PgSettings) -> None:
        self.settings = settings
        self._conn: Connection | None = None
        self._postmaster: int | None = None
        self._abandoned: set[asyncio.Future[Any]] = set()
        self.opened = 0
        self.dropped = 0

    def _healthy(self, postmaster_pid: int) -> bool:
        conn = self._conn
        return (
            conn is not None
            and not conn.closed
            and conn.pgconn.status == ConnStatus.OK
            and conn.info.transaction_status == TransactionStatus.IDLE
            and self._postmaster == postmaster_pid
        )

    async def run(
        self, postmaster_pid: int, use: Callable[[Connection], Awaitable[T]], what: str
    ) -> T:
        """``use(conn)`` on the held connection, opened (or opened again) for the postmaster
        ``postmaster_pid`` as needed. A connection that was reused and fails is dropped and
        ``use`` tried once more on a new one (it may have broken silently since the last
        loop); a new one that fails raises, and so does one that got no answer in time
        (NoAnswerError: a server that hangs is not waited on twice). Errors are SqlError
        (ConnectError when no connection could be opened)."""
        reused = self._healthy(postmaster_pid)
        try:
            return await self._run_once(postmaster_pid, use, what)
        except NoAnswerError:
            raise
        except SqlError as exc:
            if not reused:
                raise
            log.info("the held connection to PostgreSQL failed (%s); opening a new one", exc)
        return await self._run_once(postmaster_pid, use, what)

    async def _run_once(
        self, postmaster_pid: int, use: Callable[[Connection], Awaitable[T]], what: str
    ) -> T:
        if not self._healthy(postmaster_pid):
            await self.close()
            self._conn = await connect(self.settings)
            self._postmaster = postmaster_pid
            self.opened += 1
        conn = self._conn
        assert conn is not None
        limit = self.settings.statement_timeout + CLIENT_GRACE
        task = asyncio.ensure_future(use(conn))
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
        except asyncio.CancelledError:
            self._abandon(conn, task)
            raise
        if not done:
            self._abandon(conn, task)
            raise NoAnswerError(f"{what}: no answer from PostgreSQL within {limit:g} s")
        try:
            return task.result()
        except (SqlError, psycopg.Error) as exc:
            await self.close()
            if isinstance(exc, SqlError):
                raise
            raise SqlError(f"{what} failed: {str(exc).strip()}") from exc

    def _abandon(self, conn: Connection, task: asyncio.Future[T]) -> None:
        """Give up a use that does not return: forget the connection at once and let the
        cancelled query wind down on its own (psycopg first asks the server to cancel it, which
        can take seconds), closing the connection when it has."""
        if self._conn is conn:
            self._conn, self._postmaster = None, None
            self.dropped += 1
        task.cancel()
        self._abandoned.add(task)

        def reap(done: asyncio.Future[T]) -> None:
            self._abandoned.discard(done)
            if not done.cancelled():
                done.exception()  # retrieved: a failure here is expected, not news
            conn.pgconn.finish()

        task.add_done_callback(reap)

    async def close(self) -> None:
        """Drop the connection, if any (bounded; errors while closing are ignored)."""
        conn, self._conn, self._postmaster = self._conn, None, None
        if conn is None:
            return
        self.dropped += 1
        with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await conn.close()
