"""ActionRunner in pause and on the way out, without I/O: the fencer is disarmed while the
cluster is paused and armed again on resume (never armed in between), and a stopping agent
carries out no action that starts PostgreSQL.

The fencer is a stand-in that records its commands (the real one is tested in
tests/test_fencer.py, and pause with it on real agents in tests/ha/test_agent_resume.py).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from hamgr.dcs.model import ClusterView, LeaderKey
from hamgr.fencer.protocol import FenceStatus
from hamgr.ha import actions as a
from hamgr.ha import execute
from hamgr.ha.execute import STARTS_POSTGRES, ActionRunner
from hamgr.postgres import PgSettings


class Fencer:
    def __init__(self) -> None:
        self.commands: list[str] = []

    async def arm(self, fence_at: float, pid: int, start: int) -> FenceStatus:
        self.commands.append(f"ARM {fence_at}")
        return FenceStatus(fence_at, pid, start)

    async def disarm(self) -> FenceStatus:
        self.commands.append("DISARM")
        return FenceStatus()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> tuple[ActionRunner, Fencer]:
    monkeypatch.setattr(execute, "postmaster_identity", lambda data_dir: (4242, 1))
    pg = PgSettings(bin_dir=Path("/nonexistent/bin"), data_dir=Path("/nonexistent/data"))
    fencer = Fencer()
    r = ActionRunner("a", cast(Any, None), pg, fencer=cast(Any, fencer))
    r.lease.key = LeaderKey("a", 7)
    r.lease.fence_at = 100.0
    return r, fencer


async def test_pause_disarms_the_fencer_and_resume_arms_it(
    runner: tuple[ActionRunner, Fencer],
) -> None:
    r, fencer = runner
    await r.arm_fencer()
    assert fencer.commands == ["ARM 100.0"] and r.fencer_armed
    await r.set_paused(True)
    assert fencer.commands[-1] == "DISARM" and not r.fencer_armed
    r.lease.fence_at = 103.0  # a keepalive while paused moves the deadline
    await r.arm_fencer()
    await r.set_paused(True)  # no change: nothing sent
    assert fencer.commands == ["ARM 100.0", "DISARM"], "armed while paused"
    await r.set_paused(False)
    assert fencer.commands[-1] == "ARM 103.0" and r.fencer_armed


def _instances() -> list[a.Action]:
    return [
        a.AcquireLeader(),
        a.Bootstrap(),
        a.CloneFrom("b"),
        a.StartReplica("b"),
        a.Follow("b"),
        a.Rewind("b"),
        a.Reclone("b"),
        a.Reinitialize(),
        a.Promote(),
        a.StartPostgres(),
        a.CloneRemote(),
        a.FollowRemote(),
    ]


def test_every_starting_action_is_listed() -> None:
    assert {type(x) for x in _instances()} == set(STARTS_POSTGRES)


@pytest.mark.parametrize("action", _instances(), ids=lambda x: type(x).__name__)
async def test_a_stopping_agent_starts_nothing(
    runner: tuple[ActionRunner, Fencer], action: a.Action, caplog: pytest.LogCaptureFixture
) -> None:
    r, _ = runner
    r.stop_requested = asyncio.Event()
    r.stop_requested.set()
    caplog.set_level(logging.INFO, logger="hamgr.ha.execute")
    view = ClusterView()
    assert await r.run(a.Decision((action,), "test"), view) is False
    said = [rec.getMessage() for rec in caplog.records]
    assert said == [f"stopping: not carrying out {type(action).__name__}"], said
