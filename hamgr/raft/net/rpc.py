"""The store's client protocol: requests and responses as msgpack arrays, strictly validated.

A client talks to a member's CLIENT address (not its Raft peer port) over an authenticated
connection (`hamgr.raft.net.handshake`, node id 0 for a client). Each request travels in one
CLIENT_REQUEST frame and is answered by one CLIENT_RESPONSE frame carrying the same request id,
so many requests can be in flight on one connection and answers may come back in any order.

- Request:  ``[request_id, op, args]``; `request_id` >= 1, `op` a name (`RpcOp`), `args` an array.
- Response: ``[request_id, error, result]``; exactly one of `error` and `result` is nil.
- Error:    ``[code, message, leader_id, leader_client_address]``; the address is ``[host, port]``
  or nil, `leader_id` 0 when unknown (`ErrorCode` says what a client may do about it).

Args per op. The KV commands travel as the bytes `hamgr.raft.kv.kvcommands.encode` makes for the
Raft log, so there is one encoding of a command and one validation (`kvcommands.decode`):

====================  =============================================  ===========================
op                    args                                           result
====================  =============================================  ===========================
put                   [Put command]                                  [revision, prev_kv]
get                   [Range command, serializable]                  [revision, [kv...], count,
                                                                     more]
delete                [DeleteRange command]                          [revision, deleted,
                                                                     [prev_kv...]]
txn                   [Txn command]                                  [revision, succeeded,
                                                                     [[op, result]...]]
lease_grant           [LeaseGrant command]                           [revision, lease_id, ttl]
lease_revoke          [LeaseRevoke command]                          [revision, lease_id, deleted]
lease_keepalive       [lease_id]                                     [ttl]
lease_ttl             [lease_id]                                     [lease_id, remaining,
                                                                     granted_ttl, [key...]]
status                []                                             see `MemberStatus`
member_add            [node_id, host, port]                          []
member_remove         [node_id]                                      []
transfer_leadership   [to, timeout or nil]                           []
====================  =============================================  ===========================

A kv is ``[key, value, create_revision, mod_revision, version, lease]``; a txn's inner results
are tagged with "put", "delete" or "get". Each shape is an array_like msgspec Struct (below, and
the results' in `hamgr.raft.net.rpcresults`), with its types and bounds on its fields. The op is
the second item of a request, so it cannot be a msgspec tag: the args stay raw until the op's own
Struct decodes them. Decoding trusts nothing: any fault raises `RpcFormatError` naming the field
(``request.args.serializable: Expected `bool`, got `int```), with the request id when it could be
read, so a server can answer a bad request instead of dropping the connection. Pure: no sockets
here (`hamgr.raft.server.rpcserver` and `hamgr.raft.client.storeclient` do the I/O). The op names
and the format error live in `hamgr.raft.net.rpcbase`; import their names from there.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeAlias

import msgspec
from msgspec import Meta

from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.net.rpcbase import (
    Address,
    AddressWire,
    Port,
    RpcFormatError,
    RpcOp,
    decode,
    encode,
)
from hamgr.raft.net.rpcresults import result_wire
from hamgr.raft.net.wire import Positive, UInt, WireStruct

__all__ = [
    "CLIENT_PORT_OFFSET",
    "DEFAULT_MAX_REQUEST_SIZE",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "Call",
    "ErrorCode",
    "ErrorInfo",
    "Get",
    "LeaseKeepAlive",
    "LeaseTimeToLive",
    "MemberAdd",
    "MemberRemove",
    "Request",
    "Response",
    "Status",
    "TransferLeadership",
    "decode_request",
    "decode_response",
    "default_client_address",
    "encode_error",
    "encode_request",
    "encode_result",
    "op_of",
]

CLIENT_PORT_OFFSET = 100
"""By convention a member's client port is its Raft port + 100 on the same host, unless told."""

DEFAULT_MAX_REQUEST_SIZE = 8 * 1024 * 1024
"""Largest request frame a server accepts (bytes)."""

DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024
"""Largest response frame a client accepts (bytes): a range can be big."""


def default_client_address(raft_address: Address) -> Address | None:
    """The client address a member has by convention: its Raft port + `CLIENT_PORT_OFFSET`."""
    host, port = raft_address
    port += CLIENT_PORT_OFFSET
    return (host, port) if 0 < port < 65536 else None


