"""The store's fault tests (issue 3), on three REAL `python -m hamgr store` processes.

- A leader frozen (SIGSTOP) past the election timeout and thawed: it serves no stale read and
  acknowledges nothing of its own once deposed; its proposals of the old term vanish.
- A leader cut off from the others by fault proxies on every peer link (refused or blackholed):
  it commits nothing and acknowledges no write; the majority elects a leader and serves.
- During both, concurrent clients write unique values and read a few keys; each key's recorded
  history (ok / failed for certain / outcome unknown) must be linearizable, every acknowledged
  write must be there at the end, and every write the client called failed must not be.
- A lease whose holder stops its keepalives expires after its TTL, never before (counted from
  the SEND time of the last successful keepalive), also when the leader is killed meanwhile;
  its keys vanish in one revision, the same on every member.

Addresses: members on 127.0.0.61-63 (frozen leader), 127.0.0.64-66 (leases) and 127.0.0.71-73
(partitions, with the proxies on the same hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import (
    LeaseNotFoundError,
    NotLeaderError,
    StoreError,
    StoreOutcomeUnknownError,
)
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv.kvresults import RangeResult
from tests.raft.procluster import ProcCluster
from tests.tools.faultproxy import CutMode, ThreadedMesh
from tests.tools.kvworkload import Workload
from tests.tools.linearizability import READ, WRITE, Recorder
from tests.tools.poll import wait_for_async

pytestmark = pytest.mark.integration

FREEZE_HOSTS = ["127.0.0.61", "127.0.0.62", "127.0.0.63"]
LEASE_HOSTS = ["127.0.0.64", "127.0.0.65", "127.0.0.66"]
PARTITION_HOSTS = ["127.0.0.71", "127.0.0.72", "127.0.0.73"]


def dump_logs(procs: ProcCluster) -> None:
    """Print every member's log tail (pytest shows it when the test failed)."""
    for i in procs.members:
        print(f"--- member {i} log ---\n{procs.log_tail(i, 60)}")


async def converged(procs: ProcCluster, client: StoreClient) -> None:
    """Every running member's own state (serializable read) equals the leader's."""
    want = await client.get(b"t/", prefix=True)
    for i in procs.live():
        async with procs.client([i], redirect=False) as local:

            async def same(local: StoreClient = local) -> bool:
                got = await local.get(b"t/", prefix=True, serializable=True)
                return got.revision >= want.revision

            await wait_for_async(same, 10.0, f"member {i} applies revision {want.revision}")
            got = await local.get(b"t/", prefix=True, serializable=True)
            assert got.revision == want.revision
            assert got.kvs == want.kvs, f"member {i} differs from the leader"


# --- the clusters ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def meshed_cluster(
    tmp_path: Path, hosts: list[str]
) -> AsyncIterator[tuple[ProcCluster, ThreadedMesh[int]]]:
    """Three members whose every peer link goes through its own fault proxy (on the target
    member's host); killed by PID and the proxies stopped on the way out."""
    procs = ProcCluster(tmp_path, hosts)
    mesh: ThreadedMesh[int] = ThreadedMesh(procs.raft_addresses())
    mesh.start()
    try:
        procs.route_peers(mesh.addresses())
        await procs.start_all()
        yield procs, mesh
    finally:
        dump_logs(procs)
        try:
            await procs.close()
        finally:
            mesh.stop()


@pytest.fixture
async def frozen_procs(tmp_path: Path) -> AsyncIterator[tuple[ProcCluster, ThreadedMesh[int]]]:
    async with meshed_cluster(tmp_path, FREEZE_HOSTS) as cluster:
        yield cluster


@pytest.fixture
async def meshed_procs(tmp_path: Path) -> AsyncIterator[tuple[ProcCluster, ThreadedMesh[int]]]:
    async with meshed_cluster(tmp_path, PARTITION_HOSTS) as cluster:
        yield cluster


# --- 1. a frozen leader --------------------------------------------------------------------------


