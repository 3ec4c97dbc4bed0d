"""RaftDcs: the :class:`~hamgr.dcs.base.Dcs` of one agent, backed by hamgr's embedded Raft KV.

Writes and linearizable reads go through a :class:`~hamgr.raft.client.storeclient.StoreClient`
(which finds and follows the Raft leader). Each agent embeds a store member in its own process;
given that member (``local_node``), :meth:`RaftDcs.watch` watches the scope prefix on it directly:
every member applies the same entries, so a change of the leader key wakes every agent at once,
with no network round trip. Without one, watch polls the prefix.

The semantics (leases, compare-and-swap, budgets) are :class:`~hamgr.dcs.session.KvSession`'s;
this module only maps them onto the store client and translates its errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from hamgr.dcs.common import (
    MONOTONIC,
    Compare,
    Delete,
    LeaseExists,
    LeaseGone,
    OutcomeUnknown,
    Put,
    RangeSnapshot,
    StoredKey,
    StoreRefused,
    StoreUnavailable,
    Target,
    Timer,
    TxnOutcome,
    Watched,
    poll_for_change,
)
from hamgr.dcs.session import KvSession
from hamgr.dcs.settings import DynamicSettings
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import (
    LeaseNotFoundError,
    StoreError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv.kvresults import RangeResult
from hamgr.raft.kv.kvwatch import CompactedError, WatchCancelledError
from hamgr.raft.server.node import RaftNode

__all__ = ["RaftDcs", "RaftTransport"]

_DEFAULTS = DynamicSettings()

_UNAVAILABLE_CODES = frozenset({"unavailable", "dropped", "not_leader"})
"""StoreError codes that mean "no answer now", not "the request is wrong"."""


class RaftTransport:
    """:class:`~hamgr.dcs.common.KvTransport` over a StoreClient (and a local member).

    ``timer`` counts a watch's timeout and waits its polls (tests pass their own; the store
    client's calls keep the store's clock: ``hamgr/raft`` imports nothing of hamgr)."""

    def __init__(
        self,
        client: StoreClient,
        *,
        local_node: RaftNode | None = None,
        poll_interval: float = 0.1,
        close_client: bool = True,
        timer: Timer = MONOTONIC,
    ) -> None:
        self.client = client
        self.local_node = local_node
        self.poll_interval = poll_interval
        self.timer = timer
        self._close_client = close_client
        self._read_term: tuple[int, int] | None = None
        """(revision, the local member's term when that read was sent) of the last read."""

    async def range(self, key: str, *, prefix: bool, timeout: float) -> RangeSnapshot:
        term = self.local_node.term() if self.local_node is not None else None
        try:
            result = await self.client.get(key.encode(), prefix=prefix, timeout=timeout)
        except StoreError as exc:
            raise _translate(exc) from exc
        if term is not None:
            self._read_term = (result.revision, term)
        return _snapshot(result)

    async def put(self, op: Put, *, timeout: float) -> int:
        try:
            result = await self.client.put(op.key.encode(), op.value, op.lease, timeout=timeout)
        except StoreError as exc:
            raise _translate(exc) from exc
        return result.revision

    async def delete(self, key: str, *, timeout: float) -> int:
        try:
            result = await self.client.delete(key.encode(), timeout=timeout)
        except StoreError as exc:
            raise _translate(exc) from exc
        return result.revision

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Put | Delete], *, timeout: float
    ) -> TxnOutcome:
        try:
            result = await self.client.txn(
                [_compare(c) for c in compares], [_op(o) for o in success], timeout=timeout
            )
        except StoreError as exc:
            raise _translate(exc) from exc
        return TxnOutcome(result.succeeded, result.revision)

    async def lease_grant(self, lease_id: int, ttl: float, *, timeout: float) -> float:
        try:
            result = await self.client.lease_grant(ttl, lease_id, timeout=timeout)
        except StoreError as exc:
            raise _translate(exc) from exc
        return result.ttl

    async def lease_keepalive(self, lease_id: int, *, timeout: float) -> float:
        try:
            return await self.client.lease_keepalive(lease_id, timeout=timeout)
        except StoreError as exc:
            raise _translate(exc) from exc

    async def lease_revoke(self, lease_id: int, *, timeout: float) -> None:
        try:
            await self.client.lease_revoke(lease_id, timeout=timeout)
        except StoreError as exc:
            raise _translate(exc) from exc

    async def wait_for_change(
        self, prefix: str, seen: RangeSnapshot | None, timeout: float, ignore: str = ""
    ) -> Watched:
        if self.local_node is None:
            return await poll_for_change(
                lambda t: self.range(prefix, prefix=True, timeout=t),
                seen,
                timeout,
                self.poll_interval,
                ignore,
                self.timer,
            )
        return await self._watch_local(self.local_node, prefix, seen, timeout, ignore)

    async def _watch_local(
        self,
        node: RaftNode,
        prefix: str,
        seen: RangeSnapshot | None,
        timeout: float,
        ignore: str,
    ) -> Watched:
        """Watch the prefix on the local member, from the revision after ``seen``.

        The local member may lag the revision ``seen`` was read at; events from then on
        arrive as it applies them. History it no longer holds counts as a change. A timeout
        ends ``QUIET`` only when no event at all arrived and the member can vouch for its copy
        (:meth:`RaftNode.current_copy`: same term as at the read, in touch with its leader,
        caught up to ``seen``); a lagging or cut-off member sees no events, so silence from it
        proves nothing.
        """
        try:
            stream = node.watch(
                prefix.encode(), prefix=True, from_revision=seen.revision + 1 if seen else 0
            )
        except CompactedError:
            return Watched.CHANGE
        except Exception as exc:  # NodeStoppedError, NodeFailedError
            raise StoreUnavailable(f"local store member {node.id}: {exc}") from exc
        end = self.timer.now() + timeout
        skip = ignore.encode()
        other = timeout <= 0  # a wait that never looked cannot vouch for silence
        try:
            while True:
                left = end - self.timer.now()
                if left <= 0:
                    break
                try:
                    events = await stream.next(left)
                except TimeoutError:
                    break
                except CompactedError:
                    return Watched.CHANGE
                except WatchCancelledError as exc:
                    raise StoreUnavailable(f"local store member {node.id}: {exc}") from exc
                if any(not (skip and e.kv.key.startswith(skip)) for e in events):
                    return Watched.CHANGE
                other = other or bool(events)
        finally:
            stream.cancel()
        if other or not self._vouches(node, seen):
            return Watched.OTHER
        return Watched.QUIET

    def _vouches(self, node: RaftNode, seen: RangeSnapshot | None) -> bool:
        """Can the local member's silence vouch for ``seen`` (the read this transport made
        last, in a term the member is still in)?"""
        read = self._read_term
        if seen is None or read is None or read[0] != seen.revision:
            return False
        return node.current_copy(seen.revision, read[1])

    async def close(self) -> None:
        if self._close_client:
            await self.client.close()


