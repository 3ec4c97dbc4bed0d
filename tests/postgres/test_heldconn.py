"""The HA loop's held connection against a real server: one session for every observation,
a new one after a restart or a terminated session, and a server that stops answering costs a
bounded wait, never a hung loop."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import pytest

from hamgr import postgres as pg
from hamgr.postgres.sql import query

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = pg.InitdbOptions(no_sync=True)
MakePg = Callable[..., pg.PgSettings]
OTHERS_SQL = (
    "SELECT pid, backend_start FROM pg_stat_activity "
    "WHERE application_name = 'hamgr' AND pid <> pg_backend_pid() ORDER BY pid"
)


async def _held_backends(s: pg.PgSettings) -> list[tuple[int, object]]:
    """The hamgr sessions on the server other than the one asking (pid, backend_start)."""
    return [(r["pid"], r["backend_start"]) for r in await query(s, OTHERS_SQL, what="sessions")]


async def _started(make_pg: MakePg, name: str, **overrides: object) -> pg.PgSettings:
    s = make_pg(name, **overrides)
    await pg.initdb(s, FAST)
    await pg.start(s)
    return s


async def test_every_observation_uses_the_one_held_session(make_pg: MakePg) -> None:
    s = await _started(make_pg, "held")
    held = pg.HeldConnection(s)
    try:
        first = await pg.status(s, held)
        assert first.role == "primary" and first.error is None
        sessions = await _held_backends(s)
        assert len(sessions) == 1
        for _ in range(5):
            again = await pg.status(s, held)
            assert again.role == "primary" and again.error is None
        assert held.opened == 1
        assert await _held_backends(s) == sessions, "the same backend, never a new one"
    finally:
        await held.close()
    assert await _held_backends(s) == [], "close() ends the session"


async def test_a_restarted_server_gets_a_new_connection_without_a_failed_observation(
    make_pg: MakePg,
) -> None:
    s = await _started(make_pg, "restart")
    held = pg.HeldConnection(s)
    try:
        assert (await pg.status(s, held)).error is None
        await pg.stop(s, "fast")
        assert (await pg.status(s, held)).role == "stopped"
        await pg.start(s)
        back = await pg.status(s, held)
        assert (back.role, back.error) == ("primary", None)
        assert held.opened == 2
    finally:
        await held.close()


async def test_a_terminated_session_is_replaced_in_the_same_observation(
    make_pg: MakePg,
) -> None:
    s = await _started(make_pg, "terminated")
    held = pg.HeldConnection(s)
    try:
        assert (await pg.status(s, held)).error is None
        [(victim, _)] = await _held_backends(s)
        await query(s, "SELECT pg_terminate_backend(%s)", [victim], what="terminate")
        after = await pg.status(s, held)
        assert (after.role, after.error) == ("primary", None)
        assert held.opened == 2
        [(replacement, _)] = await _held_backends(s)
        assert replacement != victim
    finally:
        await held.close()


async def test_a_backend_that_stops_answering_is_given_up_not_waited_on(
    make_pg: MakePg,
) -> None:
    # statement_timeout cannot fire in a stopped backend: only the client-side bound helps.
    s = await _started(make_pg, "frozen", statement_timeout=1.0)
    held = pg.HeldConnection(s)
    victim = None
    try:
        assert (await pg.status(s, held)).error is None
        [(victim, _)] = await _held_backends(s)
        os.kill(victim, signal.SIGSTOP)
        frozen = await pg.status(s, held)
        assert frozen.role == "unknown" and frozen.error is not None
        assert "no answer from PostgreSQL" in frozen.error
        os.kill(victim, signal.SIGCONT)
        victim = None
        after = await pg.status(s, held)
        assert (after.role, after.error) == ("primary", None)
        assert held.opened == 2
    finally:
        if victim is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
        await held.close()
