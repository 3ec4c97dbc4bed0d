"""The simulator with the real KV store and lease clock as every member's state machine.

`KVSimulator` runs the same cores, faults and Raft checks as `hamgr.raft.sim.cores.Simulator`, but
each member applies committed entries to a real `KVStore` and counts leases with a real `LeaseClock`
on the virtual clock, driven as `RaftNode` drives them (`hamgr.raft.server.node`): grants counted on
apply, every lease restarted at a full TTL once a new leader's first entry of its term applies,
keepalives served only after a ReadIndex round, each expiry proposed as a revoke entry, counting
stopped when leadership is lost; snapshots carry the KV. Clients put keys (some attached to
leases), grant leases, keep them alive and read keys through ReadIndex, throughout the faults.

What it checks, besides everything the base simulator checks: linearizable KV reads and lease
safety, by `KVHistory` (`hamgr.raft.sim.kvcheck`, shared with `hamgr.raft.sim.node`).

What it does not do: run `RaftNode` itself (its asyncio driver, transport and WAL); the apply and
lease steps above follow node.py and are kept short so they can be compared line by line.
`hamgr.raft.sim.node` runs the real `RaftNode` on a virtual-time event loop instead.

Command line: `python -m hamgr.raft.sim.kv --seeds N` (same options and summary line as
`python -m hamgr.raft.sim`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from hamgr.raft.core.types import Entry, EntryType, Role, Snapshot
from hamgr.raft.errors import LeaseExpiredError, LeaseNotFoundError, NotLeaderError
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv import kvresults as kvr
from hamgr.raft.kv import store as kvmod
from hamgr.raft.kv.lease import LeaseClock
from hamgr.raft.sim.cores import TICK_MS, Simulator, main
from hamgr.raft.sim.kvcheck import KVHistory
from hamgr.raft.sim.profiles import SimConfig
from hamgr.raft.sim.world import Member

KEYS = tuple(b"k%d" % n for n in range(4))
APP_HEADER = 16  # the base simulator's App encoding comes first in snapshot data
MS = 1000.0


def _seconds(ms: int) -> float:
    return ms / MS


@dataclass
class KVMember:
    """A member's state machine and lease clock, as a RaftNode holds them."""

    kv: kvmod.KVStore
    leases: LeaseClock
    reads: list[tuple[int, bytes]] = field(default_factory=list)  # (read index, ctx)


@dataclass(frozen=True)
class _Op:
    """A client request in flight: what it is and when it was sent (virtual ms)."""

    kind: str  # "put", "grant", "read", "keepalive"
    sent: int
    key: bytes = b""
    lease: int = 0
    need_revision: int = 0


