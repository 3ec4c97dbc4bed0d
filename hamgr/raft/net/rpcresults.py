"""Results of the store's client protocol (`hamgr.raft.net.rpc`): what each op answers, on the wire.

The KV results are `hamgr.raft.kv.kvresults`' own types (what `RaftNode` returns), so in-process
and remote callers share them; `LeaseTTL` and `MemberStatus` are added here. `result_wire`
turns a result into its msgpack array; `decode_result` checks one and builds the result back,
naming the bad field (``response.result(get).kvs[0].value: expected bytes, got str 'v'``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from hamgr.raft.kv.kvresults import (
    DeleteResult,
    KeyValue,
    LeaseGrantResult,
    LeaseRevokeResult,
    PutResult,
    RangeResult,
    TxnResult,
)
from hamgr.raft.net.rpcbase import (
    Address,
    RpcFormatError,
    RpcOp,
    need_address,
    need_array,
    need_bool,
    need_bytes,
    need_positive,
    need_seconds,
    need_str,
    need_uint,
)
from hamgr.raft.net.strictpack import describe

__all__ = ["LeaseTTL", "MemberStatus", "Result", "decode_result", "result_wire"]

_KV_FIELDS = 6


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


def _kv_wire(kv: KeyValue) -> list[Any]:
    return [kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease]


def result_wire(op: RpcOp, result: Any) -> list[Any]:
    """The wire array of a successful `op`'s result."""
    if op is RpcOp.PUT:
        assert isinstance(result, PutResult)
        prev = None if result.prev_kv is None else _kv_wire(result.prev_kv)
        return [result.revision, prev]
    if op is RpcOp.GET:
        assert isinstance(result, RangeResult)
        return [result.revision, [_kv_wire(kv) for kv in result.kvs], result.count, result.more]
    if op is RpcOp.DELETE:
        assert isinstance(result, DeleteResult)
        return [result.revision, result.deleted, [_kv_wire(kv) for kv in result.prev_kvs]]
    if op is RpcOp.TXN:
        assert isinstance(result, TxnResult)
        inner = []
        for r in result.responses:
            if isinstance(r, PutResult):
                inner.append([RpcOp.PUT.value, result_wire(RpcOp.PUT, r)])
            elif isinstance(r, DeleteResult):
                inner.append([RpcOp.DELETE.value, result_wire(RpcOp.DELETE, r)])
            else:
                inner.append([RpcOp.GET.value, result_wire(RpcOp.GET, r)])
        return [result.revision, result.succeeded, inner]
    if op is RpcOp.LEASE_GRANT:
        assert isinstance(result, LeaseGrantResult)
        return [result.revision, result.lease_id, result.ttl]
    if op is RpcOp.LEASE_REVOKE:
        assert isinstance(result, LeaseRevokeResult)
        return [result.revision, result.lease_id, result.deleted]
    if op is RpcOp.LEASE_KEEPALIVE:
        return [float(result)]
    if op is RpcOp.LEASE_TTL:
        assert isinstance(result, LeaseTTL)
        return [result.lease_id, result.remaining, result.granted_ttl, list(result.keys)]
    if op is RpcOp.STATUS:
        assert isinstance(result, MemberStatus)
        s = result
        return [
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
            list(s.voters),
            list(s.learners),
            None if s.client_address is None else list(s.client_address),
            None if s.leader_client_address is None else list(s.leader_client_address),
        ]
    return []


def _kv_from(obj: object) -> KeyValue:
    key, value, create, mod, version, lease = need_array(obj, "", _KV_FIELDS)
    return KeyValue(
        need_bytes(key, "key"),
        need_bytes(value, "value"),
        need_uint(create, "create_revision"),
        need_uint(mod, "mod_revision"),
        need_uint(version, "version"),
        need_uint(lease, "lease"),
    )


def _kvs_from(obj: object, field: str) -> tuple[KeyValue, ...]:
    items = need_array(obj, field)
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_kv_from(item))
        except RpcFormatError as exc:
            raise exc.within(f"{field}[{i}]") from None
    return tuple(out)


def _put_from(body: tuple[Any, ...]) -> PutResult:
    revision, prev = need_array(body, "", 2)
    prev_kv = None
    if prev is not None:
        try:
            prev_kv = _kv_from(prev)
        except RpcFormatError as exc:
            raise exc.within("prev_kv") from None
    return PutResult(need_uint(revision, "revision"), prev_kv)


