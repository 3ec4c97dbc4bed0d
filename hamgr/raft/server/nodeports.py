"""What a `RaftNode` needs from its durable storage and its network, stated as protocols.

`RaftNode` (`hamgr.raft.server.node`) uses `RaftStorage` (the WAL, `hamgr.raft.wal.storage`) and
`PeerTransport` (TCP, `hamgr.raft.net.transport`) by default. Anything with the same calls can stand
in for them, e.g. the in-memory disk and network of the node simulator (`hamgr.raft.sim.node`),
which runs the real node on virtual time. The node also takes its clock (`time.monotonic` by
default) and its random source, so that a run can be replayed from a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from hamgr.raft.core.types import Entry, HardState, Message, Snapshot

__all__ = [
    "NodeStorage",
    "NodeTransport",
    "StorageOpener",
    "TransportFactory",
    "TransportStatsView",
]


class NodeStorage(Protocol):
    """The calls the node makes on its storage (each from its single I/O worker thread)."""

    def initial_state(self) -> tuple[HardState, Snapshot | None, list[Entry]]:
        """Hard state, newest snapshot and the entries after it, as found when opened."""
        ...

    def save(
        self,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist one Ready batch durably (snapshot, entries, hard state; one fsync)."""
        ...

    def stage_snapshot(self, snapshot: Snapshot) -> None:
        """Make a snapshot's data durable before `compact` adopts it."""
        ...

    def compact(self, snapshot: Snapshot) -> None:
        """Adopt a snapshot taken at an applied index and drop the entries it covers."""
        ...

    def close(self) -> None:
        """Release the storage (safe to call twice)."""
        ...


StorageOpener = Callable[[str], NodeStorage]
"""Opens (recovering) the storage of a data directory: `RaftStorage.open` by default."""


class TransportStatsView(Protocol):
    """The transport counters the node reports in `status()`."""

    dropped_queue_full: int
    dropped_unknown_peer: int
    dropped_oversize: int
    dropped_unreachable: int


class NodeTransport(Protocol):
    """The calls the node (and its owners) make on the peer network."""

    @property
    def stats(self) -> TransportStatsView:
        """Counters of messages sent and dropped."""
        ...

    @property
    def bound_address(self) -> tuple[str, int]:
        """Where this member listens."""
        ...

    @property
    def advertised_address(self) -> tuple[str, int]:
        """Where peers should reach this member."""
        ...

    async def start(self) -> None:
        """Start listening and dialing."""
        ...

    async def stop(self) -> None:
        """Stop every connection."""
        ...

    def send(self, msg: Message) -> None:
        """Queue `msg` for `msg.to`; never blocks, may drop (Raft tolerates loss)."""
        ...

    def set_peer(self, node_id: int, address: tuple[str, int]) -> None:
        """Add a peer or change its address."""
        ...

    def remove_peer(self, node_id: int) -> None:
        """Forget a peer."""
        ...

    def connected_peers(self) -> set[int]:
        """Peers with an outbound connection up now."""
        ...


TransportFactory = Callable[[Callable[[Message], None]], NodeTransport]
"""Builds the node's transport given the callback that steps each received message."""
