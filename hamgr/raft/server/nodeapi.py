"""The request API of a RaftNode: the calls its users make, and how each reaches the log.

Writes (`put`, `delete`, `txn`, lease calls) are proposed on the leader and answered once the
entry is applied; reads (`get`) are linearizable via ReadIndex unless `serializable`; membership
calls propose a conf change. A follower refuses them with `NotLeaderError` naming the leader and
its address when known.

`NodeAPI` is the base class of `RaftNode` (`hamgr.raft.server.node`), which owns the state declared
below and drives the core; this module only turns calls into pending requests
(`hamgr.raft.server.pending`) and awaits their answers. Kept apart so that the node's lifecycle and
Ready loop can be read on their own; `RaftNode` exposes every call unchanged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.types import NONE, ConfChange, ConfChangeType, Role
from hamgr.raft.errors import NotLeaderError
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv import kvresults as kvr
from hamgr.raft.kv import kvwatch as kvw
from hamgr.raft.kv import store as kvmod
from hamgr.raft.kv.lease import LeaseClock, effective_ttl
from hamgr.raft.server.memberaddrs import Address, encode_address
from hamgr.raft.server.pending import NodeFailedError, NodeStoppedError, PendingRequests

__all__ = ["NodeAPI", "WatchStream"]

T = TypeVar("T")


class WatchStream:
    """A KV `Watcher` wired to an asyncio.Event that is set whenever events are queued."""

    def __init__(self, store: kvmod.KVStore, key: bytes, prefix: bool, from_revision: int) -> None:
        self.changed = asyncio.Event()
        self.watcher = store.watch(
            key, prefix=prefix, from_revision=from_revision, notify=lambda _w: self.changed.set()
        )
        if from_revision:
            self.changed.set()  # replayed history may already be waiting

    async def next(self, timeout: float | None = None) -> list[kvw.Event]:
        """Wait for events and take them (may be empty if woken without any)."""
        await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()
        return self.watcher.pending()

    def cancel(self) -> None:
        """Stop watching."""
        self.watcher.cancel()


class NodeAPI:
    """The public calls of `RaftNode`, over the node state that `RaftNode.__init__` sets up."""

    id: int
    kv: kvmod.KVStore
    leases: LeaseClock
    request_timeout: float
    election_timeout: float
    tick_interval: float
    failure: BaseException | None
    _state: str
    _core: RaftCore | None
    _addresses: dict[int, Address]
    _pending: PendingRequests
    _wake: asyncio.Event
    _clock: Callable[[], float]
    on_commit: Callable[[float], None] | None
    """Called with the seconds each write proposed here took from proposal to applied."""

    # -- proposals ------------------------------------------------------------------------

    def _not_leader(self, why: str = "") -> NotLeaderError:
        lead = self._core.lead if self._core is not None else NONE
        return NotLeaderError(lead, self._addresses.get(lead), why)

    def _check_serving(self) -> RaftCore:
        if self._state == "failed":
            raise NodeFailedError(f"raft node {self.id} failed: {self.failure}")
        if self._state != "running" or self._core is None:
            raise NodeStoppedError(f"node {self.id} is {self._state}")
        return self._core

    def _check_leader(self) -> RaftCore:
        core = self._check_serving()
        if core.role != Role.LEADER:
            raise self._not_leader()
        return core

    def _enqueue(self, data: bytes, fut: asyncio.Future[Any] | None) -> None:
        self._pending.enqueue(data, fut)
        self._wake.set()

    async def _wait(self, fut: asyncio.Future[T], what: str) -> T:
        return await self._pending.wait(fut, what, self.request_timeout)

    async def _propose(self, data: bytes, what: str) -> Any:
        self._check_leader()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        self._enqueue(data, fut)
        result = await self._wait(fut, what)
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started)
        return result

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> kvr.PutResult:
        """Write `key` (attached to `lease` if non-zero); returns once applied on this leader."""
        result: kvr.PutResult = await self._propose(kvc.encode_put(key, value, lease), "put")
        return result

    async def delete(self, key: bytes, prefix: bool = False) -> kvr.DeleteResult:
        """Delete `key` (or every key under it with `prefix`)."""
        data = kvc.encode_delete(key, prefix)
        result: kvr.DeleteResult = await self._propose(data, "delete")
        return result

    async def txn(
        self,
        compares: Sequence[kvc.Compare],
        success: Sequence[kvc.Op],
        failure: Sequence[kvc.Op] = (),
    ) -> kvr.TxnResult:
        """Compare-and-swap: run `success` if every compare holds, else `failure`."""
        data = kvc.encode_txn(compares, success, failure)
        result: kvr.TxnResult = await self._propose(data, "txn")
        return result

    async def lease_grant(self, ttl: float, lease_id: int = 0) -> kvr.LeaseGrantResult:
        """Grant a lease of at least `ttl` seconds (raised to 1.5 election timeouts at least)."""
        ttl = effective_ttl(ttl, self.election_timeout)
        lease_id = lease_id or random.getrandbits(62) + 1
        data = kvc.encode_lease_grant(lease_id, ttl)
        result: kvr.LeaseGrantResult = await self._propose(data, "lease grant")
        return result

    async def lease_revoke(self, lease_id: int) -> kvr.LeaseRevokeResult:
        """Revoke a lease and delete every key attached to it."""
        data = kvc.encode_lease_revoke(lease_id)
        result: kvr.LeaseRevokeResult = await self._propose(data, "lease revoke")
        return result

    async def lease_keepalive(self, lease_id: int) -> float:
        """Extend a lease to its full TTL from now, once a ReadIndex round confirmed that this
        node is still leader; returns the TTL. Raises LeaseNotFoundError (or its subclass
        LeaseExpiredError) when the lease cannot be kept alive."""
        await self._read_barrier("lease keepalive")
        try:
            return self.leases.keepalive(lease_id, self._clock())
        except NotLeaderError:
            raise self._not_leader("leases not counted here yet") from None

    def lease_time_to_live(self, lease_id: int) -> float:
        """Seconds left on the leader's clock (leader only)."""
        self._check_leader()
        try:
            return self.leases.time_to_live(lease_id, self._clock())
        except NotLeaderError:
            raise self._not_leader("leases not counted here yet") from None

    # -- reads ----------------------------------------------------------------------------

    async def _read_barrier(self, what: str) -> None:
        core = self._check_leader()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ctx = self._pending.add_read(fut)
        try:
            core.read_index(ctx)
        except NotLeaderError:
            self._pending.forget_read(ctx)
            raise self._not_leader() from None
        self._wake.set()
        try:
            await self._wait(fut, what)
        finally:
            self._pending.forget_read(ctx)

    async def get(
        self, key: bytes, prefix: bool = False, serializable: bool = False
    ) -> kvr.RangeResult:
        """Read `key` (or every key under it with `prefix`).

        Linearizable by default (ReadIndex on the leader, then wait until applied); with
        `serializable` the local state is read at once, on any member, possibly stale.
        """
        if serializable:
            self._check_serving()
        else:
            await self._read_barrier("get")
        return self.kv.range(key, prefix=prefix)

    def watch(self, key: bytes, prefix: bool = False, from_revision: int = 0) -> WatchStream:
        """Watch local changes of `key` (or under it); see `KVStore.watch`."""
        self._check_serving()
        return WatchStream(self.kv, key, prefix, from_revision)

    # -- membership -----------------------------------------------------------------------

    async def _conf_change(self, change: ConfChange, what: str) -> None:
        core = self._check_leader()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            index = core.propose_conf_change(change)
        except NotLeaderError:
            raise self._not_leader() from None
        self._pending.await_entry(index, core.term, fut)
        self._wake.set()
        await self._wait(fut, what)

    async def add_member(self, node_id: int, address: Address) -> None:
        """Add `node_id` at `address` as a learner (the leader promotes it once caught up)."""
        change = ConfChange(ConfChangeType.ADD_NODE, node_id, encode_address(address))
        await self._conf_change(change, f"add member {node_id}")

    async def remove_member(self, node_id: int) -> None:
        """Remove a voter or learner."""
        await self._conf_change(ConfChange(ConfChangeType.REMOVE_NODE, node_id), "remove member")

    async def transfer_leadership(self, to: int, timeout: float | None = None) -> None:
        """Hand leadership to voter `to` and wait until this node sees it lead."""
        core = self._check_leader()
        try:
            core.transfer_leadership(to)
        except NotLeaderError:
            raise self._not_leader() from None
        self._wake.set()
        deadline = self._clock() + (timeout or 2 * self.election_timeout + 1.0)
        while core.lead != to:
            if self._clock() > deadline:
                raise TimeoutError(f"leadership did not move from {self.id} to {to}")
            await asyncio.sleep(self.tick_interval)
