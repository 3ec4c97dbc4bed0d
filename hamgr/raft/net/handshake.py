"""Mutual authentication of a peer connection with the cluster secret, before any traffic.

Before anything else the two ends prove to each other that they know the cluster secret:
HMAC-SHA256 over a transcript binding the cluster ID, both node IDs and a fresh random nonce from
each side, with a different role label for each direction so a proof cannot be reflected. A peer of
another cluster, or one with another secret, is refused. The handshake has a deadline, so a silent
connection is closed. `open_authenticated` is the dialing side, `AuthenticatedServer` (or
`serve_authenticated`) the listening side; both hand over an `AuthenticatedConnection`. The
handshake authenticates the connection; only TLS keeps its frames confidential and untampered on a
hostile network. HELLO, WELCOME, PROOF and the transcript are msgspec Structs (`HelloWire` and
the rest: nonces and MACs of their exact size), so a malformed frame is refused naming its field
(``malformed HELLO.nonce: Expected `bytes` of length >= 32``).

It sits on the framing layer (`hamgr.raft.net.framing`) and knows nothing of Raft, so the Raft
transport and the store's client RPC both open and accept connections through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from hamgr.raft.net.framing import (
    ConnectionClosed,
    FrameError,
    FrameKind,
    ProtocolError,
    encode_frame,
    read_frame,
    write_frame,
)
from hamgr.raft.net.repeatlog import RepeatLimiter
from hamgr.raft.net.wire import UInt, WireStruct, decode_strict

__all__ = [
    "MAX_CLUSTER_ID_LEN",
    "MAX_HANDSHAKE_FRAME",
    "MIN_SECRET_SIZE",
    "NONCE_SIZE",
    "AuthenticatedConnection",
    "AuthenticatedServer",
    "ClusterAuth",
    "ConnectionHandler",
    "HandshakeError",
    "client_handshake",
    "error_reason",
    "format_address",
    "open_authenticated",
    "serve_authenticated",
    "server_handshake",
    "source_host_for",
]

# The transport's logger name, as before this module was split out of it, so that logging
# configuration naming "hamgr.raft.net.transport" still covers refused connections.
log = logging.getLogger("hamgr.raft.net.transport")

MAX_HANDSHAKE_FRAME = 1024
"""Frames before authentication are tiny; an unauthenticated peer cannot make us buffer more."""
NONCE_SIZE = 32
MIN_SECRET_SIZE = 16
MAX_CLUSTER_ID_LEN = 128
_MAC_LABEL = "hamgr-peer-handshake-v1"
_MAC_SIZE = hashlib.sha256().digest_size
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


def source_host_for(listen_host: str) -> str | None:
    """The address outbound connections should leave from, given the host a member listens on.

    A member bound to one address also dials from it, so its peers see (and a firewall rule on
    that address catches) all of its traffic, not only what it accepts. A wildcard bind names
    no address: None lets the kernel choose, as before.
    """
    host = listen_host.strip()
    return None if host in _WILDCARD_HOSTS else host.strip("[]")


class HandshakeError(ProtocolError):
    """Authentication failed or was refused (wrong secret, cluster ID or node ID)."""


def format_address(peername: Any) -> str:
    """A socket peer name for logs: host:port, [v6host]:port."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)


def error_reason(exc: BaseException) -> str:
    """An exception as a log reason: its message, or its type when it has none."""
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


Nonce = Annotated[bytes, Meta(min_length=NONCE_SIZE, max_length=NONCE_SIZE)]
Mac = Annotated[bytes, Meta(min_length=_MAC_SIZE, max_length=_MAC_SIZE)]


class HelloWire(WireStruct):
    """HELLO, from the dialing side: who it is, whom it means to reach (0: anyone), its nonce."""

    cluster_id: Annotated[str, Meta(max_length=MAX_CLUSTER_ID_LEN)]
    node_id: UInt
    wanted: UInt
    nonce: Nonce


class WelcomeWire(WireStruct):
    """WELCOME, from the listening side: its node id, its nonce, its proof of the secret."""

    node_id: UInt
    nonce: Nonce
    mac: Mac


class ProofWire(WireStruct):
    """PROOF, from the dialing side: its proof of the secret."""

    mac: Mac


class TranscriptWire(WireStruct):
    """What each side's MAC covers."""

    label: str
    role: str
    cluster_id: str
    client_id: int
    server_id: int
    client_nonce: bytes
    server_nonce: bytes


