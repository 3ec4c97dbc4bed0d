"""asyncio TCP between Raft members: framed, versioned, authenticated, optionally over TLS.

The peer protocol has three layers, each usable on its own (the store's client RPC reuses the
first two with its own frame kinds):

1. Framing, in `hamgr.raft.net.framing`: the frame format and reading and writing frames.
2. Handshake, in `hamgr.raft.net.handshake`: both ends prove the cluster secret before any traffic;
   `open_authenticated` dials, `AuthenticatedServer` listens.
3. `PeerTransport`, here: Raft messages between members. One outbound connection per peer, fed by
   a bounded queue (a full queue drops the newest message: Raft tolerates loss, and `send` never
   blocks); reconnection with capped exponential backoff and jitter, a failed attempt dropping
   what was queued (stale by the time the peer is back); queued frames are coalesced into one
   write. Inbound connections deliver each message to `on_message` after checking that
   it is addressed to this member and sent by the peer that authenticated. Outbound connections
   leave from the bind address unless it is a wildcard, so one address carries all of a
   member's traffic (and a firewall rule on it cuts the member off both ways).

The two lower layers are `hamgr.raft.net.framing` and `hamgr.raft.net.handshake`; import their
names from there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hamgr.raft.core.types import Message
from hamgr.raft.net.codec import CodecError, decode_message, encode_message
from hamgr.raft.net.framing import (
    ConnectionClosed,
    FrameKind,
    ProtocolError,
    encode_frame,
)
from hamgr.raft.net.handshake import (
    AuthenticatedConnection,
    AuthenticatedServer,
    ClusterAuth,
    error_reason,
    format_address,
    open_authenticated,
    source_host_for,
)

__all__ = [
    "PeerTransport",
    "TransportLimits",
    "TransportStats",
]

log = logging.getLogger(__name__)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen (its owner learns of the end another way)."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class TransportLimits:
    """Sizes and timings of a `PeerTransport`; the defaults suit a LAN."""

    max_frame_size: int = 64 * 1024 * 1024
    """Largest frame accepted or sent (bytes); snapshots travel in one message."""
    max_queue_messages: int = 1024
    """Messages waiting per peer; beyond this, new messages are dropped."""
    max_queue_bytes: int = 16 * 1024 * 1024
    """Bytes waiting per peer; a message is always accepted into an empty queue."""
    max_batch_bytes: int = 1024 * 1024
    """Queued frames are written together up to about this many bytes."""
    handshake_timeout: float = 5.0
    """Seconds for an inbound connection to complete TLS and the handshake."""
    connect_timeout: float = 5.0
    """Seconds for an outbound connect, TLS and handshake."""
    backoff_initial: float = 0.05
    """First reconnect delay (seconds); doubles per failed attempt, with jitter."""
    backoff_max: float = 1.0
    """Cap of the reconnect delay (seconds)."""
    max_pending_handshakes: int = 64
    """Inbound connections allowed to be in the handshake at once."""

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_queue_messages", "max_queue_bytes", "max_batch_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"TransportLimits.{name} must be a positive integer: {value!r}")
        if self.max_frame_size > 0xFFFFFFFF:
            raise ValueError("TransportLimits.max_frame_size must fit the u32 length header")
        if self.max_pending_handshakes <= 0:
            raise ValueError("TransportLimits.max_pending_handshakes must be positive")
        for name in ("handshake_timeout", "connect_timeout", "backoff_initial", "backoff_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TransportLimits.{name} must be positive seconds")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("TransportLimits.backoff_max must be >= backoff_initial")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before reconnect attempt `attempt` (0-based): capped doubling, 50-100 % jitter."""
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 30))
        return delay * rng.uniform(0.5, 1.0)