class KVSimulator(Simulator):
    """The base simulator with a KV store and leases per member, and their checks."""

    def __init__(
        self, seed: int, cfg: SimConfig, trace: Callable[[str], None] | None = None
    ) -> None:
        self.kvm: dict[int, KVMember] = {}
        self._ops: dict[tuple[int, int | bytes], _Op] = {}
        self.history = KVHistory()
        self.key_acked = self.history.key_acked
        self.revoked_at = self.history.revoked_at
        self.leased_keys = self.history.leased_keys
        self._next_lease = 0
        super().__init__(seed, cfg, trace)

    # -- the node's side ------------------------------------------------------------------

    def _election_timeout_s(self) -> float:
        return _seconds(self.cfg.election_tick * TICK_MS)

    def _member_started(self, m: Member) -> None:
        store = kvmod.KVStore()
        data = m.disk.snapshot.data
        if len(data) > APP_HEADER:
            store.restore(data[APP_HEADER:])
        timeout = self._election_timeout_s()
        self.kvm[m.id] = KVMember(store, LeaseClock(retry_interval=timeout))

    def _snapshot_data(self, m: Member) -> bytes:
        return m.app.encode() + self.kvm[m.id].kv.snapshot()

    def _snapshot_applied(self, m: Member, snap: Snapshot) -> None:
        self.kvm[m.id].kv.restore(snap.data[APP_HEADER:])

    def _entry_applied(self, m: Member, e: Entry) -> None:
        st = self.kvm[m.id]
        if e.type == EntryType.CONF_CHANGE:
            st.kv.mark_applied(e.index)
            return
        result = st.kv.apply(e.index, e.data)
        now = _seconds(self.now)
        if isinstance(result, kvr.LeaseGrantResult):
            st.leases.grant(result.lease_id, result.ttl, now)
        elif isinstance(result, kvr.LeaseRevokeResult):
            st.leases.revoke(result.lease_id)
            self._revoke_applied(m, result.lease_id)
        core = m.core
        assert core is not None
        if e.term == core.term and core.role == Role.LEADER and not st.leases.is_leader:
            st.leases.become_leader(now, st.kv.leases())
        op = self._ops.pop((m.id, e.index), None)
        if op is not None and m.proposals.get(e.index) == (e.term, e.data):
            self._acknowledged(op, result)

    @property
    def kv_reads(self) -> int:
        """KV reads served and checked."""
        return self.history.reads

    def _revoke_applied(self, m: Member, lease: int) -> None:
        if self.history.revoke_applied(m.id, lease, self.now):
            self.log(f"lease {lease} revoked (applied first on {m.id})")

    def _acknowledged(self, op: _Op, result: kvr.Result) -> None:
        if op.kind == "put" and isinstance(result, kvr.PutResult):
            self.history.put_acked(op.key, result.revision, op.lease)

    def _read_index_served(self, m: Member, index: int, ctx: bytes) -> None:
        self.kvm[m.id].reads.append((index, ctx))

    def _applied_batch(self, m: Member) -> None:
        st = self.kvm[m.id]
        ready = [r for r in st.reads if r[0] <= st.kv.applied_index]
        st.reads = [r for r in st.reads if r[0] > st.kv.applied_index]
        for _, ctx in ready:
            op = self._ops.pop((m.id, ctx), None)
            if op is not None:
                self._serve(m, st, op)

    def _serve(self, m: Member, st: KVMember, op: _Op) -> None:
        if op.kind == "keepalive":
            try:
                st.leases.keepalive(op.lease, _seconds(self.now))
            except (LeaseExpiredError, LeaseNotFoundError, NotLeaderError):
                return
            self.history.keepalive_ok(op.lease, op.sent)
            return
        got = st.kv.get(op.key)
        self.history.read_served(m.id, op.key, st.kv.revision, got, op.sent, op.need_revision)

    def _observe(self, m: Member) -> None:
        super()._observe(m)
        core = m.core
        st = self.kvm.get(m.id)
        if core is not None and st is not None and core.role != Role.LEADER:
            st.leases.step_down()

    def _ticked(self, m: Member) -> None:
        st = self.kvm[m.id]
        core = m.core
        if core is None or core.role != Role.LEADER:
            return
        for lease in st.leases.expired(_seconds(self.now)):
            self.log(f"lease {lease} expired on {m.id}: proposing its revoke")
            self._propose_on(m, kvc.encode_lease_revoke(lease), None)

    # -- clients --------------------------------------------------------------------------

    def _propose_on(self, m: Member, data: bytes, op: _Op | None) -> None:
        index = self._propose(m, data)
        if index is None:
            return
        if op is not None:
            self._ops[(m.id, index)] = op
        self._drive(m)

    def _read_on(self, m: Member, op: _Op) -> None:
        core = m.core
        if core is None:
            return
        self._write_seq += 1
        ctx = b"kv%d" % self._write_seq
        try:
            core.read_index(ctx)
        except NotLeaderError:
            return
        m.reads[ctx] = self.max_acked
        self._ops[(m.id, ctx)] = op
        self._drive(m)

    def _write_via(self, m: Member) -> None:
        """A put (half of them; some attached to a live lease), a lease grant or a keepalive."""
        roll = self.rng.random()
        live = self.history.live_leases()
        self._write_seq += 1
        value = b"v%d" % self._write_seq
        if roll < 0.5 or (roll < 0.65 and not live):
            key = self.rng.choice(KEYS)
            self._propose_on(m, kvc.encode_put(key, value), _Op("put", self.now, key))
        elif roll < 0.65:
            lease = self.rng.choice(live)
            key = b"l%d" % self._write_seq
            op = _Op("put", self.now, key, lease)
            self._propose_on(m, kvc.encode_put(key, value, lease), op)
        elif roll < 0.8:
            self._next_lease += 1
            lease = self._next_lease
            ttl = self.rng.choice((0.2, 0.3, 0.5))
            self.history.lease_granted(lease, ttl, self.now)
            self._propose_on(m, kvc.encode_lease_grant(lease, ttl), _Op("grant", self.now))
        elif live:
            lease = self.rng.choice(live)
            self._read_on(m, _Op("keepalive", self.now, lease=lease))

    def _read_via(self, m: Member) -> None:
        """A KV read through ReadIndex, of a fixed key or a recent leased one."""
        keys = list(KEYS) + [k for k, _ in self.leased_keys[-8:]]
        key = self.rng.choice(keys)
        self._read_on(m, _Op("read", self.now, key, need_revision=self.key_acked.get(key, 0)))


if __name__ == "__main__":
    sys.exit(main(simulator=KVSimulator, prog="python -m hamgr.raft.sim.kv"))
