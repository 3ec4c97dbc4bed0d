"""Shared ground of the store's client protocol (`hamgr.raft.net.rpc`): the op names, the format
error, and the wire types its requests and results are built of.

Decoders name a bad field in `RpcFormatError` from the request or response down
(``request.args.serializable: Expected `bool`, got `int```); `decode` does that for one msgspec
Decoder, with the size bounded first (see `hamgr.raft.net.wire`).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, TypeAlias, TypeVar

import msgspec
from msgspec import Meta

from hamgr.raft.net.wire import decode_strict

__all__ = [
    "Address",
    "AddressWire",
    "Port",
    "RpcFormatError",
    "RpcOp",
    "Seconds",
    "decode",
    "encode",
]

T = TypeVar("T")

Address: TypeAlias = tuple[str, int]

Port = Annotated[int, Meta(ge=1, le=65535)]
"""A TCP port."""

AddressWire = tuple[Annotated[str, Meta(min_length=1)], Port]
"""[host, port] with a non-empty host."""

Seconds = Annotated[float, Meta(ge=0, le=sys.float_info.max)]
"""A finite number of seconds >= 0 (an integer is accepted too)."""

_ENCODER = msgspec.msgpack.Encoder()


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


def encode(wire: object, what: str) -> bytes:
    """msgpack bytes of `wire`; RpcFormatError naming `what` if it cannot be encoded."""
    try:
        return _ENCODER.encode(wire)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RpcFormatError(what, f"cannot encode: {exc}") from None


def decode(
    decoder: msgspec.msgpack.Decoder[T], data: bytes | msgspec.Raw, max_size: int, what: str
) -> T:
    """Decode `data` within `max_size`; RpcFormatError naming the field (from `what`) if not."""
    return decode_strict(decoder, data, max_size, what, RpcFormatError)
