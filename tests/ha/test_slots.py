"""Replication slots: one per member name (property), the departed-member rule (table),
SlotKeeper against a real PostgreSQL with pg_receivewal as a real standby holding a slot in
use, and replicas that need no slot asking for none (ActionRunner on real servers)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamgr import postgres as pg
from hamgr.dcs.model import ClusterView, LeaderKey, MemberState
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha.actions import CloneFrom, Decision, StartReplica
from hamgr.ha.execute import ActionRunner
from hamgr.ha.inputs import LocalPostgres
from hamgr.ha.slots import SlotKeeper, departed_slots, legacy_slot_name, slot_name
from hamgr.postgres.replication import validate_slot_name
from hamgr.postgres.sql import query
from tests.conftest import REPLICATION_PASSWORD
from tests.ha.builders import member
from tests.tools.poll import wait_for_async

# Every name a member may have (hamgr.config.values.member_name_problem).
MEMBER_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True)
# Names built to collide under a sanitising map: the same letters, varied case and punctuation.
LOOKALIKES = st.lists(st.sampled_from(["d", "D", "b", "-", "_", ".", "1"]), min_size=1, max_size=8)

TTL = 60.0


@given(st.lists(MEMBER_NAMES | LOOKALIKES.map(lambda p: "d" + "".join(p)), unique=True))
def test_distinct_member_names_get_distinct_valid_slot_names(names: list[str]) -> None:
    slots = [slot_name(n) for n in names]
    for slot in slots:
        validate_slot_name(slot)  # raises on an invalid one
    assert len(set(slots)) == len(names)


@pytest.mark.parametrize(
    ("member", "slot"),
    [
        ("member1", "member1"),  # already a slot name: kept, as before
        ("db_1", "db_1"),
        ("x" * 63, "x" * 63),
        ("db-1", r"db_1_[0-9a-f]{10}"),
        ("DB_1", r"db_1_[0-9a-f]{10}"),
        ("node_0123456789", r"node_0123456789_[0-9a-f]{10}"),  # ends like a hashed name
        ("X" * 63, r"x{52}_[0-9a-f]{10}"),
    ],
)
def test_slot_names_keep_valid_names_and_hash_the_others(member: str, slot: str) -> None:
    assert re.fullmatch(slot, slot_name(member)), slot_name(member)
    assert slot_name(member) == slot_name(member)  # stable: the same name, the same slot


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
        await wait_for_async(
            lambda: slots(a), 30, "a stream on c", done=lambda s: s.get("c") is True
        )
        gone = cluster("a", "b")
        await keeper.maintain(gone, PRIMARY, True, 1.0)  # c last needed at 0.0
        await keeper.maintain(gone, PRIMARY, True, TTL - 1.0)
        assert set(await slots(a)) == {"backup", "b", "c"}, "within member_slots_ttl"
        await keeper.maintain(gone, PRIMARY, True, TTL + 1.0)
        assert (await slots(a))["c"] is True, "a slot in use is kept"
    finally:
        receiver.terminate()
        receiver.wait(20)
    await wait_for_async(lambda: slots(a), 30, "c released", done=lambda s: s.get("c") is False)
    await keeper.maintain(gone, PRIMARY, True, TTL + 2.0)
    assert await slots(a) == {"backup": False, "b": False}

    # A member that comes back gets its slot again; the operator's slot is still there.
    await keeper.maintain(cluster("a", "b", "c"), PRIMARY, True, TTL + 3.0)
    assert set(await slots(a)) == {"backup", "b", "c"}


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_slot_named_the_old_way_departs_like_a_gone_members(
    make_pg: Callable[..., pg.PgSettings],
) -> None:
    """Before one slot per name, member db-1 streamed through slot db_1. Its agent now uses
    slot_name(db-1), so the primary drops the old slot after member_slots_ttl, once unused."""
    a = make_pg("a")
    await pg.initdb(a, pg.InitdbOptions(no_sync=True))
    await pg.start(a)
    old = legacy_slot_name("db-1")
    assert old == "db_1" != slot_name("db-1")
    await pg.create_slot(a, old)
    keeper = SlotKeeper(a, "a")
    await keeper.maintain(cluster("a", "db-1"), PRIMARY, True, 0.0)
    assert set(await slots(a)) == {old, slot_name("db-1")}
    await keeper.maintain(cluster("a", "db-1"), PRIMARY, True, TTL - 1.0)
    assert set(await slots(a)) == {old, slot_name("db-1")}, "within member_slots_ttl"
    await keeper.maintain(cluster("a", "db-1"), PRIMARY, True, TTL + 1.0)
    assert set(await slots(a)) == {slot_name("db-1")}


def on(s: pg.PgSettings, role: str = "replica") -> MemberState:
    """Member `s.name` as published, with its server's real address."""
    return MemberState(s.name, "http://127.0.0.1:8008", f"{s.host}:{s.port}", role=role)  # type: ignore[arg-type]


async def streams_to(upstream: pg.PgSettings) -> set[str]:
    rows = await query(upstream, "SELECT application_name AS a FROM pg_stat_replication", what="")
    return {r["a"] for r in rows}


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_replicas_clone_and_stream_without_a_slot_where_none_exists(
    make_pg: Callable[..., pg.PgSettings],
) -> None:
    """use_slots false: a replica clones and streams without a slot (it used to ask the leader
    for one that nobody creates). A clone from a clonefrom member, which holds no slots, asks
    it for none either."""
    fast = pg.InitdbOptions(no_sync=True)
    a, b, c = make_pg("a", initdb=fast), make_pg("b"), make_pg("c")
    await pg.initdb(a)
    await pg.start(a)
    await pg.bootstrap_users(a)
    members = (on(a, "primary"), on(b), on(c))
    no_slots = ClusterView(
        initialize="7300000000000000001",
        settings=DynamicSettings(use_slots=False),
        leader=LeaderKey("a", 7),
        members=members,
    )
    b_runner = ActionRunner("b", None, b)  # type: ignore[arg-type]  # touches only PostgreSQL
    steps = Decision((CloneFrom("a"), StartReplica("a")), "a replica of a, without slots")
    assert await b_runner.run(steps, no_slots)
    await wait_for_async(
        lambda: streams_to(a), 60, "b streaming from a", done=lambda names: "b" in names
    )
    await SlotKeeper(a, "a").maintain(no_slots, PRIMARY, True, 0.0)  # the leader makes none
    assert await slots(a) == {}

    with_slots = dataclasses.replace(no_slots, settings=DynamicSettings())
    c_runner = ActionRunner("c", None, c)  # type: ignore[arg-type]
    assert await c_runner.run(Decision((CloneFrom("b"),), "clone from b (clonefrom)"), with_slots)
    assert pg.is_initialized(c)