_ENCODER = msgspec.msgpack.Encoder()
_HELLO = msgspec.msgpack.Decoder(HelloWire)
_WELCOME = msgspec.msgpack.Decoder(WelcomeWire)
_PROOF = msgspec.msgpack.Decoder(ProofWire)


def _mac(
    auth: ClusterAuth, role: str, client_id: int, server_id: int, c_nonce: bytes, s_nonce: bytes
) -> bytes:
    wire = TranscriptWire(_MAC_LABEL, role, auth.cluster_id, client_id, server_id, c_nonce, s_nonce)
    return hmac.new(auth.secret, _ENCODER.encode(wire), hashlib.sha256).digest()


def _malformed(field: str, problem: str) -> HandshakeError:
    return HandshakeError(f"malformed {field}: {problem}")


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
    hello = HelloWire(auth.cluster_id, auth.node_id, expect_peer or 0, c_nonce)
    await write_frame(writer, FrameKind.HELLO, _ENCODER.encode(hello))
    try:
        kind, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    except ConnectionClosed:
        raise HandshakeError("peer closed the connection before answering our HELLO") from None
    _check_kind(kind, payload, FrameKind.WELCOME)
    welcome = decode_strict(_WELCOME, payload, MAX_HANDSHAKE_FRAME, "WELCOME", _malformed)
    server_id, s_nonce, s_mac = welcome.node_id, welcome.nonce, welcome.mac
    if expect_peer is not None and server_id != expect_peer:
        raise HandshakeError(f"dialed node {expect_peer} but node {server_id} answered")
    if not hmac.compare_digest(
        s_mac, _mac(auth, "server", auth.node_id, server_id, c_nonce, s_nonce)
    ):
        raise HandshakeError("peer failed to prove the cluster secret (wrong secret or cluster id)")
    proof = _mac(auth, "client", auth.node_id, server_id, c_nonce, s_nonce)
    await write_frame(writer, FrameKind.PROOF, _ENCODER.encode(ProofWire(proof)))
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
    hello = decode_strict(_HELLO, payload, MAX_HANDSHAKE_FRAME, "HELLO", _malformed)
    cluster_id, client_id, wanted, c_nonce = (
        hello.cluster_id,
        hello.node_id,
        hello.wanted,
        hello.nonce,
    )
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
    welcome = _ENCODER.encode(WelcomeWire(auth.node_id, s_nonce, s_mac))
    await write_frame(writer, FrameKind.WELCOME, welcome)
    try:
        kind, payload = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    except ConnectionClosed:
        raise HandshakeError(
            f"peer claiming node {client_id} closed the connection instead of proving the secret"
        ) from None
    _check_kind(kind, payload, FrameKind.PROOF)
    c_mac = decode_strict(_PROOF, payload, MAX_HANDSHAKE_FRAME, "PROOF", _malformed).mac
    if not hmac.compare_digest(
        c_mac, _mac(auth, "client", client_id, auth.node_id, c_nonce, s_nonce)
    ):
        await _refuse(writer, "authentication failed")
        raise HandshakeError(f"peer claiming node {client_id} failed to prove the cluster secret")
    await write_frame(writer, FrameKind.ACCEPT, b"")
    return client_id


