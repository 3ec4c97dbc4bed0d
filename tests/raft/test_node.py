"""RaftNode end to end: three real nodes in one event loop, real sockets on 127.0.0.21-24,
real data directories; election, linearizable and serializable reads, follower refusal, leader
failover, cold restart, lease expiry and catch-up by snapshot."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from hamgr.raft.errors import NotLeaderError
from hamgr.raft.server.node import RaftNode
from hamgr.raft.server.pending import NodeFailedError
from tests.tools.poll import wait_for_async
from tests.tools.steppedclock import SteppedClock

CLUSTER = "test-node"
SECRET = b"s" * 32
TICK = 0.03
ELECTION_TICK = 10
IDS = (1, 2, 3)
T = TypeVar("T")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def retry(op: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Run `op` until it stops raising NotLeaderError/TimeoutError (a leader may be settling)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await op()
        except (NotLeaderError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


class Cluster:
    """Three RaftNodes with fixed addresses and data dirs, restartable."""

    def __init__(self, root: Path, snapshot_entries: int = 10000) -> None:
        self.root = root
        self.snapshot_entries = snapshot_entries
        self.addrs = {i: (f"127.0.0.{20 + i}", _free_port(f"127.0.0.{20 + i}")) for i in IDS}
        self.nodes: dict[int, RaftNode] = {}
        self.clock = SteppedClock()

    def make(self, i: int) -> RaftNode:
        return RaftNode(
            i,
            self.root / f"n{i}",
            CLUSTER,
            SECRET,
            self.addrs[i],
            None,
            {j: a for j, a in self.addrs.items() if j != i},
            tick_interval=TICK,
            election_tick=ELECTION_TICK,
            snapshot_entries=self.snapshot_entries,
            request_timeout=2.0,
            clock=self.clock.for_node(i),
        )

    async def start(self, i: int) -> RaftNode:
        node = self.make(i)
        self.nodes[i] = node
        await node.start()
        return node

    async def start_all(self) -> None:
        for i in IDS:
            await self.start(i)

    async def stop(self, i: int) -> None:
        node = self.nodes.pop(i, None)
        if node is not None:
            await node.stop()

    async def stop_all(self) -> None:
        for i in list(self.nodes):
            await self.stop(i)

    def running(self) -> list[RaftNode]:
        return list(self.nodes.values())

    async def leader(self, timeout: float = 10.0) -> RaftNode:
        """Wait for exactly one running leader that all running nodes agree on."""

        def agreed() -> bool:
            leaders = [n for n in self.running() if n.is_leader]
            if len(leaders) != 1:
                return False
            lead = leaders[0].id
            return all(n.status()["leader"] == lead for n in self.running())

        await wait_for_async(agreed, timeout, "one agreed leader")
        return next(n for n in self.running() if n.is_leader)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop_all()


async def test_election_put_get_and_follower_refusal(cluster: Cluster) -> None:
    await cluster.start_all()
    leader = await cluster.leader()
    st = leader.status()
    assert st["role"] == "leader" and st["id"] == leader.id and st["term"] >= 2

    res = await retry(lambda: leader.put(b"k", b"v1"))
    rev = res.revision
    got = await leader.get(b"k")
    assert [(kv.key, kv.value) for kv in got.kvs] == [(b"k", b"v1")]
    assert got.revision == rev

    follower = next(n for n in cluster.running() if not n.is_leader)
    await wait_for_async(lambda: follower.status()["applied"] >= leader.status()["applied"])
    local = await follower.get(b"k", serializable=True)
    assert [kv.value for kv in local.kvs] == [b"v1"]

    with pytest.raises(NotLeaderError) as info:
        await follower.put(b"k", b"nope")
    assert info.value.leader == leader.id
    assert info.value.address == cluster.addrs[leader.id]
    assert str(leader.id) in str(info.value)
    with pytest.raises(NotLeaderError):
        await follower.get(b"k")
    # The refused write changed nothing.
    assert [kv.value for kv in (await leader.get(b"k")).kvs] == [b"v1"]

    # Many concurrent writes: all acknowledged, all visible, in one increasing revision each.
    results = await asyncio.gather(*(leader.put(b"c%03d" % n, b"x") for n in range(50)))
    revs = sorted(r.revision for r in results)
    assert revs == list(range(rev + 1, rev + 51))
    assert (await leader.get(b"c", prefix=True)).count == 50


async def test_failover_keeps_acknowledged_writes(cluster: Cluster) -> None:
    await cluster.start_all()
    leader = await cluster.leader()
    acked = []
    for n in range(20):
        await retry(partial(leader.put, b"a%02d" % n, b"%d" % n))
        acked.append(n)
    old = leader.id
    await cluster.stop(old)
    new = await cluster.leader(timeout=10.0)
    assert new.id != old
    got = await retry(lambda: new.get(b"a", prefix=True))
    assert [kv.key for kv in got.kvs] == [b"a%02d" % n for n in acked]
    await retry(lambda: new.put(b"after", b"failover"))
    # The old leader comes back as a follower and catches up.
    back = await cluster.start(old)
    await wait_for_async(lambda: back.kv.get(b"after") is not None, what="old leader to catch up")


async def test_a_stopping_leader_hands_leadership_over_and_reach_counts_peers(
    cluster: Cluster,
) -> None:
    """`hand_off_leadership` (run before a graceful stop) moves leadership without an
    election contest; `reachable_voters` drops as peers stop."""
    await cluster.start_all()
    leader = await cluster.leader()
    await retry(lambda: leader.put(b"k", b"v"))
    follower = next(n for n in cluster.running() if not n.is_leader)
    assert await follower.hand_off_leadership(timeout=2.0) is None
    await wait_for_async(lambda: leader.reachable_voters() == (3, 3), what="links to both peers")
    term = leader.status()["term"]

    new_id = await leader.hand_off_leadership(timeout=5.0)

    assert new_id is not None and new_id != leader.id
    heir = cluster.nodes[new_id]
    assert heir.is_leader and heir.status()["term"] == term + 1
    await cluster.stop(leader.id)
    await retry(lambda: heir.put(b"k2", b"v2"))
    await wait_for_async(lambda: heir.reachable_voters() == (2, 3), what="the stopped peer to drop")
    await cluster.stop(next(i for i in cluster.nodes if i != new_id))
    await wait_for_async(lambda: heir.reachable_voters() == (1, 3), what="the second peer to drop")
    assert await heir.hand_off_leadership(timeout=1.0) is None  # nobody left to take it


async def test_cold_restart_same_data_and_revision(cluster: Cluster) -> None:
    await cluster.start_all()
    leader = await cluster.leader()
    for n in range(10):
        await retry(partial(leader.put, b"r%d" % n, b"v%d" % n))
    await retry(lambda: leader.delete(b"r0"))
    expect = [(kv.key, kv.value) for kv in (await leader.get(b"r", prefix=True)).kvs]
    revision = leader.kv.revision
    await cluster.stop_all()

    await cluster.start_all()
    leader = await cluster.leader()
    got = await retry(lambda: leader.get(b"r", prefix=True))
    assert [(kv.key, kv.value) for kv in got.kvs] == expect
    assert leader.kv.revision == revision
    for node in cluster.running():
        await wait_for_async(partial(lambda nd: nd.kv.revision == revision, node), what="replay")
        assert [(kv.key, kv.value) for kv in node.kv.range(b"r", prefix=True).kvs] == expect


LEASE_TTL = 30.0
SPARE = 5.0
"""Seconds of real time a step of a lease test may take without changing its outcome: the test
moves the nodes' clock to SPARE before a deadline, and past it."""


