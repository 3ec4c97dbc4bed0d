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

import time
from collections.abc import Sequence

from hamgr.dcs.common import (
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
    TxnOutcome,
    poll_for_change,
)
from hamgr.dcs.model import DynamicSettings
from hamgr.dcs.session import KvSession
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
    """:class:`~hamgr.dcs.common.KvTransport` over a StoreClient (and a local member)."""

    def __init__(
        self,
        client: StoreClient,
        *,
        local_node: RaftNode | None = None,
        poll_interval: float = 0.1,
        close_client: bool = True,
    ) -> None:
        self.client = client
        self.local_node = local_node
        self.poll_interval = poll_interval
        self._close_client = close_client

    async def range(self, key: str, *, prefix: bool, timeout: float) -> RangeSnapshot:
        try:
            result = await self.client.get(key.encode(), prefix=prefix, timeout=timeout)
        except StoreError as exc:
            raise _translate(exc) from exc
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
    ) -> bool:
        if self.local_node is None:
            return await poll_for_change(
                lambda t: self.range(prefix, prefix=True, timeout=t),
                seen,
                timeout,
                self.poll_interval,
                ignore,
            )
        return await self._watch_local(self.local_node, prefix, seen, timeout, ignore)

    async def _watch_local(
        self,
        node: RaftNode,
        prefix: str,
        seen: RangeSnapshot | None,
        timeout: float,
        ignore: str,
    ) -> bool:
        """Watch the prefix on the local member, from the revision after ``seen``.

        The local member may lag the revision ``seen`` was read at; events from then on
        arrive as it applies them. History it no longer holds counts as a change.
        """
        try:
            stream = node.watch(
                prefix.encode(), prefix=True, from_revision=seen.revision + 1 if seen else 0
            )
        except CompactedError:
            return True
        except Exception as exc:  # NodeStoppedError, NodeFailedError
            raise StoreUnavailable(f"local store member {node.id}: {exc}") from exc
        end = time.monotonic() + timeout
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                skip = ignore.encode()
                try:
                    events = await stream.next(left)
                    if any(not (skip and e.kv.key.startswith(skip)) for e in events):
                        return True
                except TimeoutError:
                    return False
                except CompactedError:
                    return True
                except WatchCancelledError as exc:
                    raise StoreUnavailable(f"local store member {node.id}: {exc}") from exc
        finally:
            stream.cancel()

    async def close(self) -> None:
        if self._close_client:
            await self.client.close()


class RaftDcs(KvSession):
    """The Dcs of agent ``name`` in cluster ``scope``, over the embedded Raft store.

    ``client`` reaches the store members (closed by :meth:`close` unless ``close_client`` is
    False); ``local_node`` is this agent's own member, used for :meth:`watch`. Without it,
    watch polls every ``poll_interval`` seconds.
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
    ) -> None:
        transport = RaftTransport(
            client,
            local_node=local_node,
            poll_interval=poll_interval,
            close_client=close_client,
        )
        super().__init__(scope, name, transport, ttl=ttl, retry_timeout=retry_timeout)
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