@pytest.mark.parametrize("hold", [False, True], ids=["thaw", "thaw-unaware"])
async def test_thawed_leader_serves_no_stale_read_and_commits_nothing(
    frozen_procs: tuple[ProcCluster, ThreadedMesh[int]], hold: bool
) -> None:
    """SIGSTOP the leader until the others elect a new one and commit a write, then SIGCONT it
    and at once read and write at it directly (no redirect). With `hold`, what the others send
    it stays in the proxies (blackholed) from the freeze until the requests made at it have
    ended or a second has passed: the thawed leader cannot learn from its first reads that it
    was deposed, which is when a lease-based read or a local commit would slip through."""
    procs, mesh = frozen_procs
    old = await procs.leader()
    others = [i for i in procs.members if i != old]
    rec = Recorder()
    fence = b"t/fence"
    workload = Workload(procs, rec, seed=12 if hold else 11)
    direct_writes: dict[bytes, str] = {}
    stale_reads: list[bytes | None] = []
    async with procs.client() as client, procs.client([old], redirect=False, timeout=3.0) as direct:

        async def read_at_old(n: int) -> None:
            h = rec.invoke(f"old-{n}", fence, READ)
            try:
                got = await direct.get(fence)
            except StoreError:
                rec.failed(h)
                return
            value = got.kvs[0].value if got.count else None
            stale_reads.append(value)
            rec.ok(h, value)

        async def write_at_old(n: int) -> None:
            key, value = b"t/old/%d" % n, b"old-%d" % n
            h = rec.invoke(f"old-{n}", fence, WRITE, value)
            try:
                await direct.txn([], [kvc.Put(fence, value), kvc.Put(key, b"1")])
            except StoreOutcomeUnknownError:
                rec.unknown(h)
                direct_writes[key] = "unknown"
            except NotLeaderError:
                rec.failed(h)
                direct_writes[key] = "refused"
            except StoreError as exc:
                rec.failed(h)
                direct_writes[key] = f"failed: {exc.code}"
            else:
                rec.ok(h)
                direct_writes[key] = "ok"

        h = rec.invoke("fence", fence, WRITE, b"before")
        await client.put(fence, b"before")
        rec.ok(h)
        await direct.status()  # connected before the freeze: the thawed member reads from it
        workload.start()
        await workload.wait_ok(30)

        procs.stop(old)
        try:
            if hold:
                for b in others:
                    mesh.cut(b, old, CutMode.BLACKHOLE)
            new = await procs.leader()  # the live members only: the frozen one is left out
            assert new != old
            h = rec.invoke("fence", fence, WRITE, b"after")
            async with procs.client([new]) as at_new:
                await at_new.put(fence, b"after")
            rec.ok(h)
            await workload.wait_ok(20)  # the majority serves the workload meanwhile

            # Requests queued while it is frozen, and more right after SIGCONT: the old leader
            # meets them before (or while) it learns that it was deposed.
            direct_ops = [asyncio.create_task(read_at_old(n)) for n in range(4)]
            direct_ops += [asyncio.create_task(write_at_old(n)) for n in range(4)]
            await asyncio.sleep(0.05)  # let them reach its socket
        finally:
            procs.cont(old)
        direct_ops += [asyncio.create_task(read_at_old(n)) for n in range(4, 10)]
        direct_ops += [asyncio.create_task(write_at_old(n)) for n in range(4, 10)]
        if hold:
            await asyncio.wait(direct_ops, timeout=1.0)
            mesh.heal_all()
        async with asyncio.timeout(20.0):
            await asyncio.gather(*direct_ops)

        assert await procs.leader() == new  # the thawed one follows, it does not disrupt
        await workload.wait_ok(20)
        await workload.stop()

        print(f"at the thawed leader: reads {stale_reads}, writes {direct_writes}")
        # No stale read: nothing it answered predates the new leader's committed write.
        assert b"before" not in stale_reads, stale_reads
        # Nothing of its own acknowledged, and none of its old-term proposals survived.
        assert len(direct_writes) == 10 and "ok" not in direct_writes.values(), direct_writes
        survivors = await client.get(b"t/old/", prefix=True, keys_only=True)
        assert survivors.count == 0, [kv.key for kv in survivors.kvs]
        assert (await client.get(fence)).kvs[0].value == b"after"
        await workload.check(client)
        await converged(procs, client)


