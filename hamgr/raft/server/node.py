"""RaftNode: drives a `RaftCore` with real time, durable storage and the peer transport.

One asyncio task (the driver) owns the core's Ready loop: send `messages_early`, persist the
batch with one fsync (`RaftStorage.save` on a single worker thread, so fsync never blocks the
event loop), send `messages`, apply committed entries to the `KVStore`, serve reads, `advance()`.
Messages, ticks and proposals that arrive while an fsync runs are stepped into the core at once
and land in the next write: that is the group commit. A leader does not wait for its own
fsync: while it runs, it sends appends and heartbeats, applies entries a quorum of the others
made durable and serves reads, and counts its own copy only once the write returned (Raft
thesis 10.2.1), so one slow disk on the leader does not hold up the whole store. A storage
error is fatal: the node logs it, enters a failed state and stops serving; it never carries on
with a log it could not save. Writes it had proposed end "outcome unknown"
(`WriteOutcomeUnknownError`): the leader sends entries before its own write, so they may commit.

Requests: writes (`put`, `delete`, `txn`, lease calls) are proposed on the leader and answered
once the entry is applied; reads (`get`) are linearizable via ReadIndex unless `serializable`.
A follower refuses both with `NotLeaderError` naming the leader and its address when known.
Leases are counted only on the leader (`LeaseClock`); expiry is a revoke entry through the log.

This module holds the node's lifecycle and its driver (inputs, the Ready loop, applying entries
and snapshots). The request calls are inherited from `NodeAPI` (`hamgr.raft.server.nodeapi`), the
bookkeeping of waiting requests and their errors is in `hamgr.raft.server.pending`, and the member
address and snapshot encodings are in `hamgr.raft.server.memberaddrs`; callers import each
name from the module that defines it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from hamgr.raft.core.config import RaftConfig
from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.membership import bootstrap_log
from hamgr.raft.core.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from hamgr.raft.errors import NotLeaderError
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv import kvresults as kvr
from hamgr.raft.kv import kvsnapshot as kvs
from hamgr.raft.kv import store as kvmod
from hamgr.raft.kv.lease import LeaseClock
from hamgr.raft.net.transport import PeerTransport, TransportLimits
from hamgr.raft.server.memberaddrs import (
    Address,
    decode_address,
    decode_snapshot,
    encode_snapshot,
)
from hamgr.raft.server.nodeapi import NodeAPI
from hamgr.raft.server.nodeports import NodeStorage, NodeTransport, StorageOpener, TransportFactory
from hamgr.raft.server.pending import (
    LeadershipLostError,
    NodeFailedError,
    NodeStoppedError,
    PendingRequests,
    WriteOutcomeUnknownError,
)
from hamgr.raft.server.ticks import TickSchedule, TickTake
from hamgr.raft.wal.storage import RaftStorage

__all__ = [
    "RaftNode",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

SNAPSHOT_STEP_KEYS = 1000
"""Keys a snapshot encodes per event-loop turn: about a millisecond of work."""


@dataclass
class _Saving:
    """The batch whose write (one fsync) runs in the background."""

    task: asyncio.Task[None]
    ready: Ready
    pipelined: bool
    """A leader's batch: already sent and applied, acknowledged to the core when durable."""