class ErrorCode(StrEnum):
    """Why a request failed, and so what a client may do about it."""

    NOT_LEADER = "not_leader"
    """Refused, nothing done: only the leader serves it. Retry at the leader named."""
    UNAVAILABLE = "unavailable"
    """Refused, nothing done: this member is stopping, stopped or failed. Retry elsewhere."""
    DROPPED = "dropped"
    """The write was dropped before it could apply (e.g. leadership is moving). Retry."""
    OUTCOME_UNKNOWN = "outcome_unknown"
    """No answer in time, or leadership was lost while pending: a write may or may not apply."""
    BAD_REQUEST = "bad_request"
    """The request is malformed or its arguments are invalid; the message says why."""
    REFUSED = "refused"
    """The leader refused a membership change or transfer (e.g. another one is pending)."""
    LEASE_NOT_FOUND = "lease_not_found"
    LEASE_EXPIRED = "lease_expired"
    LEASE_EXISTS = "lease_exists"
    FAILED = "failed"
    """The command reached the log but failed in the store and changed nothing."""
    INTERNAL = "internal"
    """A bug in the server; the message says what."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error answer: the code, a message for people, and the leader when known."""

    code: ErrorCode
    message: str
    leader: int = 0
    leader_address: Address | None = None


def _need_id(name: str, value: object, *, lo: int = 1) -> int:
    if type(value) is not int or not lo <= value <= kvc.INT64_MAX:
        raise ValueError(f"{name} must be an int in [{lo}, {kvc.INT64_MAX}], got {value!r:.40}")
    return value


@dataclass(frozen=True, slots=True)
class Get:
    """A range read; linearizable unless `serializable` (then any member answers, maybe stale)."""

    range: kvc.Range
    serializable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.range, kvc.Range):
            raise kvc.InvalidCommandError(f"get needs a Range, got {type(self.range).__name__}")
        kvc.need_bool("get serializable", self.serializable)


@dataclass(frozen=True, slots=True)
class LeaseKeepAlive:
    """Extend a lease to its full TTL (answered after the leader confirmed its leadership)."""

    lease_id: int

    def __post_init__(self) -> None:
        _need_id("lease id", self.lease_id)


@dataclass(frozen=True, slots=True)
class LeaseTimeToLive:
    """How long a lease has left on the leader's clock."""

    lease_id: int

    def __post_init__(self) -> None:
        _need_id("lease id", self.lease_id)


@dataclass(frozen=True, slots=True)
class Status:
    """The answering member's own state (any member answers)."""


@dataclass(frozen=True, slots=True)
class MemberAdd:
    """Add `node_id` (a learner until it catches up) whose Raft peer address is `address`."""

    node_id: int
    address: Address

    def __post_init__(self) -> None:
        _need_id("member node id", self.node_id)
        _check_address("member address", self.address)


@dataclass(frozen=True, slots=True)
class MemberRemove:
    """Remove a voter or learner."""

    node_id: int

    def __post_init__(self) -> None:
        _need_id("member node id", self.node_id)


@dataclass(frozen=True, slots=True)
class TransferLeadership:
    """Hand leadership to voter `to`; `timeout` seconds to wait for it (None: the default)."""

    to: int
    timeout: float | None = None

    def __post_init__(self) -> None:
        _need_id("transfer target", self.to)
        if self.timeout is not None:
            t = self.timeout
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
                raise ValueError(f"transfer timeout must be a number of seconds, got {t!r:.40}")
            if t <= 0:
                raise ValueError(f"transfer timeout must be > 0 seconds, got {t}")
            object.__setattr__(self, "timeout", float(t))


def _check_address(name: str, address: object) -> Address:
    if (
        not isinstance(address, tuple | list)
        or len(address) != 2
        or not isinstance(address[0], str)
        or not address[0]
        or type(address[1]) is not int
        or not 0 < address[1] < 65536
    ):
        raise ValueError(f"{name} must be (host, port) with a port in 1..65535, got {address!r}")
    return address[0], address[1]


Call: TypeAlias = (
    kvc.Put
    | kvc.DeleteRange
    | kvc.Txn
    | Get
    | kvc.LeaseGrant
    | kvc.LeaseRevoke
    | LeaseKeepAlive
    | LeaseTimeToLive
    | Status
    | MemberAdd
    | MemberRemove
    | TransferLeadership
)
"""One client request's content."""

_CALL_OPS: dict[type, RpcOp] = {
    kvc.Put: RpcOp.PUT,
    kvc.DeleteRange: RpcOp.DELETE,
    kvc.Txn: RpcOp.TXN,
    Get: RpcOp.GET,
    kvc.LeaseGrant: RpcOp.LEASE_GRANT,
    kvc.LeaseRevoke: RpcOp.LEASE_REVOKE,
    LeaseKeepAlive: RpcOp.LEASE_KEEPALIVE,
    LeaseTimeToLive: RpcOp.LEASE_TTL,
    Status: RpcOp.STATUS,
    MemberAdd: RpcOp.MEMBER_ADD,
    MemberRemove: RpcOp.MEMBER_REMOVE,
    TransferLeadership: RpcOp.TRANSFER_LEADERSHIP,
}

