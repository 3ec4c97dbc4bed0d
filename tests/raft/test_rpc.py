"""The client protocol's wire format (hamgr.raft.net.rpc): every call and result survives a round
trip, and bad bytes raise RpcFormatError naming the field (with the request id when readable)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.kv.kvresults import (
    DeleteResult,
    KeyValue,
    LeaseGrantResult,
    LeaseRevokeResult,
    PutResult,
    RangeResult,
    TxnResult,
)
from hamgr.raft.net.rpc import (
    Call,
    ErrorCode,
    ErrorInfo,
    Get,
    LeaseKeepAlive,
    LeaseTimeToLive,
    MemberAdd,
    MemberRemove,
    Request,
    Status,
    TransferLeadership,
    decode_request,
    decode_response,
    default_client_address,
    encode_error,
    encode_request,
    encode_result,
    op_of,
)
from hamgr.raft.net.rpcbase import RpcFormatError, RpcOp
from hamgr.raft.net.rpcresults import LeaseTTL, MemberStatus, decode_result

KV = KeyValue(b"k", b"v", 2, 5, 3, 7)

CALLS: list[Call] = [
    kvc.Put(b"k", b"v"),
    kvc.Put(b"k", b"", lease=9),
    kvc.DeleteRange(b"pre", prefix=True),
    kvc.Txn(
        (kvc.compare_create(b"leader", "=", 0), kvc.compare_value(b"x", "!=", b"y")),
        (kvc.Put(b"leader", b"me", 3), kvc.Range(b"a", prefix=True, limit=2)),
        (kvc.DeleteRange(b"z"),),
    ),
    Get(kvc.Range(b"k")),
    Get(kvc.Range(b"", prefix=True, limit=10, keys_only=True), serializable=True),
    kvc.LeaseGrant(12345, 2.5),
    kvc.LeaseRevoke(12345),
    LeaseKeepAlive(12345),
    LeaseTimeToLive(2**63 - 1),
    Status(),
    MemberAdd(4, ("10.0.0.4", 7001)),
    MemberRemove(4),
    TransferLeadership(2),
    TransferLeadership(2, 3.5),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: type(c).__name__)
def test_every_call_round_trips(call: Call) -> None:
    request = Request(42, call)
    assert decode_request(encode_request(request)) == request


RESULTS: list[tuple[RpcOp, Any]] = [
    (RpcOp.PUT, PutResult(4, None)),
    (RpcOp.PUT, PutResult(4, KV)),
    (RpcOp.GET, RangeResult(9, (KV, KeyValue(b"k2", b"", 3, 3, 1, 0)), 5, True)),
    (RpcOp.GET, RangeResult(1, (), 0, False)),
    (RpcOp.DELETE, DeleteResult(6, 1, (KV,))),
    (
        RpcOp.TXN,
        TxnResult(
            8,
            True,
            (PutResult(8, None), DeleteResult(8, 0, ()), RangeResult(8, (KV,), 1, False)),
        ),
    ),
    (RpcOp.LEASE_GRANT, LeaseGrantResult(3, 77, 1.5)),
    (RpcOp.LEASE_REVOKE, LeaseRevokeResult(4, 77, 2)),
    (RpcOp.LEASE_KEEPALIVE, 1.5),
    (RpcOp.LEASE_TTL, LeaseTTL(77, 0.9, 1.5, (b"a", b"b"))),
    (RpcOp.STATUS, MemberStatus(id=1, state="new")),
    (
        RpcOp.STATUS,
        MemberStatus(
            id=2,
            state="running",
            role="leader",
            term=3,
            leader=2,
            commit=10,
            applied=9,
            last_index=11,
            snapshot_index=4,
            revision=7,
            voters=(1, 2, 3),
            learners=(4,),
            client_address=("127.0.0.1", 7102),
            leader_client_address=("::1", 7102),
        ),
    ),
    (RpcOp.MEMBER_ADD, None),
    (RpcOp.MEMBER_REMOVE, None),
    (RpcOp.TRANSFER_LEADERSHIP, None),
]


@pytest.mark.parametrize(("op", "result"), RESULTS, ids=lambda x: str(x)[:20])
def test_every_result_round_trips(op: RpcOp, result: Any) -> None:
    response = decode_response(encode_result(42, op, result))
    assert response.id == 42 and response.error is None and response.body is not None
    assert decode_result(op, response.body) == result


def test_errors_round_trip_with_the_leader_hint() -> None:
    for info in (
        ErrorInfo(ErrorCode.NOT_LEADER, "not leader, leader is 2", 2, ("127.0.0.2", 7102)),
        ErrorInfo(ErrorCode.UNAVAILABLE, "member 1 is stopped"),
        ErrorInfo(ErrorCode.BAD_REQUEST, "x" * 1000),
    ):
        response = decode_response(encode_error(9, info))
        assert (response.id, response.error, response.body) == (9, info, None)


def _request(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


PUT = kvc.encode(kvc.Put(b"k", b"v"))
BAD_REQUESTS: list[tuple[bytes, str, int | None]] = [
    (b"\xc1", "request: not valid msgpack", None),
    (_request([1, "status", []]) + b"\x00", "request: trailing bytes", None),
    (_request({"id": 1}), "request: not valid msgpack", None),
    (_request([1, "status"]), "request: expected an array of 3 fields", None),
    (_request([0, "status", []]), "request.id: expected an id >= 1, got int 0", None),
    (_request([True, "status", []]), "request.id: expected an id >= 1, got bool True", None),
    (_request([5, "frobnicate", []]), "request.op: unknown op str 'frobnicate' (put, get,", 5),
    (_request([5, 1, []]), "request.op: unknown op int 1", 5),
    (_request([5, "put", PUT]), "request.args: expected an array, got bytes", 5),
    (_request([5, "put", []]), "request.args: expected an array of 1 fields, got 0", 5),
    (_request([5, "put", [b"junk"]]), "request.args[0]: not a msgpack KV command", 5),
    (_request([5, "put", ["text"]]), "request.args[0]: expected bytes, got str", 5),
    (
        _request([5, "put", [kvc.encode(kvc.DeleteRange(b"k"))]]),
        "request.args[0]: expected a Put command, got DeleteRange",
        5,
    ),
    (
        _request([5, "put", [_request([1, 1, b"", b"v", 0])]]),
        "request.args[0]: put key must not be empty",
        5,
    ),
    (
        _request([5, "txn", [_request([1, 4, [], [[4, [], [], []]], []])]]),
        "request.args[0]: op code 4 is not allowed inside a txn",
        5,
    ),
    (
        _request([5, "get", [kvc.encode(kvc.Range(b"k")), 3]]),
        "request.args[1]: expected a boolean, got int 3",
        5,
    ),
    (_request([5, "lease_keepalive", [-1]]), "request.args[0]: expected a positive integer", 5),
    (_request([5, "lease_ttl", [2**63]]), "request.args: lease id must be an int in", 5),
    (_request([5, "status", [1]]), "request.args: expected an array of 0 fields, got 1", 5),
    (
        _request([5, "member_add", [2, "h", 70000]]),
        "request.args: member address must be (host, port) with a port in 1..65535",
        5,
    ),
    (_request([5, "member_add", [2, b"h", 7001]]), "request.args[1]: expected a string", 5),
    (_request([5, "member_remove", [0]]), "request.args[0]: expected a positive integer", 5),
    (
        _request([5, "transfer_leadership", [2, float("nan")]]),
        "request.args[1]: expected a number of seconds >= 0, got float nan",
        5,
    ),
    (
        _request([5, "transfer_leadership", [2, 0]]),
        "request.args: transfer timeout must be > 0 seconds",
        5,
    ),
]


@pytest.mark.parametrize(("payload", "message", "request_id"), BAD_REQUESTS)
def test_bad_requests_name_the_field(payload: bytes, message: str, request_id: int | None) -> None:
    with pytest.raises(RpcFormatError) as info:
        decode_request(payload)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.request_id == request_id


def test_request_size_limit() -> None:
    payload = encode_request(Request(1, kvc.Put(b"k", b"x" * 2000)))
    with pytest.raises(RpcFormatError, match=r"request: \d+ bytes exceeds the limit of 1000"):
        decode_request(payload, max_size=1000)


def _response(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


BAD_RESPONSES: list[tuple[bytes, str]] = [
    (_response([1, None, None]), "response: exactly one of error and result must be set"),
    (_response([1, ["x", "m", 0, None], []]), "response: exactly one of error and result"),
    (_response([-1, None, []]), "response.id: expected a request id"),
    (_response([1, ["bogus", "m", 0, None], None]), "response.error.code: unknown error code"),
    (
        _response([1, ["not_leader", "m", 2, ["h", 0]], None]),
        "response.error.address[1]: expected a port in 1..65535, got int 0",
    ),
    (_response([1, ["not_leader", "m", -2, None], None]), "response.error.leader: expected a"),
    (_response([1, None, "ok"]), "response.result: expected an array, got str"),
]


@pytest.mark.parametrize(("payload", "message"), BAD_RESPONSES)
def test_bad_responses_name_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(RpcFormatError) as info:
        decode_response(payload)
    assert str(info.value).startswith(message), str(info.value)


BAD_RESULTS: list[tuple[RpcOp, tuple[Any, ...], str]] = [
    (RpcOp.GET, (1, ((b"k",),), 1, False), "response.result(get).kvs[0]: expected an array of 6"),
    (RpcOp.GET, (1, (), 1, 0), "response.result(get).more: expected a boolean, got int 0"),
    (
        RpcOp.PUT,
        (1, (b"k", "v", 1, 1, 1, 0)),
        "response.result(put).prev_kv.value: expected bytes, got str",
    ),
    (
        RpcOp.TXN,
        (1, True, (("watch", ()),)),
        "response.result(txn).responses[0][0]: unknown txn result kind str 'watch'",
    ),
    (
        RpcOp.TXN,
        (1, True, (("put", (1,)),)),
        "response.result(txn).responses[0][1]: expected an array of 2 fields, got 1",
    ),
    (RpcOp.LEASE_KEEPALIVE, (-1.0,), "response.result(lease_keepalive).ttl: expected a number"),
    (RpcOp.STATUS, (1, "running"), "response.result(status): expected an array of 14 fields"),
    (RpcOp.MEMBER_ADD, (1,), "response.result(member_add): expected an array of 0 fields"),
]


@pytest.mark.parametrize(("op", "body", "message"), BAD_RESULTS)
def test_bad_results_name_the_field(op: RpcOp, body: tuple[Any, ...], message: str) -> None:
    with pytest.raises(RpcFormatError) as info:
        decode_result(op, body)
    assert str(info.value).startswith(message), str(info.value)


def test_calls_validate_their_arguments() -> None:
    with pytest.raises(ValueError, match="lease id must be an int"):
        LeaseKeepAlive(0)
    with pytest.raises(ValueError, match="member address"):
        MemberAdd(2, ("", 7001))
    with pytest.raises(ValueError, match="get serializable must be a bool"):
        Get(kvc.Range(b"k"), serializable=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="request id"):
        encode_request(Request(0, Status()))
    with pytest.raises(TypeError, match="not an RPC call"):
        op_of(kvc.Range(b"k"))  # type: ignore[arg-type]


def test_default_client_address_is_the_raft_port_plus_100() -> None:
    assert default_client_address(("10.0.0.1", 7001)) == ("10.0.0.1", 7101)
    assert default_client_address(("10.0.0.1", 65500)) is None


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=16)
    | st.sampled_from([o.value for o in RpcOp]),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64) | msgpack_values.map(_request))
def test_junk_requests_only_raise_rpc_format_error(payload: bytes) -> None:
    try:
        request = decode_request(payload)
    except RpcFormatError as exc:
        assert str(exc)
    else:
        assert decode_request(encode_request(request)) == request


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=9),
    st.sampled_from(list(RpcOp)),
    st.lists(msgpack_values, max_size=5),
)
def test_junk_args_only_raise_rpc_format_error_with_the_id(
    rid: int, op: RpcOp, args: list[Any]
) -> None:
    try:
        decode_request(_request([rid, op.value, args]))
    except RpcFormatError as exc:
        assert exc.request_id == rid


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(RpcOp)), msgpack_values)
def test_junk_results_only_raise_rpc_format_error(op: RpcOp, body: Any) -> None:
    try:
        response = decode_response(_response([1, None, body]))
        assert response.body is not None
        decode_result(op, response.body)
    except RpcFormatError as exc:
        assert str(exc)
