"""StoreClient: the store's API for other processes, over the client protocol
(`hamgr.raft.net.rpc`).

One client holds at most one connection per member and pipelines every concurrent call over it
(each request carries an id; answers come back in any order), so 32 concurrent callers share one
connection. A call goes to the leader it last found, else to the configured endpoints in turn:

- NOT_LEADER with a leader hint: the call is sent again at once to the hinted client address;
  without a hint (an election is running) it waits a little (capped exponential backoff with
  jitter) and tries the next endpoint. A member that cannot be reached, or answers UNAVAILABLE,
  sends the call to the next endpoint; a broken connection is redialed on the next call.
- Every call has an overall deadline (`timeout`). When it passes without an answer the call
  raises `StoreUnavailableError`, naming the last problem met.
- A write is sent again only when it certainly did not apply (refused, dropped, or never sent).
  If its connection breaks, or its deadline passes, after it was sent, or the member answers
  OUTCOME_UNKNOWN, the call raises `StoreOutcomeUnknownError` (a `StoreUnavailableError`): the
  write may or may not have been applied, and only the caller knows whether repeating it is
  safe. Reads, keepalives and status calls are repeated until their deadline.
- A member that does not answer within `attempt_timeout` (frozen, cut off, or slow): a read
  is tried at another member; a write keeps waiting, unless another member names a different
  leader, in which case it raises `StoreOutcomeUnknownError` at once instead of at its deadline.
- A member that refuses our handshake (wrong secret or cluster id) raises `StoreAuthError` at
  once: waiting would not help.

Arguments are checked before anything is sent (the command dataclasses of
`hamgr.raft.kv.kvcommands` raise `InvalidCommandError`, a ValueError). Results are the same types
`RaftNode` returns (`hamgr.raft.kv.kvresults`), so in-process and remote callers share them.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from hamgr.raft.client.clientconn import Channel, LostError, NotSentError
from hamgr.raft.client.clienterrors import store_error
from hamgr.raft.errors import (
    StoreAuthError,
    StoreError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv.kvresults import (
    DeleteResult,
    LeaseGrantResult,
    LeaseRevokeResult,
    PutResult,
    RangeResult,
    TxnResult,
)
from hamgr.raft.net.framing import ConnectionClosed, ProtocolError
from hamgr.raft.net.handshake import ClusterAuth, HandshakeError, format_address, open_authenticated
from hamgr.raft.net.rpc import (
    DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    Call,
    ErrorCode,
    ErrorInfo,
    Get,
    LeaseKeepAlive,
    LeaseTimeToLive,
    MemberAdd,
    MemberRemove,
    Status,
    TransferLeadership,
    op_of,
)
from hamgr.raft.net.rpcbase import Address, RpcOp
from hamgr.raft.net.rpcresults import LeaseTTL, MemberStatus

__all__ = [
    "StoreClient",
]

_IDEMPOTENT = frozenset(
    {RpcOp.GET, RpcOp.LEASE_KEEPALIVE, RpcOp.LEASE_TTL, RpcOp.STATUS, RpcOp.TRANSFER_LEADERSHIP}
)
"""Calls that may be sent again when their first attempt's outcome is unknown."""

_MAX_REDIRECTS_IN_A_ROW = 3
"""Redirects followed at once before backing off (stale hints can point in circles)."""

_BACKOFF_FIRST = 0.025
_BACKOFF_MAX = 0.5


