"""hamgr/ha/restartjob.py's RestartDesk without PostgreSQL: the hand-over between the REST API
and the HA loop (one scheduled, one immediate at a time; due, stale, paused; a withdrawn ask)."""

from __future__ import annotations

import asyncio

from hamgr.dcs.restartrequest import RestartRequest, iso_time
from hamgr.ha.restartjob import RestartDesk

NOW = 2_000_000_000.0


async def test_one_scheduled_restart_taken_at_its_time() -> None:
    desk = RestartDesk()
    req = RestartRequest(iso_time(NOW + 10))
    assert desk.schedule(req) and not desk.schedule(RestartRequest(iso_time(NOW + 20)))
    assert desk.wake.is_set()  # to publish it at once
    assert desk.seconds_to_next(NOW) == 10.0
    assert desk.take(NOW + 9.9, 1.0, paused=False) is None
    assert desk.take(NOW + 10, 1.0, paused=True) is None  # kept while paused
    assert desk.seconds_to_next(NOW + 11) is None  # due: no busy wait while paused
    taken = desk.take(NOW + 10, 1.0, paused=False)
    assert taken is not None and taken.request == req and desk.scheduled is None


async def test_stale_and_cancelled_restarts_are_dropped() -> None:
    desk = RestartDesk()
    desk.schedule(RestartRequest(iso_time(NOW)))
    assert desk.take(NOW + 3600, 1.0, paused=False) is None and desk.scheduled is None
    desk.schedule(RestartRequest(iso_time(NOW)))
    assert desk.cancel() and not desk.cancel()
    assert desk.take(NOW, 1.0, paused=False) is None


async def test_an_ask_the_loop_never_took_is_withdrawn() -> None:
    desk = RestartDesk()
    done, why = await desk.ask(RestartRequest(), 0.01)
    assert not done and "nothing was restarted" in why
    assert desk.take(NOW, 1.0, paused=False) is None  # withdrawn: not run later


async def test_an_ask_is_answered_by_the_loop_or_refused_without_the_store() -> None:
    desk = RestartDesk()
    waiting = asyncio.ensure_future(desk.ask(RestartRequest(), 5.0))
    await asyncio.sleep(0)
    assert desk.wake.is_set()
    assert (await desk.ask(RestartRequest(), 5.0))[1] == "a restart is already in progress"
    desk.refuse_waiting("not restarting: the store is unreachable")
    assert await waiting == (False, "not restarting: the store is unreachable")


async def test_a_scheduled_restart_is_cancelled_once_postgres_restarted_meanwhile() -> None:
    desk = RestartDesk()
    req = RestartRequest(iso_time(NOW + 10))
    desk.schedule(req)
    desk.wake.clear()
    assert desk.take(NOW, 1.0, paused=False, postmaster_started=None) is None  # stopped
    assert desk.take(NOW + 1, 1.0, paused=False, postmaster_started=NOW - 500) is None
    assert desk.take(NOW + 2, 1.0, paused=False, postmaster_started=NOW - 500) is None
    assert desk.scheduled == req and not desk.wake.is_set()  # the same postmaster: kept
    assert desk.take(NOW + 3, 1.0, paused=False, postmaster_started=None) is None  # restarting
    assert desk.scheduled == req
    assert desk.take(NOW + 4, 1.0, paused=False, postmaster_started=NOW + 3.5) is None
    assert desk.scheduled is None and desk.wake.is_set()  # cancelled and published at once
    assert desk.take(NOW + 10, 1.0, paused=False, postmaster_started=NOW + 3.5) is None


async def test_a_restart_scheduled_again_starts_from_the_postmaster_it_sees_then() -> None:
    desk = RestartDesk()
    desk.schedule(RestartRequest(iso_time(NOW + 10)))
    desk.take(NOW, 1.0, paused=False, postmaster_started=NOW - 500)
    assert desk.cancel()
    req = RestartRequest(iso_time(NOW + 10))
    desk.schedule(req)
    assert desk.take(NOW + 1, 1.0, paused=False, postmaster_started=NOW - 100) is None
    assert desk.scheduled == req  # a newer postmaster than the first schedule saw: no cancel
    taken = desk.take(NOW + 10, 1.0, paused=False, postmaster_started=NOW - 100)
    assert taken is not None and taken.request == req
