"""The frame format of the peer protocol, and reading and writing frames on a stream.

A frame is a fixed 8-byte header ``[magic "HR"][version u8][kind u8][length u32]`` followed by
`length` payload bytes. A wrong magic, an unknown version or kind, or a length over the limit is a
`FrameError`: the connection is closed, the member carries on.

This is the lowest layer of the peer protocol and knows nothing of authentication or Raft, so the
handshake (`hamgr.raft.net.handshake`), the Raft transport (`hamgr.raft.net.transport`) and the
store's client RPC (with its own frame kinds) all share it.
"""

from __future__ import annotations

import asyncio
import struct
from enum import IntEnum

__all__ = [
    "HEADER",
    "MAGIC",
    "PROTOCOL_VERSION",
    "ConnectionClosed",
    "FrameError",
    "FrameKind",
    "ProtocolError",
    "encode_frame",
    "parse_header",
    "read_frame",
    "write_frame",
]

MAGIC = b"HR"
PROTOCOL_VERSION = 1
HEADER = struct.Struct(">2sBBI")
"""Frame header: magic, protocol version, frame kind, payload length (big-endian)."""


class FrameKind(IntEnum):
    """What a frame's payload is. 1-15 carry application traffic, 16 and up the handshake."""

    RAFT = 1
    CLIENT_REQUEST = 2
    CLIENT_RESPONSE = 3
    HELLO = 16
    WELCOME = 17
    PROOF = 18
    ACCEPT = 19
    REJECT = 20


class ProtocolError(Exception):
    """The other end broke the protocol; the connection must be closed."""


class FrameError(ProtocolError):
    """A frame that cannot be read: bad magic, version, kind or length, or truncated."""


class ConnectionClosed(Exception):
    """The other end closed the connection cleanly, between two frames."""


def encode_frame(kind: FrameKind, payload: bytes) -> bytes:
    """One frame: header plus payload."""
    if len(payload) > 0xFFFFFFFF:
        raise ValueError(f"frame payload of {len(payload)} bytes does not fit a u32 length")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, kind, len(payload)) + payload


def parse_header(header: bytes, max_size: int) -> tuple[FrameKind, int]:
    """Check a frame header; returns (kind, payload length) or raises `FrameError`."""
    magic, version, kind, length = HEADER.unpack(header)
    if magic != MAGIC:
        if magic[:1] == b"\x16":  # a TLS record: handshake
            raise FrameError(
                f"bad magic {magic!r}: the peer speaks TLS and this side does not (is TLS, "
                "store.raft.tls, set on one member and not on the other?)"
            )
        raise FrameError(f"bad magic {magic!r}: not a hamgr peer")
    if version != PROTOCOL_VERSION:
        raise FrameError(
            f"unsupported protocol version {version} (this member speaks {PROTOCOL_VERSION})"
        )
    try:
        frame_kind = FrameKind(kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind}") from None
    if length > max_size:
        raise FrameError(f"{frame_kind.name} frame of {length} bytes exceeds the limit {max_size}")
    return frame_kind, length


async def read_frame(reader: asyncio.StreamReader, max_size: int) -> tuple[FrameKind, bytes]:
    """Read one frame. Raises `ConnectionClosed` on a clean end, `FrameError` on a bad frame."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ConnectionClosed("connection closed by peer") from None
        raise FrameError(f"truncated frame header ({len(exc.partial)} bytes)") from None
    kind, length = parse_header(header, max_size)
    if not length:
        return kind, b""
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(
            f"truncated {kind.name} frame: {len(exc.partial)} of {length} payload bytes"
        ) from None
    return kind, payload


async def write_frame(writer: asyncio.StreamWriter, kind: FrameKind, payload: bytes) -> None:
    """Write one frame and wait until the transport's buffer has room again."""
    writer.write(encode_frame(kind, payload))
    await writer.drain()