async def test_lease_expires_after_ttl_not_before(cluster: Cluster) -> None:
    """On the nodes' clock, moved by the test (no wall time measured): a lease with no
    keepalive keeps its key through a tick SPARE seconds before its TTL has run, and is revoked,
    on every member, once the clock has passed it. (`tests/raft/test_simnode.py` checks the same
    rule at every step of seeded runs on virtual time.)"""
    await cluster.start_all()
    leader = await cluster.leader()
    ttl = LEASE_TTL
    grant = await retry(lambda: leader.lease_grant(ttl))
    lease_id = grant.lease_id
    assert grant.ttl == ttl
    await leader.put(b"leased", b"x", lease=lease_id)
    await leader.put(b"plain", b"y")

    cluster.clock.advance(ttl - SPARE)
    await cluster.clock.ticked(leader.id)
    assert (await leader.get(b"leased")).count == 1, "expired before its TTL"
    assert leader.kv.lease(lease_id) is not None

    cluster.clock.advance(SPARE)
    await wait_for_async(lambda: leader.kv.get(b"leased") is None, what="lease expiry")
    assert leader.kv.lease(lease_id) is None
    assert (await leader.get(b"plain")).count == 1
    for node in cluster.running():
        await wait_for_async(
            partial(lambda nd: nd.kv.get(b"leased") is None, node), what="revoke replicated"
        )


