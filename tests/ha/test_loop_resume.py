"""The HA loop of a restarted agent decides nothing before its previous run's lease was
renewed (a decision without it would demote a primary that may keep its key), a bounded
number of cycles; no PostgreSQL and no store here: stand-ins count the calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from hamgr.dcs.settings import DynamicSettings
from hamgr.ha.execute import ActionRunner, LeaseState
from hamgr.ha.loop import RESUME_TRIES, HaLoop, Identity
from hamgr.postgres import PgSettings


class Runner:
    """Answers every renewal of the previous lease with 'the store did not answer'."""

    def __init__(self) -> None:
        self.lease = LeaseState()
        self.paused = False
        self.resumes: list[int] = []

    def settle_watchdog(self, pg: Any, now: float) -> None:
        pass

    async def resume(self, lease_id: int, safety_margin: float) -> bool | None:
        self.resumes.append(lease_id)
        return None

    async def inherited_deadline(self) -> float | None:
        return None


class Store:
    def __init__(self) -> None:
        self.reads = 0

    async def get_cluster(self) -> Any:
        self.reads += 1
        raise RuntimeError("the test's store is only read after the resume was given up")


async def test_no_decision_before_the_previous_lease_is_renewed_a_few_times() -> None:
    runner, store = Runner(), Store()
    pg = PgSettings(bin_dir=Path("/nonexistent/bin"), data_dir=Path("/nonexistent/data"))
    loop = HaLoop(
        Identity("m1", "http://127.0.0.1:8008", "127.0.0.1:5432"),
        cast(Any, store),
        pg,
        cast(ActionRunner, runner),
        cast(Any, None),
        settings=DynamicSettings(),
        resume_lease=99,
    )
    for _ in range(RESUME_TRIES - 1):
        assert await loop.cycle() is None
    assert runner.resumes == [99] * (RESUME_TRIES - 1) and store.reads == 0
    with pytest.raises(RuntimeError):
        await loop.cycle()
    assert runner.resumes == [99] * RESUME_TRIES and store.reads == 1, "then it goes on"