class RaftNode(NodeAPI):
    """One member of a Raft group serving the replicated KV store.

    `peers` maps node id -> address of the other members (this node's own id may be included;
    it is ignored). With an empty data dir and `join=False`, the founding voters are this node
    and `peers`, and their identical bootstrap log is persisted before the core starts. A node
    joining a running cluster starts with `join=True` and an empty log, after the leader has
    added it with `add_member`.

    `clock` (seconds, monotonic) times ticks and leases; `rng` randomizes election timeouts;
    `open_storage` opens the data dir (the WAL by default); `make_transport` builds the peer
    network from the message callback (TCP `PeerTransport` on `bind` by default). The node
    simulator (`hamgr.raft.sim.node`) passes virtual-time and in-memory ones.
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
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        open_storage: StorageOpener = RaftStorage.open,
        make_transport: TransportFactory | None = None,
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
        self._join = join
        self._raft_config = RaftConfig(
            id=node_id, election_tick=election_tick, heartbeat_tick=heartbeat_tick
        )
        self._config_peers = {i: a for i, a in (peers or {}).items() if i != node_id}
        self._addresses: dict[int, Address] = dict(self._config_peers)
        self.kv = kvmod.KVStore()
        self.leases = LeaseClock(retry_interval=max(self.election_timeout, self.tick_interval))
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._open_storage = open_storage
        self.transport: NodeTransport
        if make_transport is not None:
            self.transport = make_transport(self._on_message)
        else:
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
        self._storage: NodeStorage | None = None
        self._core: RaftCore | None = None
        self._wake = asyncio.Event()
        self._pending = PendingRequests(node_id, max_batch)
        self._soft = SoftState(NONE, Role.FOLLOWER)
        self._tasks: list[asyncio.Task[None]] = []
        self._tick_timer: asyncio.TimerHandle | None = None  # the wake for `_ticks.wake_tick`
        self._ticks = TickSchedule(0.0, self.tick_interval)  # set again at start
        self._heard_leader_at = -math.inf  # on `clock`: a follower's last message from its leader
        self._snapshotting: asyncio.Task[Snapshot] | None = None
        self._saving: _Saving | None = None  # the one batch being written, if any
        self._durable_commit = 0  # the highest commit index a finished write stored
        self._state = "new"  # new -> starting -> running -> stopped | failed
        self._start_done = asyncio.Event()  # start() returned or raised
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()
        # Called with the seconds each durable save (write + fsync) took, e.g. for metrics.
        self.on_save: Callable[[float], None] | None = None
        self.on_commit: Callable[[float], None] | None = None
        self.removed = False
        self._shut_down = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage (bootstrapping a founding member), start the transport and the driver."""
        if self._state != "new":
            raise RuntimeError(f"RaftNode {self.id} can be started once (state {self._state})")
        self._state = "starting"
        try:
            await self._start()
        finally:
            self._start_done.set()

    async def _start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"raft-storage-{self.id}")
        try:
            self._storage = await self._io(self._open_storage, self.data_dir)
            hs, snap, entries = await self._io(self._storage.initial_state)
            if hs == HardState() and snap is None and not entries and not self._join:
                voters = sorted({self.id, *self._config_peers})
                hs, boot = bootstrap_log(voters)
                entries = list(boot)
                await self._io(self._storage.save, hs, entries, None)
                log.info("node %d: bootstrapped a new cluster with voters %s", self.id, voters)
            if snap is not None and snap.data:
                self._restore_snapshot(snap, install_peers=False)
            self._durable_commit = hs.commit
            self._core = RaftCore(
                self._raft_config,
                self._rng,
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
        self._tasks = [loop.create_task(self._drive(), name=f"raft-driver-{self.id}")]
        self._ticks = TickSchedule(self._clock(), self.tick_interval)
        self._tick_timer = loop.call_later(self.tick_interval, self._on_tick)
        self._wake.set()

    async def stop(self) -> None:
        """Stop ticking and driving, fail pending requests, close transport and storage.

        Called while ``start()`` runs, it waits for that to end first: tearing down beside a
        start in progress would leave the tasks and the transport it goes on to open."""
        if self._state == "new":
            self._state = "stopped"
        if self._state == "starting":
            await self._start_done.wait()
        if self._shut_down:
            return
        if self._state == "running":
            self._state = "stopped"
        await self._shutdown(NodeStoppedError())

    async def _shutdown(self, error: BaseException, proposed: BaseException | None = None) -> None:
        """Stop every task and end every pending request with `error` (writes already
        proposed with `proposed`, when given: their entries may still commit elsewhere)."""
        self._shut_down = True
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        current = asyncio.current_task()
        tasks: list[asyncio.Task[Any]] = [t for t in self._tasks if t is not current]
        if self._snapshotting is not None:
            tasks.append(self._snapshotting)
        if self._saving is not None:
            tasks.append(self._saving.task)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.fail_all(error, proposed=proposed)
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

    async def wait_failed(self) -> None:
        """Return once the node has failed (``state`` 'failed', the cause in ``failure``): for
        a watcher that must act on a failure at once without polling ``state``. Never returns
        for a node that runs on or stops cleanly; cancel it then."""
        await self._failed.wait()

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- inputs from the network and the clock --------------------------------------------

    def _on_message(self, msg: Message) -> None:
        core = self._core
        if self._state != "running" or core is None:
            return
        now: float | None = None
        if self._ticks.deferring and self._tick_timer is not None:
            now = self._clock()
            self._take_ticks(core, self._ticks.on_message(now), now, "a message")
        core.step(msg)
        if msg.frm == core.lead and core.role == Role.FOLLOWER:
            self._heard_leader_at = self._clock() if now is None else now
        if self._tick_timer is not None:
            self._arm_tick(core)
        self._wake.set()

    def _on_tick(self) -> None:
        """The election timer's wake: the ticks due (`TickSchedule.on_timer`), then the next
        wake armed.

        A timer callback rather than a task that sleeps (one event-loop turn per wake, no
        future, no task step), and a follower of a live leader is not woken for each tick it
        only counts: `hamgr.raft.server.ticks` says which ticks an event applies and which a
        late loop skips (issue 15: most of an idle member's wakes). An error in a tick stops
        the ticking, logged (a member that ticks on a core in a state it cannot handle would
        only repeat it).
        """
        self._tick_timer = None
        core = self._core
        if self._shut_down or self._state != "running" or core is None:
            return
        now = self._clock()
        if self._take_ticks(core, self._ticks.on_timer(now), now, "the election timer"):
            self._arm_tick(core)

    def _take_ticks(self, core: RaftCore, granted: TickTake, now: float, by: str) -> bool:
        """Apply the ticks `granted` at `now`; False when a tick failed (the timer then stays
        stopped)."""
        if granted.skipped:
            log.warning(
                "node %d: event loop late (seen by %s), skipped %d ticks",
                self.id,
                by,
                granted.skipped,
            )
        try:
            for _ in range(granted.apply):
                self._tick(core, now)
        except Exception:
            log.critical("node %d: a tick failed; the election timer stops", self.id, exc_info=True)
            if self._tick_timer is not None:
                self._tick_timer.cancel()
                self._tick_timer = None
            return False
        return True

    def _arm_tick(self, core: RaftCore) -> None:
        """(Re)set the timer for the last tick the core can take without acting on it."""
        moved = self._ticks.rearm(core.idle_ticks())
        if self._tick_timer is not None:
            if not moved:
                return
            self._tick_timer.cancel()
        delay = max(0.0, self._ticks.time_of(self._ticks.wake_tick) - self._clock())
        self._tick_timer = asyncio.get_running_loop().call_later(delay, self._on_tick)

    def _tick(self, core: RaftCore, now: float) -> None:
        core.tick()
        for lease_id in self.leases.expired(now):
            log.info("node %d: lease %d expired, proposing its revoke", self.id, lease_id)
            self._enqueue(kvc.encode_lease_revoke(lease_id), None)
        # Most ticks of a follower only count toward its election timeout: wake the driver
        # only when the tick gave it something to do (a proposal wakes it by itself).
        if core.has_ready():
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
                while await self._drive_step(core):
                    self._flush_proposals()
                if self._tick_timer is not None:
                    self._arm_tick(core)  # a request or an applied entry may change the role
                if self._saving is None:
                    await self._snapshot_step(core)
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
            self._failed.set()
            error = NodeFailedError(f"raft node {self.id} failed: {exc}")
            error.__cause__ = exc
            unknown = WriteOutcomeUnknownError(
                f"raft node {self.id} failed while the write was proposed (its entry may "
                f"still commit: outcome unknown): {exc}"
            )
            unknown.__cause__ = exc
            await self._shutdown(error, proposed=unknown)

    async def _drive_step(self, core: RaftCore) -> bool:
        """Handle one batch; False when there is nothing to do until the next wake-up.

        At most one write (one fsync) runs at a time, in the background; what the core
        gathers meanwhile goes into the next write (the group commit). While it runs, a
        leader keeps sending appends and heartbeats, applying what a quorum of the others
        made durable and answering reads (`ready(persist=False)`): its own slow disk delays
        only its own acknowledgement (Raft thesis 10.2.1; `RaftCore.persisted`). Any other
        member waits: its votes and acknowledgements promise what the write saves.
        """
        saving = self._saving
        if saving is not None:
            if not saving.task.done():
                light = saving.pipelined and core.role == Role.LEADER
                if light and core.has_ready(persist=False):
                    self._handle_light(core, core.ready(persist=False))
                    return True
                return False
            self._saving = None
            saving.task.result()  # a storage error is fatal: raise it into the driver
            self._after_save(core, saving)
            await self._snapshot_step(core)  # no write runs now: storage may compact
            return True
        if not core.has_ready():
            return False
        rd = core.ready()
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        for m in rd.messages_early:
            self.transport.send(m)
        if rd.snapshot is None and not rd.entries and rd.hard_state is None:
            for m in rd.messages:
                self.transport.send(m)
            self._finish(core, rd, durable=True)
            return True
        pipelined = core.role == Role.LEADER and rd.snapshot is None
        task = asyncio.get_running_loop().create_task(self._save(rd), name=f"raft-save-{self.id}")
        task.add_done_callback(lambda _: self._wake.set())
        self._saving = _Saving(task, rd, pipelined)
        if pipelined:
            self._finish(core, rd, durable=False)
        return True

    async def _save(self, rd: Ready) -> None:
        assert self._storage is not None
        started = time.perf_counter()
        await self._io(self._storage.save, rd.hard_state, rd.entries, rd.snapshot)
        if self.on_save is not None:
            self.on_save(time.perf_counter() - started)

    def _after_save(self, core: RaftCore, saving: _Saving) -> None:
        """A batch's write is durable: send what promised it, then finish or acknowledge it."""
        rd = saving.ready
        if rd.hard_state is not None:
            self._durable_commit = max(self._durable_commit, rd.hard_state.commit)
        for m in rd.messages:
            self.transport.send(m)
        if not saving.pipelined:
            self._finish(core, rd, durable=True)
            return
        if rd.entries:
            last = rd.entries[-1]
            core.persisted(last.index, last.term)

    def _handle_light(self, core: RaftCore, rd: Ready) -> None:
        """A batch that touches no storage (see `RaftCore.ready(persist=False)`)."""
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        for m in rd.messages_early:
            self.transport.send(m)
        self._finish(core, rd, durable=True)

    def _finish(self, core: RaftCore, rd: Ready, *, durable: bool) -> None:
        """Apply committed entries, serve reads, advance."""
        if rd.snapshot is not None:
            self._restore_snapshot(rd.snapshot, install_peers=True)
        self._apply(core, rd.committed_entries)
        self._pending.serve_reads(rd.read_states, self.kv.applied_index)
        core.advance(durable=durable)

    async def _snapshot_step(self, core: RaftCore) -> None:
        """Start a snapshot once `snapshot_entries` were applied since the last; once it is
        encoded and its file durable (in the background, `_take_snapshot`), adopt it and
        compact the log."""
        task = self._snapshotting
        if task is not None:
            if not task.done():
                return
            staged = task.result()
            if staged.meta.index > min(core.log.stable, self._durable_commit):
                # A leader applies what the others made durable before its own write returns:
                # the snapshot may be ahead of this member's log on disk. Adopt it after a
                # later write (storage compacts only up to its own last index and commit).
                return
            self._snapshotting = None
            snap = core.compact(staged.meta, staged.data)
            if snap is not None:
                assert self._storage is not None
                await self._io(self._storage.compact, snap)
                log.info("node %d: snapshot at index %d", self.id, snap.meta.index)
            return
        lg = core.log
        if lg.applied - lg.snapshot.meta.index >= self.snapshot_entries:
            meta, encoder = core.snapshot_meta(), self.kv.snapshot_encoder()
            if encoder.applied_index != meta.index:
                raise RuntimeError(
                    f"KV applied index {encoder.applied_index} differs from the log's {meta.index}"
                )
            task = asyncio.get_running_loop().create_task(
                self._take_snapshot(meta, encoder, dict(self._addresses)),
                name=f"raft-snapshot-{self.id}",
            )
            task.add_done_callback(lambda _: self._wake.set())
            self._snapshotting = task

    async def _take_snapshot(
        self, meta: SnapshotMeta, encoder: kvs.SnapshotEncoder, addresses: dict[int, Address]
    ) -> Snapshot:
        """Encode a frozen view of the KV a slice per loop turn, so requests keep flowing, then
        write the snapshot file in a thread of its own, so log saves keep flowing too."""
        while not encoder.step(SNAPSHOT_STEP_KEYS):
            await asyncio.sleep(0)
        storage = self._storage
        assert storage is not None

        def stage() -> Snapshot:
            snap = Snapshot(meta, encode_snapshot(encoder.result(), addresses))
            storage.stage_snapshot(snap)
            return snap

        return await asyncio.to_thread(stage)

    def _on_soft_state(self, soft: SoftState) -> None:
        was_leader = self._soft.role == Role.LEADER
        self._soft = soft
        if soft.role == Role.LEADER:
            log.info("node %d: leader (term %d)", self.id, self._core.term if self._core else 0)
        elif was_leader:
            log.info("node %d: lost leadership, leader now %d", self.id, soft.leader)
            self.leases.step_down()
            self._pending.fail_all(
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
        self._pending.superseded(snap.meta.index)

    def _apply(self, core: RaftCore, entries: list[Entry]) -> None:
        first_commit_in_term = False
        for e in entries:
            result: Any = None
            if e.type == EntryType.CONF_CHANGE:
                self.kv.mark_applied(e.index)
                self._apply_conf_change(e)
            else:
                result = self.kv.apply(e.index, e.data)
                if isinstance(result, kvr.LeaseGrantResult):
                    self.leases.grant(result.lease_id, result.ttl, self._clock())
                elif isinstance(result, kvr.LeaseRevokeResult):
                    self.leases.revoke(result.lease_id)
            if e.term == core.term:
                first_commit_in_term = True
            self._pending.applied(e, result)
        if (
            first_commit_in_term
            and core.role == Role.LEADER
            and self._soft.role == Role.LEADER
            and not self.leases.is_leader
        ):
            self.leases.become_leader(self._clock(), self.kv.leases())
        self._pending.release_reads(self.kv.applied_index)

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
                # Not at once: what is queued for it (the commit that tells it of its removal,
                # sent in the same step when this leader applies without waiting for its own
                # write) still goes out.
                loop = asyncio.get_running_loop()
                loop.call_later(self.election_timeout, self._forget_peer, node)

    def _forget_peer(self, node: int) -> None:
        """Drop a removed member's connection (unless it is a member again)."""
        core = self._core
        if self._state != "running" or core is None:
            return
        if node in core.conf.voters or node in core.conf.learners:
            return
        self.transport.remove_peer(node)

    def _flush_proposals(self) -> None:
        assert self._core is not None
        self._pending.flush(self._core, self._not_leader)

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
            "peers_connected": sorted(self.transport.connected_peers()),
            "messages_dropped": self._dropped(),
        }

    def _dropped(self) -> dict[str, int]:
        """Raft messages given to the transport that never left, by reason (counters)."""
        st = self.transport.stats
        return {
            "queue_full": st.dropped_queue_full,
            "unknown_peer": st.dropped_unknown_peer,
            "oversize": st.dropped_oversize,
            "unreachable": st.dropped_unreachable,
        }

    @property
    def is_leader(self) -> bool:
        """True while the core is leader."""
        return self._core is not None and self._core.role == Role.LEADER

    def current_copy(self, revision: int, term: int) -> bool:
        """Whether this member's store can vouch for a read made at ``revision`` in ``term``
        (what a cache of that read needs before it trusts a quiet watch on this member): it
        runs, it is still in ``term`` and in touch with its leader (see
        ``RaftCore.leader_in_touch``; a follower also heard from its leader within the
        election timeout on the clock, since its ticks may wait for a later wake or have been
        skipped by a late loop: `hamgr.raft.server.ticks`), it applied every entry it knows
        committed, and it has reached ``revision``. A lagging or cut-off member answers False."""
        core = self._core
        return (
            core is not None
            and self._state == "running"
            and core.term == term
            and core.leader_in_touch()
            and (
                core.role == Role.LEADER
                or self._clock() - self._heard_leader_at < self.election_timeout
            )
            and core.log.applied >= core.log.committed
            and self.kv.revision >= revision
        )

    def term(self) -> int | None:
        """The current term (None before start)."""
        return self._core.term if self._core is not None else None

    def reachable_voters(self) -> tuple[int, int]:
        """(voters this member reaches, itself included; all voters), (0, 0) before start.

        Fewer than a majority reachable means no request can succeed now. Reach counts the
        outbound peer connections that are up: a peer that stopped drops out at once, one cut
        off by the network only once its connection breaks.
        """
        core = self._core
        if core is None:
            return 0, 0
        voters = set(core.conf.voters)
        reach = len(voters & self.transport.connected_peers()) + (self.id in voters)
        return reach, len(voters)

    async def hand_off_leadership(self, timeout: float) -> int | None:
        """Before a graceful stop: a leader moves leadership to its most caught-up connected
        voter, so the others carry on without an election (a store without a leader for an
        election timeout or more). etcd does the same. The new leader's id, or None when this
        member is not leader, reaches no other voter, or the move did not finish in `timeout`.
        """
        core = self._core
        if self._state != "running" or core is None or core.role != Role.LEADER:
            return None
        peers = sorted((set(core.conf.voters) & self.transport.connected_peers()) - {self.id})
        if not peers:
            return None
        target = max(peers, key=lambda p: core.prs[p].match)
        try:
            await self.transfer_leadership(target, timeout)
        except (NotLeaderError, NodeStoppedError, TimeoutError):
            return None
        return target

    def address_of(self, node_id: int) -> Address | None:
        """The address this node knows for a member."""
        return self._addresses.get(node_id)
