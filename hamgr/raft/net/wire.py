"""The shapes of the Raft store's wire values, declared once as msgspec Structs, and their strict
decoding.

Every value on the wire (a peer message, a client request or result) is a `WireStruct`: a
msgpack array whose items are the fields in declaration order, each with its type and bounds
(``Annotated[int, Meta(ge=0)]``) on the Struct. msgspec checks them while it decodes; arrays of
the wrong length, unknown enum values, a str where bytes belong, bools where integers belong are
all refused. `decode_strict` turns msgspec's errors, which locate the fault by array position
(``$[6][1][0]``), into the caller's error type naming the field (``entries[1].term``). Peer and
client bytes are untrusted: the size is bounded before decoding, and msgspec checks every length
prefix against the bytes that remain, so a hostile prefix cannot make it allocate more than the
payload allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta
from msgspec import inspect as mi

__all__ = [
    "INT64_MAX",
    "NodeId",
    "Positive",
    "UInt",
    "WireStruct",
    "decode_strict",
    "field_path",
]

T = TypeVar("T")

INT64_MAX = 2**63 - 1

UInt = Annotated[int, Meta(ge=0)]
"""A non-negative integer (terms, indexes, revisions; up to 2**64 - 1)."""

NodeId = Annotated[int, Meta(ge=1)]
"""A member's node id: a positive integer."""

Positive = Annotated[int, Meta(ge=1, le=INT64_MAX)]
"""A positive signed 64-bit integer (request ids, lease ids)."""


class WireStruct(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """Base of every wire value: a msgpack array of exactly its fields, in declaration order.

    Transient (built to encode, read once after decoding), so not frozen.
    """


_AT = re.compile(r"^(?P<problem>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_STEP = re.compile(r"\[(\d+)\]|\.(\w+)|\[[^\]]*\]")


def _unwrap(info: mi.Type) -> mi.Type:
    """The type under Annotated metadata, and the one Struct or array type of an optional."""
    while True:
        if isinstance(info, mi.Metadata):
            info = info.type
        elif isinstance(info, mi.UnionType):
            inner = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(inner) != 1:
                return info
            info = inner[0]
        else:
            return info


def field_path(root: Any, path: str) -> str:
    """The field names of msgspec's error `path` (``[6][1][0]``) in values of type `root`
    (``entries[1].term``); steps it cannot name stay as indexes."""
    info: mi.Type | None = mi.type_info(root)
    out = ""
    for match in _STEP.finditer(path):
        step = match.group(0)
        current = None if info is None else _unwrap(info)
        index = match.group(1)
        if isinstance(current, mi.StructType) and index is not None:
            fields = current.fields
            if int(index) < len(fields):
                field = fields[int(index)]
                out = f"{out}.{field.name}" if out else field.name
                info = field.type
                continue
        out += step
        if isinstance(current, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            info = current.item_type
        elif isinstance(current, mi.TupleType) and index is not None:
            info = current.item_types[int(index)] if int(index) < len(current.item_types) else None
        else:
            info = None
    return out


def decode_strict(
    decoder: msgspec.msgpack.Decoder[T],
    data: bytes | msgspec.Raw,
    max_size: int,
    what: str,
    error: Callable[[str, str], Exception],
) -> T:
    """Decode `data` (at most `max_size` bytes) with `decoder`; raises `error(field, problem)`,
    the field named from `what` down (``message.entries[1].term``), when it cannot."""
    if not isinstance(data, bytes | bytearray | memoryview | msgspec.Raw):
        raise error(what, f"expected bytes to decode, got {type(data).__name__}")
    if len(data) > max_size:
        raise error(what, f"{len(data)} bytes exceeds the limit of {max_size}")
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT.match(text)
        if match is None:
            raise error(what, text) from None
        inner = field_path(decoder.type, match.group("path")).lstrip(".")
        field = f"{what}.{inner}" if inner and not inner.startswith("[") else what + inner
        raise error(field, match.group("problem")) from None
    except msgspec.DecodeError as exc:
        raise error(what, f"not valid msgpack ({exc})") from None