# --- 2. a leader cut off from the others ---------------------------------------------------------


@pytest.mark.parametrize("mode", [CutMode.REFUSE, CutMode.BLACKHOLE], ids=lambda m: m.value)
async def test_cut_off_leader_commits_nothing_and_the_majority_serves(
    meshed_procs: tuple[ProcCluster, ThreadedMesh[int]], mode: CutMode
) -> None:
    procs, mesh = meshed_procs
    old = await procs.leader()
    others = [i for i in procs.members if i != old]
    rec = Recorder()
    workload = Workload(procs, rec, seed=21 if mode is CutMode.REFUSE else 22)
    outcomes: dict[bytes, str] = {}
    samples: list[tuple[int, str, int]] = []
    stop = asyncio.Event()

    async with procs.client() as client, procs.client([old], redirect=False, timeout=1.5) as direct:
        workload.start()
        await workload.wait_ok(30)

        mesh.isolate(old, mode)
        # The second answer: whatever reached it before the cut has been stepped by then.
        await procs.status(old)
        cut = await procs.status(old)

        async def write_at_old() -> None:
            for n in range(500):
                if stop.is_set():
                    return
                key = b"t/iso/%d" % n
                try:
                    await direct.put(key, b"1")
                except StoreOutcomeUnknownError:
                    outcomes[key] = "unknown"
                except NotLeaderError:
                    outcomes[key] = "refused"
                except StoreError as exc:
                    outcomes[key] = f"failed: {exc.code}"
                else:
                    outcomes[key] = "ok"
                await asyncio.sleep(0.02)

        async def sample_old() -> None:
            for _ in range(2000):
                if stop.is_set():
                    return
                st = await procs.status(old)
                samples.append((st.commit, st.role, st.term))
                await asyncio.sleep(0.05)

        side_tasks = [asyncio.create_task(write_at_old()), asyncio.create_task(sample_old())]
        try:
            new = await procs.leader(among=others)
            await workload.wait_ok(40)  # the majority serves the workload

            async def old_stepped_down() -> bool:
                return (await procs.status(old)).role != "leader"

            await wait_for_async(
                old_stepped_down, 5.0, f"cut-off leader {old} steps down (CheckQuorum)"
            )
            majority = await procs.status(new)
        finally:
            stop.set()
            async with asyncio.timeout(10.0):
                await asyncio.gather(*side_tasks)

        print(f"cut at commit {cut.commit}; samples {samples[:3]}...; writes {outcomes}")
        # The minority side committed nothing and acknowledged nothing.
        assert samples, "no status sampled from the cut-off member"
        assert {commit for commit, _, _ in samples} == {cut.commit}, (cut.commit, samples)
        assert majority.commit > cut.commit
        assert majority.term > cut.term
        assert outcomes and "ok" not in outcomes.values(), outcomes

        mesh.heal_all()
        await procs.leader()  # all three agree again
        await workload.wait_ok(20)
        await workload.stop()
        stale = await client.get(b"t/iso/", prefix=True, keys_only=True)
        assert stale.count == 0, [kv.key for kv in stale.kvs]  # its own proposals are gone
        await workload.check(client)
        await converged(procs, client)


# --- 4. leases ------------------------------------------------------------------------------------


@pytest.fixture
async def lease_procs(tmp_path: Path) -> AsyncIterator[ProcCluster]:
    procs = ProcCluster(tmp_path, LEASE_HOSTS)
    try:
        await procs.start_all()
        yield procs
    finally:
        dump_logs(procs)
        await procs.close()


TTL = 1.5
LEASED = [b"t/l/0", b"t/l/1", b"t/l/2"]
KILL_SAMPLES = 3
"""Tries at killing the leader while the lease is live (on a loaded machine a try can come too
late, and then it proves nothing about the kill: it is redone, not failed)."""


