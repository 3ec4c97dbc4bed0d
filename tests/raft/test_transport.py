"""PeerTransport over real sockets on 127.0.0.x: delivery, reconnects, limits, auth, TLS, fuzz."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamgr.raft.core.types import Entry, Message, MsgType
from hamgr.raft.net.codec import CodecError, decode_message, encode_message
from hamgr.raft.net.framing import (
    HEADER,
    MAGIC,
    PROTOCOL_VERSION,
    ConnectionClosed,
    FrameError,
    FrameKind,
    encode_frame,
    parse_header,
    read_frame,
)
from hamgr.raft.net.handshake import MAX_HANDSHAKE_FRAME, ClusterAuth, open_authenticated
from hamgr.raft.net.transport import PeerTransport, TransportLimits
from tests.tools.poll import wait_for_async

CLUSTER = "test-cluster"
SECRET = b"s3cret-for-tests-0123456789"
WAIT = 10.0
"""Deadline (seconds) for any condition a test waits on."""

T = TypeVar("T")


def msg(frm: int, to: int, n: int, *, size: int = 0) -> Message:
    """A small distinguishable message: `n` rides in `commit`."""
    return Message(MsgType.HEARTBEAT, to=to, frm=frm, term=1, commit=n, context=b"x" * size)


def _hello(cluster: str = CLUSTER, node: int = 9, wanted: int = 1) -> bytes:
    """A HELLO frame as a client would send it (the nonce need not be random for a test)."""
    payload = msgpack.packb([cluster, node, wanted, b"n" * 32], use_bin_type=True)
    return encode_frame(FrameKind.HELLO, payload)


class Inbox:
    """on_message target that records messages and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    def __call__(self, m: Message) -> None:
        self.messages.append(m)
        self._changed.set()

    def numbers(self, frm: int | None = None) -> list[int]:
        return [m.commit for m in self.messages if frm is None or m.frm == frm]

    async def wait_for(self, pred: Callable[[list[Message]], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not pred(self.messages):
                self._changed.clear()
                await self._changed.wait()


class Node:
    """A started PeerTransport with its inbox."""

    def __init__(self, transport: PeerTransport, inbox: Inbox) -> None:
        self.t = transport
        self.inbox = inbox

    @property
    def id(self) -> int:
        return self.t.node_id

    @property
    def addr(self) -> tuple[str, int]:
        return self.t.bound_address


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node() -> AsyncIterator[MakeNode]:
    """Start transports on demand; all are stopped at the end of the test."""
    started: list[PeerTransport] = []

    async def make(
        node_id: int,
        host: str | None = None,
        *,
        port: int = 0,
        secret: bytes = SECRET,
        cluster: str = CLUSTER,
        **options: Any,
    ) -> Node:
        inbox = Inbox()
        t = PeerTransport(
            node_id,
            cluster,
            secret,
            (host or f"127.0.0.{10 + node_id}", port),
            {},
            inbox,
            **options,
        )
        await t.start()
        started.append(t)
        return Node(t, inbox)

    yield make
    for t in started:
        await t.stop()


def link(*nodes: Node) -> None:
    for a in nodes:
        for b in nodes:
            a.t.set_peer(b.id, b.addr)


async def send_until_delivered(src: Node, dst: Node, n: int, timeout: float = WAIT) -> None:
    """Resend message `n` every 100 ms until dst has it: Raft's transport may lose messages."""
    async with asyncio.timeout(timeout):
        while True:
            src.t.send(msg(src.id, dst.id, n))
            try:
                await dst.inbox.wait_for(lambda ms: n in [m.commit for m in ms], timeout=0.1)
                return
            except TimeoutError:
                continue


# --- framing -----------------------------------------------------------------------------------


def test_frame_header_round_trip_and_rejections() -> None:
    frame = encode_frame(FrameKind.RAFT, b"payload")
    assert parse_header(frame[: HEADER.size], 100) == (FrameKind.RAFT, 7)
    with pytest.raises(FrameError, match="bad magic"):
        parse_header(b"GET / HT", 100)
    with pytest.raises(FrameError, match="unsupported protocol version 9"):
        parse_header(HEADER.pack(MAGIC, 9, 1, 0), 100)
    with pytest.raises(FrameError, match="unknown frame kind 200"):
        parse_header(HEADER.pack(MAGIC, PROTOCOL_VERSION, 200, 0), 100)
    with pytest.raises(FrameError, match="RAFT frame of 101 bytes exceeds the limit 100"):
        parse_header(HEADER.pack(MAGIC, PROTOCOL_VERSION, 1, 101), 100)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ClusterAuth(CLUSTER, 1, b"short")
    with pytest.raises(ValueError, match="cluster_id"):
        ClusterAuth("", 1, SECRET)
    with pytest.raises(ValueError, match="max_queue_messages"):
        TransportLimits(max_queue_messages=0)
    with pytest.raises(ValueError, match="backoff_max"):
        TransportLimits(backoff_initial=2.0, backoff_max=1.0)
    with pytest.raises(ValueError, match="node_id"):
        PeerTransport(0, CLUSTER, SECRET, ("127.0.0.1", 0), {}, lambda m: None)


def test_backoff_is_capped_and_jittered() -> None:
    import random

    limits = TransportLimits(backoff_initial=0.1, backoff_max=1.0)
    rng = random.Random(1)
    delays = [limits.backoff(a, rng) for a in range(12)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert all(0.5 <= d <= 1.0 for d in delays[4:])
    assert len(set(delays[4:])) > 1


# --- delivery ----------------------------------------------------------------------------------


async def test_three_members_exchange_in_all_directions(make_node: MakeNode) -> None:
    nodes = [await make_node(i) for i in (1, 2, 3)]
    link(*nodes)
    for src in nodes:
        for dst in nodes:
            if src is not dst:
                for k in range(5):
                    src.t.send(msg(src.id, dst.id, src.id * 100 + k))
    for dst in nodes:
        others = [n.id for n in nodes if n is not dst]
        await dst.inbox.wait_for(lambda ms: len(ms) >= 10)
        for src_id in others:
            # one connection per peer keeps each sender's order
            assert dst.inbox.numbers(src_id) == [src_id * 100 + k for k in range(5)]
        assert all(m.to == dst.id for m in dst.inbox.messages)
    assert nodes[0].t.stats.sent == 10
    assert nodes[0].t.stats.received == 10
    assert nodes[0].t.connected_peers() == {2, 3}


async def test_messages_with_entries_and_burst_keep_order(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    link(a, b)
    entries = tuple(Entry(2, i, data=bytes([i % 256]) * 100) for i in range(1, 50))
    big = Message(MsgType.APP, to=2, frm=1, term=2, index=0, entries=entries, commit=10**6)
    a.t.send(big)
    for k in range(1000):  # within the default queue bound of 1024
        a.t.send(msg(1, 2, k))
    await b.inbox.wait_for(lambda ms: len(ms) == 1001)
    assert b.inbox.messages[0] == big
    assert b.inbox.numbers()[1:] == list(range(1000))
    assert a.t.stats.dropped == 0
    assert a.t.stats.sent == 1001
    assert a.t.stats.writes <= 10  # the burst was coalesced into a few writes


async def test_peer_restart_is_survived(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    link(a, b)
    await send_until_delivered(a, b, 1)
    await send_until_delivered(b, a, 2)
    host, port = b.addr
    await b.t.stop()

    b2 = await make_node(2, host, port=port)
    link(a, b2)
    await send_until_delivered(a, b2, 3)
    await send_until_delivered(b2, a, 4)
    assert a.t.stats.connects >= 2
    assert a.t.connected_peers() == {2}


async def test_messages_queued_for_an_unreachable_peer_are_dropped_not_replayed(
    make_node: MakeNode,
) -> None:
    """What waited while the peer was down is stale when it comes back (old appends, votes of
    a past term): a failed connection attempt drops it, and only newer messages arrive."""
    a = await make_node(1)
    host = "127.0.0.12"
    with socket.socket() as s:  # a port with nobody listening, for now
        s.bind((host, 0))
        port = s.getsockname()[1]
    a.t.set_peer(2, (host, port))
    for k in range(1, 6):
        a.t.send(msg(1, 2, k))
    async with asyncio.timeout(WAIT):
        while a.t.stats.connect_failures == 0:
            await asyncio.sleep(0.01)
    assert a.t.stats.dropped_unreachable == 5
    assert a.t.stats.dropped == 5

    b = await make_node(2, host, port=port)
    await send_until_delivered(a, b, 100)
    assert all(n >= 100 for n in b.inbox.numbers()), b.inbox.numbers()


async def test_set_peer_moves_to_new_address_and_remove_peer_stops(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    b_moved = await make_node(2, "127.0.0.22")
    link(a, b)
    await send_until_delivered(a, b, 1)
    a.t.set_peer(2, b_moved.addr)
    await send_until_delivered(a, b_moved, 2)

    a.t.remove_peer(2)
    a.t.send(msg(1, 2, 3))
    assert a.t.stats.dropped_unknown_peer == 1
    assert a.t.connected_peers() == set()


# --- limits ------------------------------------------------------------------------------------


async def test_full_send_queue_drops_newest_and_counts(make_node: MakeNode) -> None:
    a = await make_node(1, limits=TransportLimits(max_queue_messages=10))
    b = await make_node(2)
    link(a, b)
    for k in range(100):  # send() never yields: the queue fills before any write
        a.t.send(msg(1, 2, k))
    assert a.t.stats.dropped_queue_full == 90
    await b.inbox.wait_for(lambda ms: len(ms) == 10)
    a.t.send(msg(1, 2, 999))
    await b.inbox.wait_for(lambda ms: 999 in [m.commit for m in ms])
    assert b.inbox.numbers() == [*range(10), 999]


async def test_send_queue_byte_bound(make_node: MakeNode) -> None:
    a = await make_node(1, limits=TransportLimits(max_queue_bytes=1000))
    b = await make_node(2)
    link(a, b)
    frame = HEADER.size + len(encode_message(msg(1, 2, 10, size=300)))
    assert 3 * frame <= 1000 < 4 * frame
    a.t.send(msg(1, 2, 0, size=5000))  # an empty queue takes any frame within max_frame_size
    for k in range(1, 10):
        a.t.send(msg(1, 2, k, size=300))
    assert a.t.stats.dropped_queue_full == 9
    await b.inbox.wait_for(lambda ms: len(ms) == 1)
    for k in range(10, 20):
        a.t.send(msg(1, 2, k, size=300))
    assert a.t.stats.dropped_queue_full == 9 + 7  # three frames of ~330 bytes fit in 1000
    await b.inbox.wait_for(lambda ms: len(ms) == 4)
    assert b.inbox.numbers() == [0, 10, 11, 12]


async def test_unknown_peer_and_oversized_messages_are_dropped(make_node: MakeNode) -> None:
    a = await make_node(1, limits=TransportLimits(max_frame_size=1024))
    b = await make_node(2)
    link(a, b)
    a.t.send(msg(1, 7, 1))
    a.t.send(msg(1, 2, 2, size=2000))
    assert a.t.stats.dropped_unknown_peer == 1
    assert a.t.stats.dropped_oversize == 1
    assert a.t.stats.dropped == 2
    await send_until_delivered(a, b, 3)
    assert b.inbox.numbers() == [3]


async def test_oversized_incoming_frame_closes_connection_only(make_node: MakeNode) -> None:
    a = await make_node(1)
    b = await make_node(2, limits=TransportLimits(max_frame_size=1024))
    link(a, b)
    a.t.send(msg(1, 2, 1, size=2000))
    await wait_for_async(lambda: b.t.stats.protocol_errors == 1, WAIT)
    await send_until_delivered(a, b, 2)
    assert b.inbox.numbers() == [2]
    assert a.t.stats.connects >= 2


# --- authentication ----------------------------------------------------------------------------


async def test_wrong_secret_is_refused_and_good_peers_still_served(make_node: MakeNode) -> None:
    a, good = await make_node(1), await make_node(2)
    bad = await make_node(3, secret=b"another-secret-0123456789")
    link(a, good)
    bad.t.set_peer(1, a.addr)
    bad.t.send(msg(3, 1, 666))
    await wait_for_async(
        lambda: a.t.stats.rejected_connections >= 2, WAIT
    )  # refused, and again on retry
    await send_until_delivered(good, a, 1)
    assert bad.t.stats.connects == 0
    assert bad.t.stats.connect_failures >= 2
    assert 666 not in a.inbox.numbers()
    assert all(m.frm == 2 for m in a.inbox.messages)


async def test_wrong_cluster_id_is_refused_and_logged(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hamgr.raft.net.transport")
    a, good = await make_node(1), await make_node(2)
    other = await make_node(3, cluster="other-cluster")
    link(a, good)
    other.t.set_peer(1, a.addr)
    other.t.send(msg(3, 1, 666))
    await wait_for_async(lambda: a.t.stats.rejected_connections >= 1, WAIT)
    await send_until_delivered(good, a, 1)
    assert 666 not in a.inbox.numbers()
    assert other.t.stats.connects == 0
    refusals = [
        r.getMessage() for r in caplog.records if "refused connection from" in r.getMessage()
    ]
    assert any("127.0.0." in r and "'other-cluster'" in r for r in refusals)
    assert any("refused by peer: cluster id mismatch" in r.getMessage() for r in caplog.records)


async def test_server_without_the_secret_is_refused_by_the_dialer(make_node: MakeNode) -> None:
    a = await make_node(1)
    impostor = await make_node(2, secret=b"another-secret-0123456789")
    a.t.set_peer(2, impostor.addr)
    a.t.send(msg(1, 2, 1))
    await wait_for_async(lambda: a.t.stats.connect_failures >= 2, WAIT)
    assert impostor.inbox.messages == []
    assert a.t.stats.connects == 0
    assert a.t.connected_peers() == set()


async def test_dialing_an_address_held_by_another_node_is_refused(make_node: MakeNode) -> None:
    a, c = await make_node(1), await make_node(3)
    a.t.set_peer(2, c.addr)  # stale address: node 3 lives there now
    a.t.send(msg(1, 2, 1))
    await wait_for_async(lambda: c.t.stats.rejected_connections >= 1, WAIT)
    assert a.t.stats.connects == 0
    assert c.inbox.messages == []


async def test_message_claiming_another_sender_closes_the_connection(make_node: MakeNode) -> None:
    a = await make_node(1)
    auth = ClusterAuth(CLUSTER, 2, SECRET)
    for spoofed in (msg(3, 1, 1), msg(2, 4, 2)):  # wrong sender, then wrong recipient
        conn = await open_authenticated(*a.addr, auth, expect_peer=1)
        await conn.send(FrameKind.RAFT, encode_message(spoofed))
        async with asyncio.timeout(WAIT):
            assert await conn.reader.read() == b""  # closed by the member
        await conn.close()
    assert a.t.stats.protocol_errors == 2
    conn = await open_authenticated(*a.addr, auth, expect_peer=1)
    await conn.send(FrameKind.RAFT, encode_message(msg(2, 1, 3)))
    await a.inbox.wait_for(lambda ms: len(ms) == 1)
    await conn.close()
    assert a.inbox.numbers() == [3]


def _transcript_mac(role: str, client: int, server: int, c_nonce: bytes, s_nonce: bytes) -> bytes:
    """The handshake's MAC as the protocol defines it (written out here as its specification)."""
    transcript = ["hamgr-peer-handshake-v1", role, CLUSTER, client, server, c_nonce, s_nonce]
    return hmac.new(SECRET, msgpack.packb(transcript, use_bin_type=True), hashlib.sha256).digest()


async def _read_frames(
    reader: asyncio.StreamReader, on_frame: Callable[[FrameKind], bool] = lambda k: False
) -> list[FrameKind]:
    """Frame kinds read until the connection closes (or on_frame says stop), within WAIT."""
    kinds: list[FrameKind] = []
    async with asyncio.timeout(WAIT):
        try:
            while True:
                kind, _ = await read_frame(reader, 1 << 20)
                kinds.append(kind)
                if on_frame(kind):
                    return kinds
        except (ConnectionClosed, FrameError, OSError):
            return kinds


async def test_client_that_cannot_prove_the_secret_gets_nothing_through(
    make_node: MakeNode,
) -> None:
    a = await make_node(1)
    raft = encode_frame(FrameKind.RAFT, encode_message(msg(9, 1, 1)))
    bogus_proof = encode_frame(FrameKind.PROOF, msgpack.packb([os.urandom(32)]))
    for instead_of_proof, answer in ((bogus_proof, [FrameKind.REJECT]), (raft, [])):
        reader, writer = await asyncio.open_connection(*a.addr)
        writer.write(_hello())
        kind, _ = await read_frame(reader, MAX_HANDSHAKE_FRAME)
        assert kind is FrameKind.WELCOME
        writer.write(instead_of_proof + raft)  # pipelined: must not be read as authenticated
        assert await _read_frames(reader) == answer
        writer.close()
    assert a.t.stats.rejected_connections == 2
    assert a.inbox.messages == []


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (_hello(cluster="other"), "cluster id mismatch"),
        (_hello(wanted=2), "this is node 1, not node 2"),
        (_hello(node=1), "node id 1 is not accepted here"),  # the member's own id
        (_hello(node=0), "node id 0 is not accepted here"),  # not a member
    ],
    ids=["other cluster", "other node wanted", "own id", "id 0"],
)
async def test_hello_is_refused_with_a_reason(
    make_node: MakeNode, hello: bytes, reason: str
) -> None:
    a = await make_node(1)
    reader, writer = await asyncio.open_connection(*a.addr)
    writer.write(hello)
    kind, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    assert (kind, payload.decode()) == (FrameKind.REJECT, reason)
    assert await _read_frames(reader) == []
    writer.close()
    assert a.t.stats.rejected_connections == 1


@pytest.mark.parametrize("server", ["honest", "bad proof", "wrong node"])
async def test_dialer_checks_the_server(make_node: MakeNode, server: str) -> None:
    """A fake node 2 answers HELLO, then ACCEPTs any proof: the dialer itself must check it."""
    received: list[FrameKind] = []

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
        _, client, _, c_nonce = msgpack.unpackb(payload)
        s_nonce = os.urandom(32)
        server_id = 3 if server == "wrong node" else 2
        mac = _transcript_mac("server", client, server_id, c_nonce, s_nonce)
        if server == "bad proof":
            mac = os.urandom(32)
        writer.write(encode_frame(FrameKind.WELCOME, msgpack.packb([server_id, s_nonce, mac])))

        def on_frame(kind: FrameKind) -> bool:
            if kind is FrameKind.PROOF:
                writer.write(encode_frame(FrameKind.ACCEPT, b""))
            return kind is FrameKind.RAFT

        received.extend(await _read_frames(reader, on_frame))
        writer.close()

    fake_server = await asyncio.start_server(fake, "127.0.0.12", 0)
    try:
        a = await make_node(1)
        a.t.set_peer(2, fake_server.sockets[0].getsockname()[:2])
        a.t.send(msg(1, 2, 1))
        if server == "honest":  # control: the fake speaks the protocol correctly
            await wait_for_async(lambda: received == [FrameKind.PROOF, FrameKind.RAFT], WAIT)
            assert a.t.stats.connects >= 1
        else:
            await wait_for_async(lambda: a.t.stats.connect_failures >= 2, WAIT)
            assert received == []  # refused before sending its proof
            assert a.t.stats.connects == 0
    finally:
        fake_server.close()


async def test_new_connection_from_a_peer_replaces_the_old_one(make_node: MakeNode) -> None:
    a = await make_node(1)
    auth = ClusterAuth(CLUSTER, 2, SECRET)
    old = await open_authenticated(*a.addr, auth, expect_peer=1)
    new = await open_authenticated(*a.addr, auth, expect_peer=1)
    async with asyncio.timeout(WAIT):
        assert await old.reader.read() == b""  # the member closed the stale connection
    await new.send(FrameKind.RAFT, encode_message(msg(2, 1, 1)))
    await a.inbox.wait_for(lambda ms: len(ms) == 1)
    await old.close()
    await new.close()


async def test_silent_connection_is_closed_after_handshake_timeout(make_node: MakeNode) -> None:
    a = await make_node(1, limits=TransportLimits(handshake_timeout=0.3))
    for preamble in (b"", HEADER.pack(MAGIC, PROTOCOL_VERSION, FrameKind.HELLO, 10)[:5]):
        reader, writer = await asyncio.open_connection(*a.addr)
        writer.write(preamble)
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        writer.close()
    assert a.t.stats.rejected_connections == 2


async def test_advertised_address_is_separate_from_bind(make_node: MakeNode) -> None:
    a = await make_node(1, advertise=("member-1.example", 0))
    b = await make_node(2, advertise=("member-2.example", 7000))
    host, port = a.addr
    assert host == "127.0.0.11" and port > 0
    assert a.t.advertised_address == ("member-1.example", port)
    assert b.t.advertised_address == ("member-2.example", 7000)
    c = await make_node(3)
    assert c.t.advertised_address == c.addr


async def test_peers_dial_from_their_bind_address(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    """Outbound connections leave from the bind host, so one address carries all of a member's
    traffic (a firewall rule on it isolates the member); a wildcard bind leaves it to the kernel."""
    caplog.set_level(logging.INFO, logger="hamgr.raft.net.transport")
    a, b = await make_node(1), await make_node(2)
    wild = await make_node(3, "0.0.0.0")
    link(a, b)
    wild.t.set_peer(2, b.addr)
    await send_until_delivered(a, b, 1)
    await send_until_delivered(wild, b, 2)
    accepted = [r.getMessage() for r in caplog.records if "connected from" in r.getMessage()]
    assert any(m.startswith("node 2: peer 1 connected from 127.0.0.11:") for m in accepted)
    assert any(m.startswith("node 1: peer 2 connected from 127.0.0.12:") for m in accepted)
    assert any(m.startswith("node 2: peer 3 connected from 127.0.0.1:") for m in accepted)


# --- TLS ---------------------------------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=hamgr-test",
            "-addext", "subjectAltName=IP:127.0.0.11,IP:127.0.0.12,IP:127.0.0.13",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
async def test_tls_round_trip(make_node: MakeNode, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cert))
    server.load_cert_chain(cert, key)
    server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: members present the cert too
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    client.load_cert_chain(cert, key)
    opts = {"server_ssl": server, "client_ssl": client}
    a, b = await make_node(1, **opts), await make_node(2, **opts)
    plain = await make_node(3)  # right secret, but no TLS
    link(a, b)
    plain.t.set_peer(1, a.addr)
    plain.t.send(msg(3, 1, 666))
    await send_until_delivered(a, b, 1)
    await send_until_delivered(b, a, 2)
    await wait_for_async(lambda: plain.t.stats.connect_failures >= 1, WAIT)
    assert 666 not in a.inbox.numbers()
    conn = await open_authenticated(*a.addr, ClusterAuth(CLUSTER, 2, SECRET), ssl_context=client)
    assert conn.writer.get_extra_info("ssl_object") is not None
    await conn.close()


# --- fuzz: hostile bytes at the listening port -------------------------------------------------


class LoopThread:
    """An event loop in a thread, so synchronous hypothesis tests can drive async code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class FuzzTarget:
    """Member 1 (under attack) and its good peer 2, living in a LoopThread."""

    FUZZ_MAX_FRAME = 64 * 1024
    ATTACKER = 9

    def __init__(self, runner: LoopThread) -> None:
        self.runner = runner
        self.member: Node
        self.good: Node
        self.counter = 0

    async def start(self) -> None:
        nodes = []
        for node_id in (1, 2):
            inbox = Inbox()
            limits = TransportLimits(max_frame_size=self.FUZZ_MAX_FRAME, handshake_timeout=5.0)
            t = PeerTransport(
                node_id, CLUSTER, SECRET, (f"127.0.0.{30 + node_id}", 0), {}, inbox, limits=limits
            )
            await t.start()
            nodes.append(Node(t, inbox))
        self.member, self.good = nodes
        link(self.member, self.good)

    async def stop(self) -> None:
        await self.good.t.stop()
        await self.member.t.stop()

    def failures(self) -> int:
        s = self.member.t.stats
        return s.rejected_connections + s.protocol_errors

    async def expect_closed(self, reader: asyncio.StreamReader) -> None:
        """The member must close the connection (EOF or reset) within the deadline."""
        async with asyncio.timeout(WAIT):
            try:
                while await reader.read(4096):
                    pass
            except OSError:
                pass

    async def raw_attack(self, data: bytes) -> None:
        reader, writer = await asyncio.open_connection(*self.member.addr)
        try:
            writer.write(data)
            writer.write_eof()
        except OSError:
            pass  # the member may already have closed on the first bad bytes
        await self.expect_closed(reader)
        writer.close()

    async def authenticated_attack(self, data: bytes) -> None:
        auth = ClusterAuth(CLUSTER, self.ATTACKER, SECRET)
        conn = await open_authenticated(*self.member.addr, auth, expect_peer=1)
        try:
            conn.writer.write(data)
            conn.writer.write_eof()
        except OSError:
            pass
        await self.expect_closed(conn.reader)
        await conn.close()

    async def good_peer_delivers(self) -> None:
        self.counter += 1
        n = self.counter
        await send_until_delivered(self.good, self.member, n)
        assert all(m.frm == 2 for m in self.member.inbox.messages)


@pytest.fixture(scope="module")
def fuzz() -> Any:
    runner = LoopThread()
    target = FuzzTarget(runner)
    runner.run(target.start())
    yield target
    runner.run(target.stop())
    runner.close()


def _header(
    kind: int, length: int, *, magic: bytes = MAGIC, version: int = PROTOCOL_VERSION
) -> bytes:
    return HEADER.pack(magic, version, kind, length)


def _not_deliverable(data: bytes) -> bool:
    """False if `data` starts with a complete, valid message from the attacker (rare, but a
    replayed hypothesis example can be one): that would rightly be delivered, not refused."""
    if len(data) < HEADER.size:
        return True
    try:
        kind, length = parse_header(data[: HEADER.size], len(data))
        m = decode_message(data[HEADER.size : HEADER.size + length])
    except (FrameError, CodecError):
        return True
    return not (kind is FrameKind.RAFT and m.frm == FuzzTarget.ATTACKER and m.to == 1)


_ATTACKER_FRAME = encode_frame(FrameKind.RAFT, encode_message(msg(9, 1, 5)))

pre_auth_garbage = st.one_of(
    st.binary(max_size=2048),
    st.integers(0, len(_hello()) - 1).map(lambda k: _hello()[:k]),  # truncated HELLO
    st.tuples(st.sampled_from(FrameKind), st.integers(MAX_HANDSHAKE_FRAME + 1, 2**32 - 1)).map(
        lambda t: _header(*t) + b"x" * 64  # length header over the handshake limit
    ),
    st.binary(max_size=MAX_HANDSHAKE_FRAME).map(lambda p: encode_frame(FrameKind.HELLO, p)),
    st.sampled_from([FrameKind.RAFT, FrameKind.CLIENT_REQUEST, FrameKind.PROOF]).map(
        lambda k: encode_frame(k, encode_message(msg(9, 1, 1)))  # anything before the handshake
    ),
    st.integers(0, 255)
    .filter(lambda v: v != PROTOCOL_VERSION)
    .map(lambda v: _header(FrameKind.HELLO, 10, version=v) + b"x" * 10),
    st.just(_hello(cluster="other")),
    st.just(_hello(node=1)),  # claims the member's own id
)

post_auth_garbage = st.one_of(
    st.binary(min_size=1, max_size=2048),
    st.binary(max_size=4096).map(lambda p: encode_frame(FrameKind.RAFT, p)),
    st.integers(FuzzTarget.FUZZ_MAX_FRAME + 1, 2**32 - 1).map(
        lambda n: _header(FrameKind.RAFT, n) + b"x" * 100  # oversized length header
    ),
    st.integers(1, len(_ATTACKER_FRAME) - 1).map(lambda k: _ATTACKER_FRAME[:k]),  # truncated
    st.tuples(
        st.sampled_from([k for k in FrameKind if k is not FrameKind.RAFT]),
        st.sampled_from([b"", _ATTACKER_FRAME[HEADER.size :]]),
    ).map(lambda t: encode_frame(*t)),  # a valid message, but in a frame of another kind
    st.just(encode_frame(FrameKind.RAFT, encode_message(msg(2, 1, 0)))),  # spoofs the good peer
    st.just(encode_frame(FrameKind.RAFT, encode_message(msg(9, 3, 0)))),  # not for this member
).filter(_not_deliverable)

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ_SETTINGS
@given(data=pre_auth_garbage)
def test_fuzz_before_handshake(fuzz: FuzzTarget, data: bytes) -> None:
    before = fuzz.failures()
    fuzz.runner.run(fuzz.raw_attack(data))
    assert fuzz.failures() == before + 1
    fuzz.runner.run(fuzz.good_peer_delivers())


@FUZZ_SETTINGS
@given(data=post_auth_garbage)
def test_fuzz_after_handshake(fuzz: FuzzTarget, data: bytes) -> None:
    before = fuzz.member.t.stats.protocol_errors
    fuzz.runner.run(fuzz.authenticated_attack(data))
    assert fuzz.member.t.stats.protocol_errors == before + 1
    fuzz.runner.run(fuzz.good_peer_delivers())


def test_fuzz_member_still_healthy_afterwards(fuzz: FuzzTarget) -> None:
    fuzz.runner.run(fuzz.good_peer_delivers())
    assert not any(m.frm == FuzzTarget.ATTACKER for m in fuzz.member.inbox.messages)
    assert fuzz.member.t.bound_address[0] == "127.0.0.31"
