"""RaftNode with a stalled disk on the leader: three real nodes in one event loop (real sockets
on 127.0.0.21-23, real data directories). The leader's writes are held at a gate by test code
(as a disk whose fsync hangs), and the store must keep serving: the followers make writes
durable, the leader applies and answers them, serves linearizable reads, and keeps its
followers from electing anyone else; its own copy counts only once the gate opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hamgr.raft.server.node import RaftNode
from tests.raft.diskgate import DiskGate
from tests.raft.test_node import Cluster, retry
from tests.tools.poll import wait_for_async


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop_all()


async def test_leader_serves_while_its_own_write_hangs(cluster: Cluster) -> None:
    await cluster.start_all()
    leader = await cluster.leader()
    await retry(lambda: leader.put(b"k", b"0"))
    term = leader.status()["term"]
    assert leader._storage is not None
    gate = DiskGate(leader._storage)
    try:
        first = asyncio.ensure_future(leader.put(b"k", b"1"))
        await wait_for_async(gate.entered.is_set, what="the leader's write to hang")
        # Committed by the two followers, applied and answered while the write hangs.
        await asyncio.wait_for(first, 10.0)
        more = await asyncio.gather(*(leader.put(b"m%d" % n, b"x") for n in range(5)))
        assert len(more) == 5
        got = await leader.get(b"k")  # linearizable: a ReadIndex round
        assert [kv.value for kv in got.kvs] == [b"1"]
        assert not gate.is_open
        status = leader.status()
        # No election: the leader's heartbeats kept coming while its disk hung.
        assert status["role"] == "leader" and status["term"] == term
        assert all(n.status()["leader"] == leader.id for n in cluster.running())
        assert leader._core is not None
        assert leader._core.prs[leader.id].match < status["commit"]  # not counted itself
    finally:
        gate.release()
    await wait_for_async(
        lambda: (
            leader._core is not None
            and leader._core.prs[leader.id].match >= leader.status()["commit"]
        ),
        what="the leader to count its own copy once written",
    )
    await leader.put(b"k", b"2")
    await cluster.stop_all()
    # Everything acknowledged is on disk: a cold restart holds it.
    await cluster.start_all()
    new: RaftNode = await cluster.leader()
    got = await retry(lambda: new.get(b"m", prefix=True))
    assert got.count == 5
    assert [kv.value for kv in (await new.get(b"k")).kvs] == [b"2"]


async def test_leader_snapshots_only_what_it_wrote(tmp_path: Path) -> None:
    """A leader applies writes the followers made durable before its own write returns; a
    snapshot taken then must wait until its own log holds them (storage compacts only what
    it stored), and the leader keeps running."""
    c = Cluster(tmp_path, snapshot_entries=5)
    try:
        await c.start_all()
        leader = await c.leader()
        await retry(lambda: leader.put(b"k", b"0"))
        assert leader._storage is not None
        gate = DiskGate(leader._storage)
        try:
            await asyncio.gather(*(leader.put(b"s%02d" % n, b"x") for n in range(20)))
            assert gate.entered.is_set() and not gate.is_open
            assert leader._core is not None
            assert leader.status()["applied"] > leader._core.log.stable
            assert leader.status()["snapshot_index"] <= leader._core.log.stable
            before = leader.status()["snapshot_index"]
        finally:
            gate.release()
        await leader.put(b"k", b"1")
        await wait_for_async(lambda: leader.status()["snapshot_index"] > before, what="a snapshot")
        assert leader.state == "running"
        assert (await leader.get(b"s", prefix=True)).count == 20
    finally:
        await c.stop_all()
