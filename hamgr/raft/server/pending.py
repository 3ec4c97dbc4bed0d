"""The requests a RaftNode's callers are waiting on, and the errors those waits can end with.

A write is answered once its entry is applied; a linearizable read once the applied index reaches
the index its ReadIndex round confirmed. `PendingRequests` holds every such wait: proposals queued
for the core's next batch, the futures of proposed entries by log index (with the term they were
proposed in, which tells a replaced entry from the applied one), ReadIndex contexts not yet
confirmed, and confirmed reads waiting for the apply. Kept apart from the node's lifecycle and
Ready loop (`hamgr.raft.server.node`): no I/O and no clock here, the driver feeds in what the core
and the KV store report.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.types import (
    NONE,
    ConfChange,
    Entry,
    EntryType,
    ProposalDroppedError,
    ReadState,
)
from hamgr.raft.errors import NotLeaderError
from hamgr.raft.kv import kvresults as kvr

__all__ = [
    "KVCommandError",
    "LeadershipLostError",
    "NodeFailedError",
    "NodeStoppedError",
    "PendingRequests",
    "WriteOutcomeUnknownError",
]

T = TypeVar("T")


class LeadershipLostError(NotLeaderError):
    """This node stopped being leader while the request was pending. A write's outcome is
    unknown: its entry may still commit under the new leader."""


class NodeStoppedError(NotLeaderError):
    """The node was stopped while the request was pending (or before it was made)."""

    def __init__(self, why: str = "node stopped") -> None:
        super().__init__(NONE, None, why)


class NodeFailedError(RuntimeError):
    """The node hit a fatal error (e.g. its storage failed) and serves nothing any more."""


class WriteOutcomeUnknownError(NodeFailedError):
    """The node failed after this write was proposed: its entry may already be on other
    members and commit there, so the write may or may not apply (never a definite failure)."""


class KVCommandError(Exception):
    """The command was applied but failed in the KV store (and changed nothing)."""

    def __init__(self, result: kvr.ErrorResult) -> None:
        super().__init__(f"{result.code}: {result.message}")
        self.result = result


@dataclass
class _Proposal:
    data: bytes
    kind: EntryType
    future: asyncio.Future[Any] | None
    change: ConfChange | None = None


@dataclass(order=True)
class _ReadWait:
    index: int
    seq: int
    future: asyncio.Future[None] = field(compare=False)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _fail_batch(batch: list[_Proposal], error: BaseException) -> None:
    for p in batch:
        if p.future is not None and not p.future.done():
            p.future.set_exception(error)


class PendingRequests:
    """Every request of one node that awaits the log: queued, proposed, or a read in flight.

    Single-threaded, on the node's event loop. `node_id` names the node in ReadIndex contexts
    and in timeout messages; `max_batch` caps the entries proposed to the core at once.
    """

    def __init__(self, node_id: int, max_batch: int) -> None:
        self._node_id = node_id
        self._max_batch = max_batch
        self._queue: list[_Proposal] = []
        self._waiters: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        self._reads: dict[bytes, asyncio.Future[None]] = {}
        self._read_waits: list[_ReadWait] = []
        self._read_seq = itertools.count(1)

    # -- writes ---------------------------------------------------------------------------

    def enqueue(self, data: bytes, fut: asyncio.Future[Any] | None) -> None:
        """Queue a normal entry for the next `flush`; `fut` (if any) gets its apply result."""
        self._queue.append(_Proposal(data, EntryType.NORMAL, fut))

    def flush(self, core: RaftCore, not_leader: Callable[[], NotLeaderError]) -> None:
        """Propose the queued entries to `core`, at most `max_batch` at a time, and remember
        where each landed; a batch the core refuses fails (with `not_leader()` off the leader)."""
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                last = core.propose_batch([p.data for p in batch])
            except NotLeaderError:
                _fail_batch(batch, not_leader())
                continue
            except ProposalDroppedError as exc:
                _fail_batch(batch, exc)
                continue
            first = last - len(batch) + 1
            for offset, p in enumerate(batch):
                if p.future is not None and not p.future.done():
                    self._waiters[first + offset] = (core.term, p.future)

    def await_entry(self, index: int, term: int, fut: asyncio.Future[Any]) -> None:
        """Answer `fut` when the entry proposed at `index` in `term` is applied."""
        self._waiters[index] = (term, fut)

    def applied(self, e: Entry, result: Any) -> None:
        """Answer whoever waits on the entry at `e.index`, now applied with `result`."""
        waiter = self._waiters.pop(e.index, None)
        if waiter is not None and not waiter[1].done():
            term, fut = waiter
            if term != e.term:
                fut.set_exception(
                    ProposalDroppedError(
                        f"proposal at index {e.index} (term {term}) was replaced by an "
                        f"entry of term {e.term}: it was not applied"
                    )
                )
            elif isinstance(result, kvr.ErrorResult):
                fut.set_exception(KVCommandError(result))
            else:
                fut.set_result(result)

    def superseded(self, index: int) -> None:
        """A snapshot up to `index` was installed: entries waited on there were never applied
        here, so their outcome is unknown."""
        for i in [i for i in self._waiters if i <= index]:
            _, fut = self._waiters.pop(i)
            if not fut.done():
                fut.set_exception(ProposalDroppedError("outcome unknown: superseded by a snapshot"))

    # -- reads ----------------------------------------------------------------------------

    def add_read(self, fut: asyncio.Future[None]) -> bytes:
        """Register a read; returns the ReadIndex context to hand to the core."""
        ctx = b"%d:%d" % (self._node_id, next(self._read_seq))
        self._reads[ctx] = fut
        return ctx

    def forget_read(self, ctx: bytes) -> None:
        """Drop the read registered under `ctx`, if still there."""
        self._reads.pop(ctx, None)

    def serve_reads(self, states: list[ReadState], applied: int) -> None:
        """The core confirmed these reads: each is answered once `applied` reaches its index."""
        for rs in states:
            fut = self._reads.pop(rs.ctx, None)
            if fut is None or fut.done():
                continue
            heapq.heappush(self._read_waits, _ReadWait(rs.index, next(self._read_seq), fut))
        self.release_reads(applied)

    def release_reads(self, applied: int) -> None:
        """Answer the confirmed reads whose index `applied` has reached."""
        while self._read_waits and self._read_waits[0].index <= applied:
            fut = heapq.heappop(self._read_waits).future
            if not fut.done():
                fut.set_result(None)

    # -- every request --------------------------------------------------------------------

    def fail_all(self, error: BaseException, proposed: BaseException | None = None) -> None:
        """End every pending request with `error` and forget them all; writes whose entry is
        already in the log end with `proposed` instead, when given (their outcome is unknown)."""
        waiting = [f for _, f in self._waiters.values()]
        if proposed is not None:
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(proposed)
            waiting = []
        futures = waiting
        futures += list(self._reads.values())
        futures += [w.future for w in self._read_waits]
        futures += [p.future for p in self._queue if p.future is not None]
        self._waiters.clear()
        self._reads.clear()
        self._read_waits.clear()
        self._queue.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)

    async def wait(self, fut: asyncio.Future[T], what: str, timeout: float) -> T:
        """The result of `fut`, or TimeoutError after `timeout` seconds (`fut` lives on)."""
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.CancelledError:
            fut.add_done_callback(_retrieve)  # the caller left: nobody reads the outcome
            raise
        except TimeoutError:
            fut.add_done_callback(_retrieve)
            raise TimeoutError(
                f"{what} on node {self._node_id} not answered within {timeout}s "
                "(a write's outcome is unknown)"
            ) from None