class RaftDcs(KvSession):
    """The Dcs of agent ``name`` in cluster ``scope``, over the embedded Raft store.

    ``client`` reaches the store members (closed by :meth:`close` unless ``close_client`` is
    False); ``local_node`` is this agent's own member, used for :meth:`watch`. Without it,
    watch polls every ``poll_interval`` seconds. ``timer`` counts the session's budgets and a
    watch's timeout (see :class:`KvSession`).
    """

    def __init__(
        self,
        scope: str,
        name: str,
        client: StoreClient,
        *,
        local_node: RaftNode | None = None,
        ttl: float = _DEFAULTS.ttl,
        retry_timeout: float = _DEFAULTS.retry_timeout,
        poll_interval: float = 0.1,
        close_client: bool = True,
        timer: Timer = MONOTONIC,
    ) -> None:
        transport = RaftTransport(
            client,
            local_node=local_node,
            poll_interval=poll_interval,
            close_client=close_client,
            timer=timer,
        )
        super().__init__(scope, name, transport, ttl=ttl, retry_timeout=retry_timeout, timer=timer)
        self.client = client
        self.local_node = local_node


def _snapshot(result: RangeResult) -> RangeSnapshot:
    kvs = []
    for kv in result.kvs:
        try:
            key = kv.key.decode("utf-8")
        except UnicodeDecodeError:
            key = kv.key.decode("utf-8", "replace")  # not ours: build_view ignores it
        kvs.append(StoredKey(key, kv.value, kv.create_revision, kv.mod_revision, kv.lease))
    return RangeSnapshot(result.revision, tuple(kvs))


def _compare(c: Compare) -> kvc.Compare:
    if c.target is Target.CREATE:
        return kvc.compare_create(c.key.encode(), c.op, c.value)
    return kvc.compare_mod(c.key.encode(), c.op, c.value)


def _op(op: Put | Delete) -> kvc.Op:
    if isinstance(op, Put):
        return kvc.Put(op.key.encode(), op.value, op.lease)
    return kvc.DeleteRange(op.key.encode())


def _translate(exc: StoreError) -> Exception:
    """The transport error a StoreClient error means."""
    message = str(exc)
    if isinstance(exc, StoreOutcomeUnknownError):
        return OutcomeUnknown(message)
    if isinstance(exc, StoreUnavailableError) or exc.code in _UNAVAILABLE_CODES:
        return StoreUnavailable(message)
    if isinstance(exc, LeaseNotFoundError):
        return LeaseGone(message)
    if exc.code == "lease_exists":
        return LeaseExists(message)
    return StoreRefused(message)
