"""ReadIndex bookkeeping of a leader: reads waiting for a quorum to confirm leadership.

A read records the commit index when it arrives and is released once a quorum of voters has
answered a heartbeat sent after it arrived. Reads are released in arrival order: a quorum's
answer to a later read also confirms every earlier one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from hamgr.raft.core.quorum import has_quorum
from hamgr.raft.core.types import ReadState


class PendingReads:
    """Reads waiting for heartbeat acknowledgements, keyed by the caller's context bytes."""

    def __init__(self) -> None:
        self._reads: OrderedDict[bytes, tuple[int, set[int]]] = OrderedDict()

    def add(self, ctx: bytes, commit_index: int, leader: int) -> None:
        """A read arrived while the commit index was `commit_index`; the leader acks itself."""
        self._reads[ctx] = (commit_index, {leader})

    def ack(self, ctx: bytes, frm: int, voters: Collection[int]) -> list[ReadState]:
        """A heartbeat answer tagged `ctx` came from `frm`; returns the reads now confirmed."""
        pending = self._reads.get(ctx)
        if pending is None:
            return []
        pending[1].add(frm)
        if not has_quorum(voters, pending[1]):
            return []
        released = []
        while self._reads:
            key, (index, _) = self._reads.popitem(last=False)
            released.append(ReadState(index, key))
            if key == ctx:
                break
        return released

    def clear(self) -> None:
        """Forget every waiting read (leadership lost: callers time out or retry)."""
        self._reads.clear()
