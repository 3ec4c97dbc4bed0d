"""RaftNode: drives a `RaftCore` with real time, durable storage and the peer transport.

One asyncio task (the driver) owns the core's Ready loop: send `messages_early`, persist the
batch with one fsync (`RaftStorage.save` on a single worker thread, so fsync never blocks the
event loop), send `messages`, apply committed entries to the `KVStore`, serve reads, `advance()`.
Messages, ticks and proposals that arrive while an fsync runs are stepped into the core at once
and land in the next Ready: that is the group commit. A storage error is fatal: the node logs it,
enters a failed state and stops serving; it never carries on with a log it could not save.

Requests: writes (`put`, `delete`, `txn`, lease calls) are proposed on the leader and answered
once the entry is applied; reads (`get`) are linearizable via ReadIndex unless `serializable`.
A follower refuses both with `NotLeaderError` naming the leader and its address when known.
Leases are counted only on the leader (`LeaseClock`); expiry is a revoke entry through the log.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from hamgr.raft import kv as kvmod
from hamgr.raft.config import RaftConfig
from hamgr.raft.core import RaftCore
from hamgr.raft.lease import LeaseClock, NotLeaseLeaderError, effective_ttl
from hamgr.raft.membership import bootstrap_log
from hamgr.raft.storage import RaftStorage
from hamgr.raft.transport import PeerTransport, TransportLimits
from hamgr.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    ProposalDroppedError,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SoftState,
)
from hamgr.raft.types import NotLeaderError as CoreNotLeaderError

__all__ = [
    "KVCommandError",
    "LeadershipLostError",
    "NodeFailedError",
    "NodeStoppedError",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftNode",
    "WatchStream",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]
T = TypeVar("T")

SNAPSHOT_FORMAT = 1
"""First element of the node's snapshot data: [format, kv snapshot, [[id, host, port], ...]]."""


class NotLeaderError(CoreNotLeaderError):
    """Only the leader serves this request; `leader` (0 if unknown) and its `address` if known."""

    def __init__(self, leader: int, address: Address | None = None, why: str = "") -> None:
        super().__init__(leader)
        self.address = address
        parts = [str(self.args[0])]
        if address is not None:
            parts.append(f"at {address[0]}:{address[1]}")
        if why:
            parts.append(f"({why})")
        self.args = (" ".join(parts),)


class LeadershipLostError(NotLeaderError):
    """This node stopped being leader while the request was pending. A write's outcome is
    unknown: its entry may still commit under the new leader."""


class NodeStoppedError(NotLeaderError):
    """The node was stopped while the request was pending (or before it was made)."""

    def __init__(self, why: str = "node stopped") -> None:
        super().__init__(NONE, None, why)


class NodeFailedError(RuntimeError):
    """The node hit a fatal error (e.g. its storage failed) and serves nothing any more."""


class KVCommandError(Exception):
    """The command was applied but failed in the KV store (and changed nothing)."""

    def __init__(self, result: kvmod.ErrorResult) -> None:
        super().__init__(f"{result.code}: {result.message}")
        self.result = result


def encode_address(address: Address) -> bytes:
    """The ConfChange context of an ADD_NODE: the new member's address."""
    return msgpack.packb([address[0], int(address[1])], use_bin_type=True)


def decode_address(data: bytes) -> Address:
    """Inverse of `encode_address`; raises ValueError on anything else."""
    try:
        host, port = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise ValueError(f"malformed member address in conf change: {data!r:.60}") from exc
    if not isinstance(host, str) or type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"malformed member address in conf change: {host!r}:{port!r}")
    return host, port


def encode_snapshot(kv_data: bytes, addresses: dict[int, Address]) -> bytes:
    """The node's snapshot data: the KV snapshot plus every member address it knows."""
    addrs = [[i, h, p] for i, (h, p) in sorted(addresses.items())]
    return msgpack.packb([SNAPSHOT_FORMAT, kv_data, addrs], use_bin_type=True)


def decode_snapshot(data: bytes) -> tuple[bytes, dict[int, Address]]:
    """Inverse of `encode_snapshot`; raises ValueError naming what is wrong."""
    try:
        version, kv_data, addrs = msgpack.unpackb(data, raw=False)
        addresses = {int(i): (str(h), int(p)) for i, h, p in addrs}
    except Exception as exc:
        raise ValueError(f"malformed node snapshot ({len(data)} bytes): {exc}") from exc
    if version != SNAPSHOT_FORMAT or not isinstance(kv_data, bytes):
        raise ValueError(f"unsupported node snapshot format {version!r}")
    return kv_data, addresses


