"""Permanent replication slots (dynamic ``slots``, as Patroni's) with a real PostgreSQL: the
primary's SlotKeeper creates them (also with use_slots off), never drops them as a departed
member's, and treats one removed from ``slots`` as departed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import msgspec
import pytest

from hamgr import postgres as pg
from hamgr.dcs.model import ClusterView
from hamgr.ha.slots import SlotKeeper
from tests.ha.test_slots import PRIMARY, TTL, cluster, slots


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_permanent_slots_are_kept_on_the_primary(
    make_pg: Callable[..., pg.PgSettings],
) -> None:
    a = make_pg("a")
    await pg.initdb(a, pg.InitdbOptions(no_sync=True))
    await pg.start(a)
    keeper = SlotKeeper(a, "a")

    def with_slots(*names: str, use_slots: bool = True) -> ClusterView:
        v = cluster("a", "b")
        settings = msgspec.structs.replace(v.settings, slots=names, use_slots=use_slots)
        return dataclasses.replace(v, settings=settings)

    await keeper.maintain(with_slots("archiver", "dr"), PRIMARY, True, 0.0)
    assert set(await slots(a)) == {"archiver", "b", "dr"}
    assert keeper.kept == ("archiver", "b", "dr")  # what GET /patroni reports
    # Long past member_slots_ttl, a declared slot that no member needs stays.
    await keeper.maintain(with_slots("archiver", "dr"), PRIMARY, True, TTL * 3)
    assert set(await slots(a)) == {"archiver", "b", "dr"}
    # Removed from slots: departed from then on, dropped after member_slots_ttl.
    await keeper.maintain(with_slots("archiver"), PRIMARY, True, TTL * 3 + 1)
    assert set(await slots(a)) == {"archiver", "b", "dr"}
    await keeper.maintain(with_slots("archiver"), PRIMARY, True, TTL * 4 + 1)
    assert set(await slots(a)) == {"archiver", "b"}

    # With use_slots off the members get none, the declared ones are still created.
    b = make_pg("b")
    await pg.initdb(b, pg.InitdbOptions(no_sync=True))
    await pg.start(b)
    other = SlotKeeper(b, "a")
    await other.maintain(with_slots("archiver", use_slots=False), PRIMARY, True, 0.0)
    assert set(await slots(b)) == {"archiver"}
