"""asyncio TCP between Raft members: framed, versioned, authenticated, optionally over TLS.

Three layers, each usable on its own (the store's client RPC reuses the first two with its own
frame kinds):

1. Framing. A frame is a fixed 8-byte header ``[magic "HR"][version u8][kind u8][length u32]``
   followed by `length` payload bytes. A wrong magic, an unknown version or kind, or a length over
   the limit is a `FrameError`: the connection is closed, the member carries on.
2. Handshake. Before anything else the two ends prove to each other that they know the cluster
   secret: HMAC-SHA256 over a transcript binding the cluster ID, both node IDs and a fresh random
   nonce from each side, with a different role label for each direction so a proof cannot be
   reflected. A peer of another cluster, or one with another secret, is refused. The handshake has
   a deadline, so a silent connection is closed. `open_authenticated` is the dialing side,
   `AuthenticatedServer` (or `serve_authenticated`) the listening side; both hand over an
   `AuthenticatedConnection`. The handshake authenticates the connection; only TLS keeps its
   frames confidential and untampered on a hostile network.
3. `PeerTransport`: Raft messages between members. One outbound connection per peer, fed by a
   bounded queue (a full queue drops the newest message: Raft tolerates loss, and `send` never
   blocks); reconnection with capped exponential backoff and jitter; queued frames are coalesced
   into one write. Inbound connections deliver each message to `on_message` after checking that
   it is addressed to this member and sent by the peer that authenticated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import secrets
import socket
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

from hamgr.raft.codec import CodecError, decode_message, encode_message
from hamgr.raft.types import Message

__all__ = [
    "MAGIC",
    "PROTOCOL_VERSION",
    "AuthenticatedConnection",
    "AuthenticatedServer",
    "ClusterAuth",
    "ConnectionClosed",
    "FrameError",
    "FrameKind",
    "HandshakeError",
    "PeerTransport",
    "ProtocolError",
    "TransportLimits",
    "TransportStats",
    "encode_frame",
    "open_authenticated",
    "parse_header",
    "read_frame",
    "serve_authenticated",
    "write_frame",
]

log = logging.getLogger(__name__)

# --- framing ----------------------------------------------------------------------------------

MAGIC = b"HR"
PROTOCOL_VERSION = 1
HEADER = struct.Struct(">2sBBI")
"""Frame header: magic, protocol version, frame kind, payload length (big-endian)."""

MAX_HANDSHAKE_FRAME = 1024
"""Frames before authentication are tiny; an unauthenticated peer cannot make us buffer more."""


class FrameKind(IntEnum):
    """What a frame's payload is. 1-15 carry application traffic, 16 and up the handshake."""

    RAFT = 1
    CLIENT_REQUEST = 2
    CLIENT_RESPONSE = 3
    HELLO = 16
    WELCOME = 17
    PROOF = 18
    ACCEPT = 19
    REJECT = 20


class ProtocolError(Exception):
    """The other end broke the protocol; the connection must be closed."""


class FrameError(ProtocolError):
    """A frame that cannot be read: bad magic, version, kind or length, or truncated."""


class HandshakeError(ProtocolError):
    """Authentication failed or was refused (wrong secret, cluster ID or node ID)."""


class ConnectionClosed(Exception):
    """The other end closed the connection cleanly, between two frames."""


def encode_frame(kind: FrameKind, payload: bytes) -> bytes:
    """One frame: header plus payload."""
    if len(payload) > 0xFFFFFFFF:
        raise ValueError(f"frame payload of {len(payload)} bytes does not fit a u32 length")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, kind, len(payload)) + payload


def parse_header(header: bytes, max_size: int) -> tuple[FrameKind, int]:
    """Check a frame header; returns (kind, payload length) or raises `FrameError`."""
    magic, version, kind, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}: not a hamgr peer")
    if version != PROTOCOL_VERSION:
        raise FrameError(
            f"unsupported protocol version {version} (this member speaks {PROTOCOL_VERSION})"
        )
    try:
        frame_kind = FrameKind(kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind}") from None
    if length > max_size:
        raise FrameError(f"{frame_kind.name} frame of {length} bytes exceeds the limit {max_size}")
    return frame_kind, length