_COMMAND_OPS: dict[RpcOp, type] = {
    RpcOp.PUT: kvc.Put,
    RpcOp.DELETE: kvc.DeleteRange,
    RpcOp.TXN: kvc.Txn,
    RpcOp.LEASE_GRANT: kvc.LeaseGrant,
    RpcOp.LEASE_REVOKE: kvc.LeaseRevoke,
}


def op_of(call: Call) -> RpcOp:
    """The op name of a call."""
    try:
        return _CALL_OPS[type(call)]
    except KeyError:
        raise TypeError(f"not an RPC call: {type(call).__name__}") from None


@dataclass(frozen=True, slots=True)
class Request:
    """One request: its id (>= 1, unique among the connection's pending ones) and its call."""

    id: int
    call: Call


@dataclass(frozen=True, slots=True)
class Response:
    """A decoded response: `error` set, or the still-undecoded `body` of the result (decode it
    with `decode_result` and the op of the pending request)."""

    id: int
    error: ErrorInfo | None
    body: msgspec.Raw | None


# --- wire shapes --------------------------------------------------------------------------------


class RequestWire(WireStruct):
    """A request: its id, its op, then the op's args (decoded after, by the op's Struct)."""

    id: Positive
    op: RpcOp
    args: msgspec.Raw


class _RequestId(msgspec.Struct, array_like=True):
    """The id of a request whose op or args are bad, so that the error can answer it."""

    id: int


class ErrorWire(WireStruct):
    """An `ErrorInfo`."""

    code: ErrorCode
    message: str
    leader: UInt
    address: AddressWire | None


class ResponseWire(WireStruct):
    """A response: the request id, then an error or a result (exactly one of them not nil)."""

    id: UInt
    error: ErrorWire | None
    result: msgspec.Raw


class CommandArgs(WireStruct):
    """Args of the KV commands: the command as `kvcommands.encode` makes it for the Raft log."""

    command: bytes


class GetArgs(WireStruct):
    """Args of a get."""

    range: bytes
    serializable: bool


class LeaseArgs(WireStruct):
    """Args of a lease keepalive or TTL query."""

    lease_id: Positive


class NoArgs(WireStruct):
    """Args of a status query."""


class MemberAddArgs(WireStruct):
    """Args of a member add."""

    node_id: Positive
    host: Annotated[str, Meta(min_length=1)]
    port: Port


class MemberRemoveArgs(WireStruct):
    """Args of a member remove."""

    node_id: Positive


class TransferArgs(WireStruct):
    """Args of a leadership transfer: the target and seconds to wait (nil: the default)."""

    to: Positive
    timeout: Annotated[float, Meta(gt=0, le=sys.float_info.max)] | None


_ARGS: dict[RpcOp, type[WireStruct]] = {
    RpcOp.PUT: CommandArgs,
    RpcOp.DELETE: CommandArgs,
    RpcOp.TXN: CommandArgs,
    RpcOp.LEASE_GRANT: CommandArgs,
    RpcOp.LEASE_REVOKE: CommandArgs,
    RpcOp.GET: GetArgs,
    RpcOp.LEASE_KEEPALIVE: LeaseArgs,
    RpcOp.LEASE_TTL: LeaseArgs,
    RpcOp.STATUS: NoArgs,
    RpcOp.MEMBER_ADD: MemberAddArgs,
    RpcOp.MEMBER_REMOVE: MemberRemoveArgs,
    RpcOp.TRANSFER_LEADERSHIP: TransferArgs,
}
_ARGS_DECODERS = {op: msgspec.msgpack.Decoder(t) for op, t in _ARGS.items()}
_REQUEST = msgspec.msgpack.Decoder(RequestWire)
_REQUEST_ID = msgspec.msgpack.Decoder(_RequestId)
_RESPONSE = msgspec.msgpack.Decoder(ResponseWire)
_NIL = b"\xc0"


def _is_nil(raw: msgspec.Raw) -> bool:
    """Whether msgpack bytes are nil."""
    return len(raw) == 1 and memoryview(raw)[0] == _NIL[0]


def _is_array(raw: msgspec.Raw) -> bool:
    """Whether msgpack bytes start an array (fixarray, array 16 or array 32)."""
    first = memoryview(raw)[0]
    return 0x90 <= first <= 0x9F or first in (0xDC, 0xDD)


# --- encoding -----------------------------------------------------------------------------------


