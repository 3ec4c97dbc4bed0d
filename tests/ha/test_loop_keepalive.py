"""The HA loop's keepalive timer survives its own failures: an error in one round is logged and
the next round runs; a timer task that ended anyway is started again by the loop.

No PostgreSQL and no store here: the timer only talks to the ActionRunner, which these tests
replace with a small stand-in that counts keepalives and raises on the ones it is told to.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from hamgr.dcs.settings import DynamicSettings
from hamgr.ha.execute import ActionRunner, LeaseState
from hamgr.ha.loop import HaLoop, Identity
from hamgr.postgres import PgSettings
from tests.tools.poll import wait_for_async

# ttl 0.33 s: a round every 0.11 s.
QUICK = DynamicSettings(ttl=0.33, loop_wait=0.1, retry_timeout=0.1, safety_margin=0.1)


class Runner:
    """Counts keepalives; the ones whose number is in `failing` raise."""

    def __init__(self, failing: set[int]) -> None:
        self.lease = LeaseState()
        self.calls = 0
        self.failing = failing

    async def keepalive(self, safety_margin: float) -> bool:
        self.calls += 1
        if self.calls in self.failing:
            raise RuntimeError(f"planted failure in keepalive {self.calls}")
        return True


def make_loop(runner: Runner, **kw: Any) -> HaLoop:
    pg = PgSettings(bin_dir=Path("/nonexistent/bin"), data_dir=Path("/nonexistent/data"))
    loop = HaLoop(
        Identity("m1", "http://127.0.0.1:8008", "127.0.0.1:5432"),
        cast(Any, None),
        pg,
        cast(ActionRunner, runner),
        cast(Any, None),
        settings=QUICK,
        **kw,
    )
    loop._session_started = True
    return loop


async def test_an_error_in_one_round_is_logged_and_the_timer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = Runner(failing={1, 2})
    loop = make_loop(runner)
    stop = asyncio.Event()
    caplog.set_level(logging.ERROR, logger="hamgr.ha.loop")
    task = asyncio.create_task(loop._keepalive_timer(stop))
    try:
        await wait_for_async(
            lambda: runner.calls >= 4, 10.0, "two keepalives after two failed rounds"
        )
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert loop.keepalive_errors == 2
    failures = [r for r in caplog.records if "keepalive timer" in r.getMessage()]
    assert len(failures) == 2
    assert "planted failure in keepalive 1" in (failures[0].exc_text or "")


async def test_a_failing_hook_does_not_stop_the_timer() -> None:
    runner = Runner(failing=set())
    seen: list[bool] = []

    def hook(latency: float, ok: bool, sent_at: float) -> None:
        seen.append(ok)
        if len(seen) == 1:
            raise ValueError("planted failure in the keepalive hook")

    loop = make_loop(runner, on_keepalive=hook)
    stop = asyncio.Event()
    task = asyncio.create_task(loop._keepalive_timer(stop))
    try:
        await wait_for_async(lambda: len(seen) >= 3, 10.0, "three keepalives reported")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert loop.keepalive_errors == 1


async def test_a_timer_task_that_ended_is_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = Runner(failing=set())
    loop = make_loop(runner)
    stop = asyncio.Event()

    async def died() -> None:
        raise RuntimeError("planted: the timer task died")

    dead = asyncio.create_task(died())
    with pytest.raises(RuntimeError):
        await dead
    caplog.set_level(logging.ERROR, logger="hamgr.ha.loop")
    keeper = loop._supervise_keepalive(dead, stop)
    try:
        assert keeper is not dead
        await wait_for_async(lambda: runner.calls >= 2, 10.0, "keepalives from the restarted timer")
    finally:
        stop.set()
        await asyncio.wait_for(keeper, 5)
    assert any("starting it again" in r.getMessage() for r in caplog.records)
    # A running timer, or one that ended because the loop stops, is left alone.
    assert loop._supervise_keepalive(keeper, stop) is keeper
