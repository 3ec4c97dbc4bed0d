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
are tagged with "put", "delete" or "get". Decoding trusts nothing: any fault raises
`RpcFormatError` naming the field (``request.args[1]: expected a boolean, got int 3``), with the
request id when it could be read, so a server can answer a bad request instead of dropping the
connection. Pure: no sockets here (`hamgr.raft.server.rpcserver` and `hamgr.raft.client.storeclient`
do the I/O). The op names and the field checks live in `hamgr.raft.net.rpcbase`, the results'
wire forms in `hamgr.raft.net.rpcresults`; import their names from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from hamgr.raft.kv import kvcommands as kvc
from hamgr.raft.net.rpcbase import (
    OPS,
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
    pack,
    unpack,
)
from hamgr.raft.net.rpcresults import result_wire
from hamgr.raft.net.strictpack import describe

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

_REQUEST_FIELDS = 3

_RESPONSE_FIELDS = 3

_ERROR_FIELDS = 4


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


_ERROR_CODES = {c.value: c for c in ErrorCode}


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
    body: tuple[Any, ...] | None


def _call_args(call: Call) -> list[Any]:
    if isinstance(call, Get):
        return [kvc.encode(call.range), call.serializable]
    if isinstance(call, kvc.Put | kvc.DeleteRange | kvc.Txn | kvc.LeaseGrant | kvc.LeaseRevoke):
        return [kvc.encode(call)]
    if isinstance(call, LeaseKeepAlive | LeaseTimeToLive):
        return [call.lease_id]
    if isinstance(call, MemberAdd):
        return [call.node_id, call.address[0], call.address[1]]
    if isinstance(call, MemberRemove):
        return [call.node_id]
    if isinstance(call, TransferLeadership):
        return [call.to, call.timeout]
    return []


def encode_request(request: Request) -> bytes:
    """The payload of a CLIENT_REQUEST frame."""
    _need_id("request id", request.id)
    return pack([request.id, op_of(request.call).value, _call_args(request.call)], "request")


def encode_result(request_id: int, op: RpcOp, result: Any) -> bytes:
    """The payload of a CLIENT_RESPONSE frame answering `request_id` (an `op`) with `result`."""
    return pack([request_id, None, result_wire(op, result)], "response")


def encode_error(request_id: int, error: ErrorInfo) -> bytes:
    """The payload of a CLIENT_RESPONSE frame answering `request_id` with an error (id 0 when
    the request's id could not be read)."""
    addr = None if error.leader_address is None else list(error.leader_address)
    wire = [request_id, [error.code.value, error.message, error.leader, addr], None]
    return pack(wire, "response")


def _command(value: object, field: str, expected: type) -> Any:
    data = need_bytes(value, field)
    try:
        command = kvc.decode(data)
    except kvc.InvalidCommandError as exc:
        raise RpcFormatError(field, str(exc)) from None
    if type(command) is not expected:
        raise RpcFormatError(
            field, f"expected a {expected.__name__} command, got {type(command).__name__}"
        )
    return command


def _call_from(op: RpcOp, args: tuple[Any, ...]) -> Call:
    command_type = _COMMAND_OPS.get(op)
    if command_type is not None:
        (data,) = need_array(args, "args", 1)
        call: Call = _command(data, "args[0]", command_type)
        return call
    try:
        if op is RpcOp.GET:
            data, serializable = need_array(args, "args", 2)
            return Get(_command(data, "args[0]", kvc.Range), need_bool(serializable, "args[1]"))
        if op in (RpcOp.LEASE_KEEPALIVE, RpcOp.LEASE_TTL):
            (lease_id,) = need_array(args, "args", 1)
            need_positive(lease_id, "args[0]")
            if op is RpcOp.LEASE_KEEPALIVE:
                return LeaseKeepAlive(lease_id)
            return LeaseTimeToLive(lease_id)
        if op is RpcOp.STATUS:
            need_array(args, "args", 0)
            return Status()
        if op is RpcOp.MEMBER_ADD:
            node_id, host, port = need_array(args, "args", 3)
            need_positive(node_id, "args[0]")
            need_str(host, "args[1]")
            need_uint(port, "args[2]")
            return MemberAdd(node_id, (host, port))
        if op is RpcOp.MEMBER_REMOVE:
            (node_id,) = need_array(args, "args", 1)
            return MemberRemove(need_positive(node_id, "args[0]"))
        to, timeout = need_array(args, "args", 2)
        need_positive(to, "args[0]")
        if timeout is not None:
            need_seconds(timeout, "args[1]")
        return TransferLeadership(to, timeout)
    except (kvc.InvalidCommandError, ValueError) as exc:
        if isinstance(exc, RpcFormatError):
            raise
        raise RpcFormatError("args", str(exc)) from None


def decode_request(data: bytes, *, max_size: int = DEFAULT_MAX_REQUEST_SIZE) -> Request:
    """Decode and validate a request; raises `RpcFormatError` naming the first bad field (with
    `request_id` set when the id itself was readable)."""
    obj = unpack(data, max_size, "request")
    if type(obj) is not tuple or len(obj) != _REQUEST_FIELDS:
        raise RpcFormatError(
            "request", f"expected an array of {_REQUEST_FIELDS} fields, got {describe(obj)}"
        )
    rid, op_name, args = obj
    if type(rid) is not int or not 1 <= rid <= kvc.INT64_MAX:
        raise RpcFormatError("request.id", f"expected an id >= 1, got {describe(rid)}")
    op = OPS.get(op_name) if type(op_name) is str else None
    if op is None:
        known = ", ".join(OPS)
        raise RpcFormatError("request.op", f"unknown op {describe(op_name)} ({known})", rid)
    try:
        if type(args) is not tuple:
            raise RpcFormatError("args", f"expected an array, got {describe(args)}")
        return Request(rid, _call_from(op, args))
    except RpcFormatError as exc:
        raise exc.within("request", rid) from None


def _error_from(obj: object) -> ErrorInfo:
    code, message, leader, address = need_array(obj, "", _ERROR_FIELDS)
    error_code = _ERROR_CODES.get(code) if type(code) is str else None
    if error_code is None:
        raise RpcFormatError("code", f"unknown error code {describe(code)}")
    return ErrorInfo(
        error_code,
        need_str(message, "message"),
        need_uint(leader, "leader"),
        need_address(address, "address"),
    )


def decode_response(data: bytes, *, max_size: int = DEFAULT_MAX_RESPONSE_SIZE) -> Response:
    """Decode a response's frame and error; its result body stays raw until `decode_result`."""
    obj = unpack(data, max_size, "response")
    if type(obj) is not tuple or len(obj) != _RESPONSE_FIELDS:
        raise RpcFormatError(
            "response", f"expected an array of {_RESPONSE_FIELDS} fields, got {describe(obj)}"
        )
    rid, error, body = obj
    if type(rid) is not int or rid < 0:
        raise RpcFormatError("response.id", f"expected a request id, got {describe(rid)}")
    if (error is None) == (body is None):
        raise RpcFormatError("response", "exactly one of error and result must be set", rid)
    if error is not None:
        try:
            return Response(rid, _error_from(error), None)
        except RpcFormatError as exc:
            raise exc.within("response.error", rid) from None
    if type(body) is not tuple:
        raise RpcFormatError("response.result", f"expected an array, got {describe(body)}", rid)
    return Response(rid, None, body)
