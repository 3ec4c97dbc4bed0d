"""Fuzzing of everything that reads bytes from the store's peer and client ports.

The frame decoder, both sides of the handshake, the Raft message codec and the client RPC
decoders get arbitrary bytes and mutated valid encodings (`tests.raft.fuzzing`). Each may only
fail with its module's documented error (`FrameError`/`ConnectionClosed`, `ProtocolError`,
`CodecError`, `RpcFormatError`): no IndexError, TypeError or KeyError leaking out, no hang (each
async run has a deadline) and no allocation out of proportion to the input. The example counts
are sized for a few seconds per test on two busy cores; run with ``-s`` to see how many inputs
each target ran.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any, cast

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamgr.raft.core.types import Entry, EntryType, Message, MsgType
from hamgr.raft.net.codec import CodecError, decode_message, encode_message
from hamgr.raft.net.framing import (
    HEADER,
    ConnectionClosed,
    FrameError,
    FrameKind,
    ProtocolError,
    encode_frame,
    parse_header,
    read_frame,
)
from hamgr.raft.net.handshake import (
    NONCE_SIZE,
    ClusterAuth,
    HandshakeError,
    client_handshake,
    server_handshake,
)
from hamgr.raft.net.rpc import (
    ErrorCode,
    ErrorInfo,
    Request,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_result,
)
from hamgr.raft.net.rpcbase import RpcFormatError
from hamgr.raft.net.rpcresults import decode_result
from tests.raft.fuzzing import RUNS, bounded_allocation, mutated, report, valid_or_mutated
from tests.raft.test_rpc import CALLS, RESULTS

FUZZ = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEADLINE = 5.0
"""Seconds any one async run may take; far more than it needs, so only a hang trips it."""
AUTH = ClusterAuth("fuzz-cluster", 1, b"s" * 32)


@pytest.fixture(autouse=True, scope="module")
def _print_counts() -> Iterator[None]:
    yield
    print("\n" + report())


class _SinkWriter:
    """Enough of a StreamWriter for the handshake: it collects what is written."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _reader_with(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


# --- frames -----------------------------------------------------------------------------------

_FRAMES = [
    encode_frame(FrameKind.RAFT, b"x" * 20) + encode_frame(FrameKind.CLIENT_REQUEST, b""),
    encode_frame(FrameKind.HELLO, b"\x94\xa1c\x01\x00\xc4\x20" + b"n" * 32),
    encode_frame(FrameKind.CLIENT_RESPONSE, b"abc") * 3,
]
_MAX_FRAME = 1024


@FUZZ
@given(st.binary(min_size=HEADER.size, max_size=HEADER.size))
def test_any_header_is_a_frame_error_or_a_bounded_frame(header: bytes) -> None:
    RUNS["framing.parse_header"] += 1
    try:
        kind, length = parse_header(header, _MAX_FRAME)
    except FrameError:
        return
    assert isinstance(kind, FrameKind) and 0 <= length <= _MAX_FRAME


async def _read_all_frames(data: bytes) -> None:
    reader = await _reader_with(data)
    async with asyncio.timeout(DEADLINE):
        for _ in range(len(data) // HEADER.size + 1):
            try:
                kind, payload = await read_frame(reader, _MAX_FRAME)
            except (FrameError, ConnectionClosed):
                return
            assert isinstance(kind, FrameKind) and len(payload) <= _MAX_FRAME
    with pytest.raises((FrameError, ConnectionClosed)):
        await read_frame(reader, _MAX_FRAME)


@FUZZ
@given(valid_or_mutated(_FRAMES))
def test_frame_stream_only_raises_frame_errors(data: bytes) -> None:
    RUNS["framing.read_frame"] += 1
    with bounded_allocation(len(data)):
        asyncio.run(_read_all_frames(data))


def test_a_huge_announced_length_allocates_nothing() -> None:
    data = struct.pack(">2sBBI", b"HR", 1, FrameKind.RAFT, 0xFFFFFFFF) + b"x" * 10
    with bounded_allocation(len(data)), pytest.raises(FrameError, match="exceeds the limit"):
        asyncio.run(_read_all_frames_strict(data))


async def _read_all_frames_strict(data: bytes) -> None:
    await read_frame(await _reader_with(data), _MAX_FRAME)


# --- handshake --------------------------------------------------------------------------------


def _hello(cluster: str = "fuzz-cluster", node: int = 2, wanted: int = 1) -> bytes:
    payload = msgpack.packb([cluster, node, wanted, b"n" * NONCE_SIZE], use_bin_type=True)
    return encode_frame(FrameKind.HELLO, payload)


_PROOF = encode_frame(FrameKind.PROOF, msgpack.packb([b"m" * 32], use_bin_type=True))
_CLIENT_SIDE = [
    _hello() + _PROOF,
    _hello(node=0, wanted=0) + _PROOF,
    _hello(cluster="other") + _PROOF,
    encode_frame(FrameKind.REJECT, b"go away"),
]
_WELCOME = encode_frame(
    FrameKind.WELCOME, msgpack.packb([1, b"n" * NONCE_SIZE, b"m" * 32], use_bin_type=True)
)
_SERVER_SIDE = [
    _WELCOME + encode_frame(FrameKind.ACCEPT, b""),
    _WELCOME + encode_frame(FrameKind.REJECT, b"nope"),
    encode_frame(FrameKind.REJECT, "refusé".encode()),
]


async def _serve(data: bytes) -> None:
    reader = await _reader_with(data)
    writer = cast(asyncio.StreamWriter, _SinkWriter())
    async with asyncio.timeout(DEADLINE):
        await server_handshake(reader, writer, AUTH, accept_peer=lambda n: n != 7)


async def _dial(data: bytes) -> None:
    reader = await _reader_with(data)
    writer = cast(asyncio.StreamWriter, _SinkWriter())
    async with asyncio.timeout(DEADLINE):
        await client_handshake(reader, writer, AUTH, expect_peer=1)


def _hello_payload(payload: list[Any]) -> bytes:
    return encode_frame(FrameKind.HELLO, msgpack.packb(payload, use_bin_type=True))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            ["fuzz-cluster", 2, 1, b"n" * 31],
            "malformed HELLO.nonce: Expected `bytes` of length >= 32",
        ),
        (["fuzz-cluster", -2, 1, b"n" * 32], "malformed HELLO.node_id: Expected `int` >= 0"),
        ([b"fuzz-cluster", 2, 1, b"n" * 32], "malformed HELLO.cluster_id: Expected `str`"),
        (["fuzz-cluster", 2, 1], "malformed HELLO: Expected `array` of at least length 4, got 3"),
    ],
)
def test_a_malformed_hello_is_refused_naming_the_field(payload: list[Any], message: str) -> None:
    with pytest.raises(HandshakeError) as info:
        asyncio.run(_serve(_hello_payload(payload)))
    assert str(info.value).startswith(message), str(info.value)