def _range_from(body: tuple[Any, ...]) -> RangeResult:
    revision, kvs, count, more = need_array(body, "", 4)
    return RangeResult(
        need_uint(revision, "revision"),
        _kvs_from(kvs, "kvs"),
        need_uint(count, "count"),
        need_bool(more, "more"),
    )


def _delete_from(body: tuple[Any, ...]) -> DeleteResult:
    revision, deleted, prev = need_array(body, "", 3)
    return DeleteResult(
        need_uint(revision, "revision"), need_uint(deleted, "deleted"), _kvs_from(prev, "prev_kvs")
    )


_TXN_INNER: dict[str, Callable[[tuple[Any, ...]], PutResult | DeleteResult | RangeResult]] = {
    RpcOp.PUT.value: _put_from,
    RpcOp.DELETE.value: _delete_from,
    RpcOp.GET.value: _range_from,
}


def _txn_from(body: tuple[Any, ...]) -> TxnResult:
    revision, succeeded, inner = need_array(body, "", 3)
    responses = []
    for i, item in enumerate(need_array(inner, "responses")):
        field = f"responses[{i}]"
        kind, sub = need_array(item, field, 2)
        decode = _TXN_INNER.get(kind) if type(kind) is str else None
        if decode is None:
            raise RpcFormatError(f"{field}[0]", f"unknown txn result kind {describe(kind)}")
        try:
            responses.append(decode(need_array(sub, f"{field}[1]")))
        except RpcFormatError as exc:
            raise exc.within(f"{field}[1]") from None
    return TxnResult(
        need_uint(revision, "revision"), need_bool(succeeded, "succeeded"), tuple(responses)
    )


def _status_from(body: tuple[Any, ...]) -> MemberStatus:
    (nid, state, role, term, leader, commit, applied, last, snap, rev, voters, learners, ca, la) = (
        need_array(body, "", 14)
    )
    return MemberStatus(
        id=need_uint(nid, "id"),
        state=need_str(state, "state"),
        role=need_str(role, "role"),
        term=need_uint(term, "term"),
        leader=need_uint(leader, "leader"),
        commit=need_uint(commit, "commit"),
        applied=need_uint(applied, "applied"),
        last_index=need_uint(last, "last_index"),
        snapshot_index=need_uint(snap, "snapshot_index"),
        revision=need_uint(rev, "revision"),
        voters=tuple(
            need_positive(v, f"voters[{i}]") for i, v in enumerate(need_array(voters, "voters"))
        ),
        learners=tuple(
            need_positive(v, f"learners[{i}]")
            for i, v in enumerate(need_array(learners, "learners"))
        ),
        client_address=need_address(ca, "client_address"),
        leader_client_address=need_address(la, "leader_client_address"),
    )


def _result_from(op: RpcOp, body: tuple[Any, ...]) -> Result:
    if op is RpcOp.PUT:
        return _put_from(body)
    if op is RpcOp.GET:
        return _range_from(body)
    if op is RpcOp.DELETE:
        return _delete_from(body)
    if op is RpcOp.TXN:
        return _txn_from(body)
    if op is RpcOp.LEASE_GRANT:
        revision, lease_id, ttl = need_array(body, "", 3)
        return LeaseGrantResult(
            need_uint(revision, "revision"),
            need_positive(lease_id, "lease_id"),
            need_seconds(ttl, "ttl"),
        )
    if op is RpcOp.LEASE_REVOKE:
        revision, lease_id, deleted = need_array(body, "", 3)
        return LeaseRevokeResult(
            need_uint(revision, "revision"),
            need_positive(lease_id, "lease_id"),
            need_uint(deleted, "deleted"),
        )
    if op is RpcOp.LEASE_KEEPALIVE:
        (ttl,) = need_array(body, "", 1)
        return need_seconds(ttl, "ttl")
    if op is RpcOp.LEASE_TTL:
        lease_id, remaining, granted, keys = need_array(body, "", 4)
        return LeaseTTL(
            need_positive(lease_id, "lease_id"),
            need_seconds(remaining, "remaining"),
            need_seconds(granted, "granted_ttl"),
            tuple(need_bytes(k, f"keys[{i}]") for i, k in enumerate(need_array(keys, "keys"))),
        )
    if op is RpcOp.STATUS:
        return _status_from(body)
    need_array(body, "", 0)
    return None


def decode_result(op: RpcOp, body: tuple[Any, ...]) -> Result:
    """The typed result of a successful `op` from a response's `body`; raises `RpcFormatError`."""
    try:
        return _result_from(op, body)
    except RpcFormatError as exc:
        raise exc.within(f"response.result({op.value})") from None
