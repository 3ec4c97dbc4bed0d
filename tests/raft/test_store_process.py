"""The store as its own process: three REAL `python -m hamgr store` processes on 127.0.0.41-43
(see procluster.py), reached only through StoreClient. Writes through any member, reads on
every member, kill -9 of the leader, a frozen leader (SIGSTOP), a whole-cluster kill -9 and
restart from disk, a clean SIGTERM stop, and hamgr store-ctl."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hamgr.agent.storemember import client_ssl_context
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import StoreOutcomeUnknownError, StoreUnavailableError
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv.kvresults import RangeResult
from tests.raft.procluster import REPO, ProcCluster

pytestmark = pytest.mark.integration

HOSTS = ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
HOUR = 3600.0
"""A call budget no test reaches: a call given it that returns moved on by itself."""


@pytest.fixture
async def procs(tmp_path: Path) -> AsyncIterator[ProcCluster]:
    cluster = ProcCluster(tmp_path, HOSTS)
    try:
        await cluster.start_all()
        yield cluster
    finally:
        await cluster.close()  # SIGKILL by PID whatever still runs


def state(result: RangeResult) -> list[tuple[bytes, bytes, int, int, int]]:
    return [
        (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in result.kvs
    ]


async def wait_applied(client: StoreClient, key: bytes, expect: int, timeout: float = 10.0) -> None:
    """Wait until the (single-endpoint, non-redirecting) client's member holds `expect` keys
    under `key`, reading its local state."""
    deadline = time.monotonic() + timeout
    while (await client.get(key, prefix=True, serializable=True)).count != expect:
        assert time.monotonic() < deadline, f"{client.endpoints} never applied {expect} keys"
        await asyncio.sleep(0.02)


async def test_put_anywhere_get_everywhere(procs: ProcCluster) -> None:
    leader = await procs.leader()
    for i in procs.members:  # each member alone: followers must redirect to the leader
        async with procs.client([i]) as client:
            await client.put(b"from/%d" % i, b"via member %d" % i)
    for i in procs.members:
        async with procs.client([i]) as client:
            got = await client.get(b"from/", prefix=True)
            assert [kv.key for kv in got.kvs] == [b"from/1", b"from/2", b"from/3"]
            assert client.leader_endpoint == procs.members[leader].client_address
        async with procs.client([i], redirect=False) as local:
            await wait_applied(local, b"from/", 3)
            assert (await local.status()).id == i

    # A clean stop: SIGTERM, exit status 0, and the log says so.
    follower = next(i for i in procs.members if i != leader)
    assert procs.terminate(follower) == 0
    assert f"member {follower} stopped" in procs.log_tail(follower)
    async with procs.client() as client:  # two of three still serve
        await client.put(b"after-stop", b"x")


async def test_kill9_of_the_leader_keeps_every_acknowledged_write(procs: ProcCluster) -> None:
    old = await procs.leader()
    acked: list[bytes] = []
    unknown: list[bytes] = []
    killed = asyncio.Event()
    async with procs.client() as client:

        async def writer() -> None:
            n = 0
            deadline = time.monotonic() + 30.0
            after_kill = 0
            while after_kill < 20:
                assert time.monotonic() < deadline, f"only {after_kill} writes after the kill"
                key = b"w/%05d" % n
                n += 1
                try:
                    await client.put(key, b"v")
                except StoreOutcomeUnknownError:
                    unknown.append(key)
                    continue
                acked.append(key)
                if killed.is_set():
                    after_kill += 1

        task = asyncio.create_task(writer())
        deadline = time.monotonic() + 10.0
        while len(acked) < 30:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.01)
        procs.kill9(old)
        killed.set()
        await asyncio.wait_for(task, 35.0)

        new = await procs.leader()
        assert new != old
        got = await client.get(b"w/", prefix=True)
        present = {kv.key for kv in got.kvs}
        assert set(acked) <= present, sorted(set(acked) - present)[:5]
        assert present <= set(acked) | set(unknown)

        # The old leader comes back from its disk and catches up as a follower.
        await procs.restart(old)
        async with procs.client([old], redirect=False) as back:
            await wait_applied(back, b"w/", len(present))
            assert state(await back.get(b"w/", prefix=True, serializable=True)) == state(got)
        assert await procs.leader() == new


async def test_frozen_leader_is_replaced_and_rejoins(procs: ProcCluster) -> None:
    old = await procs.leader()
    async with procs.client() as reader, procs.client() as writer:
        await writer.put(b"before-freeze", b"1")
        assert (await reader.get(b"before-freeze")).count == 1
        procs.stop(old)
        try:
            new = await procs.leader()
            assert new != old
            # Both clients still take the frozen member for the leader. A read moves on by
            # itself; a write sent there can only end "outcome unknown", but soon, not at its
            # deadline, and the client then knows the new leader. Each call is given an hour,
            # so an answer within half the clients' usual budget (the deadline waited on here)
            # can only come from moving on.
            async with asyncio.timeout(reader.timeout / 2):
                assert (await reader.get(b"before-freeze", timeout=HOUR)).count == 1
            try:
                async with asyncio.timeout(writer.timeout / 2):
                    await writer.put(b"during-freeze", b"2", timeout=HOUR)
            except StoreOutcomeUnknownError:
                await writer.put(b"during-freeze", b"2")  # the same value: safe to repeat
            assert writer.leader_endpoint == procs.members[new].client_address
        finally:
            procs.cont(old)
        assert await procs.leader() == new  # the thawed one follows, it does not disrupt
        async with procs.client([old], redirect=False) as thawed:
            await wait_applied(thawed, b"during-freeze", 1)


async def test_whole_cluster_kill9_and_restart_from_disk(procs: ProcCluster) -> None:
    await procs.leader()
    async with procs.client() as client:
        for n in range(20):
            await client.put(b"d/%02d" % n, b"v%d" % n)
        await client.put(b"d/05", b"changed")
        await client.delete(b"d/07")
        await client.txn([kvc.compare_create(b"d/leader", "=", 0)], [kvc.Put(b"d/leader", b"1")])
        before = await client.get(b"d/", prefix=True)
    for i in procs.members:
        procs.kill9(i)

    await procs.start_all()
    await procs.leader()
    async with procs.client() as client:
        after = await client.get(b"d/", prefix=True)
        assert state(after) == state(before)
        assert after.revision == before.revision
        for i in procs.members:
            async with procs.client([i], redirect=False) as local:
                await wait_applied(local, b"d/", before.count)
                assert (await local.status()).revision == before.revision
        assert (await client.put(b"d/new", b"x")).revision == before.revision + 1


async def test_whole_cluster_kill9_during_background_snapshots_loses_nothing(
    tmp_path: Path,
) -> None:
    """Snapshots every 40 entries, taken in the background (encoded a slice per loop turn, the
    file staged from another thread): a kill -9 of every member in the middle of that loses no
    acknowledged write, and every member recovers the same state."""
    procs = ProcCluster(tmp_path, HOSTS, snapshot_entries=40)
    try:
        await procs.start_all()
        await procs.leader()
        acked: list[bytes] = []
        unknown: list[bytes] = []
        async with procs.client() as client:

            async def writer(w: int) -> None:
                for n in range(1000):
                    key = b"s/%02d/%04d" % (w, n)
                    try:
                        await client.put(key, b"x" * 200)
                    except (StoreOutcomeUnknownError, StoreUnavailableError):
                        unknown.append(key)
                        return
                    acked.append(key)

            tasks = [asyncio.create_task(writer(w)) for w in range(16)]
            deadline = time.monotonic() + 30.0
            while len(acked) < 300:
                assert time.monotonic() < deadline, f"only {len(acked)} writes acknowledged"
                await asyncio.sleep(0.01)
            for i in procs.members:
                procs.kill9(i)
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60.0)
        snapshots = [p for i in procs.members for p in (tmp_path / f"data{i}").glob("snap-*")]
        assert snapshots, "no snapshot was taken before the kill"

        await procs.start_all()
        await procs.leader()
        async with procs.client() as client:
            got = await client.get(b"s/", prefix=True)
            present = {kv.key for kv in got.kvs}
            assert set(acked) <= present, sorted(set(acked) - present)[:5]
            assert present <= set(acked) | set(unknown)
            for i in procs.members:
                async with procs.client([i], redirect=False) as local:
                    await wait_applied(local, b"s/", got.count)
                    mine = await local.get(b"s/", prefix=True, serializable=True)
                    assert state(mine) == state(got)
            assert (await client.put(b"s/after", b"x")).revision == got.revision + 1
    finally:
        await procs.close()


async def test_store_ctl_put_get_del_status(procs: ProcCluster) -> None:
    await procs.leader()
    config = str(procs.members[2].config)

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hamgr", "store-ctl", "--config", config, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )

    put = await asyncio.to_thread(ctl, "put", "greeting", "hello")
    assert put.returncode == 0, put.stderr
    got = await asyncio.to_thread(ctl, "get", "greeting")
    lines = [json.loads(line) for line in got.stdout.splitlines()]
    assert lines[0]["key"] == "greeting" and lines[0]["value"] == "hello"
    assert lines[-1]["count"] == 1
    status = await asyncio.to_thread(ctl, "status")
    members = [json.loads(line) for line in status.stdout.splitlines()]
    assert sorted(m["id"] for m in members) == [1, 2, 3], status.stdout
    assert sum(m["role"] == "leader" for m in members) == 1
    gone = await asyncio.to_thread(ctl, "del", "greeting")
    assert json.loads(gone.stdout)["deleted"] == 1
    empty = await asyncio.to_thread(ctl, "put", "", "x")
    assert empty.returncode == 2 and "must not be empty" in empty.stderr
    # `lease ID` of an unknown lease: an error naming it (a granted one: test_live_timing.py).
    unknown = await asyncio.to_thread(ctl, "lease", "12345")
    assert unknown.returncode == 1 and "12345" in unknown.stderr, unknown.stderr


def _hamgr_store(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hamgr", "store", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_bad_configuration_and_a_data_dir_in_use_are_refused(
    procs: ProcCluster, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "scope: s\nname: n\npostgresql: {data_dir: /pg}\n"
        "store: {raft: {data_dir: /r, secret_file: /nonexistent/secret, node_id: 0}}\n"
    )
    refused = await asyncio.to_thread(_hamgr_store, bad)
    assert refused.returncode == 2
    assert "store.raft.node_id: must be >= 1, got 0" in refused.stderr
    assert refused.stdout == ""

    # A second process on a running member's data directory must not start.
    await procs.leader()
    twin = await asyncio.to_thread(_hamgr_store, procs.members[1].config)
    assert twin.returncode == 1
    assert "in use by another process" in twin.stderr
    assert "serving" not in twin.stdout
    async with procs.client([1], redirect=False) as client:  # the first one is unharmed
        assert (await client.status()).state == "running"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
async def test_tls_member_serves_tls_clients_only(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=hamgr-test", "-addext", "subjectAltName=IP:127.0.0.44",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    single = ProcCluster(tmp_path, ["127.0.0.44"], tls=(cert, key, cert))
    try:
        await single.start_all()
        ssl_context = client_ssl_context((str(cert), str(key), str(cert)))
        async with single.client(ssl_context=ssl_context) as client:
            await client.put(b"secure", b"1")
            assert (await client.get(b"secure")).count == 1
        async with single.client(timeout=1.0) as plain:  # right secret, but no TLS
            with pytest.raises(StoreUnavailableError):
                await plain.get(b"secure")
    finally:
        await single.close()
