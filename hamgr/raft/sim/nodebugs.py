"""Test only: `RaftNode` subclasses that each break one rule of the node, to show that the node
simulator's checks catch them (`python -m hamgr.raft.sim.node --bug-report`). Production code
never uses them; each overrides one small method of the real node.

- `read_without_quorum`: a leader answers linearizable reads and keepalives from its own state,
  without a ReadIndex round confirming that it still leads (a deposed leader serves stale data
  and extends leases it no longer counts).
- `leases_kept_after_step_down`: a deposed leader's lease clock keeps its deadlines; elected
  again, it expires leases that another leader kept alive meanwhile.
- `ack_before_commit`: a put is acknowledged as soon as the leader has queued it, with the
  revision it would get, before any other member holds it (a crash or deposition loses it).
- `send_before_persist`: the node sends a Ready's votes and acknowledgements before their fsync
  (a crash then forgets what others counted on).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from hamgr.raft.core.types import Ready
from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv import kvresults as kvr
from hamgr.raft.kv.lease import LeaseClock
from hamgr.raft.server.node import RaftNode

__all__ = ["BUGS"]


class ReadWithoutQuorum(RaftNode):
    """Bug: reads (and keepalives) skip the ReadIndex round."""

    async def _read_barrier(self, what: str) -> None:
        self._check_leader()


class _ClockThatNeverStepsDown(LeaseClock):
    def step_down(self) -> None:
        pass


class LeasesKeptAfterStepDown(RaftNode):
    """Bug: a deposed leader keeps counting leases; elected again, it carries on from its old
    deadlines instead of restarting every lease at a full TTL (keepalives it missed meanwhile
    were served by another leader)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        retry = max(self.election_timeout, self.tick_interval)
        self.leases = _ClockThatNeverStepsDown(retry_interval=retry)


class AckBeforeCommit(RaftNode):
    """Bug: a put is answered once queued, not once applied."""

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> kvr.PutResult:
        self._check_leader()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._enqueue(kvc.encode_put(key, value, lease), fut)
        return kvr.PutResult(self.kv.revision + 1, None)


class SendBeforePersist(RaftNode):
    """Bug: a Ready's votes and acknowledgements leave with its early messages, before its
    batch is saved (made by the core's `ready()`, so it holds whatever the driver's shape)."""

    async def start(self) -> None:
        await super().start()  # the driver task has not run yet
        core = self._core
        assert core is not None
        real = core.ready

        def ready(*args: Any, **kwargs: Any) -> Ready:
            rd = real(*args, **kwargs)
            return replace(rd, messages_early=[*rd.messages_early, *rd.messages], messages=[])

        setattr(core, "ready", ready)  # noqa: B010 (test only: replaces the bound method)


BUGS: dict[str, type[RaftNode]] = {
    "ack_before_commit": AckBeforeCommit,
    "read_without_quorum": ReadWithoutQuorum,
    "leases_kept_after_step_down": LeasesKeptAfterStepDown,
    "send_before_persist": SendBeforePersist,
}
"""Planted bugs by name."""
