"""Results of the store's client protocol (`hamgr.raft.net.rpc`): what each op answers, on the wire.

The KV results are `hamgr.raft.kv.kvresults`' own types (what `RaftNode` returns), so in-process
and remote callers share them; `LeaseTTL` and `MemberStatus` are added here. Each op's result has
its wire shape declared once below as an array_like msgspec Struct (a kv is ``[key, value,
create_revision, mod_revision, version, lease]``; a txn's inner results are ``[kind, result]``
with kind "put", "delete" or "get"). `result_wire` builds it from a result; `decode_result`
decodes one and builds the result back, naming the bad field
(``response.result(get).kvs[0].value: Expected `bytes`, got `str```).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

import msgspec

from hamgr.raft.kv.kvresults import (
    DeleteResult,
    KeyValue,
    LeaseGrantResult,
    LeaseRevokeResult,
    PutResult,
    RangeResult,
    TxnResult,
)
from hamgr.raft.net.rpcbase import Address, AddressWire, RpcOp, Seconds, decode, encode
from hamgr.raft.net.wire import NodeId, UInt, WireStruct

__all__ = ["LeaseTTL", "MemberStatus", "Result", "decode_result", "result_wire"]


@dataclass(frozen=True, slots=True)
class LeaseTTL:
    """A lease's remaining time on the leader's clock, its granted TTL and attached keys."""

    lease_id: int
    remaining: float
    granted_ttl: float
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member's state as it sees it (`role` "" and zeros before its Raft core runs).

    `client_address` is where this member serves clients; `leader_client_address` where the
    leader it knows does (None if unknown).
    """

    id: int
    state: str
    role: str = ""
    term: int = 0
    leader: int = 0
    commit: int = 0
    applied: int = 0
    last_index: int = 0
    snapshot_index: int = 0
    revision: int = 0
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    client_address: Address | None = None
    leader_client_address: Address | None = None


Result: TypeAlias = (
    PutResult
    | RangeResult
    | DeleteResult
    | TxnResult
    | LeaseGrantResult
    | LeaseRevokeResult
    | float
    | LeaseTTL
    | MemberStatus
    | None
)
"""What a successful call returns (float: a keepalive's TTL; None: membership calls)."""


# --- wire shapes --------------------------------------------------------------------------------


class KvWire(WireStruct):
    """A `KeyValue`."""

    key: bytes
    value: bytes
    create_revision: UInt
    mod_revision: UInt
    version: UInt
    lease: UInt


class PutWire(WireStruct):
    """A put's result."""

    revision: UInt
    prev_kv: KvWire | None


class RangeWire(WireStruct):
    """A get's result."""

    revision: UInt
    kvs: tuple[KvWire, ...]
    count: UInt
    more: bool


class DeleteWire(WireStruct):
    """A delete's result."""

    revision: UInt
    deleted: UInt
    prev_kvs: tuple[KvWire, ...]


class TxnKind(StrEnum):
    """What an operation inside a txn was, and so the shape of its result."""

    PUT = "put"
    DELETE = "delete"
    GET = "get"


class TxnInnerWire(WireStruct):
    """One result inside a txn's: its kind, then the result of that kind (decoded after)."""

    kind: TxnKind
    result: msgspec.Raw


class TxnWire(WireStruct):
    """A txn's result."""

    revision: UInt
    succeeded: bool
    responses: tuple[TxnInnerWire, ...]


class LeaseGrantWire(WireStruct):
    """A lease grant's result."""

    revision: UInt
    lease_id: NodeId
    ttl: Seconds


class LeaseRevokeWire(WireStruct):
    """A lease revoke's result."""

    revision: UInt
    lease_id: NodeId
    deleted: UInt


class KeepAliveWire(WireStruct):
    """A keepalive's result: the lease's TTL."""

    ttl: Seconds


class LeaseTTLWire(WireStruct):
    """A `LeaseTTL`."""

    lease_id: NodeId
    remaining: Seconds
    granted_ttl: Seconds
    keys: tuple[bytes, ...]


class StatusWire(WireStruct):
    """A `MemberStatus`, its fields in the same order."""

    id: UInt
    state: str
    role: str
    term: UInt
    leader: UInt
    commit: UInt
    applied: UInt
    last_index: UInt
    snapshot_index: UInt
    revision: UInt
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    client_address: AddressWire | None
    leader_client_address: AddressWire | None


class NoResultWire(WireStruct):
    """The empty result of the membership calls."""


_DECODERS: dict[RpcOp, msgspec.msgpack.Decoder[Any]] = {
    op: msgspec.msgpack.Decoder(wire)
    for op, wire in (
        (RpcOp.PUT, PutWire),
        (RpcOp.GET, RangeWire),
        (RpcOp.DELETE, DeleteWire),
        (RpcOp.TXN, TxnWire),
        (RpcOp.LEASE_GRANT, LeaseGrantWire),
        (RpcOp.LEASE_REVOKE, LeaseRevokeWire),
        (RpcOp.LEASE_KEEPALIVE, KeepAliveWire),
        (RpcOp.LEASE_TTL, LeaseTTLWire),
        (RpcOp.STATUS, StatusWire),
        (RpcOp.MEMBER_ADD, NoResultWire),
        (RpcOp.MEMBER_REMOVE, NoResultWire),
        (RpcOp.TRANSFER_LEADERSHIP, NoResultWire),
    )
}