class _RetryError(Exception):
    """Try the call again (after a pause if `pause`; elsewhere if `give_up`); `cause` says why."""

    def __init__(self, cause: BaseException, *, pause: bool, give_up: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.pause = pause
        self.give_up = give_up


# --- the client ---------------------------------------------------------------------------------


class StoreClient:
    """Async client of a store cluster; see the module docstring.

    `endpoints` are members' client addresses (host, port); any one of them is enough to find
    the leader. `timeout` is each call's overall deadline in seconds (a call may pass its own
    `timeout`), `connect_timeout` bounds one dial and handshake, and `attempt_timeout` is how
    long one member may stay silent before the call looks elsewhere (see the module
    docstring). With `redirect=False` a call goes only to the endpoint in use and NOT_LEADER
    raises `NotLeaderError` (for tools and tests). `source_host` makes every connection leave
    from that local address (an agent dials from its member's own address).
    """

    def __init__(
        self,
        endpoints: Sequence[Address],
        cluster_id: str,
        secret: bytes,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        attempt_timeout: float = 1.0,
        redirect: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        source_host: str | None = None,
    ) -> None:
        eps: list[Address] = []
        for e in endpoints:
            host, port = e
            if not isinstance(host, str) or not host or type(port) is not int:
                raise ValueError(f"endpoint must be (host, port), got {e!r}")
            if not 0 < port < 65536:
                raise ValueError(f"endpoint port must be in 1..65535, got {e!r}")
            if (host, port) not in eps:
                eps.append((host, port))
        if not eps:
            raise ValueError("StoreClient needs at least one endpoint")
        if not (timeout > 0 and connect_timeout > 0 and attempt_timeout > 0):
            raise ValueError("timeout, connect_timeout and attempt_timeout must be > 0 seconds")
        self._auth = ClusterAuth(cluster_id, 0, secret)
        self._endpoints = eps
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.attempt_timeout = float(attempt_timeout)
        self.redirect = redirect
        self._ssl = ssl_context
        self._max_request_size = max_request_size
        self._max_response_size = max_response_size
        self.source_host = source_host
        self._leader: Address | None = None
        self._cursor = 0
        self._channels: dict[Address, Channel] = {}
        self._dialing: dict[Address, asyncio.Task[Channel]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._rng = random.Random()

    async def __aenter__(self) -> StoreClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection; pending calls fail, later calls raise StoreError."""
        self._closed = True
        for task in list(self._dialing.values()):
            task.cancel()
        await asyncio.gather(*self._dialing.values(), return_exceptions=True)
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)

    @property
    def endpoints(self) -> list[Address]:
        """The configured endpoints."""
        return list(self._endpoints)

    @property
    def leader_endpoint(self) -> Address | None:
        """The client address of the member that last served a call as leader, if any."""
        return self._leader

    @property
    def connections(self) -> int:
        """Connections open now (for tests and the benchmark)."""
        return sum(1 for ch in self._channels.values() if ch.usable)

    # -- the KV store

    async def put(
        self, key: bytes, value: bytes, lease: int = 0, *, timeout: float | None = None
    ) -> PutResult:
        """Set `key` to `value` (attached to `lease` if non-zero)."""
        result: PutResult = await self._request(kvc.Put(key, value, lease), timeout=timeout)
        return result

    async def get(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
        timeout: float | None = None,
    ) -> RangeResult:
        """Read `key` (or every key under it with `prefix`), linearizable unless
        `serializable` (then whichever member is asked answers from its own state)."""
        call = Get(kvc.Range(key, prefix, limit, keys_only, count_only), serializable)
        result: RangeResult = await self._request(call, timeout=timeout)
        return result

    async def delete(
        self, key: bytes, prefix: bool = False, *, timeout: float | None = None
    ) -> DeleteResult:
        """Delete `key` (or every key under it with `prefix`)."""
        result: DeleteResult = await self._request(kvc.DeleteRange(key, prefix), timeout=timeout)
        return result

    async def txn(
        self,
        compares: Sequence[kvc.Compare],
        success: Sequence[kvc.Op],
        failure: Sequence[kvc.Op] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """Compare-and-swap: run `success` if every compare holds, else `failure`."""
        call = kvc.Txn(tuple(compares), tuple(success), tuple(failure))
        result: TxnResult = await self._request(call, timeout=timeout)
        return result

    # -- leases

    async def lease_grant(
        self, ttl: float, lease_id: int = 0, *, timeout: float | None = None
    ) -> LeaseGrantResult:
        """Grant a lease of at least `ttl` seconds (the leader raises it to its minimum);
        `lease_id` 0 picks a random id."""
        lease_id = lease_id or self._rng.getrandbits(62) + 1
        call = kvc.LeaseGrant(lease_id, ttl)
        result: LeaseGrantResult = await self._request(call, timeout=timeout)
        return result

    async def lease_keepalive(self, lease_id: int, *, timeout: float | None = None) -> float:
        """Extend the lease to its full TTL from now; returns the TTL."""
        result: float = await self._request(LeaseKeepAlive(lease_id), timeout=timeout)
        return result

    async def lease_revoke(
        self, lease_id: int, *, timeout: float | None = None
    ) -> LeaseRevokeResult:
        """Revoke the lease and delete every key attached to it."""
        call = kvc.LeaseRevoke(lease_id)
        result: LeaseRevokeResult = await self._request(call, timeout=timeout)
        return result

    async def lease_ttl(self, lease_id: int, *, timeout: float | None = None) -> LeaseTTL:
        """Time left on the leader's clock, granted TTL and attached keys."""
        result: LeaseTTL = await self._request(LeaseTimeToLive(lease_id), timeout=timeout)
        return result

    # -- members

    async def status(
        self, endpoint: Address | None = None, *, timeout: float | None = None
    ) -> MemberStatus:
        """The state of the member at `endpoint` (asked once, no retry), else of any member."""
        result: MemberStatus = await self._request(Status(), endpoint=endpoint, timeout=timeout)
        return result

    async def statuses(self) -> dict[Address, MemberStatus | StoreError]:
        """The status of every configured endpoint, or the error met asking it."""

        async def one(endpoint: Address) -> MemberStatus | StoreError:
            try:
                return await self.status(endpoint)
            except StoreError as exc:
                return exc

        answers = await asyncio.gather(*(one(e) for e in self._endpoints))
        return dict(zip(self._endpoints, answers, strict=True))

    async def member_add(
        self, node_id: int, address: Address, *, timeout: float | None = None
    ) -> None:
        """Add member `node_id` whose Raft peer address is `address` (as a learner first)."""
        await self._request(MemberAdd(node_id, (address[0], address[1])), timeout=timeout)

    async def member_remove(self, node_id: int, *, timeout: float | None = None) -> None:
        """Remove a member."""
        await self._request(MemberRemove(node_id), timeout=timeout)

    async def transfer_leadership(self, to: int, timeout: float | None = None) -> None:
        """Move leadership to voter `to` and wait until the old leader sees it lead."""
        call = TransferLeadership(to, timeout)
        await self._request(call, timeout=self.timeout + (call.timeout or 0.0))

    # -- the call loop

    def _target(self) -> Address:
        if self._leader is not None:
            return self._leader
        return self._endpoints[self._cursor % len(self._endpoints)]

    def _give_up_on(self, endpoint: Address) -> None:
        """Stop preferring `endpoint`: the next attempt goes to another member."""
        if self._leader == endpoint:
            self._leader = None
        if self._endpoints[self._cursor % len(self._endpoints)] == endpoint:
            self._cursor += 1
        channel = self._channels.get(endpoint)
        if channel is not None and not channel.usable:
            del self._channels[endpoint]

    async def _pause(self, attempt: int, deadline: float) -> None:
        delay = min(_BACKOFF_FIRST * 2**attempt, _BACKOFF_MAX) * (0.5 + self._rng.random() / 2)
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining > 0:
            await asyncio.sleep(min(delay, remaining))

    async def _request(
        self, call: Call, *, endpoint: Address | None = None, timeout: float | None = None
    ) -> Any:
        """Run one call until answered or its deadline; `endpoint` pins one member, asked once."""
        if self._closed:
            raise StoreError("the store client is closed", "closed")
        op = op_of(call)
        budget = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        last: BaseException | None = None
        pauses = 0
        hops = 0  # retries in a row without a pause (redirects)
        while True:
            if loop.time() >= deadline:
                raise self._unavailable(op, budget, last)
            target = endpoint or self._target()
            try:
                return await self._attempt(call, op, target, deadline, pinned=endpoint is not None)
            except TimeoutError:
                raise self._unavailable(op, budget, last) from None
            except _RetryError as retry:
                last = retry.cause
                if endpoint is not None:
                    raise self._unavailable(op, budget, last) from last
                if retry.give_up:
                    self._give_up_on(target)
                if retry.pause or hops >= _MAX_REDIRECTS_IN_A_ROW:
                    await self._pause(pauses, deadline)
                    pauses += 1
                    hops = 0
                else:
                    hops += 1

    async def _attempt(
        self, call: Call, op: RpcOp, target: Address, deadline: float, *, pinned: bool
    ) -> Any:
        """One try at `target`: its result, or `_RetryError` to try again, or the final error."""
        idempotent = op in _IDEMPOTENT
        try:
            channel = await self._channel(target, deadline)
        except HandshakeError as exc:
            if not str(exc).startswith("peer closed"):  # a refusal, not a closing member
                raise StoreAuthError(
                    f"{op.value}: {format_address(target)} refused the connection: {exc}", "auth"
                ) from exc
            raise _RetryError(exc, pause=True, give_up=True) from exc
        except TimeoutError as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            raise _RetryError(exc, pause=True, give_up=True) from exc  # one dial timed out
        except (OSError, ProtocolError, ConnectionClosed) as exc:
            raise _RetryError(exc, pause=True, give_up=True) from exc
        try:
            error, result = await self._answer(channel, call, op, target, deadline)
        except NotSentError as exc:
            raise _RetryError(exc, pause=False, give_up=True) from exc
        except LostError as exc:
            if not idempotent:
                raise StoreOutcomeUnknownError(
                    f"{op.value}: {exc} after the request was sent: it may or may not have "
                    "been applied",
                    ErrorCode.OUTCOME_UNKNOWN.value,
                ) from exc
            raise _RetryError(exc, pause=True, give_up=True) from exc
        if error is None:
            if op is not RpcOp.STATUS and not (isinstance(call, Get) and call.serializable):
                self._leader = target
            return result
        failure = store_error(op, error)
        code = error.code
        if pinned:
            raise failure
        if code is ErrorCode.NOT_LEADER:
            if not self.redirect:
                raise failure
            hint = error.leader_address
            if hint is None:  # an election is running: wait a little, ask someone else
                raise _RetryError(failure, pause=True, give_up=True)
            self._leader = hint
            raise _RetryError(failure, pause=hint == target, give_up=False)
        if code in (ErrorCode.UNAVAILABLE, ErrorCode.DROPPED):
            raise _RetryError(failure, pause=True, give_up=code is ErrorCode.UNAVAILABLE)
        if code is ErrorCode.OUTCOME_UNKNOWN and idempotent:
            raise _RetryError(failure, pause=True, give_up=False)
        raise failure

    async def _answer(
        self, channel: Channel, call: Call, op: RpcOp, target: Address, deadline: float
    ) -> tuple[ErrorInfo | None, Any]:
        """Send the call and wait for its answer, looking elsewhere when none comes within
        `attempt_timeout`: a read is tried at another member; a write keeps waiting unless
        another member now names a different leader (the target is frozen or cut off)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(channel.call(call))
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    if op in _IDEMPOTENT:
                        raise TimeoutError
                    raise StoreOutcomeUnknownError(
                        f"{op.value}: sent to {format_address(target)} but not answered in time: "
                        "it may or may not have been applied",
                        ErrorCode.OUTCOME_UNKNOWN.value,
                    )
                await asyncio.wait({task}, timeout=min(self.attempt_timeout, remaining))
                if task.done():
                    return task.result()
                silent = TimeoutError(
                    f"{format_address(target)} did not answer within {self.attempt_timeout:g} s"
                )
                if op in _IDEMPOTENT:
                    raise _RetryError(silent, pause=False, give_up=True)
                leader = await self._leader_elsewhere(target, deadline)
                if leader is not None:
                    self._leader = leader
                    raise StoreOutcomeUnknownError(
                        f"{op.value}: {silent} and {format_address(leader)} leads now: "
                        "the write may or may not have been applied",
                        ErrorCode.OUTCOME_UNKNOWN.value,
                    )
        finally:
            if not task.done():
                task.cancel()

    async def _leader_elsewhere(self, target: Address, deadline: float) -> Address | None:
        """The client address of a leader other than `target` that another member names."""
        others = [e for e in self._endpoints if e != target]
        remaining = deadline - asyncio.get_running_loop().time()
        if not others or remaining <= 0:
            return None

        async def ask(endpoint: Address) -> MemberStatus | None:
            try:
                timeout = min(self.attempt_timeout, remaining)
                status: MemberStatus = await self._request(
                    Status(), endpoint=endpoint, timeout=timeout
                )
            except StoreError:
                return None
            return status

        for status in await asyncio.gather(*(ask(e) for e in others)):
            address = status.leader_client_address if status is not None else None
            if address is not None and address != target:
                return address
        return None

    def _unavailable(
        self, op: RpcOp, budget: float, last: BaseException | None
    ) -> StoreUnavailableError:
        tried = ", ".join(format_address(e) for e in self._endpoints)
        why = f"; last error: {last}" if last is not None else ""
        leader = last.leader if isinstance(last, StoreError) else 0
        address = last.leader_address if isinstance(last, StoreError) else None
        error = StoreUnavailableError(
            f"{op.value}: no answer from the store ({tried}) within {budget:g} s{why}",
            "unavailable",
            leader,
            address,
        )
        error.__cause__ = last
        return error

    async def _channel(self, endpoint: Address, deadline: float) -> Channel:
        channel = self._channels.get(endpoint)
        if channel is not None and channel.usable:
            return channel
        if channel is not None:
            del self._channels[endpoint]
            closing = asyncio.get_running_loop().create_task(channel.close())
            self._closing.add(closing)  # the loop keeps only a weak reference to a task
            closing.add_done_callback(self._closing.discard)
        task = self._dialing.get(endpoint)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._dial(endpoint))
            self._dialing[endpoint] = task
            task.add_done_callback(lambda t: self._dial_done(endpoint, t))
        async with asyncio.timeout_at(deadline):
            return await asyncio.shield(task)

    def _dial_done(self, endpoint: Address, task: asyncio.Task[Channel]) -> None:
        if self._dialing.get(endpoint) is task:
            del self._dialing[endpoint]
        if not task.cancelled():
            task.exception()  # retrieved here: a caller may have stopped waiting for it

    async def _dial(self, endpoint: Address) -> Channel:
        conn = await open_authenticated(
            endpoint[0],
            endpoint[1],
            self._auth,
            ssl_context=self._ssl,
            timeout=self.connect_timeout,
            max_frame_size=self._max_response_size,
            source_host=self.source_host,
        )
        channel = Channel(conn, endpoint, self._max_request_size, self._max_response_size)
        if self._closed:
            await channel.close()
            raise StoreError("the store client is closed", "closed")
        self._channels[endpoint] = channel
        return channel
