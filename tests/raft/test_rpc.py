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
    (
        _request([1, "status", []]) + b"\x00",
        "request: not valid msgpack (MessagePack data is malformed: trailing",
        None,
    ),
    (_request({"id": 1}), "request: Expected `array`, got `object`", None),
    (_request([1, "status"]), "request: Expected `array` of at least length 3, got 2", None),
    (_request([0, "status", []]), "request.id: Expected `int` >= 1", None),
    (_request([True, "status", []]), "request.id: Expected `int`, got `bool`", None),
    (_request([5, "frobnicate", []]), "request.op: Invalid enum value 'frobnicate'", 5),
    (_request([5, 1, []]), "request.op: Expected `str`, got `int`", 5),
    (_request([5, "put", PUT]), "request.args: Expected `array`, got `bytes`", 5),
    (_request([5, "put", []]), "request.args: Expected `array` of at least length 1, got 0", 5),
    (_request([5, "put", [b"junk"]]), "request.args.command: not a msgpack KV command", 5),
    (_request([5, "put", ["text"]]), "request.args.command: Expected `bytes`, got `str`", 5),
    (
        _request([5, "put", [kvc.encode(kvc.DeleteRange(b"k"))]]),
        "request.args.command: expected a Put command, got DeleteRange",
        5,
    ),
    (
        _request([5, "put", [_request([1, 1, b"", b"v", 0])]]),
        "request.args.command: put key must not be empty",
        5,
    ),
    (
        _request([5, "txn", [_request([1, 4, [], [[4, [], [], []]], []])]]),
        "request.args.command: op code 4 is not allowed inside a txn",
        5,
    ),
    (
        _request([5, "get", [kvc.encode(kvc.Range(b"k")), 3]]),
        "request.args.serializable: Expected `bool`, got `int`",
        5,
    ),
    (_request([5, "lease_keepalive", [-1]]), "request.args.lease_id: Expected `int` >= 1", 5),
    (
        _request([5, "lease_ttl", [2**63]]),
        "request.args.lease_id: Expected `int` <= 9223372036854775807",
        5,
    ),
    (_request([5, "status", [1]]), "request.args: Expected `array` of at most length 0, got 1", 5),
    (
        _request([5, "member_add", [2, "h", 70000]]),
        "request.args.port: Expected `int` <= 65535",
        5,
    ),
    (
        _request([5, "member_add", [2, b"h", 7001]]),
        "request.args.host: Expected `str`, got `bytes`",
        5,
    ),
    (_request([5, "member_remove", [0]]), "request.args.node_id: Expected `int` >= 1", 5),
    (
        _request([5, "transfer_leadership", [2, float("nan")]]),
        "request.args.timeout: Expected `float` > 0.0",
        5,
    ),
    (
        _request([5, "transfer_leadership", [2, float("inf")]]),
        "request.args.timeout: Expected `float` <= 1.7976931348623157e+308",
        5,
    ),
    (
        _request([5, "transfer_leadership", [2, 0]]),
        "request.args.timeout: Expected `float` > 0.0",
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
    (_response([1, ["not_leader", "m", 0, None], []]), "response: exactly one of error and result"),
    (_response([-1, None, []]), "response.id: Expected `int` >= 0"),
    (
        _response([1, ["bogus", "m", 0, None], None]),
        "response.error.code: Invalid enum value 'bogus'",
    ),
    (
        _response([1, ["not_leader", "m", 2, ["h", 0]], None]),
        "response.error.address[1]: Expected `int` >= 1",
    ),
    (
        _response([1, ["not_leader", "m", -2, None], None]),
        "response.error.leader: Expected `int` >= 0",
    ),
    (_response([1, None, "ok"]), "response.result: expected an array"),
]


@pytest.mark.parametrize(("payload", "message"), BAD_RESPONSES)
def test_bad_responses_name_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(RpcFormatError) as info:
        decode_response(payload)
    assert str(info.value).startswith(message), str(info.value)


BAD_RESULTS: list[tuple[RpcOp, tuple[Any, ...], str]] = [
    (
        RpcOp.GET,
        (1, ((b"k",),), 1, False),
        "response.result(get).kvs[0]: Expected `array` of at least length 6, got 1",
    ),
    (RpcOp.GET, (1, (), 1, 0), "response.result(get).more: Expected `bool`, got `int`"),
    (
        RpcOp.PUT,
        (1, (b"k", "v", 1, 1, 1, 0)),
        "response.result(put).prev_kv.value: Expected `bytes`, got `str`",
    ),
    (
        RpcOp.TXN,
        (1, True, (("watch", ()),)),
        "response.result(txn).responses[0].kind: Invalid enum value 'watch'",
    ),
    (
        RpcOp.TXN,
        (1, True, (("put", (1,)),)),
        "response.result(txn).responses[0].result: Expected `array` of at least length 2, got 1",
    ),
    (
        RpcOp.LEASE_KEEPALIVE,
        (-1.0,),
        "response.result(lease_keepalive).ttl: Expected `float` >= 0.0",
    ),
    (
        RpcOp.LEASE_KEEPALIVE,
        (float("inf"),),
        "response.result(lease_keepalive).ttl: Expected `float` <= 1.7976931348623157e+308",
    ),
    (
        RpcOp.STATUS,
        (1, "running"),
        "response.result(status): Expected `array` of at least length 14, got 2",
    ),
    (
        RpcOp.MEMBER_ADD,
        (1,),
        "response.result(member_add): Expected `array` of at most length 0, got 1",
    ),
]


@pytest.mark.parametrize(("op", "body", "message"), BAD_RESULTS)
def test_bad_results_name_the_field(op: RpcOp, body: tuple[Any, ...], message: str) -> None:
    with pytest.raises(RpcFormatError) as info:
        decode_result(op, msgpack.packb(body, use_bin_type=True))
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
