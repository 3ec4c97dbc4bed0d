"""Bytes for the Raft types: Message (with its entries and snapshot), Entry, HardState, Snapshot.

The encoding is msgpack (never pickle): each value is a positional array, not a map with field
names, so frames stay small and fast to build. The wire shapes are the Structs below (field order
is array order, types and bounds are checked while decoding):

- Message:   [type, to, frm, term, log_term, index, [Entry...], commit, reject, reject_hint,
              Snapshot or nil, context]
- Entry:     [term, index, type, data]
- HardState: [term, vote, commit]
- Snapshot:  [index, term, [voter...], [learner...], data]

Decoding trusts nothing: it reads bytes from the network, so any fault raises `CodecError` naming
the field, e.g. ``message.entries[3].term: Expected `int` >= 0``. Two rules no type can state
(members listed once; no member both voter and learner) are checked after decoding. The core's
own types (`hamgr.raft.core.types`) stay plain dataclasses with defaults: the wire forms here
have no defaults, so an array with a missing field is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from hamgr.raft.core.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)
from hamgr.raft.net.wire import NodeId, UInt, WireStruct, decode_strict

W = TypeVar("W", bound=WireStruct)
T = TypeVar("T")

__all__ = [
    "DEFAULT_MAX_SIZE",
    "CodecError",
    "decode_entry",
    "decode_hard_state",
    "decode_message",
    "decode_snapshot",
    "encode_entry",
    "encode_hard_state",
    "encode_message",
    "encode_snapshot",
]

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
"""Largest encoded value accepted by the decoders unless the caller says otherwise (bytes)."""


class CodecError(ValueError):
    """Bytes that do not decode to a valid value; `field` names where the fault is."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class EntryWire(WireStruct):
    """An `Entry` on the wire."""

    term: UInt
    index: UInt
    type: EntryType
    data: bytes


class HardStateWire(WireStruct):
    """A `HardState` on the wire."""

    term: UInt
    vote: UInt
    commit: UInt


class SnapshotWire(WireStruct):
    """A `Snapshot` on the wire: its metadata flattened, then its data."""

    index: UInt
    term: UInt
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    data: bytes


class MessageWire(WireStruct):
    """A `Message` on the wire."""

    type: MsgType
    to: NodeId
    frm: NodeId
    term: UInt
    log_term: UInt
    index: UInt
    entries: tuple[EntryWire, ...]
    commit: UInt
    reject: bool
    reject_hint: UInt
    snapshot: SnapshotWire | None
    context: bytes


_ENCODER = msgspec.msgpack.Encoder()
_ENTRY = msgspec.msgpack.Decoder(EntryWire)
_HARD_STATE = msgspec.msgpack.Decoder(HardStateWire)
_SNAPSHOT = msgspec.msgpack.Decoder(SnapshotWire)
_MESSAGE = msgspec.msgpack.Decoder(MessageWire)

# --- encoding ---------------------------------------------------------------------------------


def _snapshot_wire(s: Snapshot) -> SnapshotWire:
    m = s.meta
    return SnapshotWire(m.index, m.term, m.conf.voters, m.conf.learners, s.data)


def _encode(wire: WireStruct, what: str) -> bytes:
    try:
        return _ENCODER.encode(wire)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(what, f"cannot encode: {exc}") from None


def encode_message(m: Message) -> bytes:
    """Encode a message with its entries and snapshot."""
    wire = MessageWire(
        m.type,
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        tuple([EntryWire(e.term, e.index, e.type, e.data) for e in m.entries]),
        m.commit,
        m.reject,
        m.reject_hint,
        None if m.snapshot is None else _snapshot_wire(m.snapshot),
        m.context,
    )
    return _encode(wire, "message")


def encode_entry(e: Entry) -> bytes:
    """Encode one log entry on its own."""
    return _encode(EntryWire(e.term, e.index, e.type, e.data), "entry")


def encode_hard_state(hs: HardState) -> bytes:
    """Encode a hard state on its own."""
    return _encode(HardStateWire(hs.term, hs.vote, hs.commit), "hard_state")


def encode_snapshot(snap: Snapshot) -> bytes:
    """Encode a snapshot (metadata and data) on its own."""
    return _encode(_snapshot_wire(snap), "snapshot")


# --- decoding ---------------------------------------------------------------------------------


def _snapshot_from(w: SnapshotWire, what: str) -> Snapshot:
    if len(set(w.voters)) != len(w.voters):
        raise CodecError(f"{what}.voters", "lists a node id more than once")
    if len(set(w.learners)) != len(w.learners):
        raise CodecError(f"{what}.learners", "lists a node id more than once")
    both = set(w.voters) & set(w.learners)
    if both:
        raise CodecError(f"{what}.learners", f"node ids {sorted(both)} are also voters")
    return Snapshot(SnapshotMeta(w.index, w.term, ConfState(w.voters, w.learners)), w.data)


def _message_from(w: MessageWire) -> Message:
    return Message(
        type=w.type,
        to=w.to,
        frm=w.frm,
        term=w.term,
        log_term=w.log_term,
        index=w.index,
        entries=tuple([Entry(e.term, e.index, e.type, e.data) for e in w.entries]),
        commit=w.commit,
        reject=w.reject,
        reject_hint=w.reject_hint,
        snapshot=None if w.snapshot is None else _snapshot_from(w.snapshot, "message.snapshot"),
        context=w.context,
    )


def _decode(
    data: bytes,
    max_size: int,
    what: str,
    decoder: msgspec.msgpack.Decoder[W],
    build: Callable[[W], T],
) -> T:
    return build(decode_strict(decoder, data, max_size, what, CodecError))


def decode_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Message:
    """Decode and validate a message; raises `CodecError` naming the first bad field."""
    return _decode(data, max_size, "message", _MESSAGE, _message_from)


def decode_entry(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Entry:
    """Decode and validate one entry encoded by `encode_entry`."""
    return _decode(
        data, max_size, "entry", _ENTRY, lambda e: Entry(e.term, e.index, e.type, e.data)
    )


def decode_hard_state(data: bytes) -> HardState:
    """Decode and validate a hard state encoded by `encode_hard_state`."""
    return _decode(
        data, 64, "hard_state", _HARD_STATE, lambda h: HardState(h.term, h.vote, h.commit)
    )


def decode_snapshot(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Snapshot:
    """Decode and validate a snapshot encoded by `encode_snapshot`."""
    return _decode(data, max_size, "snapshot", _SNAPSHOT, lambda s: _snapshot_from(s, "snapshot"))