@dataclass
class _Proposal:
    data: bytes
    kind: EntryType
    future: asyncio.Future[Any] | None
    change: ConfChange | None = None


@dataclass(order=True)
class _ReadWait:
    index: int
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class WatchStream:
    """A KV `Watcher` wired to an asyncio.Event that is set whenever events are queued."""

    def __init__(self, store: kvmod.KVStore, key: bytes, prefix: bool, from_revision: int) -> None:
        self.changed = asyncio.Event()
        self.watcher = store.watch(
            key, prefix=prefix, from_revision=from_revision, notify=lambda _w: self.changed.set()
        )
        if from_revision:
            self.changed.set()  # replayed history may already be waiting

    async def next(self, timeout: float | None = None) -> list[kvmod.Event]:
        """Wait for events and take them (may be empty if woken without any)."""
        await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()
        return self.watcher.pending()

    def cancel(self) -> None:
        """Stop watching."""
        self.watcher.cancel()


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class RaftNode:
    """One member of a Raft group serving the replicated KV store.

    `peers` maps node id -> address of the other members (this node's own id may be included;
    it is ignored). With an empty data dir and `join=False`, the founding voters are this node
    and `peers`, and their identical bootstrap log is persisted before the core starts. A node
    joining a running cluster starts with `join=True` and an empty log, after the leader has
    added it with `add_member`.
    """

    def __init__(
        self,
        node_id: int,
        data_dir: str | os.PathLike[str],
        cluster_id: str,
        secret: bytes,
        bind: Address,
        advertise: Address | None = None,
        peers: dict[int, Address] | None = None,
        *,
        tick_interval: float = 0.1,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        snapshot_entries: int = 10000,
        request_timeout: float = 5.0,
        max_batch: int = 256,
        join: bool = False,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        transport_limits: TransportLimits | None = None,
    ) -> None:
        if type(node_id) is not int or node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {node_id!r}")
        if not tick_interval > 0:
            raise ValueError(f"tick_interval must be > 0 seconds, got {tick_interval!r}")
        if type(snapshot_entries) is not int or snapshot_entries < 1:
            raise ValueError(f"snapshot_entries must be an int >= 1, got {snapshot_entries!r}")
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0 seconds, got {request_timeout!r}")
        self.id = node_id
        self.data_dir = os.fspath(data_dir)
        self.tick_interval = float(tick_interval)
        self.snapshot_entries = snapshot_entries
        self.request_timeout = float(request_timeout)
        self.election_timeout = election_tick * self.tick_interval
        self._max_batch = max_batch
        self._join = join
        self._raft_config = RaftConfig(
            id=node_id, election_tick=election_tick, heartbeat_tick=heartbeat_tick
        )
        self._config_peers = {i: a for i, a in (peers or {}).items() if i != node_id}
        self._addresses: dict[int, Address] = dict(self._config_peers)
        self.kv = kvmod.KVStore()
        self.leases = LeaseClock(retry_interval=max(self.election_timeout, self.tick_interval))
        self.transport = PeerTransport(
            node_id,
            cluster_id,
            secret,
            bind,
            self._config_peers,
            self._on_message,
            advertise=advertise,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
            limits=transport_limits,
        )
        self._executor: ThreadPoolExecutor | None = None
        self._storage: RaftStorage | None = None
        self._core: RaftCore | None = None
        self._wake = asyncio.Event()
        self._queue: list[_Proposal] = []
        self._waiters: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        self._reads: dict[bytes, asyncio.Future[None]] = {}
        self._read_waits: list[_ReadWait] = []
        self._read_seq = itertools.count(1)
        self._soft = SoftState(NONE, Role.FOLLOWER)
        self._tasks: list[asyncio.Task[None]] = []
        self._state = "new"  # new -> running -> stopped | failed
        self.failure: BaseException | None = None
        self.removed = False
        self._shut_down = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage (bootstrapping a founding member), start the transport and the driver."""
        if self._state != "new":
            raise RuntimeError(f"RaftNode {self.id} can be started once (state {self._state})")
        self._state = "starting"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"raft-storage-{self.id}")
        try:
            self._storage = await self._io(RaftStorage.open, self.data_dir)
            hs, snap, entries = await self._io(self._storage.initial_state)
            if hs == HardState() and snap is None and not entries and not self._join:
                voters = sorted({self.id, *self._config_peers})
                hs, boot = bootstrap_log(voters)
                entries = list(boot)
                await self._io(self._storage.save, hs, entries, None)
                log.info("node %d: bootstrapped a new cluster with voters %s", self.id, voters)
            if snap is not None and snap.data:
                self._restore_snapshot(snap, install_peers=False)
            self._core = RaftCore(
                self._raft_config,
                random.Random(),
                hard_state=hs,
                snapshot=snap,
                entries=entries,
            )
            await self.transport.start()
        except BaseException:
            self._state = "stopped"
            await self._close_storage()
            raise
        self._addresses[self.id] = self.transport.advertised_address
        self._state = "running"
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._drive(), name=f"raft-driver-{self.id}"),
            loop.create_task(self._tick_loop(), name=f"raft-ticker-{self.id}"),
        ]
        self._wake.set()

    async def stop(self) -> None:
        """Stop ticking and driving, fail pending requests, close transport and storage."""
        if self._state == "new":
            self._state = "stopped"
        if self._shut_down:
            return
        if self._state == "running":
            self._state = "stopped"
        await self._shutdown(NodeStoppedError())

    async def _shutdown(self, error: BaseException) -> None:
        self._shut_down = True
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_all(error)
        self.leases.step_down()
        await self.transport.stop()
        await self._close_storage()

    async def _close_storage(self) -> None:
        if self._storage is not None and self._executor is not None:
            # FIFO executor: the close runs after any save still in flight.
            await self._io(self._storage.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    @property
    def state(self) -> str:
        """'new', 'running', 'stopped' or 'failed'."""
        return self._state

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- inputs from the network and the clock --------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if self._state != "running" or self._core is None:
            return
        self._core.step(msg)
        self._wake.set()

    async def _tick_loop(self) -> None:
        interval = self.tick_interval
        next_at = time.monotonic() + interval
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            behind = int((now - next_at) // interval)
            if behind > 0:
                log.warning("node %d: event loop late, skipped %d ticks", self.id, behind)
                next_at += behind * interval
            next_at += interval
            assert self._core is not None
            self._core.tick()
            for lease_id in self.leases.expired(now):
                log.info("node %d: lease %d expired, proposing its revoke", self.id, lease_id)
                self._enqueue(kvmod.encode_lease_revoke(lease_id), None)
            self._wake.set()

    # -- the driver -----------------------------------------------------------------------

    async def _drive(self) -> None:
        core = self._core
        assert core is not None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._flush_proposals()
                while core.has_ready():
                    await self._handle_ready(core, core.ready())
                    self._flush_proposals()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.critical(
                "node %d: fatal error in the Raft driver, node stops: %s",
                self.id,
                exc,
                exc_info=exc,
            )
            self.failure = exc
            self._state = "failed"
            error = NodeFailedError(f"raft node {self.id} failed: {exc}")
            error.__cause__ = exc
            await self._shutdown(error)

    async def _handle_ready(self, core: RaftCore, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        for m in rd.messages_early:
            self.transport.send(m)
        if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
            assert self._storage is not None
            await self._io(self._storage.save, rd.hard_state, rd.entries, rd.snapshot)
        for m in rd.messages:
            self.transport.send(m)
        if rd.snapshot is not None:
            self._restore_snapshot(rd.snapshot, install_peers=True)
        self._apply(core, rd.committed_entries)
        self._serve_reads(rd.read_states)
        core.advance()
        lg = core.log
        if lg.applied - lg.snapshot.meta.index >= self.snapshot_entries:
            snap = core.compact(lg.applied, encode_snapshot(self.kv.snapshot(), self._addresses))
            assert self._storage is not None
            await self._io(self._storage.compact, snap)
            log.info("node %d: snapshot at index %d", self.id, snap.meta.index)

    def _on_soft_state(self, soft: SoftState) -> None:
        was_leader = self._soft.role == Role.LEADER
        self._soft = soft
        if soft.role == Role.LEADER:
            log.info("node %d: leader (term %d)", self.id, self._core.term if self._core else 0)
        elif was_leader:
            log.info("node %d: lost leadership, leader now %d", self.id, soft.leader)
            self.leases.step_down()
            self._fail_all(
                LeadershipLostError(
                    soft.leader, self._addresses.get(soft.leader), "leadership lost"
                )
            )

    def _restore_snapshot(self, snap: Snapshot, *, install_peers: bool) -> None:
        kv_data, addresses = decode_snapshot(snap.data)
        self.kv.restore(kv_data)
        addresses.update(self._config_peers)
        addresses.pop(self.id, None)
        members = set(snap.meta.conf.voters) | set(snap.meta.conf.learners)
        for node, addr in addresses.items():
            self._addresses[node] = addr
            if node in members:
                self.transport.set_peer(node, addr)
        if install_peers:
            for node in list(self._addresses):
                if node != self.id and node not in members:
                    self.transport.remove_peer(node)
        for index in [i for i in self._waiters if i <= snap.meta.index]:
            _, fut = self._waiters.pop(index)
            if not fut.done():
                fut.set_exception(ProposalDroppedError("outcome unknown: superseded by a snapshot"))

    def _apply(self, core: RaftCore, entries: list[Entry]) -> None:
        first_commit_in_term = False
        for e in entries:
            result: Any = None
            if e.type == EntryType.CONF_CHANGE:
                self.kv.mark_applied(e.index)
                self._apply_conf_change(e)
            else:
                result = self.kv.apply(e.index, e.data)
                if isinstance(result, kvmod.LeaseGrantResult):
                    self.leases.grant(result.lease_id, result.ttl, time.monotonic())
                elif isinstance(result, kvmod.LeaseRevokeResult):
                    self.leases.revoke(result.lease_id)
            if e.term == core.term:
                first_commit_in_term = True
            waiter = self._waiters.pop(e.index, None)
            if waiter is not None and not waiter[1].done():
                term, fut = waiter
                if term != e.term:
                    fut.set_exception(
                        ProposalDroppedError(
                            f"proposal at index {e.index} (term {term}) was replaced by an "
                            f"entry of term {e.term}: it was not applied"
                        )
                    )
                elif isinstance(result, kvmod.ErrorResult):
                    fut.set_exception(KVCommandError(result))
                else:
                    fut.set_result(result)
        if (
            first_commit_in_term
            and core.role == Role.LEADER
            and self._soft.role == Role.LEADER
            and not self.leases.is_leader
        ):
            self.leases.become_leader(time.monotonic(), self.kv.leases())
        self._release_reads()

    def _apply_conf_change(self, e: Entry) -> None:
        try:
            change = ConfChange.decode(e.data)
        except ValueError as exc:
            log.error("node %d: malformed conf change at %d ignored: %s", self.id, e.index, exc)
            return
        node = change.node_id
        if change.type == ConfChangeType.ADD_NODE and change.context:
            try:
                address = decode_address(change.context)
            except ValueError as exc:
                log.error("node %d: conf change at %d: %s", self.id, e.index, exc)
                return
            if node != self.id:
                self._addresses[node] = address
                self.transport.set_peer(node, address)
        elif change.type == ConfChangeType.REMOVE_NODE:
            if node == self.id:
                log.warning("node %d: removed from the cluster at index %d", self.id, e.index)
                self.removed = True
            else:
                self._addresses.pop(node, None)
                self.transport.remove_peer(node)

    def _serve_reads(self, states: list[ReadState]) -> None:
        for rs in states:
            fut = self._reads.pop(rs.ctx, None)
            if fut is None or fut.done():
                continue
            heapq.heappush(self._read_waits, _ReadWait(rs.index, next(self._read_seq), fut))
        self._release_reads()

    def _release_reads(self) -> None:
        applied = self.kv.applied_index
        while self._read_waits and self._read_waits[0].index <= applied:
            fut = heapq.heappop(self._read_waits).future
            if not fut.done():
                fut.set_result(None)

    def _fail_all(self, error: BaseException) -> None:
        futures = [f for _, f in self._waiters.values()]
        futures += list(self._reads.values())
        futures += [w.future for w in self._read_waits]
        futures += [p.future for p in self._queue if p.future is not None]
        self._waiters.clear()
        self._reads.clear()
        self._read_waits.clear()
        self._queue.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)

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
        self._queue.append(_Proposal(data, EntryType.NORMAL, fut))
        self._wake.set()

    def _flush_proposals(self) -> None:
        core = self._core
        assert core is not None
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                last = core.propose_batch([p.data for p in batch])
            except CoreNotLeaderError:
                self._fail_batch(batch, self._not_leader())
                continue
            except ProposalDroppedError as exc:
                self._fail_batch(batch, exc)
                continue
            first = last - len(batch) + 1
            for offset, p in enumerate(batch):
                if p.future is not None and not p.future.done():
                    self._waiters[first + offset] = (core.term, p.future)

    @staticmethod
    def _fail_batch(batch: list[_Proposal], error: BaseException) -> None:
        for p in batch:
            if p.future is not None and not p.future.done():
                p.future.set_exception(error)

    async def _wait(self, fut: asyncio.Future[T], what: str) -> T:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.request_timeout)
        except TimeoutError:
            fut.add_done_callback(_retrieve)
            raise TimeoutError(
                f"{what} on node {self.id} not answered within {self.request_timeout}s "
                "(a write's outcome is unknown)"
            ) from None

    async def _propose(self, data: bytes, what: str) -> Any:
        self._check_leader()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(data, fut)
        return await self._wait(fut, what)

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> kvmod.PutResult:
        """Write `key` (attached to `lease` if non-zero); returns once applied on this leader."""
        result: kvmod.PutResult = await self._propose(kvmod.encode_put(key, value, lease), "put")
        return result

    async def delete(self, key: bytes, prefix: bool = False) -> kvmod.DeleteResult:
        """Delete `key` (or every key under it with `prefix`)."""
        data = kvmod.encode_delete(key, prefix)
        result: kvmod.DeleteResult = await self._propose(data, "delete")
        return result

    async def txn(
        self,
        compares: Sequence[kvmod.Compare],
        success: Sequence[kvmod.Op],
        failure: Sequence[kvmod.Op] = (),
    ) -> kvmod.TxnResult:
        """Compare-and-swap: run `success` if every compare holds, else `failure`."""
        data = kvmod.encode_txn(compares, success, failure)
        result: kvmod.TxnResult = await self._propose(data, "txn")
        return result

    async def lease_grant(self, ttl: float, lease_id: int = 0) -> kvmod.LeaseGrantResult:
        """Grant a lease of at least `ttl` seconds (raised to 1.5 election timeouts at least)."""
        ttl = effective_ttl(ttl, self.election_timeout)
        lease_id = lease_id or random.getrandbits(62) + 1
        data = kvmod.encode_lease_grant(lease_id, ttl)
        result: kvmod.LeaseGrantResult = await self._propose(data, "lease grant")
        return result

    async def lease_revoke(self, lease_id: int) -> kvmod.LeaseRevokeResult:
        """Revoke a lease and delete every key attached to it."""
        data = kvmod.encode_lease_revoke(lease_id)
        result: kvmod.LeaseRevokeResult = await self._propose(data, "lease revoke")
        return result

    async def lease_keepalive(self, lease_id: int) -> float:
        """Extend a lease to its full TTL from now, once a ReadIndex round confirmed that this
        node is still leader; returns the TTL. Raises LeaseNotFoundError (or its subclass
        LeaseExpiredError) when the lease cannot be kept alive."""
        await self._read_barrier("lease keepalive")
        try:
            return self.leases.keepalive(lease_id, time.monotonic())
        except NotLeaseLeaderError:
            raise self._not_leader("leases not counted here yet") from None

    def lease_time_to_live(self, lease_id: int) -> float:
        """Seconds left on the leader's clock (leader only)."""
        self._check_leader()
        try:
            return self.leases.time_to_live(lease_id, time.monotonic())
        except NotLeaseLeaderError:
            raise self._not_leader("leases not counted here yet") from None

    # -- reads ----------------------------------------------------------------------------

    async def _read_barrier(self, what: str) -> None:
        core = self._check_leader()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ctx = b"%d:%d" % (self.id, next(self._read_seq))
        self._reads[ctx] = fut
        try:
            core.read_index(ctx)
        except CoreNotLeaderError:
            self._reads.pop(ctx, None)
            raise self._not_leader() from None
        self._wake.set()
        try:
            await self._wait(fut, what)
        finally:
            self._reads.pop(ctx, None)

    async def get(
        self, key: bytes, prefix: bool = False, serializable: bool = False
    ) -> kvmod.RangeResult:
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
        except CoreNotLeaderError:
            raise self._not_leader() from None
        self._waiters[index] = (core.term, fut)
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
        except CoreNotLeaderError:
            raise self._not_leader() from None
        self._wake.set()
        deadline = time.monotonic() + (timeout or 2 * self.election_timeout + 1.0)
        while core.lead != to:
            if time.monotonic() > deadline:
                raise TimeoutError(f"leadership did not move from {self.id} to {to}")
            await asyncio.sleep(self.tick_interval)

    # -- introspection --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A snapshot of this member's state, for tests, metrics and the API."""
        core = self._core
        if core is None:
            return {"id": self.id, "state": self._state}
        return {
            "id": self.id,
            "state": self._state,
            "term": core.term,
            "leader": core.lead,
            "role": core.role.name.lower(),
            "commit": core.log.committed,
            "applied": core.log.applied,
            "last_index": core.log.last_index(),
            "snapshot_index": core.log.snapshot.meta.index,
            "revision": self.kv.revision,
            "voters": list(core.conf.voters),
            "learners": list(core.conf.learners),
        }

    @property
    def is_leader(self) -> bool:
        """True while the core is leader."""
        return self._core is not None and self._core.role == Role.LEADER

    def address_of(self, node_id: int) -> Address | None:
        """The address this node knows for a member."""
        return self._addresses.get(node_id)
