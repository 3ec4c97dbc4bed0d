"""The clients of the node simulator: concurrent requests through the real node API.

Each client loops until the faults stop: it picks a member (one that claims to lead, a stale
leader across a partition included, or now and then any member) and makes one request through
`RaftNode`'s own calls: a put, a compare-and-swap txn, a put attached to a lease, a lease grant,
a keepalive or a linearizable get. What the client is told goes into the run's `KVHistory`
(acknowledged writes, grants sent, keepalives that succeeded) and every read is checked there.
An error is an answer too: a refused or timed-out request is simply not acknowledged (a write's
outcome is then unknown, so the checks never count on it either way).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hamgr.raft.core.types import ProposalDroppedError
from hamgr.raft.errors import LeaseNotFoundError, NotLeaderError
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv import kvresults as kvr
from hamgr.raft.kv.lease import effective_ttl
from hamgr.raft.server.pending import KVCommandError, NodeFailedError
from hamgr.raft.sim.check import Violation

if TYPE_CHECKING:
    from hamgr.raft.server.node import RaftNode
    from hamgr.raft.sim.node import NodeSim

__all__ = ["probe", "run_client"]

KEYS = tuple(b"k%d" % n for n in range(4))
TTLS = (0.3, 0.8, 1.5)  # requested; raised to 1.5 election timeouts at least, as the node does

REFUSED = (
    NotLeaderError,  # also LeadershipLostError and NodeStoppedError
    ProposalDroppedError,
    TimeoutError,
    NodeFailedError,
    KVCommandError,
    LeaseNotFoundError,
)
"""What a request may end with under faults without anything being wrong."""


def _pick(sim: NodeSim) -> RaftNode | None:
    leaders = sim.leaders()
    if leaders and sim.rng.random() < 0.85:
        return sim.nodes[sim.rng.choice(leaders)]
    running = [n for n in sim.nodes.values() if n.state == "running"]
    return sim.rng.choice(running) if running else None


async def run_client(sim: NodeSim, client: int) -> None:
    """Make requests until the faults stop."""
    rng = sim.rng
    while sim.loop.time() < sim.cfg.fault_s:
        await asyncio.sleep(rng.uniform(*sim.cfg.op_every))
        node = _pick(sim)
        if node is None:
            continue
        roll = rng.random()
        try:
            if roll < 0.3:
                await _put(sim, node, lease=False)
            elif roll < 0.4:
                await _txn(sim, node)
            elif roll < 0.5:
                await _put(sim, node, lease=True)
            elif roll < 0.58:
                await _grant(sim, node)
            elif roll < 0.72:
                await _keepalive(sim, node)
            else:
                await _read(sim, node)
        except REFUSED:
            pass
        except Violation as exc:
            sim.violate(str(exc))


def _value(sim: NodeSim) -> bytes:
    sim.writes_sent += 1
    return b"v%d" % sim.writes_sent


async def _put(sim: NodeSim, node: RaftNode, *, lease: bool) -> None:
    lease_id = 0
    key = sim.rng.choice(KEYS)
    if lease:
        live = sim.history.live_leases()
        if not live:
            return
        lease_id = sim.rng.choice(live)
        key = b"l%d" % sim.writes_sent
    result = await node.put(key, _value(sim), lease_id)
    sim.history.put_acked(key, result.revision, lease_id)
    sim.acked_writes += 1


async def _txn(sim: NodeSim, node: RaftNode) -> None:
    """Compare-and-swap on the key's last acknowledged write: succeeds only if nothing (not
    even an unacknowledged write) came after it."""
    key = sim.rng.choice(KEYS)
    seen = sim.history.need_revision(key)
    result = await node.txn([kvc.compare_mod(key, "==", seen)], [kvc.Put(key, _value(sim))])
    if result.succeeded:
        put = result.responses[0]
        assert isinstance(put, kvr.PutResult)
        sim.history.put_acked(key, put.revision)
        sim.acked_writes += 1


async def _grant(sim: NodeSim, node: RaftNode) -> None:
    sim.next_lease += 1
    lease_id = sim.next_lease
    ttl = effective_ttl(sim.rng.choice(TTLS), node.election_timeout)
    sim.history.lease_granted(lease_id, ttl, sim.now_ms())
    await node.lease_grant(ttl, lease_id)


async def _keepalive(sim: NodeSim, node: RaftNode) -> None:
    live = sim.history.live_leases()
    if not live:
        return
    lease_id = sim.rng.choice(live)
    sent = sim.now_ms()
    await node.lease_keepalive(lease_id)
    sim.history.keepalive_ok(lease_id, sent)


async def _read(sim: NodeSim, node: RaftNode) -> None:
    keys = list(KEYS) + [k for k, _ in sim.history.leased_keys[-8:]]
    key = sim.rng.choice(keys)
    sent = sim.now_ms()
    need = sim.history.need_revision(key)
    result = await node.get(key)
    got = result.kvs[0] if result.kvs else None
    sim.history.read_served(node.id, key, result.revision, got, sent, need)


async def probe(sim: NodeSim) -> bool:
    """After the faults: does a write and then a read succeed on a member that leads?"""
    for i in sim.leaders():
        node = sim.nodes[i]
        try:
            await node.put(b"probe", _value(sim))
            await node.get(b"probe")
        except REFUSED:
            continue
        return True
    return False
