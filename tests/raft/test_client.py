"""StoreClient against StoreRpcServers: three real RaftNodes in one event loop on 127.0.0.31-33,
each served on its own client port, real sockets and data directories. KV, txn and leases over
the wire, redirect from a follower, pipelining, failover, refused secrets, and garbage frames
that must cost only their own connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest

from hamgr.raft.client.clientconn import Channel
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import (
    InvalidRequestError,
    LeaseNotFoundError,
    NotLeaderError,
    StoreAuthError,
    StoreError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv.kvresults import PutResult, RangeResult
from hamgr.raft.net.framing import ConnectionClosed, FrameError, FrameKind, encode_frame
from hamgr.raft.net.handshake import AuthenticatedConnection, ClusterAuth, open_authenticated
from hamgr.raft.net.rpc import ErrorCode, Request, Status, decode_response, encode_request
from hamgr.raft.net.rpcbase import RpcOp
from hamgr.raft.net.rpcresults import MemberStatus, decode_result
from hamgr.raft.sim.loop import VirtualLoop
from tests.raft.inloop import InLoopStore, free_port
from tests.tools.poll import wait_for_async

CLUSTER = "test-client"
SECRET = b"c" * 32
TICK = 0.05
ELECTION_TICK = 10
IDS = (1, 2, 3)


class Cluster(InLoopStore):
    """Three members on 127.0.0.31-33."""

    def __init__(self, root: Path) -> None:
        hosts = {i: f"127.0.0.{30 + i}" for i in IDS}
        super().__init__(root, hosts, CLUSTER, SECRET, tick=TICK, election_tick=ELECTION_TICK)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        await c.start_all()
        yield c
    finally:
        await c.stop_all()


def pairs(result: RangeResult) -> list[tuple[bytes, bytes]]:
    return [(kv.key, kv.value) for kv in result.kvs]


async def test_kv_and_txn_over_the_wire(cluster: Cluster) -> None:
    leader = await cluster.leader()
    async with cluster.client() as client:
        first = await client.put(b"a/1", b"one")
        assert first == PutResult(first.revision, None)
        second = await client.put(b"a/1", b"uno")
        assert second.revision == first.revision + 1
        assert second.prev_kv is not None and second.prev_kv.value == b"one"
        await client.put(b"a/2", b"two")
        await client.put(b"b", b"bee")
        assert client.leader_endpoint == cluster.clients[leader]

        got = await client.get(b"a/1")
        assert pairs(got) == [(b"a/1", b"uno")] and got.kvs[0].version == 2
        assert (await client.get(b"missing")).count == 0
        assert pairs(await client.get(b"a/", prefix=True)) == [(b"a/1", b"uno"), (b"a/2", b"two")]
        limited = await client.get(b"", prefix=True, limit=2, keys_only=True)
        assert pairs(limited) == [(b"a/1", b""), (b"a/2", b"")]
        assert (limited.count, limited.more) == (3, True)
        counted = await client.get(b"a/", prefix=True, count_only=True)
        assert (counted.kvs, counted.count) == ((), 2)

        # The leader key idiom: create only if absent; the second try takes the failure branch.
        take = kvc.Txn(
            (kvc.compare_create(b"leader", "=", 0),),
            (kvc.Put(b"leader", b"member-1"),),
            (kvc.Range(b"leader"),),
        )
        won = await client.txn(take.compares, take.success, take.failure)
        assert won.succeeded and isinstance(won.responses[0], PutResult)
        lost = await client.txn(take.compares, take.success, take.failure)
        assert not lost.succeeded and lost.revision == won.revision
        assert isinstance(lost.responses[0], RangeResult)
        assert pairs(lost.responses[0]) == [(b"leader", b"member-1")]

        deleted = await client.delete(b"a/", prefix=True)
        assert deleted.deleted == 2 and [kv.key for kv in deleted.prev_kvs] == [b"a/1", b"a/2"]
        assert (await client.get(b"a/", prefix=True)).count == 0
        # The store agrees with what the wire said.
        node = cluster.nodes[leader]
        assert node.kv.revision == deleted.revision
        assert node.kv.get(b"leader") is not None

        with pytest.raises(kvc.InvalidCommandError, match="put key must not be empty"):
            await client.put(b"", b"v")  # refused before anything is sent


async def test_leases_over_the_wire(cluster: Cluster) -> None:
    await cluster.leader()
    async with cluster.client() as client:
        grant = await client.lease_grant(1.0)
        assert grant.ttl == 1.0 and grant.lease_id > 0
        await client.put(b"owned", b"x", lease=grant.lease_id)
        ttl = await client.lease_ttl(grant.lease_id)
        assert ttl.keys == (b"owned",) and ttl.granted_ttl == 1.0 and 0 < ttl.remaining <= 1.0
        assert await client.lease_keepalive(grant.lease_id) == 1.0
        assert (await client.get(b"owned")).kvs[0].lease == grant.lease_id

        revoked = await client.lease_revoke(grant.lease_id)
        assert revoked.deleted == 1
        assert (await client.get(b"owned")).count == 0
        with pytest.raises(LeaseNotFoundError) as info:
            await client.lease_keepalive(grant.lease_id)
        assert info.value.code == ErrorCode.LEASE_NOT_FOUND
        with pytest.raises(LeaseNotFoundError):
            await client.put(b"owned", b"y", lease=grant.lease_id)
        with pytest.raises(LeaseNotFoundError):
            await client.lease_revoke(grant.lease_id)

        # Expiry: the minimum TTL (1.5 election timeouts = 0.75 s), not the 0.1 s asked for,
        # passes without keepalives, on the members' clock moved by the test (no wall time).
        leader = await cluster.leader()
        short = await client.lease_grant(0.1)
        assert short.ttl == pytest.approx(1.5 * ELECTION_TICK * TICK)
        await client.put(b"short", b"x", lease=short.lease_id)
        cluster.clock.advance(0.2)  # twice what was asked: the key must stay
        await cluster.clock.ticked(leader)
        assert (await client.get(b"short")).count == 1, "expired on the TTL asked, not granted"
        cluster.clock.advance(short.ttl)
        await wait_for_async(
            lambda: cluster.nodes[leader].kv.get(b"short") is None, what="the short lease to expire"
        )
        assert (await client.get(b"short")).count == 0


async def test_follower_endpoint_redirects_to_the_leader(cluster: Cluster) -> None:
    leader = await cluster.leader()
    follower = next(i for i in IDS if i != leader)
    async with cluster.client((follower,)) as client:
        put = await client.put(b"via-follower", b"1")
        assert client.leader_endpoint == cluster.clients[leader]
        assert cluster.nodes[leader].kv.get(b"via-follower") is not None
        assert (await client.get(b"via-follower")).revision >= put.revision

    async with cluster.client((follower,), redirect=False) as direct:
        with pytest.raises(NotLeaderError) as info:
            await direct.put(b"k", b"v")
        assert info.value.leader == leader
        assert info.value.address == cluster.clients[leader]
        with pytest.raises(NotLeaderError):
            await direct.get(b"via-follower")  # linearizable reads need the leader too
        # A serializable read is served by the follower itself.
        node = cluster.nodes[follower]
        await wait_for_async(lambda: node.kv.get(b"via-follower") is not None, what="replication")
        local = await direct.get(b"via-follower", serializable=True)
        assert pairs(local) == [(b"via-follower", b"1")]

        status = await direct.status(cluster.clients[follower])
        assert isinstance(status, MemberStatus)
        assert (status.id, status.role, status.leader) == (follower, "follower", leader)
        assert status.client_address == cluster.clients[follower]
        assert status.leader_client_address == cluster.clients[leader]
        assert status.voters == IDS


async def test_concurrent_calls_share_one_connection(cluster: Cluster) -> None:
    leader = await cluster.leader()
    accepted = cluster.servers[leader].stats.accepted
    async with cluster.client((leader,)) as client:
        results = await asyncio.gather(*(client.put(b"p%02d" % n, b"v") for n in range(64)))
        assert len({r.revision for r in results}) == 64
        reads = await asyncio.gather(*(client.get(b"p%02d" % n) for n in range(32)))
        assert all(r.count == 1 for r in reads)
        assert client.connections == 1
    assert cluster.servers[leader].stats.accepted == accepted + 1


async def test_failover_finds_the_new_leader(cluster: Cluster) -> None:
    old = await cluster.leader()
    async with cluster.client() as client:
        acked = [await client.put(b"f%d" % n, b"v") for n in range(5)]
        await cluster.stop(old)
        after = await client.put(b"after", b"failover")  # retried until a new leader answers
        assert after.revision > acked[-1].revision
        new = await cluster.leader()
        assert new != old and client.leader_endpoint == cluster.clients[new]
        got = await client.get(b"f", prefix=True)
        assert [kv.key for kv in got.kvs] == [b"f%d" % n for n in range(5)]


async def test_no_member_reachable_raises_unavailable(tmp_path: Path) -> None:
    dead = [("127.0.0.31", free_port("127.0.0.31")), ("127.0.0.32", free_port("127.0.0.32"))]
    async with StoreClient(dead, CLUSTER, SECRET, timeout=0.5) as client:
        with pytest.raises(StoreUnavailableError) as info:
            await client.get(b"k")
        assert f"{dead[0][0]}:{dead[0][1]}" in str(info.value)
        assert "within 0.5 s" in str(info.value)


class RefusedEverywhere(StoreClient):
    """A client whose every dial is refused at once, as by hosts with nothing listening; it
    counts its dials (no socket is opened: it runs on a `VirtualLoop`, which has none)."""

    dials = 0

    async def _dial(self, endpoint: tuple[str, int]) -> Channel:
        self.dials += 1
        raise ConnectionRefusedError(111, f"connection to {endpoint[0]}:{endpoint[1]} refused")


def test_no_member_reachable_gives_up_exactly_at_the_deadline() -> None:
    """On virtual time (the client's deadline is its event loop's clock): a call with a 0.5 s
    budget keeps trying every member, pausing between rounds, and gives up when the budget is
    spent, neither before nor after it."""
    loop = VirtualLoop()

    async def call() -> tuple[float, RefusedEverywhere, StoreUnavailableError]:
        client = RefusedEverywhere([("10.0.0.1", 7100), ("10.0.0.2", 7100)], CLUSTER, SECRET,
                                   timeout=0.5)  # fmt: skip
        started = loop.time()
        try:
            await client.get(b"k")
        except StoreUnavailableError as exc:
            return loop.time() - started, client, exc
        finally:
            await client.close()
        raise AssertionError("a store nobody answers for must raise StoreUnavailableError")

    try:
        spent, client, error = loop.run_until_complete(call())
    finally:
        loop.close()
    assert spent == pytest.approx(0.5, abs=1e-9)
    assert client.dials >= 4, "both members tried, more than once"
    assert "within 0.5 s" in str(error) and "refused" in str(error)


async def test_wrong_secret_or_cluster_is_refused_at_once(cluster: Cluster) -> None:
    await cluster.leader()
    endpoints = list(cluster.clients.values())
    for cluster_id, secret in (("test-client", b"w" * 32), ("other-cluster", SECRET)):
        refused = sum(s.stats.rejected_handshakes for s in cluster.servers.values())
        async with StoreClient(endpoints, cluster_id, secret, timeout=10.0) as client:
            with pytest.raises(StoreAuthError):
                await client.put(b"k", b"v")
        # One refused handshake: the refusal is final, not retried at any member.
        assert sum(s.stats.rejected_handshakes for s in cluster.servers.values()) == refused + 1
    async with cluster.client() as good:  # the servers carry on
        await good.put(b"k", b"v")


async def test_source_host_is_the_address_members_see(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    await cluster.leader()
    endpoints = list(cluster.clients.values())
    async with StoreClient(endpoints, CLUSTER, SECRET, source_host="127.0.0.36") as client:
        await client.put(b"from", b"36")
        assert pairs(await client.get(b"from")) == [(b"from", b"36")]
    # A member names the address of a connection it refuses: there the source shows.
    caplog.set_level(logging.WARNING, logger="hamgr.raft.net.transport")
    bad = StoreClient(endpoints[:1], CLUSTER, b"w" * 32, source_host="127.0.0.37", timeout=5.0)
    async with bad:
        with pytest.raises(StoreAuthError):
            await bad.get(b"from")
    refused = [r.getMessage() for r in caplog.records if "refused connection" in r.getMessage()]
    assert refused and all(m.startswith("refused connection from 127.0.0.37:") for m in refused)


async def _raw(cluster: Cluster, i: int) -> AuthenticatedConnection:
    host, port = cluster.clients[i]
    return await open_authenticated(host, port, ClusterAuth(CLUSTER, 0, SECRET))


async def _expect_closed(conn: AuthenticatedConnection) -> None:
    async with asyncio.timeout(5.0):
        with pytest.raises((ConnectionClosed, FrameError, ConnectionError)):
            while True:  # anything still buffered, then the close
                await conn.read_frame()


async def test_garbage_frames_cost_only_their_connection(cluster: Cluster) -> None:
    leader = await cluster.leader()
    server = cluster.servers[leader]
    async with cluster.client((leader,)) as bystander:
        await bystander.put(b"before", b"1")

        # A request with a readable id but bad args: answered, and the connection carries on.
        conn = await _raw(cluster, leader)
        bad = msgpack.packb([7, "put", [b"junk"]], use_bin_type=True)
        await conn.send(FrameKind.CLIENT_REQUEST, bad)
        kind, payload = await conn.read_frame()
        response = decode_response(payload)
        assert kind is FrameKind.CLIENT_RESPONSE and response.id == 7
        assert response.error is not None and response.error.code is ErrorCode.BAD_REQUEST
        assert "request.args.command" in response.error.message
        await conn.send(FrameKind.CLIENT_REQUEST, encode_request(Request(8, Status())))
        kind, payload = await conn.read_frame()
        response = decode_response(payload)
        assert response.id == 8 and response.body is not None
        status = decode_result(RpcOp.STATUS, response.body)
        assert isinstance(status, MemberStatus) and status.id == leader

        # Not a request at all: answered with id 0, then that connection alone is closed.
        await conn.send(FrameKind.CLIENT_REQUEST, b"\xc1\xc1 not msgpack")
        kind, payload = await conn.read_frame()
        response = decode_response(payload)
        assert response.id == 0 and response.error is not None
        assert response.error.code is ErrorCode.BAD_REQUEST
        await _expect_closed(conn)

        # A Raft frame, and a frame with a bad header, on a client connection: closed.
        conn = await _raw(cluster, leader)
        await conn.send(FrameKind.RAFT, b"\x00" * 16)
        await _expect_closed(conn)
        conn = await _raw(cluster, leader)
        conn.writer.write(b"XX\x01\x02\x00\x00\x00\x01!")
        await _expect_closed(conn)
        # A length over the limit is refused from the header, before any payload is read.
        conn = await _raw(cluster, leader)
        conn.writer.write(encode_frame(FrameKind.CLIENT_REQUEST, b"")[:4] + b"\xff\xff\xff\xff")
        await _expect_closed(conn)

        # Bytes before any handshake: refused.
        host, port = cluster.clients[leader]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        async with asyncio.timeout(5.0):
            assert await reader.read() == b""
        writer.close()

        # The bystander's connection and the server are unharmed.
        assert bystander.connections == 1
        await bystander.put(b"after", b"2")
        assert pairs(await bystander.get(b"after")) == [(b"after", b"2")]
    assert server.stats.closed_for_protocol_errors >= 4
    assert server.stats.bad_requests >= 2


async def test_a_write_of_unknown_outcome_is_not_repeated(cluster: Cluster) -> None:
    leader = await cluster.leader()
    node = cluster.nodes[leader]
    for i in IDS:
        if i != leader:
            await cluster.stop(i)  # the leader's next entry can never commit
    server = cluster.servers[leader]
    async with cluster.client((leader,), timeout=5.0) as client:
        last = node.status()["last_index"]
        sent = server.stats.requests
        put = asyncio.create_task(client.put(b"limbo", b"?"))
        await wait_for_async(lambda: node.status()["last_index"] > last, what="the entry appended")
        # CheckQuorum deposes the leader (or its request timeout fires): nobody can say whether
        # the entry will ever apply, so the client must not send it again.
        with pytest.raises(StoreOutcomeUnknownError) as info:
            await put
        assert info.value.code == ErrorCode.OUTCOME_UNKNOWN
        assert server.stats.requests == sent + 1, "the write was sent again"
        # A read may be repeated; with no quorum it runs out of time instead.
        with pytest.raises(StoreUnavailableError) as unavailable:
            await client.get(b"limbo", timeout=1.0)
        assert not isinstance(unavailable.value, StoreOutcomeUnknownError)


async def test_membership_calls_over_the_wire(cluster: Cluster) -> None:
    leader = await cluster.leader()
    target = next(i for i in IDS if i != leader)
    async with cluster.client() as client:
        await client.put(b"m", b"1")  # the new leader's first entry is committed
        await client.transfer_leadership(target, timeout=5.0)
        assert await cluster.leader() == target
        await client.put(b"m", b"2")
        assert client.leader_endpoint == cluster.clients[target]

        gone = next(i for i in IDS if i != target)
        await client.member_remove(gone)
        await wait_for_async(lambda: cluster.nodes[gone].removed, what="the removal applied")
        status = await client.status(cluster.clients[target])
        assert gone not in status.voters and len(status.voters) == 2
        with pytest.raises(StoreError) as info:
            await client.member_remove(gone)  # no longer a member: refused, not retried
        assert info.value.code == ErrorCode.REFUSED
        assert "not a member" in str(info.value)


async def test_an_oversized_request_is_refused_before_it_is_sent(cluster: Cluster) -> None:
    await cluster.leader()
    async with cluster.client(max_request_size=1024) as client:
        with pytest.raises(InvalidRequestError, match="more than the 1024 a member accepts"):
            await client.put(b"big", b"x" * 2048)
        await client.put(b"small", b"x" * 100)  # the connection is still fine
        assert (await client.get(b"big")).count == 0
