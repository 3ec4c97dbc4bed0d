"""Shared ground of the store's client protocol (`hamgr.raft.net.rpc`): the op names, the format
error, and the checks every decoder of requests and results uses.

Each check takes a decoded msgpack value and the name of its field, and returns the value if it
has the right type and range, else raises `RpcFormatError` naming the field, in the style of
`hamgr.raft.net.codec`: ``args[1]: expected a boolean, got int 3``. Decoders nest field names with
`RpcFormatError.within`. `unpack` sets msgpack's limits so that a hostile length prefix cannot
make it allocate more than the payload allows.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, TypeAlias

import msgpack

from hamgr.raft.net.strictpack import describe, unpack_strict

__all__ = [
    "MAX_ARRAY_LEN",
    "MAX_STR_LEN",
    "OPS",
    "Address",
    "RpcFormatError",
    "RpcOp",
    "need_address",
    "need_array",
    "need_bool",
    "need_bytes",
    "need_positive",
    "need_seconds",
    "need_str",
    "need_uint",
    "pack",
    "unpack",
]

Address: TypeAlias = tuple[str, int]

MAX_ARRAY_LEN = 1 << 21
"""No array in a request or result is longer than this (a range answers at most this many kvs)."""

MAX_STR_LEN = 64 * 1024
"""Strings are names and messages; none is longer than this."""


class RpcOp(StrEnum):
    """The operations a member serves to clients."""

    PUT = "put"
    GET = "get"
    DELETE = "delete"
    TXN = "txn"
    LEASE_GRANT = "lease_grant"
    LEASE_REVOKE = "lease_revoke"
    LEASE_KEEPALIVE = "lease_keepalive"
    LEASE_TTL = "lease_ttl"
    STATUS = "status"
    MEMBER_ADD = "member_add"
    MEMBER_REMOVE = "member_remove"
    TRANSFER_LEADERSHIP = "transfer_leadership"


OPS = {o.value: o for o in RpcOp}


class RpcFormatError(ValueError):
    """Bytes that are not a valid request or response; `field` names where the fault is.

    `request_id` is the id of the request or response when it could be read (else None), so a
    server can answer that request with a BAD_REQUEST error and keep the connection.
    """

    def __init__(self, field: str, problem: str, request_id: int | None = None) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem
        self.request_id = request_id

    def within(self, prefix: str, request_id: int | None = None) -> RpcFormatError:
        """The same error, its field named relative to an enclosing `prefix`."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        rid = self.request_id if request_id is None else request_id
        return RpcFormatError(field, self.problem, rid)


def pack(wire: object, what: str) -> bytes:
    """msgpack bytes of `wire`; RpcFormatError naming `what` if it cannot be encoded."""
    try:
        data: bytes = msgpack.packb(wire, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RpcFormatError(what, f"cannot encode: {exc}") from None
    return data


def unpack(data: bytes, max_size: int, what: str) -> Any:
    """Decode msgpack bytes (arrays as tuples) within `max_size`; RpcFormatError if not."""
    return unpack_strict(
        data,
        max_size,
        what,
        RpcFormatError,
        max_str_len=MAX_STR_LEN,
        max_array_len=MAX_ARRAY_LEN,
        max_map_len=0,
    )


def need_array(value: object, field: str, length: int | None = None) -> tuple[Any, ...]:
    """An array (of exactly `length` fields if given)."""
    if type(value) is not tuple:
        want = f"an array of {length} fields" if length is not None else "an array"
        raise RpcFormatError(field, f"expected {want}, got {describe(value)}")
    if length is not None and len(value) != length:
        raise RpcFormatError(field, f"expected an array of {length} fields, got {len(value)}")
    return value


def need_uint(value: object, field: str) -> int:
    """An integer >= 0 (not a bool)."""
    if type(value) is not int or value < 0:
        raise RpcFormatError(field, f"expected a non-negative integer, got {describe(value)}")
    return value


def need_positive(value: object, field: str) -> int:
    """An integer > 0 (not a bool)."""
    if type(value) is not int or value <= 0:
        raise RpcFormatError(field, f"expected a positive integer, got {describe(value)}")
    return value


def need_bool(value: object, field: str) -> bool:
    """A real boolean."""
    if type(value) is not bool:
        raise RpcFormatError(field, f"expected a boolean, got {describe(value)}")
    return value


def need_bytes(value: object, field: str) -> bytes:
    """Bytes (msgpack bin), not a string."""
    if type(value) is not bytes:
        raise RpcFormatError(field, f"expected bytes, got {describe(value)}")
    return value


def need_str(value: object, field: str) -> str:
    """A string (msgpack str), not bytes."""
    if type(value) is not str:
        raise RpcFormatError(field, f"expected a string, got {describe(value)}")
    return value


def need_seconds(value: object, field: str) -> float:
    """A finite number of seconds >= 0, as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise RpcFormatError(field, f"expected a number of seconds >= 0, got {describe(value)}")
    return float(value)


def need_address(value: object, field: str) -> Address | None:
    """None, or [host, port] with a non-empty host and a port in 1..65535."""
    if value is None:
        return None
    host, port = need_array(value, field, 2)
    if type(host) is not str or not host:
        raise RpcFormatError(f"{field}[0]", f"expected a host name, got {describe(host)}")
    if type(port) is not int or not 0 < port < 65536:
        raise RpcFormatError(f"{field}[1]", f"expected a port in 1..65535, got {describe(port)}")
    return host, port