_TXN_OPS = {TxnKind.PUT: RpcOp.PUT, TxnKind.DELETE: RpcOp.DELETE, TxnKind.GET: RpcOp.GET}

# --- encoding -----------------------------------------------------------------------------------


def _kv_wire(kv: KeyValue) -> KvWire:
    return KvWire(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _txn_inner(r: PutResult | DeleteResult | RangeResult) -> TxnInnerWire:
    if isinstance(r, PutResult):
        kind, op = TxnKind.PUT, RpcOp.PUT
    elif isinstance(r, DeleteResult):
        kind, op = TxnKind.DELETE, RpcOp.DELETE
    else:
        kind, op = TxnKind.GET, RpcOp.GET
    return TxnInnerWire(kind, msgspec.Raw(encode(result_wire(op, r), "response")))


def result_wire(op: RpcOp, result: Any) -> WireStruct:
    """The wire Struct of a successful `op`'s result."""
    if op is RpcOp.PUT:
        assert isinstance(result, PutResult)
        prev = None if result.prev_kv is None else _kv_wire(result.prev_kv)
        return PutWire(result.revision, prev)
    if op is RpcOp.GET:
        assert isinstance(result, RangeResult)
        kvs = tuple([_kv_wire(kv) for kv in result.kvs])
        return RangeWire(result.revision, kvs, result.count, result.more)
    if op is RpcOp.DELETE:
        assert isinstance(result, DeleteResult)
        prev_kvs = tuple([_kv_wire(kv) for kv in result.prev_kvs])
        return DeleteWire(result.revision, result.deleted, prev_kvs)
    if op is RpcOp.TXN:
        assert isinstance(result, TxnResult)
        inner = tuple([_txn_inner(r) for r in result.responses])
        return TxnWire(result.revision, result.succeeded, inner)
    if op is RpcOp.LEASE_GRANT:
        assert isinstance(result, LeaseGrantResult)
        return LeaseGrantWire(result.revision, result.lease_id, result.ttl)
    if op is RpcOp.LEASE_REVOKE:
        assert isinstance(result, LeaseRevokeResult)
        return LeaseRevokeWire(result.revision, result.lease_id, result.deleted)
    if op is RpcOp.LEASE_KEEPALIVE:
        return KeepAliveWire(float(result))
    if op is RpcOp.LEASE_TTL:
        assert isinstance(result, LeaseTTL)
        return LeaseTTLWire(result.lease_id, result.remaining, result.granted_ttl, result.keys)
    if op is RpcOp.STATUS:
        assert isinstance(result, MemberStatus)
        s = result
        return StatusWire(
            s.id,
            s.state,
            s.role,
            s.term,
            s.leader,
            s.commit,
            s.applied,
            s.last_index,
            s.snapshot_index,
            s.revision,
            s.voters,
            s.learners,
            s.client_address,
            s.leader_client_address,
        )
    return NoResultWire()


# --- decoding -----------------------------------------------------------------------------------


def _kv(w: KvWire) -> KeyValue:
    return KeyValue(w.key, w.value, w.create_revision, w.mod_revision, w.version, w.lease)


def _txn(w: TxnWire, what: str) -> TxnResult:
    responses = []
    for i, inner in enumerate(w.responses):
        op = _TXN_OPS[inner.kind]
        result = _decode(op, inner.result, f"{what}.responses[{i}].result")
        assert isinstance(result, PutResult | DeleteResult | RangeResult)
        responses.append(result)
    return TxnResult(w.revision, w.succeeded, tuple(responses))


_BUILD: dict[RpcOp, Callable[[Any, str], Result]] = {
    RpcOp.PUT: lambda w, _: PutResult(w.revision, None if w.prev_kv is None else _kv(w.prev_kv)),
    RpcOp.GET: lambda w, _: RangeResult(w.revision, tuple(map(_kv, w.kvs)), w.count, w.more),
    RpcOp.DELETE: lambda w, _: DeleteResult(w.revision, w.deleted, tuple(map(_kv, w.prev_kvs))),
    RpcOp.TXN: _txn,
    RpcOp.LEASE_GRANT: lambda w, _: LeaseGrantResult(w.revision, w.lease_id, w.ttl),
    RpcOp.LEASE_REVOKE: lambda w, _: LeaseRevokeResult(w.revision, w.lease_id, w.deleted),
    RpcOp.LEASE_KEEPALIVE: lambda w, _: w.ttl,
    RpcOp.LEASE_TTL: lambda w, _: LeaseTTL(w.lease_id, w.remaining, w.granted_ttl, w.keys),
    RpcOp.STATUS: lambda w, _: MemberStatus(*msgspec.structs.astuple(w)),
    RpcOp.MEMBER_ADD: lambda w, _: None,
    RpcOp.MEMBER_REMOVE: lambda w, _: None,
    RpcOp.TRANSFER_LEADERSHIP: lambda w, _: None,
}


def _decode(op: RpcOp, body: bytes | msgspec.Raw, what: str) -> Result:
    wire = decode(_DECODERS[op], body, len(body), what)
    return _BUILD[op](wire, what)


def decode_result(op: RpcOp, body: bytes | msgspec.Raw) -> Result:
    """The typed result of a successful `op` from a response's `body`; raises `RpcFormatError`."""
    return _decode(op, body, f"response.result({op.value})")