def _args_wire(call: Call) -> WireStruct:
    if isinstance(call, Get):
        return GetArgs(kvc.encode(call.range), call.serializable)
    if isinstance(call, kvc.Put | kvc.DeleteRange | kvc.Txn | kvc.LeaseGrant | kvc.LeaseRevoke):
        return CommandArgs(kvc.encode(call))
    if isinstance(call, LeaseKeepAlive | LeaseTimeToLive):
        return LeaseArgs(call.lease_id)
    if isinstance(call, MemberAdd):
        return MemberAddArgs(call.node_id, call.address[0], call.address[1])
    if isinstance(call, MemberRemove):
        return MemberRemoveArgs(call.node_id)
    if isinstance(call, TransferLeadership):
        return TransferArgs(call.to, call.timeout)
    return NoArgs()


def encode_request(request: Request) -> bytes:
    """The payload of a CLIENT_REQUEST frame."""
    _need_id("request id", request.id)
    args = msgspec.Raw(encode(_args_wire(request.call), "request"))
    return encode(RequestWire(request.id, op_of(request.call), args), "request")


def encode_result(request_id: int, op: RpcOp, result: Any) -> bytes:
    """The payload of a CLIENT_RESPONSE frame answering `request_id` (an `op`) with `result`."""
    body = msgspec.Raw(encode(result_wire(op, result), "response"))
    return encode(ResponseWire(request_id, None, body), "response")


def encode_error(request_id: int, error: ErrorInfo) -> bytes:
    """The payload of a CLIENT_RESPONSE frame answering `request_id` with an error (id 0 when
    the request's id could not be read)."""
    wire = ErrorWire(error.code, error.message, error.leader, error.leader_address)
    return encode(ResponseWire(request_id, wire, msgspec.Raw(_NIL)), "response")


# --- decoding -----------------------------------------------------------------------------------


def _command(data: bytes, expected: type) -> Any:
    field = "request.args.command"
    try:
        command = kvc.decode(data)
    except kvc.InvalidCommandError as exc:
        raise RpcFormatError(field, str(exc)) from None
    if type(command) is not expected:
        raise RpcFormatError(
            field, f"expected a {expected.__name__} command, got {type(command).__name__}"
        )
    return command


def _call_from(op: RpcOp, args: Any) -> Call:
    """The call of `op` from its decoded args; ValueError if the call refuses them."""
    if isinstance(args, CommandArgs):
        call: Call = _command(args.command, _COMMAND_OPS[op])
        return call
    if isinstance(args, GetArgs):
        return Get(_command(args.range, kvc.Range), args.serializable)
    if isinstance(args, LeaseArgs):
        if op is RpcOp.LEASE_KEEPALIVE:
            return LeaseKeepAlive(args.lease_id)
        return LeaseTimeToLive(args.lease_id)
    if isinstance(args, MemberAddArgs):
        return MemberAdd(args.node_id, (args.host, args.port))
    if isinstance(args, MemberRemoveArgs):
        return MemberRemove(args.node_id)
    if isinstance(args, TransferArgs):
        return TransferLeadership(args.to, args.timeout)
    return Status()


def _request_id(data: bytes) -> int | None:
    """The id of a request whose op or args are bad (None if the bytes are not even whole)."""
    try:
        return _REQUEST_ID.decode(data).id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def decode_request(data: bytes, *, max_size: int = DEFAULT_MAX_REQUEST_SIZE) -> Request:
    """Decode and validate a request; raises `RpcFormatError` naming the first bad field (with
    `request_id` set when the id itself was readable)."""
    try:
        wire = decode(_REQUEST, data, max_size, "request")
    except RpcFormatError as exc:
        if exc.field.startswith(("request.op", "request.args")):
            exc.request_id = _request_id(data)
        raise
    try:
        args = decode(_ARGS_DECODERS[wire.op], wire.args, max_size, "request.args")
        return Request(wire.id, _call_from(wire.op, args))
    except RpcFormatError as exc:
        exc.request_id = wire.id
        raise
    except (kvc.InvalidCommandError, ValueError) as exc:
        raise RpcFormatError("request.args", str(exc), wire.id) from None


def decode_response(data: bytes, *, max_size: int = DEFAULT_MAX_RESPONSE_SIZE) -> Response:
    """Decode a response's frame and error; its result body stays raw until `decode_result`."""
    wire = decode(_RESPONSE, data, max_size, "response")
    rid = wire.id
    if (wire.error is None) == _is_nil(wire.result):
        raise RpcFormatError("response", "exactly one of error and result must be set", rid)
    if wire.error is not None:
        e = wire.error
        return Response(rid, ErrorInfo(e.code, e.message, e.leader, e.address), None)
    if not _is_array(wire.result):
        raise RpcFormatError("response.result", "expected an array", rid)
    return Response(rid, None, wire.result)