class AuthenticatedConnection:
    """A connection whose other end proved the cluster secret; frames in, frames out.

    Frames sent by several tasks in one event-loop iteration leave in one write: one Raft
    commit answers dozens of pipelined client requests at once, and a send() system call per
    answer cost more CPU than everything else the leader does for them.
    """

    FLUSH_BYTES = 64 * 1024
    """Queued frames are written at once, not at the end of the iteration, past this size."""

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
        self.peer_address = format_address(writer.get_extra_info("peername"))
        self.max_frame_size = max_frame_size
        self._queued: list[bytes] = []
        self._queued_bytes = 0

    async def read_frame(self) -> tuple[FrameKind, bytes]:
        """Next frame; `ConnectionClosed` at a clean end, `FrameError` on a bad frame."""
        return await read_frame(self.reader, self.max_frame_size)

    async def send(self, kind: FrameKind, payload: bytes) -> None:
        """Write one frame (coalesced, see the class) and wait for buffer room."""
        await self.send_encoded((encode_frame(kind, payload),))

    async def send_encoded(self, frames: Iterable[bytes]) -> None:
        """Write frames already built by `encode_frame` and wait for buffer room.

        The frames join those other tasks send in this loop iteration and leave together, in
        order, before this returns; a closed connection raises as `StreamWriter.drain` does.
        """
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        for frame in frames:
            self._queued.append(frame)
            self._queued_bytes += len(frame)
        if self._queued_bytes >= self.FLUSH_BYTES:
            self._flush()
        else:
            # The flush was queued on the loop before this task's wake-up, so it runs first.
            await asyncio.sleep(0)
        await self.writer.drain()

    def _flush(self) -> None:
        if not self._queued:
            return
        data = b"".join(self._queued)
        self._queued.clear()
        self._queued_bytes = 0
        if not self.writer.is_closing():
            self.writer.write(data)

    def is_closing(self) -> bool:
        """True once either end started closing the connection."""
        return self.writer.is_closing()

    async def close(self) -> None:
        """Close the connection (waits at most a second for the close to finish)."""
        self._flush()
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
    source_host: str | None = None,
) -> AuthenticatedConnection:
    """Dial a member and run the handshake, all within `timeout` seconds.

    With `source_host` the connection leaves from that local address (any free port).
    Raises OSError (connect, TLS, a source address that is not ours), TimeoutError, or
    `ProtocolError` (refused, bad peer).
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host,
            port,
            local_addr=(source_host, 0) if source_host else None,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context is not None else None,
            ssl_handshake_timeout=timeout if ssl_context is not None else None,
        )
    try:
        _enable_keepalive(writer)
        async with asyncio.timeout(timeout):
            peer_id = await client_handshake(reader, writer, auth, expect_peer)
    except HandshakeError as exc:
        await _close_writer(writer)
        if not str(exc).startswith("peer closed") or ssl_context is not None:
            raise
        # Closed unanswered: a member stopping, or one that speaks TLS to a plain dialer (the
        # message keeps its "peer closed" start: clients retry on it).
        raise HandshakeError(
            f"{exc} (this side dials without TLS: if the peer has TLS set, set it here too)"
        ) from exc
    except BaseException:
        await _close_writer(writer)
        raise
    return AuthenticatedConnection(reader, writer, peer_id, max_frame_size)


ConnectionHandler = Callable[[AuthenticatedConnection], Awaitable[None]]


class AuthenticatedServer:
    """Listens, authenticates each connection, then hands it to `handler`.

    Bad handshakes (TLS included: the TLS handshake runs here, not in asyncio's accept, so that
    a certificate of another CA is logged like a wrong secret) are reported to `on_reject` and
    closed. They are logged once per peer host and reason, then counted and logged again at
    most every `repeat_log_interval` seconds (`RepeatLimiter`): a misconfigured peer retries
    several times a second and must not fill the log. The connection is closed when `handler`
    returns. `close()` stops listening and ends every connection, authenticated or not.
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
        repeat_log_interval: float = 600.0,
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
        self._log_limit = RepeatLimiter(interval=repeat_log_interval)

    async def start(self, host: str, port: int) -> None:
        """Start listening on host:port (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._on_connection, host, port)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def _reject(self, peer: str, host: str, reason: str) -> None:
        repeats = self._log_limit.check((host, reason))
        if repeats is None:
            log.debug("refused connection from %s: %s", peer, reason)
        elif repeats:
            log.warning(
                "refused connection from %s: %s (and %d more times from %s since last logged)",
                peer,
                reason,
                repeats,
                host,
            )
        else:
            log.warning("refused connection from %s: %s", peer, reason)
        if self._on_reject is not None:
            self._on_reject(reason)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        peer = format_address(peername)
        host = str(peername[0]) if isinstance(peername, tuple) and peername else peer
        try:
            if self._pending >= self._max_pending:
                self._reject(peer, host, f"more than {self._max_pending} handshakes in progress")
                return
            _enable_keepalive(writer)
            self._pending += 1
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    if self._ssl is not None:
                        await writer.start_tls(self._ssl)
                    peer_id = await server_handshake(reader, writer, self._auth, self._accept_peer)
            except TimeoutError:
                self._reject(peer, host, f"no handshake within {self._handshake_timeout} s")
                return
            except (ProtocolError, ConnectionClosed, OSError) as exc:
                self._reject(peer, host, error_reason(exc))
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
