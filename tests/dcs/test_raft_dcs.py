"""RaftDcs against a real embedded store: three RaftNode members with their rpc servers in this
event loop (127.0.0.91-93), real sockets and data directories.

The shared contract (`tests/dcs/contract.py`) runs twice: watching through a local member (how
an agent runs) and polling through the client only. Then what only this backend has: a lease
and the leader key that survive a Raft leader change, and a stopped local member.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from hamgr.dcs import DcsError
from hamgr.dcs.raft import RaftDcs
from tests.dcs.contract import CHECKS, Check, member, new_scope
from tests.dcs.stores import RaftStore
from tests.tools.virtualtimer import VirtualTimer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RaftStore]:
    s = RaftStore(tmp_path_factory.mktemp("raft-dcs"))
    try:
        await s.start_all()
        yield s
    finally:
        await s.stop_all()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_contract_watching_a_local_member(store: RaftStore, check: Check) -> None:
    store.use_local_node = True
    await check(store)


POLLING = [c for c in CHECKS if "watch" in c.__name__ or "race" in c.__name__]


@pytest.mark.parametrize("check", POLLING, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_contract_polling_through_the_client(store: RaftStore, check: Check) -> None:
    store.use_local_node = False
    try:
        await check(store)
    finally:
        store.use_local_node = True


async def test_a_polling_watch_counts_its_timeout_on_the_sessions_timer(store: RaftStore) -> None:
    """The session's timer is its transport's too: a watch that polls (no local member) waits
    its polls and ends at its timeout on that timer (virtual here: no time is waited)."""
    timer = VirtualTimer()
    a = RaftDcs(new_scope("polltimer"), "a", store.client(), poll_interval=0.05, timer=timer)
    try:
        await a.get_cluster()
        assert await a.watch(1.0) is False, "nothing changed"
        assert timer.now() == pytest.approx(1.0), "ended when its timeout passed on its timer"
        assert len(timer.sleeps) >= 19 and max(timer.sleeps) <= 0.05, "polled every 0.05 s"
    finally:
        await a.close()


@pytest_asyncio.fixture(loop_scope="module")
async def own_store(tmp_path: Path) -> AsyncIterator[RaftStore]:
    """A store of its own, for tests that stop members."""
    s = RaftStore(tmp_path)
    try:
        await s.start_all()
        yield s
    finally:
        await s.stop_all()


async def test_lease_and_leader_key_survive_a_raft_leader_change(own_store: RaftStore) -> None:
    store = own_store
    scope = new_scope("failover")
    old_leader = await store.leader()
    store.use_local_node = False
    a = store.session(scope, "a", retry_timeout=3.0)
    try:
        await a.touch_member(member("a"))
        key = await a.acquire_leader()
        assert key is not None
        await store.stop(old_leader)
        renewal = await a.keepalive()  # redirected to the new leader within retry_timeout
        assert renewal.ok, "the new Raft leader must honour the lease"
        assert await store.leader() != old_leader
        view = await a.get_cluster()
        assert view.leader == key and view.member("a") is not None
    finally:
        with contextlib.suppress(DcsError):
            await a.close()


async def test_watch_on_a_stopped_local_member_raises_dcs_error(own_store: RaftStore) -> None:
    store = own_store
    dcs = store.session(new_scope("stopped"), "a")
    dcs_node = dcs.local_node
    assert dcs_node is not None
    await store.stop(dcs_node.id)
    try:
        with pytest.raises(DcsError, match="watch: local store member"):
            await dcs.watch(1.0)
    finally:
        await dcs.close()