async def test_keepalive_extends_lease(cluster: Cluster) -> None:
    """Four keepalives, each after 3/4 of the TTL on the nodes' clock, keep the key for three
    TTLs; without the next one it goes."""
    await cluster.start_all()
    leader = await cluster.leader()
    ttl = LEASE_TTL
    grant = await retry(lambda: leader.lease_grant(ttl))
    lease_id = grant.lease_id
    await leader.put(b"kept", b"x", lease=lease_id)
    for _ in range(4):
        cluster.clock.advance(0.75 * ttl)
        await cluster.clock.ticked(leader.id)
        assert leader.kv.get(b"kept") is not None, "expired although kept alive"
        assert await leader.lease_keepalive(lease_id) == ttl
    cluster.clock.advance(ttl)
    await wait_for_async(lambda: leader.kv.get(b"kept") is None, what="expiry after keepalives")


async def test_snapshot_and_catch_up_by_snapshot(tmp_path: Path) -> None:
    c = Cluster(tmp_path, snapshot_entries=20)
    try:
        await c.start_all()
        leader = await c.leader()
        lagging = next(n.id for n in c.running() if not n.is_leader)
        await c.stop(lagging)
        for n in range(60):
            await retry(partial(leader.put, b"s%02d" % n, b"%d" % n))
        await wait_for_async(
            lambda: all(n.status()["snapshot_index"] >= 40 for n in c.running()),
            what="snapshots taken",
        )
        snap_files = list((tmp_path / f"n{leader.id}").glob("snap-*.snap"))
        assert snap_files
        revision = leader.kv.revision
        lagging_last = 7  # bootstrap, no-op and a few writes at most: far below the snapshots
        # Restart the others from their snapshots, so no append queued for the lagging member
        # before the compaction is still waiting in a send queue: it can only catch up by
        # InstallSnapshot.
        for n in c.running():
            await c.stop(n.id)
        for i in IDS:
            if i != lagging:
                await c.start(i)
        leader = await c.leader()
        assert leader.status()["snapshot_index"] > lagging_last

        back = await c.start(lagging)
        assert back.status()["last_index"] <= lagging_last
        await wait_for_async(lambda: back.kv.revision == revision, what="catch-up by snapshot")
        # Its own log could not reach a snapshot's worth of entries: this one was installed.
        assert back.status()["snapshot_index"] > lagging_last
        assert back.kv.range(b"s", prefix=True).count == 60
        await retry(lambda: leader.put(b"after", b"snap"))
        await wait_for_async(lambda: back.kv.get(b"after") is not None, what="replication after")

        # A restart from a data dir with a snapshot recovers the same state.
        await c.stop(lagging)
        again = await c.start(lagging)
        await wait_for_async(
            lambda: again.kv.get(b"after") is not None, what="restart from snapshot"
        )
        assert again.kv.range(b"s", prefix=True).count == 60
    finally:
        await c.stop_all()