async def leased_keys(client: StoreClient) -> tuple[int, float, float, RangeResult]:
    """A lease of `TTL` holding `LEASED`, kept alive three times, each keepalive counted from
    when it was SENT: (lease id, granted ttl, send time of the last keepalive, all of t/)."""
    grant = await client.lease_grant(TTL)
    ttl = grant.ttl
    assert ttl >= TTL
    for key in LEASED:
        await client.put(key, b"v", lease=grant.lease_id)
    last_sent = 0.0
    for n in range(3):
        if n:
            await asyncio.sleep(ttl / 4)
        sent = time.monotonic()
        assert await client.lease_keepalive(grant.lease_id) == ttl
        last_sent = sent
    before = await client.get(b"t/", prefix=True)
    assert before.count == 4
    return grant.lease_id, ttl, last_sent, before


@pytest.mark.parametrize("kill_leader", [False, True], ids=["steady", "leader-kill9"])
async def test_lease_expires_after_its_ttl_never_before_in_one_revision(
    lease_procs: ProcCluster, kill_leader: bool
) -> None:
    procs = lease_procs
    await procs.leader()
    async with procs.client(timeout=5.0) as client:
        await client.put(b"t/keep", b"no lease")
        killed = 0
        for sample in range(KILL_SAMPLES):
            lease, ttl, floor, before = await leased_keys(client)
            # Expiry must come no sooner than `floor + ttl`.
            if not kill_leader:
                break
            # Killed with the lease live, the leader's successors count its ttl from their own
            # first commit, after `floor`: a later floor than the last keepalive's.
            killed = await procs.leader()
            sent = time.monotonic()
            assert await client.lease_keepalive(lease) == ttl  # renewed just before the kill
            floor = time.monotonic()
            procs.kill9(killed)
            if time.monotonic() < sent + ttl:
                break  # the lease was live when its leader died: the sample counts
            # Too slow: the old leader may rightly have expired the lease before it died, so
            # this sample cannot show what a kill does. Bring the member back and redo it.
            print(f"sample {sample}: the kill came after the lease could expire; redone")
            await procs.start(killed)
            await procs.leader()
            with contextlib.suppress(LeaseNotFoundError):
                await client.lease_revoke(lease)
        else:
            pytest.skip(
                f"in {KILL_SAMPLES} tries this machine never killed the leader within a ttl "
                "of the last keepalive"
            )
        (keep,) = (kv for kv in before.kvs if kv.key == b"t/keep")

        reads: list[tuple[float, float, int]] = []
        gone = None
        deadline = floor + ttl + 15.0
        while gone is None:
            assert time.monotonic() < deadline, f"the lease never expired: {reads[-5:]}"
            call = time.monotonic()
            try:
                got = await client.get(b"t/l/", prefix=True, timeout=2.0)
            except StoreError:
                await asyncio.sleep(0.02)
                continue
            ret = time.monotonic()
            reads.append((call - floor, ret - floor, got.count))
            assert got.count in (0, len(LEASED)), f"keys vanished one by one: {reads[-3:]}"
            if got.count == 0:
                gone = got
            else:
                await asyncio.sleep(0.02)
        print(f"ttl {ttl}: last reads (call, return, count) after the floor: {reads[-3:]}")
        # A read that returned before floor + ttl and saw no keys would prove an early expiry.
        assert reads[-1][1] >= ttl, f"expired {ttl - reads[-1][1]:.3f}s early: {reads[-3:]}"
        assert gone.revision == before.revision + 1  # all three keys in ONE revision
        with pytest.raises(LeaseNotFoundError):
            await client.lease_keepalive(lease)

        if kill_leader:
            await procs.start(killed)  # back from its disk, it must agree too
        for i in procs.live():
            async with procs.client([i], redirect=False) as local:

                async def applied(local: StoreClient = local) -> bool:
                    got = await local.get(b"t/", prefix=True, serializable=True)
                    return got.revision >= gone.revision

                await wait_for_async(applied, 10.0, f"member {i} applies the revoke")
                mine = await local.get(b"t/", prefix=True, serializable=True)
                assert mine.revision == gone.revision, f"member {i}"
                assert mine.kvs == (keep,), f"member {i}: {mine.kvs}"
