"""The values that flow into and out of the Raft core: entries, messages, hard state, Ready.

All are immutable plain data (no I/O), so the core stays a pure function of its inputs and the
drivers (simulator, storage, transport) can encode them however they like. Node IDs are positive
integers that are unique for all time; 0 means "nobody".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0
"""The node ID that means "no node" (no vote, no known leader)."""


class MsgType(IntEnum):
    """Kinds of messages exchanged between members."""

    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APP = 5
    APP_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAP = 9
    TIMEOUT_NOW = 10


class EntryType(IntEnum):
    """What an entry's data means: application data or a membership change."""

    NORMAL = 0
    CONF_CHANGE = 1


class Role(IntEnum):
    """A member's role in the current term."""

    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. An entry with empty data and NORMAL type is a leader's no-op."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a member speaks: current term, vote in it, commit index."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: voting members and learners (which receive the log but do not vote)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


class ConfChangeType(IntEnum):
    """Single-server membership changes.

    ADD_NODE adds a learner that the leader promotes to voter once it has caught up;
    PROMOTE is what the leader proposes for that; REMOVE_NODE removes a voter or learner.
    """

    ADD_NODE = 1
    PROMOTE = 2
    REMOVE_NODE = 3


_CONF_HEADER = struct.Struct(">BQ")


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; `context` is opaque to the core (e.g. the member's address)."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        """Encode as the data of a CONF_CHANGE entry."""
        return _CONF_HEADER.pack(int(self.type), self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        """Decode the data of a CONF_CHANGE entry; raises ValueError on malformed data."""
        if len(data) < _CONF_HEADER.size:
            raise ValueError(f"conf change entry too short: {len(data)} bytes")
        kind, node_id = _CONF_HEADER.unpack_from(data)
        try:
            change_type = ConfChangeType(kind)
        except ValueError:
            raise ValueError(f"unknown conf change type {kind}") from None
        if node_id <= 0:
            raise ValueError(f"conf change names invalid node id {node_id}")
        return cls(change_type, node_id, bytes(data[_CONF_HEADER.size :]))


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stands in the log and the membership at that point."""

    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state at `meta.index`, as opaque bytes."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Message:
    """A message between two members. Fields not used by a message type keep their defaults.

    - APP: `index`/`log_term` name the entry preceding `entries`; `commit` is the leader's commit.
    - APP_RESP: `index` is the last index the follower now matches (or, with `reject`, the
      index that was refused, and `reject_hint` a guess at where the logs agree).
    - VOTE/PRE_VOTE: `index`/`log_term` describe the candidate's last entry; `context` is
      b"transfer" when the election follows a leadership transfer.
    - HEARTBEAT and its response: `context` carries a ReadIndex request's id.
    - SNAP: `snapshot` carries the leader's snapshot.
    """

    type: MsgType
    to: int
    frm: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed ReadIndex: reads tagged `ctx` may be served once applied >= `index`."""

    index: int
    ctx: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting: who leads and our role."""

    leader: int
    role: Role


@dataclass(slots=True)
class Ready:
    """One batch of work for the driver, handled in this order, then `advance()`:

    1. send `messages_early` (a leader's appends and heartbeats: they depend on nothing unsaved);
    2. persist `snapshot` (if any), then `entries` (an entry at index i replaces every stored
       entry at i and above), then `hard_state` (if any), and fsync them all;
    3. send `messages` (votes and acknowledgements that promise what step 2 saved);
    4. apply `committed_entries` in order, and serve reads per `read_states`.

    A leader's driver may do 3 and 4 while 2 still runs (its own fsync; Raft thesis 10.2.1):
    it calls `advance(durable=False)`, then `persisted(index, term)` once the write returned,
    and meanwhile handles only `ready(persist=False)` batches, which touch no storage.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages_early: list[Message] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)


class ProposalDroppedError(Exception):
    """The leader refused a proposal (e.g. a leadership transfer or a conf change is pending)."""
