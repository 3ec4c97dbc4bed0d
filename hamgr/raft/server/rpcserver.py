"""Serves a `RaftNode` to clients: the KV store, leases and membership over the client protocol.

Listens on the member's CLIENT address (not its Raft peer port) with an `AuthenticatedServer`:
a client proves the cluster secret (as node id 0) before it may send anything. Each connection
carries many requests at once (`hamgr.raft.net.rpc`); each runs in its own task and is answered when
done, in whatever order, up to `max_inflight` per connection (then the server stops reading that
connection until one finishes, so a flood pushes back on its sender and on nobody else).

A follower answers proposals and linearizable reads with NOT_LEADER, naming the leader and the
leader's CLIENT address, so clients can redirect. Members learn each other's client addresses
from `client_addresses` (the store process fills it from its configuration); a member missing
from it is assumed to follow the convention (its Raft port + `CLIENT_PORT_OFFSET`).

A request that cannot be decoded but whose id can be read is answered with BAD_REQUEST and the
connection carries on; a frame that is not a request at all is answered (id 0) and then only
that connection is closed. A write's answer never claims more than is known: leadership lost or
a timeout while it was pending is OUTCOME_UNKNOWN, never NOT_LEADER (see `ErrorCode`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from hamgr.raft.core.types import ProposalDroppedError
from hamgr.raft.errors import LeaseExpiredError, LeaseNotFoundError, NotLeaderError
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv.kvresults import ErrorCode as KVErrorCode
from hamgr.raft.net.framing import ConnectionClosed, FrameKind, ProtocolError
from hamgr.raft.net.handshake import AuthenticatedConnection, AuthenticatedServer, ClusterAuth
from hamgr.raft.net.rpc import (
    DEFAULT_MAX_REQUEST_SIZE,
    Call,
    ErrorCode,
    ErrorInfo,
    Get,
    LeaseKeepAlive,
    LeaseTimeToLive,
    MemberAdd,
    MemberRemove,
    Request,
    Status,
    TransferLeadership,
    decode_request,
    default_client_address,
    encode_error,
    encode_result,
    op_of,
)
from hamgr.raft.net.rpcbase import Address, RpcFormatError
from hamgr.raft.net.rpcresults import LeaseTTL, MemberStatus
from hamgr.raft.server.node import RaftNode
from hamgr.raft.server.pending import (
    KVCommandError,
    LeadershipLostError,
    NodeFailedError,
    NodeStoppedError,
    WriteOutcomeUnknownError,
)

__all__ = ["RpcServerStats", "StoreRpcServer"]

log = logging.getLogger(__name__)

_WRITES = (
    kvc.Put,
    kvc.DeleteRange,
    kvc.Txn,
    kvc.LeaseGrant,
    kvc.LeaseRevoke,
    MemberAdd,
    MemberRemove,
)
"""Calls whose effect may survive a failure of the request: their errors must not overclaim."""

_MEMBERSHIP = (MemberAdd, MemberRemove, TransferLeadership)

_BARRIER_KEY = b"\x00hamgr-read-barrier"
"""A key read only for the ReadIndex round of `RaftNode.get` (a cheap single-key lookup)."""


class _NotServingError(Exception):
    """The member is not running: the request was refused before anything was done."""


@dataclass
class RpcServerStats:
    """Counters for tests and metrics."""

    connections: int = 0
    """Connections open now."""
    accepted: int = 0
    """Authenticated connections accepted so far."""
    requests: int = 0
    bad_requests: int = 0
    closed_for_protocol_errors: int = 0
    rejected_handshakes: int = 0


class StoreRpcServer:
    """Serves `node` on a client address; see the module docstring.

    `client_addresses` maps member node id -> client address (host, port). The mapping is kept,
    not copied, so its owner may fill it in after start (tests bind port 0 first). `advertise`
    is this member's own client address as others reach it (default: the bound address).
    """

    def __init__(
        self,
        node: RaftNode,
        cluster_id: str,
        secret: bytes,
        *,
        client_addresses: MutableMapping[int, Address] | None = None,
        advertise: Address | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        max_inflight: int = 1024,
        handshake_timeout: float = 5.0,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.node = node
        self.client_addresses: MutableMapping[int, Address] = (
            {} if client_addresses is None else client_addresses
        )
        self._advertise = advertise
        self._max_request_size = max_request_size
        self._max_inflight = max_inflight
        self.stats = RpcServerStats()
        self._server = AuthenticatedServer(
            ClusterAuth(cluster_id, node.id, secret),
            self._serve,
            ssl_context=ssl_context,
            handshake_timeout=handshake_timeout,
            max_frame_size=max_request_size,
            on_reject=self._count_reject,
        )

    # -- lifecycle

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks a free one)."""
        await self._server.start(host, port)
        log.info("node %d: serving clients on %s:%d", self.node.id, *self.address)

    @property
    def address(self) -> Address:
        """The (host, port) actually bound."""
        return self._server.address

    @property
    def client_address(self) -> Address:
        """Where clients reach this member: `advertise` (port 0: the bound port) or bound."""
        if self._advertise is None:
            return self.address
        host, port = self._advertise
        return host, port or self.address[1]

    async def close(self) -> None:
        """Stop listening and close every connection (requests in flight get no answer)."""
        await self._server.close()

    def _count_reject(self, reason: str) -> None:
        self.stats.rejected_handshakes += 1

    # -- connections

    async def _serve(self, conn: AuthenticatedConnection) -> None:
        self.stats.connections += 1
        self.stats.accepted += 1
        tasks: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(self._max_inflight)
        loop = asyncio.get_running_loop()
        try:
            while True:
                kind, payload = await conn.read_frame()
                if kind is not FrameKind.CLIENT_REQUEST:
                    raise ProtocolError(f"unexpected {kind.name} frame on a client connection")
                self.stats.requests += 1
                try:
                    request = decode_request(payload, max_size=self._max_request_size)
                except RpcFormatError as exc:
                    self.stats.bad_requests += 1
                    info = ErrorInfo(ErrorCode.BAD_REQUEST, str(exc))
                    await self._send(conn, encode_error(exc.request_id or 0, info))
                    if exc.request_id is None:
                        raise ProtocolError(f"unreadable request: {exc}") from None
                    log.info("client %s: bad request: %s", conn.peer_address, exc)
                    continue
                await slots.acquire()
                task = loop.create_task(self._answer(conn, request, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        except (ProtocolError, OSError) as exc:
            self.stats.closed_for_protocol_errors += 1
            log.warning("closing client connection from %s: %s", conn.peer_address, exc)
        finally:
            self.stats.connections -= 1
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _send(conn: AuthenticatedConnection, payload: bytes) -> None:
        if conn.is_closing():
            return
        await conn.send(FrameKind.CLIENT_RESPONSE, payload)

    async def _answer(
        self, conn: AuthenticatedConnection, request: Request, slots: asyncio.Semaphore
    ) -> None:
        try:
            try:
                result = await self._execute(request.call)
                payload = encode_result(request.id, op_of(request.call), result)
            except Exception as exc:
                payload = encode_error(request.id, self._error_info(request.call, exc))
            await self._send(conn, payload)
        except (OSError, ConnectionError):
            pass  # the connection went away; its reader notices and cleans up
        finally:
            slots.release()

    # -- requests

    async def _execute(self, call: Call) -> Any:
        node = self.node
        if isinstance(call, Status):
            return self._status()
        if node.state != "running":
            raise _NotServingError(f"member {node.id} is {node.state}")
        if isinstance(call, kvc.Put):
            return await node.put(call.key, call.value, call.lease)
        if isinstance(call, kvc.DeleteRange):
            return await node.delete(call.key, call.prefix)
        if isinstance(call, kvc.Txn):
            return await node.txn(call.compares, call.success, call.failure)
        if isinstance(call, Get):
            return await self._get(call)
        if isinstance(call, kvc.LeaseGrant):
            return await node.lease_grant(call.ttl, call.lease_id)
        if isinstance(call, kvc.LeaseRevoke):
            return await node.lease_revoke(call.lease_id)
        if isinstance(call, LeaseKeepAlive):
            return await node.lease_keepalive(call.lease_id)
        if isinstance(call, LeaseTimeToLive):
            return await self._lease_ttl(call.lease_id)
        if isinstance(call, MemberAdd):
            return await node.add_member(call.node_id, call.address)
        if isinstance(call, MemberRemove):
            return await node.remove_member(call.node_id)
        if isinstance(call, TransferLeadership):
            return await node.transfer_leadership(call.to, call.timeout)
        raise TypeError(f"no handler for {type(call).__name__}")

    async def _get(self, call: Get) -> Any:
        r = call.range
        if not (r.limit or r.keys_only or r.count_only):
            return await self.node.get(r.key, prefix=r.prefix, serializable=call.serializable)
        # RaftNode.get has no limit/keys_only/count_only: do its read round on a cheap key, then
        # read the full range at once (no await in between, so nothing older than the barrier).
        await self.node.get(_BARRIER_KEY, serializable=call.serializable)
        return self.node.kv.range(
            r.key, prefix=r.prefix, limit=r.limit, keys_only=r.keys_only, count_only=r.count_only
        )

    async def _lease_ttl(self, lease_id: int) -> LeaseTTL:
        await self.node.get(_BARRIER_KEY)  # confirm leadership, as a keepalive does
        remaining = self.node.lease_time_to_live(lease_id)
        info = self.node.kv.lease(lease_id)
        if info is None:
            raise LeaseNotFoundError(f"lease {lease_id} not found")
        return LeaseTTL(lease_id, remaining, info.ttl, info.keys)

    def _status(self) -> MemberStatus:
        st = self.node.status()
        leader = int(st.get("leader", 0))
        return MemberStatus(
            id=int(st["id"]),
            state=str(st["state"]),
            role=str(st.get("role", "")),
            term=int(st.get("term", 0)),
            leader=leader,
            commit=int(st.get("commit", 0)),
            applied=int(st.get("applied", 0)),
            last_index=int(st.get("last_index", 0)),
            snapshot_index=int(st.get("snapshot_index", 0)),
            revision=int(st.get("revision", 0)),
            voters=tuple(st.get("voters", ())),
            learners=tuple(st.get("learners", ())),
            client_address=self.client_address,
            leader_client_address=self.client_address_of(leader) if leader else None,
        )

    def client_address_of(self, node_id: int) -> Address | None:
        """Where member `node_id` serves clients, as far as this member knows."""
        if node_id == self.node.id:
            return self.client_address
        known = self.client_addresses.get(node_id)
        if known is not None:
            return known
        raft_address = self.node.address_of(node_id)
        return None if raft_address is None else default_client_address(raft_address)

    # -- errors

    def _not_leader(self, exc: NotLeaderError, code: ErrorCode, message: str) -> ErrorInfo:
        leader = exc.leader
        address = self.client_address_of(leader) if leader else None
        return ErrorInfo(code, message, leader, address)

    def _error_info(self, call: Call, exc: Exception) -> ErrorInfo:
        """The wire error for an exception raised while serving `call`."""
        write = isinstance(call, _WRITES)
        message = str(exc) or type(exc).__name__
        if isinstance(exc, _NotServingError):
            return ErrorInfo(ErrorCode.UNAVAILABLE, message)
        if isinstance(exc, NodeStoppedError):
            if write:
                return ErrorInfo(
                    ErrorCode.OUTCOME_UNKNOWN, f"member stopped while pending: {message}"
                )
            return ErrorInfo(ErrorCode.UNAVAILABLE, message)
        if isinstance(exc, LeadershipLostError):
            code = ErrorCode.OUTCOME_UNKNOWN if write else ErrorCode.NOT_LEADER
            return self._not_leader(exc, code, message)
        if isinstance(exc, NotLeaderError):
            return self._not_leader(exc, ErrorCode.NOT_LEADER, message)
        if isinstance(exc, WriteOutcomeUnknownError):
            return ErrorInfo(ErrorCode.OUTCOME_UNKNOWN, message)
        if isinstance(exc, NodeFailedError):
            return ErrorInfo(ErrorCode.UNAVAILABLE, message)
        if isinstance(exc, KVCommandError):
            kv_code = exc.result.code
            if kv_code is KVErrorCode.LEASE_NOT_FOUND:
                return ErrorInfo(ErrorCode.LEASE_NOT_FOUND, exc.result.message)
            if kv_code is KVErrorCode.LEASE_EXISTS:
                return ErrorInfo(ErrorCode.LEASE_EXISTS, exc.result.message)
            return ErrorInfo(ErrorCode.FAILED, message)
        if isinstance(exc, ProposalDroppedError):
            if isinstance(call, _MEMBERSHIP):
                return ErrorInfo(ErrorCode.REFUSED, message)
            # RaftNode says "outcome unknown" for a proposal superseded by a snapshot; every
            # other drop happens before the entry can apply.
            if "outcome unknown" in message:
                return ErrorInfo(ErrorCode.OUTCOME_UNKNOWN, message)
            return ErrorInfo(ErrorCode.DROPPED, message)
        if isinstance(exc, TimeoutError):
            return ErrorInfo(ErrorCode.OUTCOME_UNKNOWN, message)
        if isinstance(exc, LeaseExpiredError):
            return ErrorInfo(ErrorCode.LEASE_EXPIRED, message)
        if isinstance(exc, LeaseNotFoundError):
            return ErrorInfo(ErrorCode.LEASE_NOT_FOUND, message)
        if isinstance(exc, ValueError):  # InvalidCommandError and bad arguments
            return ErrorInfo(ErrorCode.BAD_REQUEST, message)
        log.error("node %d: %s failed", self.node.id, op_of(call).value, exc_info=exc)
        return ErrorInfo(ErrorCode.INTERNAL, f"{type(exc).__name__}: {message}")
