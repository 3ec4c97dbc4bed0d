"""The primary's replication slots: the departed-member rule (table) and SlotKeeper against a
real PostgreSQL, with pg_receivewal as a real standby holding a slot in use."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hamgr import postgres as pg
from hamgr.dcs.model import ClusterView, DynamicSettings, LeaderKey
from hamgr.ha.inputs import LocalPostgres
from hamgr.ha.slots import SlotKeeper, departed_slots
from tests.conftest import REPLICATION_PASSWORD
from tests.ha.builders import member
from tests.postgres.pg_helpers import wait_until

TTL = 60.0


@pytest.mark.parametrize(
    ("name", "last_needed", "wanted", "now", "expected"),
    [
        ("present-members-keep-theirs", {"b": 0.0, "c": 0.0}, {"b", "c"}, 100.0, []),
        ("gone-for-less-than-ttl", {"b": 0.0, "c": 50.0}, {"b"}, 100.0, []),
        ("gone-for-exactly-ttl", {"b": 0.0, "c": 40.0}, {"b"}, 100.0, ["c"]),
        ("several-sorted", {"d": 0.0, "c": 0.0, "b": 100.0}, {"b"}, 100.0, ["c", "d"]),
        ("never-needed-is-not-ours", {}, {"b"}, 100.0, []),
    ],
)
def test_departed_slots(
    name: str, last_needed: dict[str, float], wanted: set[str], now: float, expected: list[str]
) -> None:
    assert departed_slots(last_needed, wanted, now, TTL) == expected, name


def test_zero_ttl_drops_as_soon_as_the_member_is_gone() -> None:
    assert departed_slots({"b": 100.0}, set(), 100.0, 0.0) == ["b"]


def cluster(*names: str, ttl: float = TTL) -> ClusterView:
    return ClusterView(
        initialize="7300000000000000001",
        initialize_revision=2,
        settings=DynamicSettings(member_slots_ttl=ttl),
        leader=LeaderKey("a", 7),
        members=tuple(member(n, "primary" if n == "a" else "replica") for n in names),
        revision=10,
    )


PRIMARY = LocalPostgres(initialized=True, data_dir_empty=False, running=True, role="primary")


async def slots(s: pg.PgSettings) -> dict[str, bool]:
    return {slot.name: slot.active for slot in await pg.list_slots(s)}


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_slot_keeper_creates_keeps_and_drops(
    make_pg: Callable[..., pg.PgSettings], pg_bindir: Path, tmp_path: Path
) -> None:
    a = make_pg("a")
    await pg.initdb(a, pg.InitdbOptions(no_sync=True))
    await pg.start(a)
    await pg.bootstrap_users(a)
    await pg.create_slot(a, "backup")  # an operator's slot: never ours to drop
    keeper = SlotKeeper(a, "a")

    await keeper.maintain(cluster("a", "b", "c"), PRIMARY, True, 0.0)
    assert await slots(a) == {"backup": False, "b": False, "c": False}

    # Not the key holder (or not primary): nothing is created or dropped.
    await keeper.maintain(cluster("a", "b", "d"), PRIMARY, False, 500.0)
    assert set(await slots(a)) == {"backup", "b", "c"}

    # c is in use by a real standby (pg_receivewal) when its member key goes away.
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    receiver = subprocess.Popen(
        [
            str(pg_bindir / "pg_receivewal"),
            *("-h", a.host, "-p", str(a.port), "-U", a.replication_user),
            *("-S", "c", "-D", str(wal_dir), "--no-loop", "-w"),
        ],
        env={**os.environ, "PGPASSWORD": REPLICATION_PASSWORD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_until(lambda: slots(a), lambda s: s.get("c") is True, 30, "a stream on c")
        gone = cluster("a", "b")
        await keeper.maintain(gone, PRIMARY, True, 1.0)  # c last needed at 0.0
        await keeper.maintain(gone, PRIMARY, True, TTL - 1.0)
        assert set(await slots(a)) == {"backup", "b", "c"}, "within member_slots_ttl"
        await keeper.maintain(gone, PRIMARY, True, TTL + 1.0)
        assert (await slots(a))["c"] is True, "a slot in use is kept"
    finally:
        receiver.terminate()
        receiver.wait(20)
    await wait_until(lambda: slots(a), lambda s: s.get("c") is False, 30, "c released")
    await keeper.maintain(gone, PRIMARY, True, TTL + 2.0)
    assert await slots(a) == {"backup": False, "b": False}

    # A member that comes back gets its slot again; the operator's slot is still there.
    await keeper.maintain(cluster("a", "b", "c"), PRIMARY, True, TTL + 3.0)
    assert set(await slots(a)) == {"backup", "b", "c"}