async def test_member_added_at_run_time_catches_up_and_counts_in_the_quorum(
    tmp_path: Path,
) -> None:
    """add_member: the joiner starts empty, catches up (by snapshot: the log was compacted),
    is promoted from learner to voter, and then its vote is needed: with a member removed and
    another stopped, commits go on only because it acknowledges them."""
    c = Cluster(tmp_path, snapshot_entries=20)
    joiner: RaftNode | None = None
    try:
        await c.start_all()
        leader = await c.leader()
        for n in range(30):
            await retry(partial(leader.put, b"k%02d" % n, b"%d" % n))
        await wait_for_async(lambda: leader.status()["snapshot_index"] > 0, what="leader snapshot")
        address = ("127.0.0.24", _free_port("127.0.0.24"))
        await retry(partial(leader.add_member, 4, address))
        assert 4 in leader.status()["learners"] + leader.status()["voters"]
        joiner = RaftNode(
            4,
            tmp_path / "n4",
            CLUSTER,
            SECRET,
            address,
            None,
            dict(c.addrs),
            tick_interval=TICK,
            election_tick=ELECTION_TICK,
            snapshot_entries=20,
            request_timeout=2.0,
            join=True,
        )
        await joiner.start()
        await wait_for_async(
            lambda: 4 in leader.status()["voters"], what="joiner promoted to voter"
        )
        await wait_for_async(
            lambda: joiner.kv.revision == leader.kv.revision, what="joiner caught up"
        )
        assert joiner.kv.range(b"k", prefix=True).count == 30
        assert joiner.status()["snapshot_index"] > 0

        others = [n.id for n in c.running() if n is not leader]
        await retry(partial(leader.remove_member, others[0]))
        await c.stop(others[0])
        await c.stop(others[1])
        assert sorted(leader.status()["voters"]) == sorted([leader.id, others[1], 4])
        # Two of the three voters left are the leader and the joiner: only its ack commits this.
        res = await retry(partial(leader.put, b"needs-the-joiner", b"yes"))
        await wait_for_async(
            lambda: joiner.kv.get(b"needs-the-joiner") is not None, what="joiner applied it"
        )
        assert res.revision == joiner.kv.revision
    finally:
        if joiner is not None:
            await joiner.stop()
        await c.stop_all()


async def test_stop_fails_pending_and_refuses_new(cluster: Cluster) -> None:
    await cluster.start_all()
    leader = await cluster.leader()
    await retry(lambda: leader.put(b"x", b"1"))
    await cluster.stop(leader.id)
    with pytest.raises(NotLeaderError):
        await leader.put(b"x", b"2")
    assert leader.state == "stopped"


async def test_storage_failure_is_fatal(cluster: Cluster) -> None:
    await cluster.start_all()
    leader = await cluster.leader()
    await retry(lambda: leader.put(b"x", b"1"))
    storage = leader._storage
    assert storage is not None
    # A watcher of the failure (the agent's) is woken by it, not by polling the state.
    failed = asyncio.ensure_future(leader.wait_failed())
    await asyncio.sleep(0)
    assert not failed.done()
    storage.close()  # every later save raises: the node must stop, not carry on
    with pytest.raises(Exception) as info:
        await leader.put(b"x", b"2")
    assert "failed" in str(info.value) or "closed" in str(info.value)
    await wait_for_async(lambda: leader.state == "failed", what="failed state")
    await asyncio.wait_for(failed, 5)
    assert leader.failure is not None
    with pytest.raises(NodeFailedError):
        await leader.get(b"x", serializable=True)
    # The others elect a new leader and still hold the acknowledged write. The failed put's
    # outcome is unknown: the leader sent its append before its own fsync failed.
    await cluster.stop(leader.id)
    new = await cluster.leader()
    got = await retry(lambda: new.get(b"x"))
    assert [kv.value for kv in got.kvs] in ([b"1"], [b"2"])


async def test_a_follower_stops_vouching_once_its_leader_is_silent_on_the_clock(
    cluster: Cluster,
) -> None:
    """RaftNode.current_copy on a follower turns False as soon as an election timeout passed
    on its clock without a word from its leader, before any tick ran: a follower's ticks may
    wait for a later wake, or be skipped by a late loop (issue 15), so its tick count alone
    could vouch for a view it can no longer know is current."""
    await cluster.start_all()
    leader = await cluster.leader()
    await retry(lambda: leader.put(b"seen", b"x"))
    follower = next(n for n in cluster.running() if not n.is_leader)
    revision, term = leader.kv.revision, leader.term()
    assert term is not None
    await wait_for_async(
        lambda: follower.current_copy(revision, term), what="the follower vouches for its copy"
    )
    cluster.clock.advance(follower.election_timeout)
    assert not follower.current_copy(revision, term)  # no await: no tick, no message ran
    await wait_for_async(
        lambda: follower.current_copy(revision, term), what="vouching again once heard from"
    )
