"""Bytes for the Raft types: Message (with its entries and snapshot), Entry, HardState, Snapshot.

The encoding is msgpack (never pickle): each value is a positional array, not a map with field
names, so frames stay small and fast to build. Field order, per array:

- Message:   [type, to, frm, term, log_term, index, [Entry...], commit, reject, reject_hint,
              Snapshot or nil, context]
- Entry:     [term, index, type, data]
- HardState: [term, vote, commit]
- Snapshot:  [index, term, [voter...], [learner...], data]

Decoding trusts nothing: it reads bytes from the network and from disk, so every field is checked
(exact array lengths, non-negative integers, positive node IDs, known enum values, bytes where bytes
belong, unique members) and any fault raises `CodecError` naming the field, e.g.
``message.entries[3].term: expected a non-negative integer, got int -1``. msgpack's own limits
(sizes of strings, binaries, arrays, maps; no extension types) are set so that a hostile length
prefix cannot make the decoder allocate more than the payload allows. Nesting depth needs no
separate limit: the schema is fixed and checked level by level, and msgpack refuses input nested
deeper than its parser stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

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
from hamgr.raft.net.strictpack import describe, unpack_strict

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

_MAX_ARRAY_LEN = 1 << 20
"""No array in the schema (entries, members) is longer than this."""

_MAX_STR_LEN = 256
"""The schema has no strings; short ones are let through only so the error can name the field."""

_MESSAGE_FIELDS = 12
_ENTRY_FIELDS = 4
_HARD_STATE_FIELDS = 3
_SNAPSHOT_FIELDS = 5

_MSG_TYPES: dict[int, MsgType] = {int(t): t for t in MsgType}
_ENTRY_TYPES: dict[int, EntryType] = {int(t): t for t in EntryType}


class CodecError(ValueError):
    """Bytes that do not decode to a valid value; `field` names where the fault is."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem

    def within(self, prefix: str) -> CodecError:
        """The same error, with its field named relative to an enclosing `prefix`."""
        return CodecError(f"{prefix}.{self.field}" if self.field else prefix, self.problem)


# --- encoding ---------------------------------------------------------------------------------


def _entry_wire(e: Entry) -> list[Any]:
    return [e.term, e.index, e.type, e.data]


def _snapshot_wire(s: Snapshot) -> list[Any]:
    m = s.meta
    return [m.index, m.term, m.conf.voters, m.conf.learners, s.data]


def _message_wire(m: Message) -> list[Any]:
    return [
        m.type,
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        [[e.term, e.index, e.type, e.data] for e in m.entries],
        m.commit,
        m.reject,
        m.reject_hint,
        None if m.snapshot is None else _snapshot_wire(m.snapshot),
        m.context,
    ]