@FUZZ
@given(valid_or_mutated(_CLIENT_SIDE))
def test_server_handshake_only_raises_protocol_errors(data: bytes) -> None:
    RUNS["handshake.server"] += 1
    with bounded_allocation(len(data)), pytest.raises((ProtocolError, ConnectionClosed)):
        asyncio.run(_serve(data))


@FUZZ
@given(valid_or_mutated(_SERVER_SIDE))
def test_client_handshake_only_raises_protocol_errors(data: bytes) -> None:
    RUNS["handshake.client"] += 1
    with bounded_allocation(len(data)), pytest.raises((ProtocolError, ConnectionClosed)):
        asyncio.run(_dial(data))


# --- Raft messages ----------------------------------------------------------------------------

_MESSAGES = [
    encode_message(
        Message(
            type=MsgType.APP,
            to=2,
            frm=1,
            term=3,
            log_term=2,
            index=9,
            entries=(Entry(3, 10, EntryType.NORMAL, b"put"), Entry(3, 11, EntryType.NORMAL, b"")),
            commit=8,
        )
    ),
    encode_message(Message(type=MsgType.VOTE, to=3, frm=1, term=4, log_term=3, index=11)),
    encode_message(Message(type=MsgType.APP_RESP, to=1, frm=2, term=4, reject=True)),
]


@FUZZ
@given(valid_or_mutated(_MESSAGES))
def test_raft_message_bytes_only_raise_codec_error(data: bytes) -> None:
    RUNS["codec.decode_message"] += 1
    with bounded_allocation(len(data)):
        try:
            msg = decode_message(data, max_size=_MAX_FRAME)
        except CodecError as exc:
            assert str(exc).startswith("message")
            return
    assert decode_message(encode_message(msg)) == msg


# --- client RPC -------------------------------------------------------------------------------

_REQUESTS = [encode_request(Request(i + 1, call)) for i, call in enumerate(CALLS)]
_RESPONSES = [(op, encode_result(5, op, result)) for op, result in RESULTS] + [
    (op, encode_error(5, ErrorInfo(ErrorCode.NOT_LEADER, "not me", 2, ("127.0.0.2", 7102))))
    for op, _ in RESULTS[:2]
]


@FUZZ
@given(valid_or_mutated(_REQUESTS))
def test_request_bytes_only_raise_rpc_format_error(data: bytes) -> None:
    RUNS["rpc.decode_request"] += 1
    with bounded_allocation(len(data)):
        try:
            request = decode_request(data)
        except RpcFormatError as exc:
            assert str(exc).startswith("request")
            return
    assert decode_request(encode_request(request)) == request


@FUZZ
@given(st.sampled_from(_RESPONSES).flatmap(lambda r: st.tuples(st.just(r[0]), mutated(r[1]))))
def test_response_bytes_only_raise_rpc_format_error(case: tuple[Any, bytes]) -> None:
    op, data = case
    RUNS["rpc.decode_response+result"] += 1
    with bounded_allocation(len(data)):
        try:
            response = decode_response(data)
            if response.body is not None:
                decode_result(op, response.body)
        except RpcFormatError as exc:
            assert str(exc).startswith("response")
