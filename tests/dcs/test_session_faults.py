"""What a session does when a write's answer is lost: on a real embedded store (three RaftNodes in
this loop), through a transport wrapper that loses answers the way a broken connection does.

`LossyTransport` forwards every call to the real `RaftTransport`; for the calls it is told to
spoil, it either sends the request and then raises OutcomeUnknown (the write applied, the answer
was lost) or raises OutcomeUnknown without sending (it did not apply). The session cannot tell
the two apart, and each method must end right in both cases.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio

from hamgr.dcs import DcsError, DynamicSettings, SwitchoverRequest, TimelineEntry, scope_keys
from hamgr.dcs.common import (
    MONOTONIC,
    Compare,
    Delete,
    OutcomeUnknown,
    Put,
    RangeSnapshot,
    StoreUnavailable,
    Timer,
    TxnOutcome,
    Watched,
)
from hamgr.dcs.raft import RaftTransport
from hamgr.dcs.session import KvSession
from hamgr.raft.errors import LeaseNotFoundError
from tests.dcs.contract import member, new_scope
from tests.dcs.stores import TTL, RaftStore
from tests.tools.virtualtimer import VirtualTimer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


class LossyTransport:
    """A RaftTransport whose next answers to the named calls are lost (see the module)."""

    def __init__(self, inner: RaftTransport) -> None:
        self.inner = inner
        self.plan: dict[str, list[str]] = {}  # call -> ["applied" | "dropped" | "down", ...]
        self.calls: dict[str, int] = {}

    def spoil(self, call: str, *faults: str) -> None:
        self.plan.setdefault(call, []).extend(faults)

    async def _run(self, call: str, coro: Any) -> Any:
        self.calls[call] = self.calls.get(call, 0) + 1
        faults = self.plan.get(call)
        fault = faults.pop(0) if faults else None
        if fault == "dropped":
            coro.close()
            raise OutcomeUnknown(f"{call}: connection lost (not sent)")
        if fault == "down":
            coro.close()
            raise StoreUnavailable(f"{call}: store down for the test")
        result = await coro
        if fault == "applied":
            raise OutcomeUnknown(f"{call}: connection lost after the request was sent")
        return result

    async def range(self, key: str, *, prefix: bool, timeout: float) -> RangeSnapshot:
        result: RangeSnapshot = await self._run(
            "range", self.inner.range(key, prefix=prefix, timeout=timeout)
        )
        return result

    async def put(self, op: Put, *, timeout: float) -> int:
        result: int = await self._run("put", self.inner.put(op, timeout=timeout))
        return result

    async def delete(self, key: str, *, timeout: float) -> int:
        result: int = await self._run("delete", self.inner.delete(key, timeout=timeout))
        return result

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Put | Delete], *, timeout: float
    ) -> TxnOutcome:
        result: TxnOutcome = await self._run(
            "txn", self.inner.txn(compares, success, timeout=timeout)
        )
        return result

    async def lease_grant(self, lease_id: int, ttl: float, *, timeout: float) -> float:
        result: float = await self._run(
            "lease_grant", self.inner.lease_grant(lease_id, ttl, timeout=timeout)
        )
        return result

    async def lease_keepalive(self, lease_id: int, *, timeout: float) -> float:
        result: float = await self._run(
            "lease_keepalive", self.inner.lease_keepalive(lease_id, timeout=timeout)
        )
        return result

    async def lease_revoke(self, lease_id: int, *, timeout: float) -> None:
        await self._run("lease_revoke", self.inner.lease_revoke(lease_id, timeout=timeout))

    async def wait_for_change(
        self, prefix: str, seen: RangeSnapshot | None, timeout: float, ignore: str = ""
    ) -> Watched:
        return await self.inner.wait_for_change(prefix, seen, timeout, ignore)

    async def close(self) -> None:
        await self.inner.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RaftStore]:
    s = RaftStore(tmp_path_factory.mktemp("raft-faults"))
    try:
        await s.start_all()
        yield s
    finally:
        await s.stop_all()


class Agent:
    def __init__(self, store: RaftStore, scope: str, name: str, timer: Timer = MONOTONIC) -> None:
        self.lossy = LossyTransport(RaftTransport(store.client(timeout=2.0)))
        self.dcs = KvSession(scope, name, self.lossy, ttl=TTL, retry_timeout=2.0, timer=timer)


@pytest_asyncio.fixture(loop_scope="module")
async def agents(store: RaftStore) -> AsyncIterator[tuple[Agent, Agent]]:
    scope = new_scope("faults")
    a, b = Agent(store, scope, "a"), Agent(store, scope, "b")
    try:
        yield a, b
    finally:
        for agent in (a, b):
            with contextlib.suppress(DcsError):
                await agent.dcs.close()


@pytest.mark.parametrize("fault", ["applied", "dropped"])
async def test_acquire_leader_after_a_lost_answer(agents: tuple[Agent, Agent], fault: str) -> None:
    a, b = agents
    await a.dcs.touch_member(member("a"))
    a.lossy.spoil("txn", fault)
    key = await a.dcs.acquire_leader()
    assert key is not None, "the key is ours whether the first try applied or not"
    assert (await b.dcs.get_cluster()).leader == key, "with the key's real create revision"
    b.lossy.spoil("txn", "applied")  # b's try fails (held), and its answer is lost
    assert await b.dcs.acquire_leader() is None


@pytest.mark.parametrize("fault", ["applied", "dropped"])
async def test_release_leader_after_a_lost_answer(agents: tuple[Agent, Agent], fault: str) -> None:
    a, _ = agents
    await a.dcs.touch_member(member("a"))
    key = await a.dcs.acquire_leader()
    assert key is not None
    a.lossy.spoil("txn", fault)
    assert await a.dcs.release_leader(key) is True
    assert (await a.dcs.get_cluster()).leader is None


async def test_lease_grant_after_a_lost_answer_keeps_one_lease(
    store: RaftStore, agents: tuple[Agent, Agent]
) -> None:
    a, _ = agents
    a.lossy.spoil("lease_grant", "applied")
    a.lossy.spoil("put", "applied")
    await a.dcs.touch_member(member("a"))
    assert a.lossy.calls["lease_grant"] == 2, "the grant is repeated with the same id"
    lease = a.dcs.lease_id
    assert lease is not None
    async with store.client() as client:
        info = await client.lease_ttl(lease)
    assert info.keys == (scope_keys(a.dcs.scope).member("a").encode(),)
    assert (await a.dcs.keepalive()).ok


async def test_take_initialize_after_a_lost_answer(agents: tuple[Agent, Agent]) -> None:
    a, b = agents
    a.lossy.spoil("txn", "dropped")
    assert await a.dcs.take_initialize("") is True, "not applied: tried again, and won"
    b.lossy.spoil("txn", "applied")
    assert await b.dcs.take_initialize("7300000000000000001") is False, "another value: lost"
    await a.dcs.delete_initialize()
    a.lossy.spoil("txn", "applied")
    with pytest.raises(DcsError, match="may or may not"):
        await a.dcs.take_initialize("")  # our value, but every candidate writes the same one


async def test_set_settings_after_a_lost_answer(agents: tuple[Agent, Agent]) -> None:
    a, b = agents
    view = await a.dcs.get_cluster()
    wanted = DynamicSettings(ttl=20.0)
    a.lossy.spoil("txn", "applied")
    assert await a.dcs.set_settings(wanted, view.revision) is True
    assert (await b.dcs.get_cluster()).settings == wanted
    a.lossy.spoil("txn", "dropped")
    assert await a.dcs.set_settings(DynamicSettings(ttl=21.0), view.revision) is False


async def test_switchover_after_a_lost_answer(agents: tuple[Agent, Agent]) -> None:
    a, _ = agents
    r1 = SwitchoverRequest("failover", candidate="b")
    r2 = SwitchoverRequest("switchover", leader="a")
    a.lossy.spoil("put", "applied")
    assert await a.dcs.set_switchover(r1) is True
    a.lossy.spoil("txn", "applied")
    assert await a.dcs.set_switchover(r2, expected=r1) is True
    a.lossy.spoil("txn", "applied")
    assert await a.dcs.set_switchover(None, expected=r2) is True
    assert (await a.dcs.get_cluster()).switchover is None


async def test_append_history_after_a_lost_answer(agents: tuple[Agent, Agent]) -> None:
    a, _ = agents
    entry = TimelineEntry(1, 10, "test", 1.0, "a")
    a.lossy.spoil("txn", "applied")
    await a.dcs.append_history(entry)
    assert (await a.dcs.get_cluster()).history == (entry,), "no duplicate"


async def test_a_store_that_stays_down_gives_dcs_error_at_the_budget(store: RaftStore) -> None:
    timer = VirtualTimer()  # the session's budget and pauses on virtual time
    a = Agent(store, new_scope("down"), "a", timer)
    a.lossy.spoil("range", *["down"] * 1000)
    try:
        with pytest.raises(DcsError, match=r"get_cluster: no answer .* within 2 s.*store down"):
            await a.dcs.get_cluster()
        assert timer.now() == pytest.approx(2.0), "tried again until the budget ended, not longer"
        assert a.lossy.calls["range"] > 2, "with a try after each pause"
    finally:
        await a.dcs.close()


@pytest.mark.parametrize("fault", ["applied", "dropped"])
async def test_lease_switch_after_a_lost_answer_moves_the_keys_once(
    store: RaftStore, agents: tuple[Agent, Agent], fault: str
) -> None:
    """A ttl change whose move of the keys loses its answer: the keys end on the new lease
    (with the leader key's fencing token) whether the first try applied or not, and only the
    old lease is revoked."""
    a, b = agents
    await a.dcs.touch_member(member("a"))
    key = await a.dcs.acquire_leader()
    old = a.dcs.lease_id
    assert key is not None and old is not None
    a.dcs.apply_timing(TTL + 1, 2.0)
    hooked: list[float] = []

    async def hook(grant: Any) -> None:
        hooked.append(grant.ttl)

    a.lossy.spoil("txn", fault)
    grant = await a.dcs.switch_lease(hook)
    assert grant is not None and hooked == [grant.ttl] and a.dcs.lease_id == grant.lease_id
    assert (await b.dcs.get_cluster()).leader == key
    async with store.client() as client:
        info = await client.lease_ttl(grant.lease_id)
        keys = scope_keys(a.dcs.scope)
        assert set(info.keys) == {keys.leader.encode(), keys.member("a").encode()}
        with pytest.raises(LeaseNotFoundError):
            await client.lease_ttl(old)
    assert (await a.dcs.keepalive()).ok


async def test_lease_switch_with_every_answer_lost_says_it_does_not_know(
    agents: tuple[Agent, Agent],
) -> None:
    """Every try of the move loses its answer: the switch raises DcsError (the caller keeps
    counting both leases) rather than guess, and the new lease is not revoked (the keys could
    be on it); here none applied, so the keys are still on the old lease."""
    a, b = agents
    await a.dcs.touch_member(member("a"))
    key = await a.dcs.acquire_leader()
    old = a.dcs.lease_id
    assert key is not None and old is not None
    a.dcs.apply_timing(TTL + 1, 2.0)

    async def hook(grant: Any) -> None:
        return None

    a.lossy.spoil("txn", *["dropped"] * 5)
    with pytest.raises(DcsError, match="moving the keys"):
        await a.dcs.switch_lease(hook)
    assert a.dcs.lease_id == old and "lease_revoke" not in a.lossy.calls
    assert (await b.dcs.get_cluster()).leader == key
