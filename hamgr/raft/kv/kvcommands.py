"""The KV command model and its msgpack wire format: what can be proposed through the Raft log.

Commands are small frozen dataclasses (`Put`, `DeleteRange`, `Range`, `Txn`, `LeaseGrant`,
`LeaseRevoke`) that validate themselves on construction; `encode` / `encode_*` turn them into the
data of a log entry and `decode` turns entry data back into a command. Both ends run the same
validation, so a proposer learns of a bad command (InvalidCommandError) before it reaches the log,
and a malformed entry that does reach it is rejected the same way on every member.

Kept apart from the store (`hamgr.raft.kv.store`) because the wire format is a contract with every
member's log: it changes only with a new FORMAT_VERSION, while the store's internals are free to
change. The `need_*` validators and `key_in` are shared with the store and the watches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeAlias

import msgpack

__all__ = [
    "FORMAT_VERSION",
    "MAX_LEASE_TTL",
    "MAX_TXN_OPS",
    "Command",
    "Compare",
    "CompareOp",
    "DeleteRange",
    "InvalidCommandError",
    "LeaseGrant",
    "LeaseRevoke",
    "Op",
    "Put",
    "Range",
    "Target",
    "Txn",
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

MAX_TXN_OPS = 128
"""Most compares, and most ops per branch, in one txn (etcd's default --max-txn-ops)."""

MAX_LEASE_TTL = 9_000_000_000.0
"""Largest lease TTL in seconds (etcd's MaxLeaseTTL)."""

# Bounds of the integers a command may carry (etcd's int64 fields).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

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


# --------------------------------------------------------------------------------------------
# Validation helpers shared by encoding, decoding, the store and watches


def need_bytes(name: str, value: object) -> bytes:
    """`value` if it is bytes (not bytearray or str), else InvalidCommandError naming `name`."""
    if type(value) is not bytes:
        raise InvalidCommandError(f"{name} must be bytes, got {type(value).__name__}")
    return value


def need_key(name: str, value: object, prefix: bool) -> bytes:
    """A key: bytes, non-empty unless it is a prefix (b'' with a prefix means all keys)."""
    key = need_bytes(name, value)
    if not key and not prefix:
        raise InvalidCommandError(
            f"{name} must not be empty (use prefix=True with b'' for all keys)"
        )
    return key


def need_bool(name: str, value: object) -> bool:
    """`value` if it is a real bool (not an int), else InvalidCommandError naming `name`."""
    if type(value) is not bool:
        raise InvalidCommandError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def need_int(name: str, value: object, lo: int, hi: int) -> int:
    """`value` if it is an int (not a bool) in [lo, hi], else InvalidCommandError naming `name`."""
    if type(value) is not int:
        raise InvalidCommandError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidCommandError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def need_ttl(name: str, value: object) -> float:
    """A lease TTL as a float: a finite number of seconds in (0, MAX_LEASE_TTL]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCommandError(f"{name} must be a number of seconds, got {type(value).__name__}")
    ttl = float(value)
    if not (math.isfinite(ttl) and 0 < ttl <= MAX_LEASE_TTL):
        raise InvalidCommandError(
            f"{name} must be in (0, {MAX_LEASE_TTL:.0f}] seconds, got {value}"
        )
    return ttl


def key_in(key: bytes, start: bytes, prefix: bool) -> bool:
    """Whether `key` is `start`, or lies under it when `prefix`."""
    return key.startswith(start) if prefix else key == start


def need_fields(name: str, wire: object, count: int) -> list[Any]:
    """`wire` if it is a list of exactly `count` decoded fields, else InvalidCommandError."""
    if not isinstance(wire, list) or len(wire) != count:
        raise InvalidCommandError(f"{name} must be a list of {count} fields, got {wire!r:.80}")
    return wire


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
        need_key("put key", self.key, prefix=False)
        need_bytes("put value", self.value)
        need_int("put lease", self.lease, 0, INT64_MAX)


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete `key`, or every key starting with it when `prefix` (b'' with prefix: all keys)."""

    key: bytes
    prefix: bool = False

    def __post_init__(self) -> None:
        need_bool("delete prefix", self.prefix)
        need_key("delete key", self.key, self.prefix)


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
        need_bool("range prefix", self.prefix)
        need_key("range key", self.key, self.prefix)
        need_int("range limit", self.limit, 0, INT64_MAX)
        need_bool("range keys_only", self.keys_only)
        need_bool("range count_only", self.count_only)


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
        need_bool("compare prefix", self.prefix)
        need_key("compare key", self.key, self.prefix)
        if not isinstance(self.target, Target):
            raise InvalidCommandError(f"compare target must be a Target, got {self.target!r}")
        if not isinstance(self.op, CompareOp):
            raise InvalidCommandError(f"compare op must be a CompareOp, got {self.op!r}")
        if self.target is Target.VALUE:
            need_bytes("compare value", self.value)
        else:
            need_int(f"compare {self.target.name.lower()}", self.value, INT64_MIN, INT64_MAX)


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
            if key_in(key, d.key, d.prefix):
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
        need_int("lease id", self.lease_id, 1, INT64_MAX)
        object.__setattr__(self, "ttl", need_ttl("lease ttl", self.ttl))


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """Delete lease `lease_id` and every key attached to it, in one revision."""

    lease_id: int

    def __post_init__(self) -> None:
        need_int("lease id", self.lease_id, 1, INT64_MAX)


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
    """Encode a lease grant (pick `ttl` with `hamgr.raft.kv.lease.effective_ttl`)."""
    return encode(LeaseGrant(lease_id, ttl))


def encode_lease_revoke(lease_id: int) -> bytes:
    """Encode a lease revoke (also what the leader proposes when a lease expires)."""
    return encode(LeaseRevoke(lease_id))


# --------------------------------------------------------------------------------------------
# Decoding


def _op_from_wire(wire: object, *, in_txn: bool) -> Command:
    if not isinstance(wire, list) or not wire:
        raise InvalidCommandError(f"op must be a non-empty list, got {wire!r:.80}")
    code, rest = wire[0], wire[1:]
    if type(code) is not int:
        raise InvalidCommandError(f"op code must be an int, got {code!r:.40}")
    if code == _OP_PUT:
        key, value, lease = need_fields("put", rest, 3)
        return Put(key, value, lease)
    if code == _OP_DELETE:
        key, prefix = need_fields("delete", rest, 2)
        return DeleteRange(key, prefix)
    if code == _OP_RANGE:
        key, prefix, limit, keys_only, count_only = need_fields("range", rest, 5)
        return Range(key, prefix, limit, keys_only, count_only)
    if in_txn:
        raise InvalidCommandError(f"op code {code} is not allowed inside a txn")
    if code == _OP_TXN:
        compares_w, success_w, failure_w = need_fields("txn", rest, 3)
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
        lease_id, ttl = need_fields("lease grant", rest, 2)
        return LeaseGrant(lease_id, ttl)
    if code == _OP_LEASE_REVOKE:
        (lease_id,) = need_fields("lease revoke", rest, 1)
        return LeaseRevoke(lease_id)
    raise InvalidCommandError(f"unknown op code {code}")


def _txn_op(wire: object) -> Op:
    op = _op_from_wire(wire, in_txn=True)
    assert isinstance(op, Put | DeleteRange | Range)
    return op


def _compare_from_wire(wire: object) -> Compare:
    key, prefix, target, op, value = need_fields("compare", wire, 5)
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
