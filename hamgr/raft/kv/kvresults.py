"""What the KV store hands out: the state of a key (`KeyValue`), of a lease (`LeaseInfo`), and the
result of applying one log entry (`Result`: one frozen dataclass per command, or `ErrorResult`).

Plain immutable values with no behaviour, so the store (`hamgr.raft.kv.store`), the watches
(`hamgr.raft.kv.kvwatch`) and callers can share them without depending on one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, TypeAlias

__all__ = [
    "INITIAL_REVISION",
    "DeleteResult",
    "ErrorCode",
    "ErrorResult",
    "KeyValue",
    "LeaseGrantResult",
    "LeaseInfo",
    "LeaseRevokeResult",
    "NoopResult",
    "PutResult",
    "RangeResult",
    "Result",
    "TxnResult",
]

INITIAL_REVISION = 1
"""The revision of an empty store, as in etcd: the first change takes revision 2."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key's current state. A DELETE event carries a tombstone: key and mod_revision only."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


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