async def read_frame(reader: asyncio.StreamReader, max_size: int) -> tuple[FrameKind, bytes]:
    """Read one frame. Raises `ConnectionClosed` on a clean end, `FrameError` on a bad frame."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ConnectionClosed("connection closed by peer") from None
        raise FrameError(f"truncated frame header ({len(exc.partial)} bytes)") from None
    kind, length = parse_header(header, max_size)
    if not length:
        return kind, b""
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(
            f"truncated {kind.name} frame: {len(exc.partial)} of {length} payload bytes"
        ) from None
    return kind, payload


async def write_frame(writer: asyncio.StreamWriter, kind: FrameKind, payload: bytes) -> None:
    """Write one frame and wait until the transport's buffer has room again."""
    writer.write(encode_frame(kind, payload))
    await writer.drain()


def _format_address(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


def _enable_keepalive(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


# --- handshake --------------------------------------------------------------------------------

NONCE_SIZE = 32
MIN_SECRET_SIZE = 16
MAX_CLUSTER_ID_LEN = 128
_MAC_LABEL = "hamgr-peer-handshake-v1"
_MAC_SIZE = hashlib.sha256().digest_size


@dataclass(frozen=True)
class ClusterAuth:
    """Who we are in the handshake: cluster, node ID (0 = a non-member client), secret."""

    cluster_id: str
    node_id: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.cluster_id, str) or not self.cluster_id:
            raise ValueError("cluster_id must be a non-empty string")
        if len(self.cluster_id.encode()) > MAX_CLUSTER_ID_LEN:
            raise ValueError(f"cluster_id is longer than {MAX_CLUSTER_ID_LEN} bytes")
        if type(self.node_id) is not int or self.node_id < 0:
            raise ValueError(f"node_id must be a non-negative integer, not {self.node_id!r}")
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_SIZE:
            raise ValueError(f"the cluster secret must be at least {MIN_SECRET_SIZE} bytes")


def _mac(
    auth: ClusterAuth, role: str, client_id: int, server_id: int, c_nonce: bytes, s_nonce: bytes
) -> bytes:
    transcript = msgpack.packb(
        [_MAC_LABEL, role, auth.cluster_id, client_id, server_id, c_nonce, s_nonce],
        use_bin_type=True,
    )
    return hmac.new(auth.secret, transcript, hashlib.sha256).digest()


def _handshake_fields(payload: bytes, what: str, count: int) -> tuple[Any, ...]:
    try:
        obj = msgpack.unpackb(
            payload,
            use_list=False,
            raw=False,
            max_str_len=MAX_CLUSTER_ID_LEN,
            max_bin_len=64,
            max_array_len=8,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise HandshakeError(f"malformed {what}: {type(exc).__name__}") from None
    if type(obj) is not tuple or len(obj) != count:
        raise HandshakeError(f"malformed {what}: expected an array of {count} fields")
    return obj


def _check_id(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise HandshakeError(f"malformed {what}: bad node id")
    return value


def _check_bin(value: object, size: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise HandshakeError(f"malformed {what}: expected {size} random bytes")
    return value


def _check_kind(kind: FrameKind, payload: bytes, expected: FrameKind) -> None:
    if kind is FrameKind.REJECT:
        reason = payload.decode("utf-8", "replace")[:200]
        raise HandshakeError(f"refused by peer: {reason}")
    if kind is not expected:
        raise FrameError(f"expected a {expected.name} frame, got {kind.name}")


async def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    """Tell the other end why (best effort), so its operator sees the cause in its log."""
    with contextlib.suppress(Exception):
        await write_frame(writer, FrameKind.REJECT, reason.encode())


async def client_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    auth: ClusterAuth,
    expect_peer: int | None,
) -> int:
    """Authenticate as the dialing side; returns the server's node ID.

    With `expect_peer`, a server that is another node than the one we meant to reach is refused.
    """
    c_nonce = secrets.token_bytes(NONCE_SIZE)
    hello = [auth.cluster_id, auth.node_id, expect_peer or 0, c_nonce]
    await write_frame(writer, FrameKind.HELLO, msgpack.packb(hello, use_bin_type=True))
    try:
        kind, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    except ConnectionClosed:
        raise HandshakeError("peer closed the connection before answering our HELLO") from None
    _check_kind(kind, payload, FrameKind.WELCOME)
    server_id, s_nonce, s_mac = _handshake_fields(payload, "WELCOME", 3)
    server_id = _check_id(server_id, "WELCOME")
    s_nonce = _check_bin(s_nonce, NONCE_SIZE, "WELCOME")
    s_mac = _check_bin(s_mac, _MAC_SIZE, "WELCOME")
    if expect_peer is not None and server_id != expect_peer:
        raise HandshakeError(f"dialed node {expect_peer} but node {server_id} answered")
    if not hmac.compare_digest(
        s_mac, _mac(auth, "server", auth.node_id, server_id, c_nonce, s_nonce)
    ):
        raise HandshakeError("peer failed to prove the cluster secret (wrong secret or cluster id)")
    proof = _mac(auth, "client", auth.node_id, server_id, c_nonce, s_nonce)
    await write_frame(writer, FrameKind.PROOF, msgpack.packb([proof], use_bin_type=True))
    try:
        kind, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    except ConnectionClosed:
        raise HandshakeError("peer closed the connection after our proof") from None
    _check_kind(kind, payload, FrameKind.ACCEPT)
    return server_id


async def server_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    auth: ClusterAuth,
    accept_peer: Callable[[int], bool] | None = None,
) -> int:
    """Authenticate as the listening side; returns the (proven) node ID of the client."""
    kind, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    _check_kind(kind, payload, FrameKind.HELLO)
    cluster_id, client_id, wanted, c_nonce = _handshake_fields(payload, "HELLO", 4)
    if type(cluster_id) is not str:
        raise HandshakeError("malformed HELLO: cluster id is not a string")
    client_id = _check_id(client_id, "HELLO")
    wanted = _check_id(wanted, "HELLO")
    c_nonce = _check_bin(c_nonce, NONCE_SIZE, "HELLO")
    if cluster_id != auth.cluster_id:
        await _refuse(writer, "cluster id mismatch")
        raise HandshakeError(f"peer belongs to cluster {cluster_id!r}, not {auth.cluster_id!r}")
    if wanted not in (0, auth.node_id):
        await _refuse(writer, f"this is node {auth.node_id}, not node {wanted}")
        raise HandshakeError(f"peer dialed node {wanted}, but this is node {auth.node_id}")
    if accept_peer is not None and not accept_peer(client_id):
        await _refuse(writer, f"node id {client_id} is not accepted here")
        raise HandshakeError(f"peer claims node id {client_id}, which is not accepted here")
    s_nonce = secrets.token_bytes(NONCE_SIZE)
    s_mac = _mac(auth, "server", client_id, auth.node_id, c_nonce, s_nonce)
    welcome = msgpack.packb([auth.node_id, s_nonce, s_mac], use_bin_type=True)
    await write_frame(writer, FrameKind.WELCOME, welcome)
    try:
        kind, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    except ConnectionClosed:
        raise HandshakeError(
            f"peer claiming node {client_id} closed the connection instead of proving the secret"
        ) from None
    _check_kind(kind, payload, FrameKind.PROOF)
    (c_mac,) = _handshake_fields(payload, "PROOF", 1)
    c_mac = _check_bin(c_mac, _MAC_SIZE, "PROOF")
    if not hmac.compare_digest(
        c_mac, _mac(auth, "client", client_id, auth.node_id, c_nonce, s_nonce)
    ):
        await _refuse(writer, "authentication failed")
        raise HandshakeError(f"peer claiming node {client_id} failed to prove the cluster secret")
    await write_frame(writer, FrameKind.ACCEPT, b"")
    return client_id


class AuthenticatedConnection:
    """A connection whose other end proved the cluster secret; frames in, frames out."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer_id: int,
        max_frame_size: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer_id = peer_id
        """The node ID the other end proved (0 for a non-member client)."""
        self.peer_address = _format_address(writer.get_extra_info("peername"))
        self.max_frame_size = max_frame_size

    async def read_frame(self) -> tuple[FrameKind, bytes]:
        """Next frame; `ConnectionClosed` at a clean end, `FrameError` on a bad frame."""
        return await read_frame(self.reader, self.max_frame_size)

    async def send(self, kind: FrameKind, payload: bytes) -> None:
        """Write one frame and wait for buffer room."""
        await write_frame(self.writer, kind, payload)

    async def send_encoded(self, frames: Iterable[bytes]) -> None:
        """Write frames already built by `encode_frame`, as one write (coalesced)."""
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    def is_closing(self) -> bool:
        """True once either end started closing the connection."""
        return self.writer.is_closing()

    async def close(self) -> None:
        """Close the connection (waits at most a second for the close to finish)."""
        await _close_writer(self.writer)


async def open_authenticated(
    host: str,
    port: int,
    auth: ClusterAuth,
    *,
    expect_peer: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = 5.0,
    max_frame_size: int = 64 * 1024 * 1024,
) -> AuthenticatedConnection:
    """Dial a member and run the handshake, all within `timeout` seconds.

    Raises OSError (connect, TLS), TimeoutError, or `ProtocolError` (refused, bad peer).
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context is not None else None,
            ssl_handshake_timeout=timeout if ssl_context is not None else None,
        )
    try:
        _enable_keepalive(writer)
        async with asyncio.timeout(timeout):
            peer_id = await client_handshake(reader, writer, auth, expect_peer)
    except BaseException:
        await _close_writer(writer)
        raise
    return AuthenticatedConnection(reader, writer, peer_id, max_frame_size)


ConnectionHandler = Callable[[AuthenticatedConnection], Awaitable[None]]


class AuthenticatedServer:
    """Listens, authenticates each connection, then hands it to `handler`.

    Bad handshakes are logged with the peer's address and reason, reported to `on_reject`, and
    closed. The connection is closed when `handler` returns. `close()` stops listening and ends
    every connection, authenticated or not.
    """

    def __init__(
        self,
        auth: ClusterAuth,
        handler: ConnectionHandler,
        *,
        accept_peer: Callable[[int], bool] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = 5.0,
        max_frame_size: int = 64 * 1024 * 1024,
        max_pending_handshakes: int = 64,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self._auth = auth
        self._handler = handler
        self._accept_peer = accept_peer
        self._ssl = ssl_context
        self._handshake_timeout = handshake_timeout
        self._max_frame_size = max_frame_size
        self._max_pending = max_pending_handshakes
        self._on_reject = on_reject
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending = 0

    async def start(self, host: str, port: int) -> None:
        """Start listening on host:port (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._on_connection,
            host,
            port,
            ssl=self._ssl,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl is not None else None,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def _reject(self, peer: str, reason: str) -> None:
        log.warning("refused connection from %s: %s", peer, reason)
        if self._on_reject is not None:
            self._on_reject(reason)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = _format_address(writer.get_extra_info("peername"))
        try:
            if self._pending >= self._max_pending:
                self._reject(peer, f"more than {self._max_pending} handshakes in progress")
                return
            _enable_keepalive(writer)
            self._pending += 1
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    peer_id = await server_handshake(reader, writer, self._auth, self._accept_peer)
            except TimeoutError:
                self._reject(peer, f"no handshake within {self._handshake_timeout} s")
                return
            except (ProtocolError, ConnectionClosed, OSError) as exc:
                self._reject(peer, _reason(exc))
                return
            finally:
                self._pending -= 1
            conn = AuthenticatedConnection(reader, writer, peer_id, self._max_frame_size)
            try:
                await self._handler(conn)
            except Exception:
                log.exception("connection handler for node %d at %s failed", peer_id, peer)
        finally:
            await _close_writer(writer)
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


async def serve_authenticated(
    host: str, port: int, auth: ClusterAuth, handler: ConnectionHandler, **options: Any
) -> AuthenticatedServer:
    """Create an `AuthenticatedServer` (options as its constructor's) and start it."""
    server = AuthenticatedServer(auth, handler, **options)
    await server.start(host, port)
    return server


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen (its owner learns of the end another way)."""
    if not task.cancelled():
        task.exception()


# --- Raft peer transport ----------------------------------------------------------------------


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
        return self.dropped_queue_full + self.dropped_unknown_peer + self.dropped_oversize


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
        log.info("node %d listening on %s", self.node_id, _format_address(self.bound_address))

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
                )
            except Exception as exc:
                self.stats.connect_failures += 1
                expected = isinstance(exc, OSError | TimeoutError | ProtocolError)
                log.log(
                    logging.DEBUG if expected and attempt else logging.WARNING,
                    "node %d: cannot connect to peer %d at %s:%d: %s",
                    self.node_id,
                    peer.node_id,
                    host,
                    port,
                    _reason(exc),
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
                    _reason(exc),
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
