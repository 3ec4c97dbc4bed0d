"""The HA loop tells its store_error hook (the status page's event strip) when a cycle cannot
read the store, and whether that made this primary stop PostgreSQL (its lease deadline had
passed); no PostgreSQL and no store here: stand-ins record the calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from hamgr.agent.events import EventLog
from hamgr.dcs.base import DcsError
from hamgr.dcs.model import DynamicSettings
from hamgr.ha import loop as loopmod
from hamgr.ha.execute import ActionRunner, LeaseState
from hamgr.ha.inputs import LocalPostgres
from hamgr.ha.loop import HaLoop, Identity
from hamgr.postgres import PgSettings


class Runner:
    def __init__(self, paused: bool) -> None:
        self.lease = LeaseState()  # no deadline held: it counts as passed
        self.paused = paused
        self.disarmed = 0

    def settle_watchdog(self, pg: Any, now: float) -> None:
        pass

    async def disarm_fencer(self) -> None:
        self.disarmed += 1


class Store:
    async def get_cluster(self) -> Any:
        raise DcsError("no quorum: 1 of 3 store members reachable")


@pytest.mark.parametrize(
    ("primary", "paused", "stopped"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
async def test_a_cycle_without_the_store_is_told(
    monkeypatch: pytest.MonkeyPatch, primary: bool, paused: bool, stopped: bool
) -> None:
    pg_now = LocalPostgres(initialized=True, running=True, role="primary" if primary else "replica")
    stops: list[str] = []

    async def observe(pg: PgSettings, forks: Any, held: Any = None) -> LocalPostgres:
        return pg_now

    async def stop(pg: PgSettings, mode: str) -> None:
        stops.append(mode)

    monkeypatch.setattr(loopmod, "observe_postgres", observe)
    monkeypatch.setattr(loopmod.postgres, "stop", stop)
    told: list[tuple[str, bool]] = []
    runner = Runner(paused)
    loop = HaLoop(
        Identity("m1", "http://127.0.0.1:8008", "127.0.0.1:5432"),
        cast(Any, Store()),
        PgSettings(bin_dir=Path("/nonexistent/bin"), data_dir=Path("/nonexistent/data")),
        cast(ActionRunner, runner),
        cast(Any, None),
        settings=DynamicSettings(),
        on_store_error=lambda error, did_stop: told.append((error, did_stop)),
    )
    assert await loop.cycle() is None
    assert told == [("no quorum: 1 of 3 store members reachable", stopped)]
    assert stops == (["immediate"] if stopped else []) and runner.disarmed == int(stopped)

    events = EventLog("m1")
    events.store_unreachable(*told[0])
    kinds = [e.kind for e in events.since(0)]
    assert kinds == (["store", "fencing"] if stopped else ["store"])
