"""The node simulator: real `RaftNode`s (driver, pending requests, ReadIndex, KV, leases) under
faults, on a virtual-time asyncio loop, replayable from one seed.

Each member is the production `RaftNode` class, given injected parts
(`hamgr.raft.server.nodeports`): the loop's virtual clock, a seeded random source, an in-memory WAL
(`hamgr.raft.sim.disk`: a save is durable when its simulated fsync ends; a crash loses the save
in flight or tears it) and an in-memory network (`hamgr.raft.sim.net`: drops, duplicates, delay
and jitter, one-way cuts and partitions). The loop (`hamgr.raft.sim.loop`) is asyncio's own, with
a clock that jumps to the next timer and executor calls run on the loop after their simulated
duration.

Faults (until `fault_s`): crashes of any member or the leader (kill: pending requests fail,
unsynced writes are lost, restart later from the disk), cold restarts of all, partitions (a
leader alone, or a random split), one-way link cuts, slow disks (fsync stalls), and leadership
transfers. Clients (`hamgr.raft.sim.nodeclients`) put, txn, read, grant leases and keep them
alive, concurrently, through the node API, against whichever member claims to lead (a stale
leader included) or any member.

Checked while running: linearizable KV reads and lease safety (`KVHistory`, shared with
`hamgr.raft.sim.kv`); every member applies the same command and reaches the same revision at each
index; no vote or append acknowledgement leaves a member before its disk holds it; no member
fails. After the faults stop, liveness: within `liveness_s` a write and a read succeed.

Command line: `python -m hamgr.raft.sim.node --seeds N` prints, for each failing seed, what went
wrong and the command that replays it, then `seeds=N violations=V liveness_failures=L`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from hamgr.raft.core.types import HardState, Message, MsgType, Snapshot
from hamgr.raft.kv import kvresults as kvr
from hamgr.raft.kv import store as kvmod
from hamgr.raft.server.node import RaftNode
from hamgr.raft.sim.check import SafetyChecker, Violation
from hamgr.raft.sim.disk import SimStorage
from hamgr.raft.sim.kvcheck import MS, KVHistory
from hamgr.raft.sim.loop import VirtualLoop
from hamgr.raft.sim.net import NetFaults, SimNetwork
from hamgr.raft.sim.nodecli import cli
from hamgr.raft.sim.nodeclients import probe, run_client
from hamgr.raft.sim.nodefaults import FAULTS, HUNT_FAULTS, inject_fault
from hamgr.raft.sim.world import Disk

__all__ = ["NodeSim", "NodeSimConfig", "hunt_profile", "profile"]


@dataclass(frozen=True)
class NodeSimConfig:
    """Knobs of one run (seconds of virtual time); `profile()` varies them per seed."""

    nodes: int = 3
    fault_s: float = 8.0
    liveness_s: float = 10.0
    tick: float = 0.02
    election_tick: int = 10
    heartbeat_tick: int = 2
    net: NetFaults = field(default_factory=NetFaults)
    fsync: tuple[float, float] = (0.0005, 0.004)
    slow_fsync: tuple[float, float] = (0.05, 0.5)
    torn: float = 0.5
    fault_every: tuple[float, float] = (0.2, 1.0)
    clients: int = 8
    op_every: tuple[float, float] = (0.005, 0.04)
    snapshot_entries: int = 50
    request_timeout: float = 0.5
    rule_checks: bool = True
    faults: tuple[tuple[str, float], ...] = FAULTS
    """Fault kinds and their weights (`hamgr.raft.sim.nodefaults`)."""


def profile(seed: int, base: NodeSimConfig | None = None) -> NodeSimConfig:
    """A per-seed mix of cluster size, network faults, disk speed and snapshot frequency."""
    r = random.Random(seed ^ 0x5EED)
    cfg = base or NodeSimConfig()
    net = replace(
        cfg.net,
        drop=r.choice((0.0, 0.02, 0.1)),
        duplicate=r.choice((0.0, 0.02, 0.05)),
    )
    return replace(
        cfg,
        nodes=r.choice((3, 3, 5)),
        net=net,
        fsync=r.choice(((0.0, 0.0), (0.0005, 0.004), (0.001, 0.02))),
        snapshot_entries=r.choice((20, 50, 10_000)),
    )


def hunt_profile(seed: int) -> NodeSimConfig:
    """The bug-hunting profile: three members, faults twice as often, and a mix aimed at two
    members believing they lead and at leadership moving back and forth."""
    return replace(profile(seed), nodes=3, fault_every=(0.1, 0.5), faults=HUNT_FAULTS, fault_s=10.0)


class HostClock:
    """A member host's monotonic clock: the loop's time, except that it can stall (a paused VM,
    whose CLOCK_MONOTONIC stops) and then runs on from where it stopped, behind for good."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop
        self._behind = 0.0
        self._stalled_at: float | None = None

    def __call__(self) -> float:
        if self._stalled_at is not None:
            return self._stalled_at - self._behind
        return self._loop.time() - self._behind

    def stall(self) -> None:
        """Stop the clock: the node's lease clock stands still and its ticker, which expects
        each sleep to move the clock on, ticks ever more slowly."""
        if self._stalled_at is None:
            self._stalled_at = self._loop.time()

    def resume(self) -> None:
        """Run again, from the value it stopped at."""
        if self._stalled_at is not None:
            self._behind += self._loop.time() - self._stalled_at
            self._stalled_at = None


