"""The msgpack codec of the Raft types: round trips, and strict rejection naming the bad field."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from hamgr.raft.net.codec import (
    CodecError,
    decode_entry,
    decode_hard_state,
    decode_message,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_message,
    encode_snapshot,
)

U64 = 2**64 - 1
uints = st.one_of(st.integers(0, 1000), st.integers(0, U64))
node_ids = st.one_of(st.integers(1, 9), st.integers(1, U64))

entries = st.builds(
    Entry,
    term=uints,
    index=uints,
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=64),
)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    members = draw(st.lists(node_ids, unique=True, max_size=7))
    split = draw(st.integers(0, len(members)))
    return ConfState(tuple(members[:split]), tuple(members[split:]))


snapshots = st.builds(
    Snapshot,
    meta=st.builds(SnapshotMeta, index=uints, term=uints, conf=conf_states()),
    data=st.binary(max_size=256),
)

messages = st.builds(
    Message,
    type=st.sampled_from(MsgType),
    to=node_ids,
    frm=node_ids,
    term=uints,
    log_term=uints,
    index=uints,
    entries=st.lists(entries, max_size=6).map(tuple),
    commit=uints,
    reject=st.booleans(),
    reject_hint=uints,
    snapshot=st.none() | snapshots,
    context=st.binary(max_size=32),
)


def _same(a: Any, b: Any) -> None:
    """Equal, and enums decode to the enum members (not bare ints)."""
    assert a == b
    assert repr(a) == repr(b)


@given(messages)
def test_message_round_trip(msg: Message) -> None:
    decoded = decode_message(encode_message(msg))
    _same(decoded, msg)
    assert type(decoded.type) is MsgType
    assert all(type(e.type) is EntryType for e in decoded.entries)


@given(entries)
def test_entry_round_trip(entry: Entry) -> None:
    _same(decode_entry(encode_entry(entry)), entry)


@given(st.builds(HardState, term=uints, vote=st.integers(0, U64), commit=uints))
def test_hard_state_round_trip(hs: HardState) -> None:
    _same(decode_hard_state(encode_hard_state(hs)), hs)


@given(snapshots)
def test_snapshot_round_trip(snap: Snapshot) -> None:
    _same(decode_snapshot(encode_snapshot(snap)), snap)


def test_encoding_is_positional_and_compact() -> None:
    msg = Message(MsgType.HEARTBEAT, to=2, frm=1, term=3, commit=7)
    data = encode_message(msg)
    assert msgpack.unpackb(data) == [7, 2, 1, 3, 0, 0, [], 7, False, 0, None, b""]
    assert len(data) == 14


# --- rejection -------------------------------------------------------------------------------


def _wire() -> list[Any]:
    """A valid APP message with two entries and a snapshot, as its positional wire form."""
    return [
        int(MsgType.APP),
        2,
        1,
        5,
        4,
        10,
        [[5, 11, 0, b"a"], [5, 12, 1, b"b"]],
        9,
        False,
        0,
        [8, 4, [1, 2], [3], b"snap"],
        b"ctx",
    ]


def _set(wire: list[Any], path: tuple[int, ...], value: Any) -> list[Any]:
    target = wire
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return wire


def test_wire_fixture_is_valid() -> None:
    msg = decode_message(msgpack.packb(_wire()))
    assert msg.entries[1] == Entry(5, 12, EntryType.CONF_CHANGE, b"b")
    assert msg.snapshot == Snapshot(SnapshotMeta(8, 4, ConfState((1, 2), (3,))), b"snap")


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ((0,), 99, "message.type"),
        ((0,), 0, "message.type"),
        ((0,), "APP", "message.type"),
        ((0,), True, "message.type"),
        ((1,), 0, "message.to"),
        ((2,), -1, "message.frm"),
        ((3,), -1, "message.term"),
        ((3,), True, "message.term"),
        ((4,), 1.5, "message.log_term"),
        ((5,), None, "message.index"),
        ((6,), b"x", "message.entries"),
        ((6, 0), [5, 11, 0], "message.entries[0]"),
        ((6, 0), "entry", "message.entries[0]"),
        ((6, 1, 0), -5, "message.entries[1].term"),
        ((6, 1, 1), "12", "message.entries[1].index"),
        ((6, 0, 2), 7, "message.entries[0].type"),
        ((6, 1, 3), "text", "message.entries[1].data"),
        ((6, 1, 3), None, "message.entries[1].data"),
        ((7,), -3, "message.commit"),
        ((8,), 1, "message.reject"),
        ((8,), None, "message.reject"),
        ((9,), [1], "message.reject_hint"),
        ((10,), [8, 4, [1], [2]], "message.snapshot"),
        ((10,), b"snapshot", "message.snapshot"),
        ((10, 0), -1, "message.snapshot.index"),
        ((10, 1), 2.0, "message.snapshot.term"),
        ((10, 2), [1, 0], "message.snapshot.voters[1]"),
        ((10, 2), [1, 1], "message.snapshot.voters"),
        ((10, 2), 1, "message.snapshot.voters"),
        ((10, 3), [2], "message.snapshot.learners"),
        ((10, 3), [-4], "message.snapshot.learners[0]"),
        ((10, 4), "snap", "message.snapshot.data"),
        ((11,), "ctx", "message.context"),
        ((11,), {"a": 1}, "message.context"),
    ],
)
def test_bad_field_is_named(path: tuple[int, ...], value: Any, field: str) -> None:
    data = msgpack.packb(_set(_wire(), path, value), use_bin_type=True)
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not valid msgpack"),
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb(_wire())[:-3], "not valid msgpack"),
        (
            msgpack.packb(_wire()) + b"\x00",
            "not valid msgpack (MessagePack data is malformed: trail",
        ),
        (msgpack.packb(_wire()[:-1]), "Expected `array` of at least length 12, got 11"),
        (msgpack.packb([*_wire(), 0]), "Expected `array` of at most length 12, got 13"),
        (msgpack.packb({"type": 5}), "Expected `array`, got `object`"),
        (msgpack.packb({1: 2}), "Expected `array`, got `object`"),
        (msgpack.packb(None), "Expected `array`, got `None`"),
        (b"\x91" * 100_000 + b"\xc0", "Expected `array` of at least length 12, got 1"),
        (b"\xc6\xff\xff\xff\xff" + b"x" * 10, "not valid msgpack"),  # bin length lies
        (b"\xdd\xff\xff\xff\xff", "not valid msgpack"),  # array length lies
        (msgpack.packb(msgpack.ExtType(1, b"ext")), "Expected `array`, got `ext`"),
        (msgpack.packb("s" * 1000), "Expected `array`, got `str`"),
    ],
)
def test_malformed_payload_is_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.field == "message"
    assert problem in str(info.value)


def test_size_limit() -> None:
    msg = Message(MsgType.SNAP, 2, 1, 1, snapshot=Snapshot(data=b"x" * 5000))
    data = encode_message(msg)
    assert decode_message(data, max_size=len(data)) == msg
    with pytest.raises(CodecError, match="exceeds the limit of 4096"):
        decode_message(data, max_size=4096)


def test_not_bytes_is_rejected() -> None:
    with pytest.raises(CodecError, match="expected bytes"):
        decode_message("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("decode", "wire", "field"),
    [
        (decode_entry, [1, -2, 0, b""], "entry.index"),
        (decode_entry, [1, 2, 3, b""], "entry.type"),
        (decode_entry, [1, 2, 0], "entry"),
        (decode_hard_state, [1, -1, 0], "hard_state.vote"),
        (decode_hard_state, [1, 0, "7"], "hard_state.commit"),
        (decode_hard_state, [1, 0], "hard_state"),
        (decode_snapshot, [1, 1, [1], [], "data"], "snapshot.data"),
        (decode_snapshot, [1, 1, [1], [1], b""], "snapshot.learners"),
    ],
)
def test_standalone_decoders_name_the_field(decode: Any, wire: list[Any], field: str) -> None:
    with pytest.raises(CodecError) as info:
        decode(msgpack.packb(wire, use_bin_type=True))
    assert info.value.field == field


def test_unencodable_message_raises_codec_error() -> None:
    bad = Message(MsgType.APP, 2, 1, 1, context="not bytes but encodable")  # type: ignore[arg-type]
    decode_error = pytest.raises(CodecError, match=r"message\.context")
    with decode_error:
        decode_message(encode_message(bad))
    with pytest.raises(CodecError, match="cannot encode"):
        encode_message(Message(MsgType.APP, 2, 1, term=2**64))


# --- fuzz ------------------------------------------------------------------------------------


def _decode_or_error(data: bytes) -> None:
    """Decoding either yields a Message or raises CodecError: never another exception."""
    try:
        msg = decode_message(data)
    except CodecError as exc:
        assert exc.field.startswith("message")
    else:
        assert isinstance(msg, Message)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_codec_error(data: bytes) -> None:
    _decode_or_error(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64)
    | st.floats(allow_nan=False)
    | st.binary(max_size=16)
    | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=13) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
)


@settings(max_examples=300)
@given(msgpack_values)
def test_arbitrary_msgpack_values_never_escape_codec_error(value: Any) -> None:
    _decode_or_error(msgpack.packb(value, use_bin_type=True))


def _paths(obj: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = []
    for i, item in enumerate(obj):
        out.append((*prefix, i))
        if isinstance(item, list):
            out.extend(_paths(item, (*prefix, i)))
    return out


@settings(max_examples=300)
@given(messages, st.data())
def test_mutated_valid_message_never_escapes_codec_error(msg: Message, data: st.DataObject) -> None:
    wire = msgpack.unpackb(encode_message(msg))
    path = data.draw(st.sampled_from(_paths(wire)))
    value = data.draw(msgpack_values)
    _decode_or_error(msgpack.packb(_set(wire, path, value), use_bin_type=True))


def test_problem_is_said_in_words() -> None:
    data = msgpack.packb(_set(_wire(), (6, 1, 0), -5), use_bin_type=True)
    with pytest.raises(CodecError, match=r"^message\.entries\[1\]\.term: Expected `int` >= 0$"):
        decode_message(data)
    data = msgpack.packb(_set(_wire(), (10, 2), [1, 1]), use_bin_type=True)
    with pytest.raises(CodecError, match=r"^message\.snapshot\.voters: lists a node id more"):
        decode_message(data)