def _pack(wire: list[Any], what: str) -> bytes:
    try:
        data: bytes = msgpack.packb(wire, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(what, f"cannot encode: {exc}") from None
    return data


def encode_message(msg: Message) -> bytes:
    """Encode a message with its entries and snapshot."""
    return _pack(_message_wire(msg), "message")


def encode_entry(entry: Entry) -> bytes:
    """Encode one log entry on its own (e.g. for a storage record)."""
    return _pack(_entry_wire(entry), "entry")


def encode_hard_state(hs: HardState) -> bytes:
    """Encode a hard state on its own."""
    return _pack([hs.term, hs.vote, hs.commit], "hard_state")


def encode_snapshot(snap: Snapshot) -> bytes:
    """Encode a snapshot (metadata and data) on its own."""
    return _pack(_snapshot_wire(snap), "snapshot")


# --- decoding ---------------------------------------------------------------------------------


def _unpack(data: bytes, max_size: int, what: str) -> Any:
    return unpack_strict(
        data,
        max_size,
        what,
        CodecError,
        max_str_len=_MAX_STR_LEN,
        max_array_len=_MAX_ARRAY_LEN,
        max_map_len=_MAX_ARRAY_LEN,
    )


def _array(value: object, length: int, field: str) -> tuple[Any, ...]:
    if type(value) is not tuple:
        raise CodecError(field, f"expected an array of {length} fields, got {describe(value)}")
    if len(value) != length:
        raise CodecError(field, f"expected an array of {length} fields, got {len(value)}")
    return value


def _uint(value: object, field: str) -> int:
    if type(value) is not int or value < 0:
        raise CodecError(field, f"expected a non-negative integer, got {describe(value)}")
    return value


def _node_id(value: object, field: str) -> int:
    if type(value) is not int or value <= 0:
        raise CodecError(field, f"expected a node id (positive integer), got {describe(value)}")
    return value


def _bytes(value: object, field: str) -> bytes:
    if type(value) is not bytes:
        raise CodecError(field, f"expected bytes, got {describe(value)}")
    return value


def _entry_from(obj: object) -> Entry:
    term, index, kind, data = _array(obj, _ENTRY_FIELDS, "")
    entry_type = _ENTRY_TYPES.get(kind) if type(kind) is int else None
    if entry_type is None:
        raise CodecError("type", f"unknown entry type {describe(kind)}")
    return Entry(_uint(term, "term"), _uint(index, "index"), entry_type, _bytes(data, "data"))


def _entries_from(obj: object) -> tuple[Entry, ...]:
    if type(obj) is not tuple:
        raise CodecError("entries", f"expected an array of entries, got {describe(obj)}")
    try:
        return tuple([_entry_from(item) for item in obj])
    except CodecError as exc:
        bad = next(i for i, item in enumerate(obj) if not _is_valid_entry(item))
        raise exc.within(f"entries[{bad}]") from None


def _is_valid_entry(obj: object) -> bool:
    try:
        _entry_from(obj)
    except CodecError:
        return False
    return True


def _members(obj: object, field: str) -> tuple[int, ...]:
    if type(obj) is not tuple:
        raise CodecError(field, f"expected an array of node ids, got {describe(obj)}")
    for i, node in enumerate(obj):
        _node_id(node, f"{field}[{i}]")
    if len(set(obj)) != len(obj):
        raise CodecError(field, "lists a node id more than once")
    return obj


def _snapshot_from(obj: object) -> Snapshot:
    index, term, voters, learners, data = _array(obj, _SNAPSHOT_FIELDS, "")
    voter_ids = _members(voters, "voters")
    learner_ids = _members(learners, "learners")
    both = set(voter_ids) & set(learner_ids)
    if both:
        raise CodecError("learners", f"node ids {sorted(both)} are also voters")
    meta = SnapshotMeta(
        _uint(index, "index"), _uint(term, "term"), ConfState(voter_ids, learner_ids)
    )
    return Snapshot(meta, _bytes(data, "data"))


def _message_from(obj: object) -> Message:
    (kind, to, frm, term, log_term, index, entries, commit, reject, hint, snap, context) = _array(
        obj, _MESSAGE_FIELDS, ""
    )
    msg_type = _MSG_TYPES.get(kind) if type(kind) is int else None
    if msg_type is None:
        raise CodecError("type", f"unknown message type {describe(kind)}")
    if type(reject) is not bool:
        raise CodecError("reject", f"expected a boolean, got {describe(reject)}")
    snapshot = None
    if snap is not None:
        try:
            snapshot = _snapshot_from(snap)
        except CodecError as exc:
            raise exc.within("snapshot") from None
    return Message(
        type=msg_type,
        to=_node_id(to, "to"),
        frm=_node_id(frm, "frm"),
        term=_uint(term, "term"),
        log_term=_uint(log_term, "log_term"),
        index=_uint(index, "index"),
        entries=_entries_from(entries),
        commit=_uint(commit, "commit"),
        reject=reject,
        reject_hint=_uint(hint, "reject_hint"),
        snapshot=snapshot,
        context=_bytes(context, "context"),
    )


def _decode(data: bytes, max_size: int, what: str, build: Callable[[Any], T]) -> T:
    """Unpack `data` and build a value from it, naming `what` in any error."""
    obj = _unpack(data, max_size, what)
    try:
        return build(obj)
    except CodecError as exc:
        raise exc.within(what) from None


def decode_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Message:
    """Decode and validate a message; raises `CodecError` naming the first bad field."""
    return _decode(data, max_size, "message", _message_from)


def decode_entry(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Entry:
    """Decode and validate one entry encoded by `encode_entry`."""
    return _decode(data, max_size, "entry", _entry_from)


def decode_hard_state(data: bytes) -> HardState:
    """Decode and validate a hard state encoded by `encode_hard_state`."""
    obj = _unpack(data, 64, "hard_state")
    term, vote, commit = _array(obj, _HARD_STATE_FIELDS, "hard_state")
    return HardState(
        _uint(term, "hard_state.term"),
        _uint(vote, "hard_state.vote"),
        _uint(commit, "hard_state.commit"),
    )


def decode_snapshot(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Snapshot:
    """Decode and validate a snapshot encoded by `encode_snapshot`."""
    return _decode(data, max_size, "snapshot", _snapshot_from)
