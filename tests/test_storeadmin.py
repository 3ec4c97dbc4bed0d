"""hamgr.agent.storeadmin against a real store: three RaftNodes with their client servers in one
event loop on 127.0.0.211-213 (ephemeral ports), real sockets and data directories.

What the live agent tests (tests/ha/test_members_e2e.py) do not reach: removing the member that
leads Raft (leadership moves first, so the others need no election), and the view's names,
roles and applied indexes read through a follower.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hamgr.agent.storeadmin import StoreAdmin, register_until_done
from hamgr.agent.storemembers import MemberRecord, MembershipRefused
from tests.raft.inloop import InLoopStore
from tests.tools.poll import wait_for_async

SCOPE = "admin-test"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[InLoopStore]:
    s = InLoopStore(
        tmp_path,
        {i: f"127.0.0.{210 + i}" for i in (1, 2, 3)},
        SCOPE,
        b"s" * 32,
        tick=0.05,
        election_tick=10,
    )
    try:
        await s.start_all()
        yield s
    finally:
        await s.stop_all()


async def _registered(s: InLoopStore) -> None:
    stop = asyncio.Event()
    async with s.client() as client:
        for i in s.ids:
            host, port = s.raft[i]
            chost, cport = s.clients[i]
            record = MemberRecord(f"m{i}", i, f"{host}:{port}", f"{chost}:{cport}")
            assert await register_until_done(client, SCOPE, record, stop)


async def test_view_and_removing_the_raft_leader(
    store: InLoopStore, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await store.leader()
    await _registered(store)
    follower = next(i for i in store.ids if i != leader)
    async with store.client() as client:
        admin = StoreAdmin(SCOPE, store.nodes[follower], client, store.clients)
        await wait_for_async(
            lambda: admin.conf().leader == leader, 5, "the follower knows the leader"
        )
        # The view reads this follower's own copy of the records: wait until it has them all.
        await wait_for_async(
            lambda: len(store.nodes[follower].kv.range(b"/hamgr/", prefix=True).kvs) == 3,
            5,
            "the records applied on the follower",
        )
        view = await admin.view()
        rows = {m["name"]: m for m in view["members"]}
        assert set(rows) == {"m1", "m2", "m3"} and view["leader"] == leader
        assert rows[f"m{leader}"]["raft_leader"] and all(
            isinstance(m["applied"], int) and m["role"] == "voter" for m in rows.values()
        )

        with caplog.at_level(logging.INFO, logger="hamgr.agent.storeadmin"):
            done = await admin.remove(f"m{leader}")
        assert done["node_id"] == leader
        assert f"moving leadership from member {leader} to" in caplog.text
        others = [i for i in store.ids if i != leader]
        # Leadership had moved before the removal: a leader is known at once, no election.
        assert admin.conf().leader in others
        await wait_for_async(
            lambda: all(store.nodes[i].status()["voters"] == others for i in others),
            10,
            "the two others see themselves as the voters",
        )
        assert (await client.put(b"after", b"ok")).revision > 0
        # Its record is kept, marked removed: its id is never given again.
        records = {r.name: r for r in await admin.records()}
        assert records[f"m{leader}"].removed

        # With one of the two left stopped, the other leads nothing: refused, saying so, and
        # the view still answers from this member's own copy, the stopped one unreachable.
        stopped = next(i for i in others if i != follower)
        await store.stop(stopped)
        await wait_for_async(lambda: admin.conf().leader == 0, 10, "no leader left")
        with pytest.raises(MembershipRefused, match="no leader"):
            await admin.remove(f"m{stopped}")
        rows = {m["name"]: m for m in (await admin.view())["members"]}
        assert rows[f"m{stopped}"]["applied"] is None and rows[f"m{follower}"]["applied"] > 0
