"""Golden bytes of every encoded Raft value: peer messages, client RPCs, WAL and snapshot records.

The hex literals were produced by the hand-written msgpack encoders before they were replaced by
msgspec Structs; the new encoders must produce exactly these bytes (peers and clients of the old
and new code talk to each other, and files written by one are read by the other), and the
decoders must read them back to the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest

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
from hamgr.raft.net import codec, rpc
from hamgr.raft.net.handshake import ClusterAuth, HelloWire, ProofWire, WelcomeWire, _mac
from hamgr.raft.net.rpc import ErrorCode, ErrorInfo, Request
from hamgr.raft.net.rpcbase import RpcOp
from hamgr.raft.net.rpcresults import LeaseTTL, MemberStatus, decode_result
from hamgr.raft.wal import walformat

U64 = 2**64 - 1
ENCODER = msgspec.msgpack.Encoder()
KV = KeyValue(b"k", b"v" * 40, 2, 5, 3, 7)
SNAP = Snapshot(SnapshotMeta(8, 4, ConfState((1, 2), (3,))), b"snap" * 10)
ENTRIES = (Entry(5, 11, EntryType.NORMAL, b"a" * 300), Entry(5, 12, EntryType.CONF_CHANGE, b"b"))

MESSAGES: dict[str, Message] = {
    "heartbeat": Message(MsgType.HEARTBEAT, to=2, frm=1, term=3, commit=7, context=b"r1"),
    "app": Message(MsgType.APP, 2, 1, 5, log_term=4, index=10, entries=ENTRIES, commit=9),
    "app_resp": Message(MsgType.APP_RESP, 1, 2, 5, index=70000, reject=True, reject_hint=U64),
    "vote": Message(MsgType.VOTE, 3, 1, 2**40, log_term=2**33, index=2**20, context=b"transfer"),
    "snap": Message(MsgType.SNAP, 4, 1, 6, snapshot=SNAP),
}

CALLS: dict[str, rpc.Call] = {
    "put": kvc.Put(b"k", b"v" * 300, lease=9),
    "delete": kvc.DeleteRange(b"pre", prefix=True),
    "txn": kvc.Txn(
        (kvc.compare_create(b"leader", "=", 0), kvc.compare_value(b"x", "!=", b"y")),
        (kvc.Put(b"leader", b"me", 3), kvc.Range(b"a", prefix=True, limit=2)),
        (kvc.DeleteRange(b"z"),),
    ),
    "get": rpc.Get(kvc.Range(b"", prefix=True, limit=10, keys_only=True), serializable=True),
    "lease_grant": kvc.LeaseGrant(12345, 2.5),
    "lease_revoke": kvc.LeaseRevoke(12345),
    "lease_keepalive": rpc.LeaseKeepAlive(12345),
    "lease_ttl": rpc.LeaseTimeToLive(2**63 - 1),
    "status": rpc.Status(),
    "member_add": rpc.MemberAdd(4, ("10.0.0.4", 7001)),
    "member_remove": rpc.MemberRemove(4),
    "transfer": rpc.TransferLeadership(2),
    "transfer_timeout": rpc.TransferLeadership(2, 3.5),
}

RESULTS: dict[str, tuple[RpcOp, Any]] = {
    "put": (RpcOp.PUT, PutResult(4, KV)),
    "put_new": (RpcOp.PUT, PutResult(4, None)),
    "get": (RpcOp.GET, RangeResult(9, (KV, KeyValue(b"k2", b"", 3, 3, 1, 0)), 5, True)),
    "delete": (RpcOp.DELETE, DeleteResult(6, 1, (KV,))),
    "txn": (
        RpcOp.TXN,
        TxnResult(
            8, True, (PutResult(8, None), DeleteResult(8, 0, ()), RangeResult(8, (KV,), 1, False))
        ),
    ),
    "lease_grant": (RpcOp.LEASE_GRANT, LeaseGrantResult(3, 77, 1.5)),
    "lease_revoke": (RpcOp.LEASE_REVOKE, LeaseRevokeResult(4, 77, 2)),
    "lease_keepalive": (RpcOp.LEASE_KEEPALIVE, 1.5),
    "lease_ttl": (RpcOp.LEASE_TTL, LeaseTTL(77, 0.9, 1.5, (b"a", b"b"))),
    "status_new": (RpcOp.STATUS, MemberStatus(id=1, state="new")),
    "status": (
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
    "member_add": (RpcOp.MEMBER_ADD, None),
    "member_remove": (RpcOp.MEMBER_REMOVE, None),
    "transfer": (RpcOp.TRANSFER_LEADERSHIP, None),
}

ERRORS: dict[str, ErrorInfo] = {
    "not_leader": ErrorInfo(ErrorCode.NOT_LEADER, "not leader, leader is 2", 2, ("h", 7102)),
    "unavailable": ErrorInfo(ErrorCode.UNAVAILABLE, "member 1 is stopped"),
}


def _cases() -> dict[str, tuple[Callable[[], bytes], Callable[[bytes], object], object]]:
    """name: (encode the value, decode bytes, the value decoding must give back)."""
    out: dict[str, tuple[Callable[[], bytes], Callable[[bytes], object], object]] = {}
    for name, msg in MESSAGES.items():
        out[f"message.{name}"] = (partial(codec.encode_message, msg), codec.decode_message, msg)
    out["entry"] = (partial(codec.encode_entry, ENTRIES[1]), codec.decode_entry, ENTRIES[1])
    hs = HardState(7, 2, U64)
    out["hard_state"] = (partial(codec.encode_hard_state, hs), codec.decode_hard_state, hs)
    out["snapshot"] = (partial(codec.encode_snapshot, SNAP), codec.decode_snapshot, SNAP)
    for name, call in CALLS.items():
        request = Request(2**40 if name == "put" else 5, call)
        out[f"request.{name}"] = (partial(rpc.encode_request, request), rpc.decode_request, request)
    for name, (op, result) in RESULTS.items():
        out[f"result.{name}"] = (
            partial(rpc.encode_result, 42, op, result),
            partial(_decode_result, op),
            result,
        )
    for name, info in ERRORS.items():
        out[f"error.{name}"] = (partial(rpc.encode_error, 9, info), _decode_error, info)
    return out


def _decode_result(op: RpcOp, data: bytes) -> object:
    response = rpc.decode_response(data)
    assert response.body is not None
    return decode_result(op, response.body)


def _decode_error(data: bytes) -> object:
    return rpc.decode_response(data).error


# WAL records are written by hamgr.raft.wal.walformat with its own msgpack calls, not by the
# peer codec: pinned here all the same, so that a change to either is seen.
WAL: dict[str, Callable[[], bytes]] = {
    "wal.header": partial(walformat.encode_header, 3, 2**33),
    "wal.entry": partial(walformat.encode_entry, ENTRIES[0]),
    "wal.hard_state": partial(walformat.encode_hard_state, HardState(7, 2, U64)),
    "wal.marker": partial(walformat.encode_marker, 8, 4, 12),
    "wal.snapshot_file": partial(walformat.encode_snapshot_file, SNAP),
}

GOLDEN: dict[str, str] = {
    "message.heartbeat": "9c0702010300009007c200c0c4027231",
    "message.app": (
        "9c05020105040a9294050b00c5012c61616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "616161616161616161616161616161616161616161616161616161616161616161616194050c01c4"
        "016209c200c0c400"
    ),
    "message.app_resp": "9c0601020500ce000111709000c3cfffffffffffffffffc0c400",
    "message.vote": (
        "9c030301cf0000010000000000cf0000000200000000ce001000009000c200c0c4087472616e73666572"
    ),
    "message.snap": (
        "9c0904010600009000c2009508049201029103c428736e6170736e6170736e6170736e6170736e61"
        "70736e6170736e6170736e6170736e6170736e6170c400"
    ),
    "entry": "94050c01c40162",
    "hard_state": "930702cfffffffffffffffff",
    "snapshot": (
        "9508049201029103c428736e6170736e6170736e6170736e6170736e6170736e6170736e6170736e"
        "6170736e6170736e6170"
    ),
    "request.put": (
        "93cf0000010000000000a370757491c50136950101c4016bc5012c76767676767676767676767676"
        "76767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "76767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "76767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "76767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "76767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "76767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "76767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "7676767676767609"
    ),
    "request.delete": "9305a664656c65746591c409940102c403707265c3",
    "request.txn": (
        "9305a374786e91c43b9501049295c4066c6561646572c202000095c40178c20001c40179929401c4"
        "066c6561646572c4026d65039603c40161c302c2c2919302c4017ac2"
    ),
    "request.get": "9305a367657492c409970103c400c30ac3c2c3",
    "request.lease_grant": "9305ab6c656173655f6772616e7491c40f940105cd3039cb4004000000000000",
    "request.lease_revoke": "9305ac6c656173655f7265766f6b6591c406930106cd3039",
    "request.lease_keepalive": "9305af6c656173655f6b656570616c69766591cd3039",
    "request.lease_ttl": "9305a96c656173655f74746c91cf7fffffffffffffff",
    "request.status": "9305a673746174757390",
    "request.member_add": "9305aa6d656d6265725f6164649304a831302e302e302e34cd1b59",
    "request.member_remove": "9305ad6d656d6265725f72656d6f76659104",
    "request.transfer": "9305b37472616e736665725f6c6561646572736869709202c0",
    "request.transfer_timeout": (
        "9305b37472616e736665725f6c6561646572736869709202cb400c000000000000"
    ),
    "result.put": (
        "932ac0920496c4016bc4287676767676767676767676767676767676767676767676767676767676"
        "767676767676767676767602050307"
    ),
    "result.put_new": "932ac09204c0",
    "result.get": (
        "932ac094099296c4016bc42876767676767676767676767676767676767676767676767676767676"
        "7676767676767676767676760205030796c4026b32c4000303010005c3"
    ),
    "result.delete": (
        "932ac09306019196c4016bc428767676767676767676767676767676767676767676767676767676"
        "7676767676767676767676767602050307"
    ),
    "result.txn": (
        "932ac09308c39392a37075749208c092a664656c6574659308009092a367657494089196c4016bc4"
        "28767676767676767676767676767676767676767676767676767676767676767676767676767676"
        "760205030701c2"
    ),
    "result.lease_grant": "932ac093034dcb3ff8000000000000",
    "result.lease_revoke": "932ac093044d02",
    "result.lease_keepalive": "932ac091cb3ff8000000000000",
    "result.lease_ttl": "932ac0944dcb3feccccccccccccdcb3ff800000000000092c40161c40162",
    "result.status_new": "932ac09e01a36e6577a0000000000000009090c0c0",
    "result.status": (
        "932ac09e02a772756e6e696e67a66c656164657203020a090b040793010203910492a93132372e30"
        "2e302e31cd1bbe92a33a3a31cd1bbe"
    ),
    "result.member_add": "932ac090",
    "result.member_remove": "932ac090",
    "result.transfer": "932ac090",
    "error.not_leader": (
        "930994aa6e6f745f6c6561646572b76e6f74206c65616465722c206c656164657220697320320292"
        "a168cd1bbec0"
    ),
    "error.unavailable": (
        "930994ab756e617661696c61626c65b36d656d62657220312069732073746f7070656400c0c0"
    ),
    "wal.header": "0d000000476140d394000103cf0000000200000000",
    "wal.entry": (
        "34010000b93325999501050b00c5012c616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "61616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "616161616161616161616161616161616161616161616161616161616161616161616161"
    ),
    "wal.hard_state": "0d000000023f88b394020702cfffffffffffffffff",
    "wal.marker": "05000000fa650d1d940308040c",
    "wal.snapshot_file": (
        "33000000ab374812960108049201029103c428736e6170736e6170736e6170736e6170736e617073"
        "6e6170736e6170736e6170736e6170736e6170"
    ),
}

CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoding_is_byte_identical(name: str) -> None:
    encode, _, _ = CASES[name]
    assert encode().hex() == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bytes_decode_to_the_value(name: str) -> None:
    _, decode, value = CASES[name]
    assert decode(bytes.fromhex(GOLDEN[name])) == value


@pytest.mark.parametrize("name", sorted(WAL))
def test_wal_records_are_byte_identical(name: str) -> None:
    assert WAL[name]().hex() == GOLDEN[name]


def test_every_type_is_pinned() -> None:
    assert set(MsgType) <= {m.type for m in MESSAGES.values()} | {
        MsgType.PRE_VOTE,
        MsgType.PRE_VOTE_RESP,
        MsgType.VOTE_RESP,
        MsgType.HEARTBEAT_RESP,
        MsgType.TIMEOUT_NOW,
    }
    assert {rpc.op_of(call) for call in CALLS.values()} == set(RpcOp)
    assert {op for op, _ in RESULTS.values()} == set(RpcOp)
    assert set(GOLDEN) == set(CASES) | set(WAL)


def test_handshake_mac_transcript_is_unchanged() -> None:
    """The MAC covers a msgpack transcript of the handshake: a change to its bytes would make old
    and new members refuse each other's proof."""
    auth = ClusterAuth("demo-cluster", 2, b"s" * 16)
    nonces = (b"c" * 32, b"n" * 32)
    assert _mac(auth, "server", 2, 1, *nonces).hex() == (
        "ff0df8da6cf38573879c5e7f658e3beee16587f3bc481ca44276c1f0c52aa33f"
    )
    assert _mac(auth, "client", 0, 3, *nonces).hex() == (
        "e5dd5fe496e2c5270b80e0dfb768d93afa427f416825e6951cda9ed56f24aa1c"
    )


def test_handshake_frames_are_the_old_arrays() -> None:
    """HELLO, WELCOME and PROOF are the msgpack arrays the hand-written code packed."""
    c_nonce, s_nonce, mac = b"c" * 32, b"n" * 32, b"m" * 32
    assert ENCODER.encode(HelloWire("demo-cluster", 0, 3, c_nonce)) == (
        bytes.fromhex("94ac64656d6f2d636c7573746572" + "0003c420") + c_nonce
    )
    assert ENCODER.encode(WelcomeWire(2, s_nonce, mac)) == (
        bytes.fromhex("9302c420") + s_nonce + bytes.fromhex("c420") + mac
    )
    assert ENCODER.encode(ProofWire(mac)) == bytes.fromhex("91c420") + mac