@dataclass
class TransportStats:
    """Counters of a `PeerTransport` (they only grow)."""

    sent: int = 0
    """Messages written to a peer's connection."""
    sent_bytes: int = 0
    writes: int = 0
    """Socket writes for those messages: fewer than `sent` when queued frames were coalesced."""
    received: int = 0
    """Messages delivered to `on_message`."""
    received_bytes: int = 0
    dropped_queue_full: int = 0
    dropped_unknown_peer: int = 0
    dropped_oversize: int = 0
    dropped_unreachable: int = 0
    """Messages queued for a peer that a connection attempt then failed to reach."""
    rejected_connections: int = 0
    """Inbound connections refused in the handshake (bad secret, cluster, garbage, timeout)."""
    protocol_errors: int = 0
    """Authenticated inbound connections closed for a bad frame or message."""
    connects: int = 0
    """Outbound connections established (handshake done)."""
    connect_failures: int = 0

    @property
    def dropped(self) -> int:
        """Messages given to `send` that will never be written."""
        return (
            self.dropped_queue_full
            + self.dropped_unknown_peer
            + self.dropped_oversize
            + self.dropped_unreachable
        )


class _OutboundPeer:
    """The queue and the connection loop toward one peer."""

    def __init__(self, node_id: int, address: tuple[str, int]) -> None:
        self.node_id = node_id
        self.address = address
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.dropping = False
        self.connected = False


