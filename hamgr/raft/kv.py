"""The replicated key-value state machine that the Raft log drives, with etcd v3 semantics.

Pure and deterministic: no clock, no I/O, no randomness. Every member applies the same committed
entries in the same order with `KVStore.apply` and ends in byte-identical state (`snapshot()`).

- Commands are small frozen dataclasses (`Put`, `DeleteRange`, `Range`, `Txn`, `LeaseGrant`,
  `LeaseRevoke`) encoded as msgpack by `encode` / `encode_*` and decoded by `decode`. Both ends run
  the same validation, so a proposer learns of a bad command before it reaches the log, and a
  malformed entry that does reach it becomes an `ErrorResult` on every member, changing nothing.
- Revisions follow etcd: the store starts at revision 1; each command that changes at least one key
  takes exactly one new revision (a txn is one revision however many ops it has; a delete that
  matches nothing, a read-only txn, a lease grant and a revoke of a lease without keys take none).
  Each key carries create_revision, mod_revision, version and lease; deleting a key forgets it, so a
  later put creates it again with a new create_revision and version 1.
- Leases are granted with an id chosen by the proposer and a TTL that the store records but never
  counts: expiry is decided by the leader's `hamgr.raft.lease.LeaseClock` and arrives here as a
  revoke entry, which deletes every attached key in one revision.
- Watches (`KVStore.watch`) deliver PUT/DELETE events in revision order to in-process subscribers,
  resumable from a recent revision out of a bounded history of events. No asyncio here: a
  `Watcher` queues events and calls an optional `notify(watcher)` callback that a driver can wire
  to an event loop (e.g. `loop.call_soon_threadsafe(event.set)` or `event.set`).
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, TypeAlias

import msgpack

__all__ = [
    "FORMAT_VERSION",
    "INITIAL_REVISION",
    "MAX_LEASE_TTL",
    "MAX_TXN_OPS",
    "CompactedError",
    "Compare",
    "CompareOp",
    "DeleteRange",
    "DeleteResult",
    "ErrorCode",
    "ErrorResult",
    "Event",
    "EventType",
    "InvalidCommandError",
    "KVStore",
    "KeyValue",
    "LeaseGrant",
    "LeaseGrantResult",
    "LeaseInfo",
    "LeaseRevoke",
    "LeaseRevokeResult",
    "NoopResult",
    "Put",
    "PutResult",
    "Range",
    "RangeResult",
    "SnapshotError",
    "Target",
    "Txn",
    "TxnResult",
    "WatchCancelledError",
    "Watcher",
    "compare_create",
    "compare_lease",
    "compare_mod",
    "compare_value",
    "compare_version",
    "decode",
    "encode",
    "encode_delete",
    "encode_lease_grant",
    "encode_lease_revoke",
    "encode_put",
    "encode_range",
    "encode_txn",
]

FORMAT_VERSION = 1
"""First element of every encoded command; a future incompatible encoding takes a new number."""

SNAPSHOT_VERSION = 1
"""First element of every snapshot."""

INITIAL_REVISION = 1
"""The revision of an empty store, as in etcd: the first change takes revision 2."""

MAX_TXN_OPS = 128
"""Most compares, and most ops per branch, in one txn (etcd's default --max-txn-ops)."""

MAX_LEASE_TTL = 9_000_000_000.0
"""Largest lease TTL in seconds (etcd's MaxLeaseTTL)."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Wire op codes. Never renumber: they are in every member's log.
_OP_PUT = 1
_OP_DELETE = 2
_OP_RANGE = 3
_OP_TXN = 4
_OP_LEASE_GRANT = 5
_OP_LEASE_REVOKE = 6


# --------------------------------------------------------------------------------------------
# Errors


class InvalidCommandError(ValueError):
    """A command (built locally or decoded from a log entry) is malformed; the message says why."""


class SnapshotError(ValueError):
    """Snapshot bytes are malformed or inconsistent; the store was left unchanged."""


class CompactedError(Exception):
    """A watch asked for events older than the bounded history still holds.

    The subscriber must re-read the current state (`range`) and watch again from
    `range(...).revision + 1`.
    """

    def __init__(self, requested: int, first_available: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted from the watch history; "
            f"the oldest revision still watchable is {first_available}"
        )
        self.requested = requested
        self.first_available = first_available

    @property
    def compact_revision(self) -> int:
        """The newest revision no longer available (etcd's CompactRevision)."""
        return self.first_available - 1


class WatchCancelledError(Exception):
    """The watch was cancelled (by its owner, or because its notify callback raised)."""


# --------------------------------------------------------------------------------------------
# Validation helpers shared by encoding, decoding and local calls


def _need_bytes(name: str, value: object) -> bytes:
    if type(value) is not bytes:
        raise InvalidCommandError(f"{name} must be bytes, got {type(value).__name__}")
    return value


def _need_key(name: str, value: object, prefix: bool) -> bytes:
    key = _need_bytes(name, value)
    if not key and not prefix:
        raise InvalidCommandError(
            f"{name} must not be empty (use prefix=True with b'' for all keys)"
        )
    return key


def _need_bool(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise InvalidCommandError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _need_int(name: str, value: object, lo: int, hi: int) -> int:
    if type(value) is not int:
        raise InvalidCommandError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidCommandError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _need_ttl(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCommandError(f"{name} must be a number of seconds, got {type(value).__name__}")
    ttl = float(value)
    if not (math.isfinite(ttl) and 0 < ttl <= MAX_LEASE_TTL):
        raise InvalidCommandError(
            f"{name} must be in (0, {MAX_LEASE_TTL:.0f}] seconds, got {value}"
        )
    return ttl


def _key_in(key: bytes, start: bytes, prefix: bool) -> bool:
    return key.startswith(start) if prefix else key == start


# --------------------------------------------------------------------------------------------
# Commands


class Target(IntEnum):
    """Which field of a key a txn compare looks at."""

    VALUE = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    LEASE = 4


class CompareOp(IntEnum):
    """How a txn compare relates the key's field to the given value."""

    EQUAL = 0
    NOT_EQUAL = 1
    LESS = 2
    GREATER = 3

    @classmethod
    def parse(cls, op: CompareOp | str) -> CompareOp:
        """Accept a CompareOp or one of the symbols '=', '==', '!=', '<', '>'."""
        if isinstance(op, CompareOp):
            return op
        try:
            return _OP_SYMBOLS[op]
        except (KeyError, TypeError):
            raise InvalidCommandError(
                f"unknown compare operator {op!r}; use one of '=', '!=', '<', '>'"
            ) from None


_OP_SYMBOLS = {
    "=": CompareOp.EQUAL,
    "==": CompareOp.EQUAL,
    "!=": CompareOp.NOT_EQUAL,
    "<": CompareOp.LESS,
    ">": CompareOp.GREATER,
}


@dataclass(frozen=True, slots=True)
class Put:
    """Set `key` to `value`, attached to `lease` (0: no lease; a put detaches any previous one)."""

    key: bytes
    value: bytes
    lease: int = 0

    def __post_init__(self) -> None:
        _need_key("put key", self.key, prefix=False)
        _need_bytes("put value", self.value)
        _need_int("put lease", self.lease, 0, _INT64_MAX)


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete `key`, or every key starting with it when `prefix` (b'' with prefix: all keys)."""

    key: bytes
    prefix: bool = False

    def __post_init__(self) -> None:
        _need_bool("delete prefix", self.prefix)
        _need_key("delete key", self.key, self.prefix)


@dataclass(frozen=True, slots=True)
class Range:
    """Read `key`, or every key starting with it when `prefix`, in key order.

    `limit` > 0 caps the returned kvs (`count` still counts all matches, `more` says some were
    left out); `keys_only` blanks values; `count_only` returns no kvs, only `count`.
    """

    key: bytes
    prefix: bool = False
    limit: int = 0
    keys_only: bool = False
    count_only: bool = False

    def __post_init__(self) -> None:
        _need_bool("range prefix", self.prefix)
        _need_key("range key", self.key, self.prefix)
        _need_int("range limit", self.limit, 0, _INT64_MAX)
        _need_bool("range keys_only", self.keys_only)
        _need_bool("range count_only", self.count_only)


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn guard: `<target of key> <op> value` (bytes for VALUE, an int otherwise).

    With `prefix`, every key under the prefix must satisfy it. As in etcd, a missing key compares
    as zero values (version, create, mod and lease 0), except that a VALUE compare on a missing
    key is always false, whatever the operator.
    """

    key: bytes
    target: Target
    op: CompareOp
    value: bytes | int
    prefix: bool = False

    def __post_init__(self) -> None:
        _need_bool("compare prefix", self.prefix)
        _need_key("compare key", self.key, self.prefix)
        if not isinstance(self.target, Target):
            raise InvalidCommandError(f"compare target must be a Target, got {self.target!r}")
        if not isinstance(self.op, CompareOp):
            raise InvalidCommandError(f"compare op must be a CompareOp, got {self.op!r}")
        if self.target is Target.VALUE:
            _need_bytes("compare value", self.value)
        else:
            _need_int(f"compare {self.target.name.lower()}", self.value, _INT64_MIN, _INT64_MAX)


def compare_value(
    key: bytes, op: CompareOp | str, value: bytes, *, prefix: bool = False
) -> Compare:
    """Guard on the value (bytewise order)."""
    return Compare(key, Target.VALUE, CompareOp.parse(op), value, prefix)


def compare_version(
    key: bytes, op: CompareOp | str, version: int, *, prefix: bool = False
) -> Compare:
    """Guard on the version (0 for a missing key)."""
    return Compare(key, Target.VERSION, CompareOp.parse(op), version, prefix)


def compare_create(
    key: bytes, op: CompareOp | str, revision: int, *, prefix: bool = False
) -> Compare:
    """Guard on the create revision (0 for a missing key: `compare_create(k, '=', 0)` = absent)."""
    return Compare(key, Target.CREATE, CompareOp.parse(op), revision, prefix)


def compare_mod(key: bytes, op: CompareOp | str, revision: int, *, prefix: bool = False) -> Compare:
    """Guard on the mod revision (0 for a missing key)."""
    return Compare(key, Target.MOD, CompareOp.parse(op), revision, prefix)


def compare_lease(
    key: bytes, op: CompareOp | str, lease_id: int, *, prefix: bool = False
) -> Compare:
    """Guard on the attached lease id (0 for none or a missing key)."""
    return Compare(key, Target.LEASE, CompareOp.parse(op), lease_id, prefix)


Op: TypeAlias = Put | DeleteRange | Range
"""An operation inside a txn branch."""


def _check_branch(name: str, ops: tuple[Op, ...]) -> None:
    """etcd's checkIntervals: within a branch a key is put at most once and never both put and
    deleted, so the order of a branch's writes cannot matter for the final state."""
    if len(ops) > MAX_TXN_OPS:
        raise InvalidCommandError(f"txn {name} has {len(ops)} ops, more than {MAX_TXN_OPS}")
    put_keys: set[bytes] = set()
    deletes: list[DeleteRange] = []
    for op in ops:
        if not isinstance(op, Put | DeleteRange | Range):
            raise InvalidCommandError(
                f"txn {name} op must be Put, DeleteRange or Range, got {type(op).__name__}"
            )
        if isinstance(op, Put):
            if op.key in put_keys:
                raise InvalidCommandError(f"txn {name} puts key {op.key!r} more than once")
            put_keys.add(op.key)
        elif isinstance(op, DeleteRange):
            deletes.append(op)
    for d in deletes:
        for key in put_keys:
            if _key_in(key, d.key, d.prefix):
                raise InvalidCommandError(
                    f"txn {name} both puts and deletes key {key!r}; split it into two txns"
                )


@dataclass(frozen=True, slots=True)
class Txn:
    """If every compare holds, run `success`, else `failure`; atomically, as ONE revision.

    Reads inside a branch see the branch's earlier writes. Lists are accepted and stored as tuples.
    """

    compares: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()

    def __post_init__(self) -> None:
        for name in ("compares", "success", "failure"):
            value = getattr(self, name)
            if not isinstance(value, tuple | list):
                raise InvalidCommandError(
                    f"txn {name} must be a sequence, got {type(value).__name__}"
                )
            object.__setattr__(self, name, tuple(value))
        if len(self.compares) > MAX_TXN_OPS:
            raise InvalidCommandError(
                f"txn has {len(self.compares)} compares, more than {MAX_TXN_OPS}"
            )
        for c in self.compares:
            if not isinstance(c, Compare):
                raise InvalidCommandError(f"txn compare must be a Compare, got {type(c).__name__}")
        _check_branch("success", self.success)
        _check_branch("failure", self.failure)


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """Create lease `lease_id` (1 .. 2**63-1, chosen by the proposer) with `ttl` seconds."""

    lease_id: int
    ttl: float

    def __post_init__(self) -> None:
        _need_int("lease id", self.lease_id, 1, _INT64_MAX)
        object.__setattr__(self, "ttl", _need_ttl("lease ttl", self.ttl))


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """Delete lease `lease_id` and every key attached to it, in one revision."""

    lease_id: int

    def __post_init__(self) -> None:
        _need_int("lease id", self.lease_id, 1, _INT64_MAX)


Command: TypeAlias = Put | DeleteRange | Range | Txn | LeaseGrant | LeaseRevoke
"""Everything that can be proposed through the log."""


# --------------------------------------------------------------------------------------------
# Encoding


def _op_to_wire(op: Command) -> list[Any]:
    if isinstance(op, Put):
        return [_OP_PUT, op.key, op.value, op.lease]
    if isinstance(op, DeleteRange):
        return [_OP_DELETE, op.key, op.prefix]
    if isinstance(op, Range):
        return [_OP_RANGE, op.key, op.prefix, op.limit, op.keys_only, op.count_only]
    if isinstance(op, Txn):
        return [
            _OP_TXN,
            [[c.key, c.prefix, int(c.target), int(c.op), c.value] for c in op.compares],
            [_op_to_wire(o) for o in op.success],
            [_op_to_wire(o) for o in op.failure],
        ]
    if isinstance(op, LeaseGrant):
        return [_OP_LEASE_GRANT, op.lease_id, op.ttl]
    if isinstance(op, LeaseRevoke):
        return [_OP_LEASE_REVOKE, op.lease_id]
    raise InvalidCommandError(f"not a KV command: {type(op).__name__}")


def encode(command: Command) -> bytes:
    """Encode a command as the data of a log entry (msgpack)."""
    return msgpack.packb([FORMAT_VERSION, *_op_to_wire(command)], use_bin_type=True)


def encode_put(key: bytes, value: bytes, lease: int = 0) -> bytes:
    """Encode a put; raises InvalidCommandError on bad arguments."""
    return encode(Put(key, value, lease))


def encode_delete(key: bytes, prefix: bool = False) -> bytes:
    """Encode a delete of one key or, with `prefix`, of every key under it."""
    return encode(DeleteRange(key, prefix))


def encode_range(
    key: bytes,
    prefix: bool = False,
    limit: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
) -> bytes:
    """Encode a read that goes through the log (reads normally use `KVStore.range` after
    ReadIndex instead)."""
    return encode(Range(key, prefix, limit, keys_only, count_only))


def encode_txn(
    compares: Sequence[Compare], success_ops: Sequence[Op], failure_ops: Sequence[Op] = ()
) -> bytes:
    """Encode a txn; raises InvalidCommandError on bad compares or conflicting ops."""
    return encode(Txn(tuple(compares), tuple(success_ops), tuple(failure_ops)))


def encode_lease_grant(lease_id: int, ttl: float) -> bytes:
    """Encode a lease grant (pick `ttl` with `hamgr.raft.lease.effective_ttl`)."""
    return encode(LeaseGrant(lease_id, ttl))


def encode_lease_revoke(lease_id: int) -> bytes:
    """Encode a lease revoke (also what the leader proposes when a lease expires)."""
    return encode(LeaseRevoke(lease_id))


# --------------------------------------------------------------------------------------------
# Decoding


def _fields(name: str, wire: object, count: int) -> list[Any]:
    if not isinstance(wire, list) or len(wire) != count:
        raise InvalidCommandError(f"{name} must be a list of {count} fields, got {wire!r:.80}")
    return wire


def _op_from_wire(wire: object, *, in_txn: bool) -> Command:
    if not isinstance(wire, list) or not wire:
        raise InvalidCommandError(f"op must be a non-empty list, got {wire!r:.80}")
    code, rest = wire[0], wire[1:]
    if type(code) is not int:
        raise InvalidCommandError(f"op code must be an int, got {code!r:.40}")
    if code == _OP_PUT:
        key, value, lease = _fields("put", rest, 3)
        return Put(key, value, lease)
    if code == _OP_DELETE:
        key, prefix = _fields("delete", rest, 2)
        return DeleteRange(key, prefix)
    if code == _OP_RANGE:
        key, prefix, limit, keys_only, count_only = _fields("range", rest, 5)
        return Range(key, prefix, limit, keys_only, count_only)
    if in_txn:
        raise InvalidCommandError(f"op code {code} is not allowed inside a txn")
    if code == _OP_TXN:
        compares_w, success_w, failure_w = _fields("txn", rest, 3)
        if not (
            isinstance(compares_w, list)
            and isinstance(success_w, list)
            and isinstance(failure_w, list)
        ):
            raise InvalidCommandError("txn compares, success and failure must be lists")
        return Txn(
            tuple(_compare_from_wire(c) for c in compares_w),
            tuple(_txn_op(o) for o in success_w),
            tuple(_txn_op(o) for o in failure_w),
        )
    if code == _OP_LEASE_GRANT:
        lease_id, ttl = _fields("lease grant", rest, 2)
        return LeaseGrant(lease_id, ttl)
    if code == _OP_LEASE_REVOKE:
        (lease_id,) = _fields("lease revoke", rest, 1)
        return LeaseRevoke(lease_id)
    raise InvalidCommandError(f"unknown op code {code}")


def _txn_op(wire: object) -> Op:
    op = _op_from_wire(wire, in_txn=True)
    assert isinstance(op, Put | DeleteRange | Range)
    return op


def _compare_from_wire(wire: object) -> Compare:
    key, prefix, target, op, value = _fields("compare", wire, 5)
    if type(target) is not int or target not in Target._value2member_map_:
        raise InvalidCommandError(f"unknown compare target {target!r:.40}")
    if type(op) is not int or op not in CompareOp._value2member_map_:
        raise InvalidCommandError(f"unknown compare op {op!r:.40}")
    return Compare(key, Target(target), CompareOp(op), value, prefix)


def decode(data: bytes) -> Command:
    """Decode the data of a log entry; raises InvalidCommandError saying what is wrong."""
    try:
        wire = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types for garbage; all mean the same here
        raise InvalidCommandError(
            f"not a msgpack KV command: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(wire, list) or len(wire) < 2:
        raise InvalidCommandError(f"KV command must be a list [version, op, ...], got {wire!r:.80}")
    version = wire[0]
    if type(version) is not int or version != FORMAT_VERSION:
        raise InvalidCommandError(
            f"unsupported KV command format {version!r:.20}, this member reads {FORMAT_VERSION}"
        )
    return _op_from_wire(wire[1:], in_txn=False)


# --------------------------------------------------------------------------------------------
# State and results


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key's current state. A DELETE event carries a tombstone: key and mod_revision only."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class EventType(StrEnum):
    """What happened to a key."""

    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as a watcher sees it; `prev_kv` is the key's state before (None if new)."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None

    @property
    def revision(self) -> int:
        """The revision of the change."""
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease as the store knows it: its granted TTL and the keys attached to it, sorted."""

    lease_id: int
    ttl: float
    keys: tuple[bytes, ...]


class ErrorCode(StrEnum):
    """Why a command failed. Failures change nothing (but the entry still counts as applied)."""

    MALFORMED = "malformed"
    LEASE_NOT_FOUND = "lease_not_found"
    LEASE_EXISTS = "lease_exists"
    ALREADY_APPLIED = "already_applied"


class _Result:
    __slots__ = ()
    ok: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class PutResult(_Result):
    """`revision`: the put's revision; `prev_kv`: the key before (None if it was new)."""

    revision: int
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResult(_Result):
    """`deleted`: how many keys went; `prev_kvs`: their state before, in key order."""

    revision: int
    deleted: int
    prev_kvs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class RangeResult(_Result):
    """`kvs` in key order; `count`: all matches (even beyond `limit`); `more`: kvs were cut."""

    revision: int
    kvs: tuple[KeyValue, ...]
    count: int
    more: bool


@dataclass(frozen=True, slots=True)
class TxnResult(_Result):
    """`succeeded`: the compares held (the success branch ran); one response per branch op."""

    revision: int
    succeeded: bool
    responses: tuple[PutResult | DeleteResult | RangeResult, ...]


@dataclass(frozen=True, slots=True)
class LeaseGrantResult(_Result):
    """The lease now exists with this TTL."""

    revision: int
    lease_id: int
    ttl: float


@dataclass(frozen=True, slots=True)
class LeaseRevokeResult(_Result):
    """The lease is gone, and with it `deleted` keys (all at `revision`)."""

    revision: int
    lease_id: int
    deleted: int


@dataclass(frozen=True, slots=True)
class NoopResult(_Result):
    """An entry with empty data (a leader's no-op) or a non-KV entry: nothing to do."""

    revision: int


@dataclass(frozen=True, slots=True)
class ErrorResult(_Result):
    """The command failed and changed nothing; `message` says why."""

    ok: ClassVar[bool] = False
    revision: int
    code: ErrorCode
    message: str


Result: TypeAlias = (
    PutResult
    | DeleteResult
    | RangeResult
    | TxnResult
    | LeaseGrantResult
    | LeaseRevokeResult
    | NoopResult
    | ErrorResult
)
"""What `KVStore.apply` returns; `result.ok` is False only for ErrorResult."""


class _Lease:
    __slots__ = ("keys", "ttl")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.keys: set[bytes] = set()


# --------------------------------------------------------------------------------------------
# Watchers


class Watcher:
    """A subscription to changes of one key or prefix, created by `KVStore.watch`.

    Events queue up inside the watcher; `pending()` takes them. After each applied entry that
    produced events for it, the store calls `notify(watcher)` (if given) from inside `apply`: the
    callback must be quick and must not call back into the store's `apply`. A watcher that falls
    more than the store's `watch_queue_size` events behind stops queueing and later catches up
    from the store's history, or gets a CompactedError if the history no longer reaches back.
    """

    __slots__ = (
        "_error",
        "_notify",
        "_queue",
        "_resync_from",
        "_start",
        "_store",
        "id",
        "key",
        "prefix",
    )

    def __init__(
        self,
        store: KVStore,
        watch_id: int,
        key: bytes,
        prefix: bool,
        start: int,
        resync_from: int | None,
        notify: Callable[[Watcher], None] | None,
    ) -> None:
        self._store: KVStore | None = store
        self.id = watch_id
        self.key = key
        self.prefix = prefix
        self._start = start
        self._resync_from = resync_from
        self._notify = notify
        self._queue: list[Event] = []
        self._error: Exception | None = None

    @property
    def cancelled(self) -> bool:
        """True once cancelled, by `cancel()` or by the store (compaction, failing callback)."""
        return self._store is None

    def matches(self, key: bytes) -> bool:
        """Whether a change to `key` concerns this watcher."""
        return _key_in(key, self.key, self.prefix)

    def pending(self) -> list[Event]:
        """Take the queued events, oldest first (an empty list if none).

        Raises CompactedError if events this watcher needed are gone from the history (it is
        then cancelled), and WatchCancelledError after cancellation.
        """
        if self._error is not None:
            raise self._error
        store = self._store
        if store is None:
            raise WatchCancelledError(f"watch {self.id} on {self.key!r} was cancelled")
        if self._resync_from is not None:
            events = store._history_since(self._resync_from, self)  # may raise CompactedError
            self._resync_from = None
            return events
        events, self._queue = self._queue, []
        return events

    def cancel(self) -> None:
        """Stop watching; idempotent. Queued events are dropped."""
        if self._store is not None:
            self._store._watchers.pop(self.id, None)
            self._store = None
        self._queue = []

    def _next_needed(self, store_revision: int) -> int:
        """The oldest revision this watcher has not been given yet."""
        if self._resync_from is not None:
            return self._resync_from
        if self._queue:
            return self._queue[0].revision
        return max(self._start, store_revision + 1)

    def _fail(self, error: Exception) -> None:
        self.cancel()
        self._error = error

    def _push(self, event: Event, queue_size: int) -> bool:
        """Queue `event` if it concerns us; True if it did."""
        if event.revision < self._start or not self.matches(event.kv.key):
            return False
        if self._resync_from is None:
            if len(self._queue) >= queue_size:
                # Too far behind: drop the queue, catch up from history in pending().
                self._resync_from = self._queue[0].revision
                self._queue = []
            else:
                self._queue.append(event)
        return True

    def _call_notify(self) -> None:
        if self._notify is None:
            return
        try:
            self._notify(self)
        except Exception as exc:
            error = WatchCancelledError(
                f"watch {self.id} on {self.key!r} cancelled: its notify callback raised "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self._fail(error)


# --------------------------------------------------------------------------------------------
# The store


def _event_revision(event: Event) -> int:
    return event.kv.mod_revision


class KVStore:
    """The replicated KV: apply committed entries, answer reads, serve watches, snapshot/restore.

    `history_size` bounds the events kept for resuming watches (the latest revision's events are
    always kept, even if it alone exceeds the bound); `watch_queue_size` bounds each watcher's
    queue before it falls back to catching up from history.
    """

    def __init__(self, *, history_size: int = 10_000, watch_queue_size: int = 1_000) -> None:
        if type(history_size) is not int or history_size < 1:
            raise ValueError(f"history_size must be an int >= 1, got {history_size!r}")
        if type(watch_queue_size) is not int or watch_queue_size < 1:
            raise ValueError(f"watch_queue_size must be an int >= 1, got {watch_queue_size!r}")
        self._history_size = history_size
        self._watch_queue_size = watch_queue_size
        self._kvs: dict[bytes, KeyValue] = {}
        self._keys: list[bytes] = []  # sorted, for prefix ranges
        self._leases: dict[int, _Lease] = {}
        self._revision = INITIAL_REVISION
        self._applied_index = 0
        self._history: list[Event] = []
        self._history_start = 0  # events before this index are dropped (lazily deleted)
        self._first_watchable = INITIAL_REVISION
        self._watchers: dict[int, Watcher] = {}
        self._next_watch_id = 1

    # ---- properties

    @property
    def revision(self) -> int:
        """The revision of the latest change (1 for an empty store)."""
        return self._revision

    @property
    def applied_index(self) -> int:
        """The index of the last log entry applied (0 before any)."""
        return self._applied_index

    # ---- applying the log

    def apply(self, index: int, data: bytes) -> Result:
        """Apply the committed entry at `index`; the same entries give the same results and state
        on every member.

        Empty `data` (a leader's no-op) gives a NoopResult. A malformed command, a put on an
        unknown lease, a duplicate lease id... give an ErrorResult and change no key or lease;
        `applied_index` still advances. An entry at or below `applied_index` (a replay) is
        skipped with an ErrorResult(ALREADY_APPLIED). An index that skips ahead of
        `applied_index + 1` means the driver lost entries: ValueError, and nothing changes.
        """
        if self._is_replay(index):
            return ErrorResult(
                self._revision,
                ErrorCode.ALREADY_APPLIED,
                f"entry {index} was already applied (applied index {self._applied_index})",
            )
        self._advance_index(index)
        if not data:
            return NoopResult(self._revision)
        try:
            command = decode(data)
        except InvalidCommandError as exc:
            return ErrorResult(self._revision, ErrorCode.MALFORMED, str(exc))
        return self._execute(command)

    def mark_applied(self, index: int) -> None:
        """Record that the entry at `index` was applied without touching the KV (e.g. a
        membership change). Same index rules as `apply`."""
        if not self._is_replay(index):
            self._advance_index(index)

    def _is_replay(self, index: int) -> bool:
        if type(index) is not int or index < 1:
            raise ValueError(f"entry index must be a positive int, got {index!r}")
        return index <= self._applied_index

    def _advance_index(self, index: int) -> None:
        if index != self._applied_index + 1:
            raise ValueError(
                f"entry index {index} skips ahead: applied index is {self._applied_index}, "
                f"so entries {self._applied_index + 1}..{index - 1} are missing"
            )
        self._applied_index = index

    def _execute(self, command: Command) -> Result:
        if isinstance(command, Put):
            return self._exec_put(command)
        if isinstance(command, DeleteRange):
            events: list[Event] = []
            prevs = self._delete(command, self._revision + 1, events)
            self._commit(events)
            return DeleteResult(self._revision, len(prevs), prevs)
        if isinstance(command, Range):
            return self._range(command, self._revision)
        if isinstance(command, Txn):
            return self._exec_txn(command)
        if isinstance(command, LeaseGrant):
            if command.lease_id in self._leases:
                return ErrorResult(
                    self._revision,
                    ErrorCode.LEASE_EXISTS,
                    f"lease {command.lease_id} already exists",
                )
            self._leases[command.lease_id] = _Lease(command.ttl)
            return LeaseGrantResult(self._revision, command.lease_id, command.ttl)
        return self._exec_revoke(command)

    def _lease_missing(self, op: Put) -> ErrorResult | None:
        if op.lease and op.lease not in self._leases:
            return ErrorResult(
                self._revision,
                ErrorCode.LEASE_NOT_FOUND,
                f"put of key {op.key!r} names lease {op.lease}, which does not exist",
            )
        return None

    def _exec_put(self, op: Put) -> Result:
        error = self._lease_missing(op)
        if error is not None:
            return error
        events: list[Event] = []
        prev = self._put(op, self._revision + 1, events)
        self._commit(events)
        return PutResult(self._revision, prev)

    def _exec_txn(self, txn: Txn) -> Result:
        succeeded = all(self._compare(c) for c in txn.compares)
        ops = txn.success if succeeded else txn.failure
        for op in ops:  # check everything that can fail before changing anything
            if isinstance(op, Put):
                error = self._lease_missing(op)
                if error is not None:
                    return error
        new_revision = self._revision + 1
        events: list[Event] = []
        responses: list[PutResult | DeleteResult | RangeResult] = []
        for op in ops:
            if isinstance(op, Put):
                prev = self._put(op, new_revision, events)
                responses.append(PutResult(new_revision, prev))
            elif isinstance(op, DeleteRange):
                prevs = self._delete(op, new_revision, events)
                seen = new_revision if events else self._revision
                responses.append(DeleteResult(seen, len(prevs), prevs))
            else:
                responses.append(self._range(op, new_revision if events else self._revision))
        self._commit(events)
        return TxnResult(self._revision, succeeded, tuple(responses))

    def _exec_revoke(self, op: LeaseRevoke) -> Result:
        lease = self._leases.get(op.lease_id)
        if lease is None:
            return ErrorResult(
                self._revision, ErrorCode.LEASE_NOT_FOUND, f"lease {op.lease_id} does not exist"
            )
        new_revision = self._revision + 1
        events: list[Event] = []
        for key in sorted(lease.keys):  # sorted: event order must not depend on set order
            self._delete(DeleteRange(key), new_revision, events)
        del self._leases[op.lease_id]
        self._commit(events)
        return LeaseRevokeResult(self._revision, op.lease_id, len(events))

    # ---- primitive changes (callers have validated; nothing here can fail)

    def _put(self, op: Put, revision: int, events: list[Event]) -> KeyValue | None:
        prev = self._kvs.get(op.key)
        if prev is None:
            kv = KeyValue(op.key, op.value, revision, revision, 1, op.lease)
            bisect.insort(self._keys, op.key)
        else:
            kv = KeyValue(
                op.key, op.value, prev.create_revision, revision, prev.version + 1, op.lease
            )
            if prev.lease and prev.lease != op.lease:
                self._leases[prev.lease].keys.discard(op.key)
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        self._kvs[op.key] = kv
        events.append(Event(EventType.PUT, kv, prev))
        return prev

    def _delete(self, op: DeleteRange, revision: int, events: list[Event]) -> tuple[KeyValue, ...]:
        keys = self._matching_keys(op.key, op.prefix)
        if not keys:
            return ()
        prevs = tuple(self._kvs.pop(key) for key in keys)
        lo = bisect.bisect_left(self._keys, keys[0])
        if op.prefix:
            del self._keys[lo : lo + len(keys)]
        else:
            del self._keys[lo]
        for prev in prevs:
            if prev.lease:
                self._leases[prev.lease].keys.discard(prev.key)
            tombstone = KeyValue(prev.key, b"", 0, revision, 0, 0)
            events.append(Event(EventType.DELETE, tombstone, prev))
        return prevs

    def _commit(self, events: list[Event]) -> None:
        """Close one command: a new revision if anything changed, then history and watchers."""
        if not events:
            return
        self._revision += 1
        self._history.extend(events)
        self._trim_history()
        touched: list[Watcher] = []
        for watcher in list(self._watchers.values()):
            hit = False
            for event in events:
                hit = watcher._push(event, self._watch_queue_size) or hit
            if hit:
                touched.append(watcher)
        for watcher in touched:
            if not watcher.cancelled:
                watcher._call_notify()

    # ---- reads

    def _matching_keys(self, key: bytes, prefix: bool) -> list[bytes]:
        if not prefix:
            return [key] if key in self._kvs else []
        keys = self._keys
        lo = bisect.bisect_left(keys, key)
        hi = lo
        while hi < len(keys) and keys[hi].startswith(key):
            hi += 1
        return keys[lo:hi]

    def _range(self, op: Range, revision: int) -> RangeResult:
        keys = self._matching_keys(op.key, op.prefix)
        count = len(keys)
        more = False
        if op.count_only:
            keys = []
        elif op.limit and count > op.limit:
            keys = keys[: op.limit]
            more = True
        kvs = [self._kvs[k] for k in keys]
        if op.keys_only:
            kvs = [
                KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                for kv in kvs
            ]
        return RangeResult(revision, tuple(kvs), count, more)

    def _compare(self, c: Compare) -> bool:
        kvs = [self._kvs[k] for k in self._matching_keys(c.key, c.prefix)]
        if not kvs:
            if c.target is Target.VALUE:
                return False  # etcd: a missing value cannot be compared, whatever the operator
            kvs = [KeyValue(c.key, b"", 0, 0, 0, 0)]
        return all(_compare_kv(c, kv) for kv in kvs)

    def range(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> RangeResult:
        """Read the current state (locally: serve it after a ReadIndex for linearizable reads).

        Raises InvalidCommandError on bad arguments.
        """
        return self._range(Range(key, prefix, limit, keys_only, count_only), self._revision)

    def get(self, key: bytes) -> KeyValue | None:
        """The current state of one key, or None."""
        _need_key("key", key, prefix=False)
        return self._kvs.get(key)

    def leases(self) -> dict[int, float]:
        """Every lease and its granted TTL (what `LeaseClock.become_leader` needs)."""
        return {lease_id: lease.ttl for lease_id, lease in sorted(self._leases.items())}

    def lease(self, lease_id: int) -> LeaseInfo | None:
        """One lease with its attached keys, or None if it does not exist."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return LeaseInfo(lease_id, lease.ttl, tuple(sorted(lease.keys)))

    # ---- watches

    def watch(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        from_revision: int = 0,
        notify: Callable[[Watcher], None] | None = None,
    ) -> Watcher:
        """Watch `key` (or every key under it with `prefix`) for changes.

        `from_revision` 0 means changes after the current revision; an older revision replays
        the changes since then from the history (CompactedError if it no longer reaches that
        far); a future revision waits for it.
        """
        _need_bool("watch prefix", prefix)
        _need_key("watch key", key, prefix)
        _need_int("from_revision", from_revision, 0, _INT64_MAX)
        resync_from: int | None = None
        if from_revision == 0:
            start = self._revision + 1
        else:
            start = from_revision
            if from_revision <= self._revision:
                if from_revision < self._first_watchable:
                    raise CompactedError(from_revision, self._first_watchable)
                resync_from = from_revision
        watcher = Watcher(self, self._next_watch_id, key, prefix, start, resync_from, notify)
        self._watchers[watcher.id] = watcher
        self._next_watch_id += 1
        return watcher

    @property
    def first_watchable_revision(self) -> int:
        """The oldest revision a new watch can start from."""
        return self._first_watchable

    def _history_since(self, revision: int, watcher: Watcher) -> list[Event]:
        if revision < self._first_watchable:
            error = CompactedError(revision, self._first_watchable)
            watcher._fail(error)
            raise error
        lo = bisect.bisect_left(
            self._history, revision, lo=self._history_start, key=_event_revision
        )
        return [e for e in self._history[lo:] if watcher.matches(e.kv.key)]

    def _trim_history(self) -> None:
        history = self._history
        excess = len(history) - self._history_start - self._history_size
        if excess <= 0:
            return
        cut = self._history_start + excess
        last_dropped = history[cut - 1].revision
        if last_dropped >= self._revision:
            # Never drop the newest revision: a watcher must always be able to catch up to now.
            cut = bisect.bisect_left(
                history, self._revision, lo=self._history_start, key=_event_revision
            )
            if cut == self._history_start:
                return
            last_dropped = history[cut - 1].revision
        # Drop whole revisions only, so a resumed watch never sees half a txn.
        cut = bisect.bisect_right(history, last_dropped, lo=cut, key=_event_revision)
        self._history_start = cut
        self._first_watchable = last_dropped + 1
        if self._history_start > len(history) // 2:
            del history[: self._history_start]
            self._history_start = 0

    # ---- snapshots

    def snapshot(self) -> bytes:
        """The whole replicated state as canonical bytes: equal states give equal bytes.

        Holds the applied index, the revision, every key and every lease; not the watch history.
        """
        kvs = [
            [kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease]
            for kv in (self._kvs[k] for k in self._keys)
        ]
        leases = [[lease_id, lease.ttl] for lease_id, lease in sorted(self._leases.items())]
        return msgpack.packb(
            [SNAPSHOT_VERSION, self._applied_index, self._revision, kvs, leases],
            use_bin_type=True,
        )

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises SnapshotError (and changes nothing)
        if the bytes are malformed or inconsistent.

        The watch history restarts empty. A watcher that still needs a revision the snapshot
        folds in is cancelled with a CompactedError and notified (it must re-read and watch
        again); one that waits only for revisions beyond the snapshot's carries on.
        """
        applied_index, revision, kvs, keys, leases = _parse_snapshot(data)
        needed = {w.id: w._next_needed(self._revision) for w in self._watchers.values()}
        self._applied_index = applied_index
        self._revision = revision
        self._kvs = kvs
        self._keys = keys
        self._leases = leases
        self._history = []
        self._history_start = 0
        self._first_watchable = revision + 1
        for watcher in list(self._watchers.values()):
            if needed[watcher.id] <= revision:
                watcher._fail(CompactedError(needed[watcher.id], self._first_watchable))
                if watcher._notify is not None:
                    # Already cancelled with the CompactedError; a failing callback changes nothing.
                    with contextlib.suppress(Exception):
                        watcher._notify(watcher)


def _compare_kv(c: Compare, kv: KeyValue) -> bool:
    want = c.value
    if isinstance(want, bytes):  # Target.VALUE (checked in Compare.__post_init__)
        result = (kv.value > want) - (kv.value < want)
    else:
        ours = {
            Target.VERSION: kv.version,
            Target.CREATE: kv.create_revision,
            Target.MOD: kv.mod_revision,
            Target.LEASE: kv.lease,
        }[c.target]
        result = (ours > want) - (ours < want)
    if c.op is CompareOp.EQUAL:
        return result == 0
    if c.op is CompareOp.NOT_EQUAL:
        return result != 0
    if c.op is CompareOp.LESS:
        return result < 0
    return result > 0


def _parse_snapshot(
    data: bytes,
) -> tuple[int, int, dict[bytes, KeyValue], list[bytes], dict[int, _Lease]]:
    try:
        wire = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:
        raise SnapshotError(
            f"KV snapshot is not valid msgpack: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(wire, list) or len(wire) != 5:
        raise SnapshotError("KV snapshot must be a list of 5 fields")
    version, applied_index, revision, kvs_w, leases_w = wire
    if type(version) is not int or version != SNAPSHOT_VERSION:
        raise SnapshotError(f"unsupported KV snapshot format {version!r:.20}")
    try:
        applied_index = _need_int("snapshot applied index", applied_index, 0, _INT64_MAX)
        revision = _need_int("snapshot revision", revision, INITIAL_REVISION, _INT64_MAX)
        if not isinstance(kvs_w, list) or not isinstance(leases_w, list):
            raise InvalidCommandError("snapshot kvs and leases must be lists")
        leases: dict[int, _Lease] = {}
        previous_id = 0
        for item in leases_w:
            lease_id, ttl = _fields("snapshot lease", item, 2)
            lease_id = _need_int("snapshot lease id", lease_id, 1, _INT64_MAX)
            if lease_id <= previous_id:
                raise InvalidCommandError(f"snapshot lease {lease_id} is out of order or repeated")
            previous_id = lease_id
            leases[lease_id] = _Lease(_need_ttl(f"snapshot lease {lease_id} ttl", ttl))
        kvs: dict[bytes, KeyValue] = {}
        keys: list[bytes] = []
        for item in kvs_w:
            key, value, create, mod, ver, lease = _fields("snapshot kv", item, 6)
            key = _need_key("snapshot key", key, prefix=False)
            if keys and key <= keys[-1]:
                raise InvalidCommandError(f"snapshot key {key!r} is out of order or repeated")
            value = _need_bytes(f"snapshot value of {key!r}", value)
            create = _need_int(f"create revision of {key!r}", create, 2, revision)
            mod = _need_int(f"mod revision of {key!r}", mod, create, revision)
            ver = _need_int(f"version of {key!r}", ver, 1, mod - create + 1)
            lease = _need_int(f"lease of {key!r}", lease, 0, _INT64_MAX)
            if lease:
                if lease not in leases:
                    raise InvalidCommandError(f"key {key!r} names lease {lease}, not in snapshot")
                leases[lease].keys.add(key)
            keys.append(key)
            kvs[key] = KeyValue(key, value, create, mod, ver, lease)
    except InvalidCommandError as exc:
        raise SnapshotError(f"bad KV snapshot: {exc}") from None
    return applied_index, revision, kvs, keys, leases
