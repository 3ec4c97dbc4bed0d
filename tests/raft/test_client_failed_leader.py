"""A leader whose disk fills up while a write is proposed: the write's outcome is unknown, never
a definite failure. Three real RaftNodes with their StoreRpcServers in one event loop
(127.0.0.31-33, real sockets and data directories), reached through StoreClient; the full disk
is a gate on the leader's storage writes (tests/raft/diskgate.py).

The leader sends its appends before its own write (Raft thesis 10.2.1), so when that write
fails with ENOSPC a follower may already hold the entry durably, and a later leader commits
it. Chaos seed 3 found the client told "failed" (UNAVAILABLE) for such a put, which then
applied (`failed but applied` in the KV checker).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hamgr.raft.errors import StoreOutcomeUnknownError
from hamgr.raft.net.rpc import ErrorCode
from tests.raft.diskgate import DiskGate
from tests.raft.test_client import IDS, Cluster
from tests.tools.poll import wait_for_async


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        await c.start_all()
        yield c
    finally:
        await c.stop_all()


async def test_a_write_pending_on_a_leader_whose_disk_fails_is_outcome_unknown(
    cluster: Cluster,
) -> None:
    leader_id = await cluster.leader()
    leader = cluster.nodes[leader_id]
    follower, stopped = (i for i in IDS if i != leader_id)
    async with cluster.client(timeout=4.0) as client:
        await client.put(b"before", b"1")
        # With one follower down, the entry commits only with the leader's own copy: it
        # stays pending while the leader's write hangs, and reaches the follower's disk.
        await cluster.stop(stopped)
        assert leader._storage is not None
        gate = DiskGate(leader._storage)
        last = cluster.nodes[follower].status()["last_index"]
        task = asyncio.ensure_future(client.put(b"t/u/1", b"1"))
        await wait_for_async(gate.entered.is_set, what="the leader's write to hang")
        await wait_for_async(
            lambda: cluster.nodes[follower].status()["last_index"] > last,
            what="the entry on the follower",
        )
        gate.fail()  # the disk is full: the leader's member fails
        with pytest.raises(StoreOutcomeUnknownError) as info:
            await task
        assert info.value.code == ErrorCode.OUTCOME_UNKNOWN.value
        assert leader.state == "failed"
    # The entry was on a follower's disk: the next leader commits it. A client told "failed"
    # would have been lied to.
    await cluster.stop(leader_id)
    await cluster.start(stopped)
    await cluster.leader()
    async with cluster.client((follower, stopped), timeout=10.0) as client:
        got = await client.get(b"t/u/1")
        assert [kv.value for kv in got.kvs] == [b"1"]