class PeerTransport:
    """Sends Raft messages to peers and delivers the ones addressed to this member.

    `send` is non-blocking and routes by `msg.to`; `on_message` runs in the event loop for every
    valid message from an authenticated peer. Call `send`, `set_peer` and `remove_peer` from the
    event loop's thread. `peers` may include this node's own ID; that entry is ignored.
    """

    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        secret: bytes,
        bind: tuple[str, int],
        peers: dict[int, tuple[str, int]],
        on_message: Callable[[Message], None],
        *,
        advertise: tuple[str, int] | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        limits: TransportLimits | None = None,
    ) -> None:
        if type(node_id) is not int or node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, not {node_id!r}")
        self.node_id = node_id
        self._auth = ClusterAuth(cluster_id, node_id, secret)
        self._bind = bind
        # Dial from the address we listen on, so a peer (or a firewall) sees one address per
        # member both ways; a wildcard bind leaves the choice to the kernel.
        self._source_host = source_host_for(bind[0])
        self._advertise = advertise
        self._on_message = on_message
        self._client_ssl = client_ssl
        self.limits = limits or TransportLimits()
        self.stats = TransportStats()
        self._rng = random.Random()
        self._peers: dict[int, _OutboundPeer] = {}
        self._inbound: dict[int, AuthenticatedConnection] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._running = False
        self._stopped = False
        self._server = AuthenticatedServer(
            self._auth,
            self._serve_peer,
            accept_peer=self._acceptable_peer,
            ssl_context=server_ssl,
            handshake_timeout=self.limits.handshake_timeout,
            max_frame_size=self.limits.max_frame_size,
            max_pending_handshakes=self.limits.max_pending_handshakes,
            on_reject=self._count_reject,
        )
        for peer_id, address in peers.items():
            self.set_peer(peer_id, address)

    # -- lifecycle

    async def start(self) -> None:
        """Listen on the bind address and start dialing the peers."""
        if self._running or self._stopped:
            raise RuntimeError("PeerTransport can be started once")
        await self._server.start(*self._bind)
        self._running = True
        for peer in self._peers.values():
            self._spawn(peer)
        log.info("node %d listening on %s", self.node_id, format_address(self.bound_address))

    async def stop(self) -> None:
        """Close the listener and every connection, and end all tasks. Queued messages are lost."""
        self._running = False
        self._stopped = True
        for peer in self._peers.values():
            self._retire(peer)
        await asyncio.gather(*self._retired, return_exceptions=True)
        await self._server.close()
        self._peers.clear()
        self._inbound.clear()

    @property
    def bound_address(self) -> tuple[str, int]:
        """The (host, port) the listener actually bound (useful with port 0)."""
        return self._server.address

    @property
    def advertised_address(self) -> tuple[str, int]:
        """The address peers should dial: `advertise` if given (port 0 = bound port), else bound."""
        if self._advertise is None:
            return self.bound_address
        host, port = self._advertise
        return host, port or self.bound_address[1]

    # -- membership

    def set_peer(self, node_id: int, address: tuple[str, int]) -> None:
        """Add a peer or change its address (the connection is redialed, the queue kept)."""
        if type(node_id) is not int or node_id <= 0:
            raise ValueError(f"peer node id must be a positive integer, not {node_id!r}")
        if node_id == self.node_id:
            return
        host, port = address
        address = (str(host), int(port))
        peer = self._peers.get(node_id)
        if peer is None:
            peer = self._peers[node_id] = _OutboundPeer(node_id, address)
        elif peer.address == address:
            return
        else:
            peer.address = address
            self._retire(peer)
        if self._running:
            self._spawn(peer)

    def remove_peer(self, node_id: int) -> None:
        """Forget a peer: its connection is closed and its queued messages dropped."""
        peer = self._peers.pop(node_id, None)
        if peer is not None:
            self._retire(peer)

    def _retire(self, peer: _OutboundPeer) -> None:
        """Cancel the peer's connection task; `stop` still waits for it to finish."""
        if peer.task is not None:
            peer.task.cancel()
            self._retired.add(peer.task)
            peer.task.add_done_callback(self._retired.discard)
            peer.task = None
        peer.connected = False

    def connected_peers(self) -> set[int]:
        """IDs of the peers with an outbound connection up right now."""
        return {p.node_id for p in self._peers.values() if p.connected}

    # -- sending

    def send(self, msg: Message) -> None:
        """Queue `msg` for `msg.to`; never blocks. Drops (and counts) what cannot be queued.

        A message that cannot be encoded at all (a field out of range) raises `CodecError`.
        """
        peer = self._peers.get(msg.to)
        if peer is None or self._stopped:
            self.stats.dropped_unknown_peer += 1
            log.debug("node %d: no peer %d, dropping %s", self.node_id, msg.to, msg.type.name)
            return
        payload = encode_message(msg)
        if len(payload) > self.limits.max_frame_size:
            self.stats.dropped_oversize += 1
            log.error(
                "node %d: %s to %d is %d bytes, over max_frame_size %d; dropped",
                self.node_id,
                msg.type.name,
                msg.to,
                len(payload),
                self.limits.max_frame_size,
            )
            return
        frame = encode_frame(FrameKind.RAFT, payload)
        if peer.queue and (
            len(peer.queue) >= self.limits.max_queue_messages
            or peer.queued_bytes + len(frame) > self.limits.max_queue_bytes
        ):
            self.stats.dropped_queue_full += 1
            if not peer.dropping:
                peer.dropping = True
                log.warning("node %d: send queue to peer %d full, dropping", self.node_id, msg.to)
            return
        peer.queue.append(frame)
        peer.queued_bytes += len(frame)
        peer.wake.set()

    def _spawn(self, peer: _OutboundPeer) -> None:
        peer.task = asyncio.get_running_loop().create_task(
            self._run_peer(peer), name=f"raft-peer-{self.node_id}->{peer.node_id}"
        )

    async def _run_peer(self, peer: _OutboundPeer) -> None:
        """Connect, pump the queue, and reconnect with backoff, until cancelled.

        Any failure, even an unexpected one (logged with its traceback), leads to a reconnect:
        this loop is the only way messages reach the peer, so it must not die.
        """
        attempt = 0
        while True:
            host, port = peer.address
            try:
                conn = await open_authenticated(
                    host,
                    port,
                    self._auth,
                    expect_peer=peer.node_id,
                    ssl_context=self._client_ssl,
                    server_hostname=host,
                    timeout=self.limits.connect_timeout,
                    max_frame_size=self.limits.max_frame_size,
                    source_host=self._source_host,
                )
            except Exception as exc:
                self.stats.connect_failures += 1
                # What waited for this peer is stale by now (Raft resends what still matters):
                # delivering it later would replay old appends and votes.
                self.stats.dropped_unreachable += len(peer.queue)
                peer.queue.clear()
                peer.queued_bytes = 0
                expected = isinstance(exc, OSError | TimeoutError | ProtocolError)
                log.log(
                    logging.DEBUG if expected and attempt else logging.WARNING,
                    "node %d: cannot connect to peer %d at %s:%d: %s",
                    self.node_id,
                    peer.node_id,
                    host,
                    port,
                    error_reason(exc),
                    exc_info=not expected,
                )
                await asyncio.sleep(self.limits.backoff(attempt, self._rng))
                attempt += 1
                continue
            attempt = 0
            self.stats.connects += 1
            peer.connected = True
            log.info(
                "node %d: connected to peer %d at %s", self.node_id, peer.node_id, conn.peer_address
            )
            try:
                await self._pump(peer, conn)
            except Exception as exc:
                expected = isinstance(exc, OSError | ProtocolError | ConnectionClosed)
                log.warning(
                    "node %d: connection to peer %d at %s lost: %s",
                    self.node_id,
                    peer.node_id,
                    conn.peer_address,
                    error_reason(exc),
                    exc_info=not expected,
                )
            finally:
                peer.connected = False
                await conn.close()
            await asyncio.sleep(self.limits.backoff(attempt, self._rng))

    async def _pump(self, peer: _OutboundPeer, conn: AuthenticatedConnection) -> None:
        watcher = asyncio.get_running_loop().create_task(self._watch(peer, conn))
        watcher.add_done_callback(_retrieve)
        try:
            while True:
                if not peer.queue:
                    if peer.dropping:
                        peer.dropping = False
                        log.info(
                            "node %d: send queue to peer %d drained", self.node_id, peer.node_id
                        )
                    peer.wake.clear()
                    await peer.wake.wait()
                if watcher.done():
                    watcher.result()
                    raise ConnectionClosed("connection closed by peer")
                batch: list[bytes] = []
                size = 0
                while peer.queue and size < self.limits.max_batch_bytes:
                    frame = peer.queue.popleft()
                    batch.append(frame)
                    size += len(frame)
                peer.queued_bytes -= size
                await conn.send_encoded(batch)
                self.stats.writes += 1
                self.stats.sent += len(batch)
                self.stats.sent_bytes += size
        finally:
            watcher.cancel()

    async def _watch(self, peer: _OutboundPeer, conn: AuthenticatedConnection) -> None:
        """Notice the peer closing our outbound connection (it never sends anything on it)."""
        try:
            data = await conn.reader.read(1)
            if data:
                raise ProtocolError("peer sent data on a send-only raft connection")
        finally:
            peer.wake.set()

    # -- receiving

    def _acceptable_peer(self, node_id: int) -> bool:
        return node_id > 0 and node_id != self.node_id

    def _count_reject(self, reason: str) -> None:
        self.stats.rejected_connections += 1

    async def _serve_peer(self, conn: AuthenticatedConnection) -> None:
        """Read Raft frames from an authenticated peer until it closes or misbehaves."""
        previous = self._inbound.get(conn.peer_id)
        if previous is not None:
            await previous.close()
        self._inbound[conn.peer_id] = conn
        log.info(
            "node %d: peer %d connected from %s", self.node_id, conn.peer_id, conn.peer_address
        )
        try:
            while True:
                kind, payload = await conn.read_frame()
                if kind is not FrameKind.RAFT:
                    raise ProtocolError(f"unexpected {kind.name} frame on a raft connection")
                msg = decode_message(payload, max_size=self.limits.max_frame_size)
                if msg.frm != conn.peer_id:
                    raise ProtocolError(f"message claims to be from node {msg.frm}")
                if msg.to != self.node_id:
                    raise ProtocolError(f"message is addressed to node {msg.to}")
                self.stats.received += 1
                self.stats.received_bytes += len(payload)
                try:
                    self._on_message(msg)
                except Exception:
                    log.exception("node %d: on_message failed for %s", self.node_id, msg.type.name)
        except ConnectionClosed:
            log.info(
                "node %d: peer %d at %s disconnected", self.node_id, conn.peer_id, conn.peer_address
            )
        except (ProtocolError, CodecError) as exc:
            self.stats.protocol_errors += 1
            log.warning(
                "node %d: closing connection from peer %d at %s: %s",
                self.node_id,
                conn.peer_id,
                conn.peer_address,
                exc,
            )
        except OSError as exc:
            log.warning(
                "node %d: connection from peer %d at %s failed: %s",
                self.node_id,
                conn.peer_id,
                conn.peer_address,
                exc,
            )
        finally:
            if self._inbound.get(conn.peer_id) is conn:
                del self._inbound[conn.peer_id]