class ObservedKV(kvmod.KVStore):
    """The real KV store, reporting each applied command to the simulation's checks."""

    def __init__(self, sim: NodeSim, member: int) -> None:
        super().__init__()
        self._sim = sim
        self._member = member

    def apply(self, index: int, data: bytes) -> kvr.Result:
        """Apply as the KV store does, then check it against the other members."""
        result = super().apply(index, data)
        self._sim.applied(self._member, index, data, result)
        return result


class NodeSim:
    """One seeded run of real `RaftNode`s; `run()` gives None or what went wrong."""

    node_class: type[RaftNode] = RaftNode
    """The member class (a test subclass plants a bug to show the checks catch it)."""

    def __init__(
        self, seed: int, cfg: NodeSimConfig, trace: Callable[[str], None] | None = None
    ) -> None:
        self.seed = seed
        self.cfg = cfg
        self.rng = random.Random(seed)
        self._trace = trace
        self.loop = VirtualLoop(io_delay=self._io_delay)
        self.loop.set_exception_handler(self._loop_error)
        self.loop_errors = 0
        self.net = SimNetwork(self.loop, self.rng, cfg.net, on_send=self._on_send)
        self.history = KVHistory()
        self.ids = list(range(1, cfg.nodes + 1))
        self.disks = {i: Disk(HardState(), Snapshot()) for i in self.ids}
        self.slow_disk: dict[int, float] = {}  # member -> until when its fsyncs stall
        self.clocks = {i: HostClock(self.loop) for i in self.ids}
        self.nodes: dict[int, RaftNode] = {}
        self.storages: dict[int, SimStorage] = {}
        self.restarting: set[int] = set()
        self.starting: dict[int, asyncio.Future[None]] = {}
        self._rules = SafetyChecker()
        self._applied: dict[int, tuple[bytes, int]] = {}  # index -> (command, revision after)
        self.violation: str | None = None
        self.done = asyncio.Event()
        self.acked_writes = 0
        self.writes_sent = 0
        self.next_lease = 0
        self.crashes = 0
        self.live_at: float | None = None

    # -- running --------------------------------------------------------------------------

    def now_ms(self) -> float:
        """Virtual time in milliseconds."""
        return self.loop.time() * MS

    def log(self, text: str) -> None:
        """Trace one event (with --trace)."""
        if self._trace is not None:
            self._trace(f"{self.now_ms():9.1f} {text}")

    def violate(self, what: str) -> None:
        """Record the first violation and end the run."""
        if self.violation is None:
            self.violation = what
            self.log(f"VIOLATION {what}")
        self.done.set()

    def run(self) -> str | None:
        """Run the seed; None when every check passed."""
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()
        self.log(f"end: {self.summary()}")
        if self.violation is not None:
            return f"violation: {self.violation}"
        if self.live_at is None:
            return f"liveness: no write and read succeeded within {self.cfg.liveness_s} s"
        return None

    async def _main(self) -> None:
        for i in self.ids:
            await self._start(i)
        tasks = [asyncio.ensure_future(self._nemesis())]
        tasks += [asyncio.ensure_future(run_client(self, c)) for c in range(self.cfg.clients)]
        try:
            await self.done.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for node in list(self.nodes.values()):
                await node.stop()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    # -- members --------------------------------------------------------------------------

    def _io_delay(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> float:
        storage = getattr(fn, "__self__", None)
        if not isinstance(storage, SimStorage):
            return self.rng.uniform(*self.cfg.fsync)
        if getattr(fn, "__name__", "") == "save":
            storage.submitted(*args)
        member = next((i for i, s in self.storages.items() if s is storage), 0)
        if self.slow_disk.get(member, 0.0) > self.loop.time():
            return self.rng.uniform(*self.cfg.slow_fsync)
        return self.rng.uniform(*self.cfg.fsync)

    def make_node(self, i: int, storage: SimStorage) -> RaftNode:
        """A real RaftNode wired to the simulated clock, disk and network."""
        cfg = self.cfg
        node = self.node_class(
            i,
            f"sim/{i}",
            "sim",
            b"s" * 32,
            ("sim", i),
            peers={j: ("sim", j) for j in self.ids},
            tick_interval=cfg.tick,
            election_tick=cfg.election_tick,
            heartbeat_tick=cfg.heartbeat_tick,
            snapshot_entries=cfg.snapshot_entries,
            request_timeout=cfg.request_timeout,
            clock=self.clocks[i],
            rng=random.Random(self.rng.getrandbits(64)),
            open_storage=lambda _path: storage,
            make_transport=lambda on_message: self.net.endpoint(i, on_message),
        )
        node.kv = ObservedKV(self, i)
        return node

    async def _start(self, i: int) -> None:
        storage = SimStorage(self.disks[i])
        self.storages[i] = storage
        node = self.make_node(i, storage)
        self.nodes[i] = node
        self._rules.restarted(i)
        await node.start()
        self.log(f"started {i} (term {node.status()['term']})")

    async def crash(self, i: int, restart_in: float) -> None:
        """Kill member `i` (as kill -9 would) and restart it `restart_in` seconds later."""
        node = self.nodes.get(i)
        if node is None or i in self.restarting:
            return
        what = self.storages[i].crash(self.rng, self.cfg.torn)
        self.net.crash(i)
        self.crashes += 1
        self.log(f"crash {i}: {what}")
        self.restarting.add(i)
        starting = self.starting.pop(i, None)
        if starting is not None and not starting.done():
            starting.cancel()  # killed while starting: its start() goes no further
            await asyncio.wait([starting])
        await node.stop()
        self.loop.call_later(restart_in, self._restart_soon, i)

    def _restart_soon(self, i: int) -> None:
        if i in self.restarting and not self.done.is_set():
            self.loop.create_task(self.restart(i))

    async def restart(self, i: int) -> None:
        """Start member `i` again from its disk, if it is down."""
        if i not in self.restarting:
            return
        self.restarting.discard(i)
        task = self.starting[i] = asyncio.ensure_future(self._start(i))
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            self.violate(f"restart of {i} failed: {task.exception()!r}")

    def leaders(self) -> list[int]:
        """Members that believe they lead now (more than one across a partition)."""
        return [i for i, n in self.nodes.items() if n.state == "running" and n.is_leader]

    # -- checks ---------------------------------------------------------------------------

    def _on_send(self, msg: Message) -> None:
        if not self.cfg.rule_checks or msg.type not in (MsgType.APP_RESP, MsgType.VOTE_RESP):
            return
        try:
            self._rules.rule_ack_durable(msg.frm, msg, self.disks[msg.frm])
        except Violation as exc:
            self.violate(str(exc))

    def applied(self, member: int, index: int, data: bytes, result: kvr.Result) -> None:
        """Member `member`'s KV applied `data` at `index` (called from inside its driver)."""
        if isinstance(result, kvr.ErrorResult) and result.code == "already_applied":
            return
        revision = result.revision
        known = self._applied.setdefault(index, (data, revision))
        if known != (data, revision):
            self.violate(
                f"state machine safety: {member} applied a different command or reached "
                f"revision {revision} at index {index} (others: revision {known[1]})"
            )
        if isinstance(result, kvr.LeaseRevokeResult):
            try:
                if self.history.revoke_applied(member, result.lease_id, self.now_ms()):
                    self.log(f"lease {result.lease_id} revoked (first on {member})")
            except Violation as exc:
                self.violate(str(exc))

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # E.g. a request future failed by a crash after its client was cancelled at the end.
        self.loop_errors += 1
        self.log(f"loop: {context.get('message')} {context.get('exception')!r}")

    def _check_failed(self) -> None:
        for i, node in self.nodes.items():
            if node.state == "failed":
                self.violate(f"node {i} failed: {node.failure!r}")

    # -- the nemesis and the end ----------------------------------------------------------

    async def _nemesis(self) -> None:
        cfg = self.cfg
        while self.loop.time() < cfg.fault_s:
            await asyncio.sleep(self.rng.uniform(*cfg.fault_every))
            self._check_failed()
            await inject_fault(self)
        self.net.faults_on = False
        self.net.heal()
        self.slow_disk.clear()
        for clock in self.clocks.values():
            clock.resume()
        self.log("faults stop: network healed, every member restarting")
        for i in sorted(self.restarting):
            await self.restart(i)
        await self._liveness()
        self._check_failed()
        self.done.set()

    async def _liveness(self) -> None:
        deadline = self.loop.time() + self.cfg.liveness_s
        while self.loop.time() < deadline and self.violation is None:
            if await probe(self):
                self.live_at = self.loop.time()
                self.log("live: a write and a read succeeded")
                return
            await asyncio.sleep(0.05)

    def summary(self) -> str:
        """What the run exercised (also a fingerprint: a seed replays to the same figures)."""
        h = self.history
        return (
            f"acked_writes={self.acked_writes} reads={h.reads} leases={len(h.lease_ttl)} "
            f"revoked={len(h.revoked_at)} crashes={self.crashes} delivered={self.net.delivered}"
        )


def main(argv: list[str] | None = None, *, sim_class: type[NodeSim] = NodeSim) -> int:
    """Command line entry point."""
    return cli(argv, sim_class, profile, hunt_profile)


if __name__ == "__main__":
    raise SystemExit(main())
