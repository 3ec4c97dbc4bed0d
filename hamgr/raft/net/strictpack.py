"""Strict msgpack decoding shared by the Raft codec and the client RPC format.

Peer and client bytes are untrusted: sizes are bounded before and during decoding, arrays come
back as tuples, maps are refused where a format has none, and every failure becomes the
caller's own error type naming what was being decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack


def describe(value: object) -> str:
    """A value for an error message: its type and a short repr."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def unpack_strict(
    data: bytes,
    max_size: int,
    what: str,
    error: Callable[[str, str], Exception],
    *,
    max_str_len: int,
    max_array_len: int,
    max_map_len: int,
) -> Any:
    """Decode `data` within the given limits; raises `error(what, problem)` when it cannot."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise error(what, f"expected bytes to decode, got {type(data).__name__}")
    if len(data) > max_size:
        raise error(what, f"{len(data)} bytes exceeds the limit of {max_size}")
    try:
        return msgpack.unpackb(
            data,
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_size,
            max_str_len=max_str_len,
            max_array_len=max_array_len,
            max_map_len=max_map_len,
            max_ext_len=0,
        )
    except msgpack.ExtraData:
        raise error(what, "trailing bytes after the encoded value") from None
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise error(what, f"not valid msgpack ({type(exc).__name__}: {exc})") from None
