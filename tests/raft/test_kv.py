"""Tests for the replicated KV state machine (hamgr.raft.kv.store): etcd v3 semantics, determinism,
snapshots, watches and robustness against malformed log entries."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamgr.raft.kv.kvcommands import (
    FORMAT_VERSION,
    MAX_TXN_OPS,
    Compare,
    CompareOp,
    DeleteRange,
    InvalidCommandError,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    Target,
    Txn,
    compare_create,
    compare_lease,
    compare_mod,
    compare_value,
    compare_version,
    decode,
    encode,
    encode_delete,
    encode_lease_grant,
    encode_lease_revoke,
    encode_put,
    encode_range,
    encode_txn,
)
from hamgr.raft.kv.kvresults import (
    INITIAL_REVISION,
    DeleteResult,
    ErrorCode,
    ErrorResult,
    KeyValue,
    LeaseGrantResult,
    LeaseRevokeResult,
    NoopResult,
    PutResult,
    RangeResult,
    Result,
    TxnResult,
)
from hamgr.raft.kv.kvsnapshot import SnapshotError
from hamgr.raft.kv.kvwatch import CompactedError, Event, EventType, WatchCancelledError, Watcher
from hamgr.raft.kv.store import KVStore


def run(store: KVStore, data: bytes) -> Result:
    """Apply `data` as the next log entry."""
    return store.apply(store.applied_index + 1, data)


def state(store: KVStore) -> tuple[object, ...]:
    """Everything replicated except the applied index."""
    return (store.revision, store.range(b"", prefix=True).kvs, store.leases(), _lease_keys(store))


def _lease_keys(store: KVStore) -> dict[int, tuple[bytes, ...]]:
    out = {}
    for lease_id in store.leases():
        info = store.lease(lease_id)
        assert info is not None
        out[lease_id] = info.keys
    return out


def collect(watcher: Watcher) -> list[tuple[EventType, bytes, bytes, int]]:
    return [(e.type, e.kv.key, e.kv.value, e.revision) for e in watcher.pending()]


# --------------------------------------------------------------------------------------------
# Revisions, versions, put and delete


def test_empty_store_starts_at_revision_one() -> None:
    store = KVStore()
    assert store.revision == INITIAL_REVISION == 1
    assert store.applied_index == 0
    assert store.range(b"", prefix=True) == RangeResult(1, (), 0, False)
    assert store.get(b"k") is None


def test_put_revision_version_create_mod_bookkeeping() -> None:
    store = KVStore()
    r = run(store, encode_put(b"k", b"v1"))
    assert r == PutResult(2, None)
    assert store.get(b"k") == KeyValue(b"k", b"v1", 2, 2, 1, 0)

    r = run(store, encode_put(b"k", b"v2"))
    assert r == PutResult(3, KeyValue(b"k", b"v1", 2, 2, 1, 0))
    assert store.get(b"k") == KeyValue(b"k", b"v2", 2, 3, 2, 0)

    # The same value again is still a change in etcd: new mod revision, new version.
    r = run(store, encode_put(b"k", b"v2"))
    assert r.revision == 4
    assert store.get(b"k") == KeyValue(b"k", b"v2", 2, 4, 3, 0)

    # A put on another key moves the global revision, not this key's.
    run(store, encode_put(b"other", b"x"))
    assert store.revision == 5
    assert store.get(b"k") == KeyValue(b"k", b"v2", 2, 4, 3, 0)

    r = run(store, encode_delete(b"k"))
    assert r == DeleteResult(6, 1, (KeyValue(b"k", b"v2", 2, 4, 3, 0),))
    assert store.get(b"k") is None

    # Re-created: new create revision, version restarts at 1.
    run(store, encode_put(b"k", b"v3"))
    assert store.get(b"k") == KeyValue(b"k", b"v3", 7, 7, 1, 0)
    assert store.revision == 7
    assert store.applied_index == 6


def test_delete_of_missing_key_takes_no_revision() -> None:
    store = KVStore()
    run(store, encode_put(b"a", b"1"))
    assert run(store, encode_delete(b"b")) == DeleteResult(2, 0, ())
    assert run(store, encode_delete(b"zz", prefix=True)) == DeleteResult(2, 0, ())
    assert store.revision == 2


def test_delete_prefix_removes_keys_in_one_revision() -> None:
    store = KVStore()
    for key in (b"/svc/a", b"/svc/b", b"/svc", b"/svd", b"/other"):
        run(store, encode_put(key, b"x"))
    assert store.revision == 6
    r = run(store, encode_delete(b"/svc/", prefix=True))
    assert isinstance(r, DeleteResult)
    assert r.revision == 7
    assert r.deleted == 2
    assert [kv.key for kv in r.prev_kvs] == [b"/svc/a", b"/svc/b"]
    assert [kv.key for kv in store.range(b"", prefix=True).kvs] == [b"/other", b"/svc", b"/svd"]

    r = run(store, encode_delete(b"", prefix=True))
    assert isinstance(r, DeleteResult)
    assert (r.revision, r.deleted) == (8, 3)
    assert store.range(b"", prefix=True).count == 0


# --------------------------------------------------------------------------------------------
# Range


@pytest.fixture
def filled() -> KVStore:
    store = KVStore()
    for key in (b"b/2", b"a", b"b/1", b"b/3", b"c", b"b"):
        run(store, encode_put(key, b"v-" + key))
    return store


@pytest.mark.parametrize(
    ("kwargs", "keys", "count", "more"),
    [
        ({"key": b"a"}, [b"a"], 1, False),
        ({"key": b"zz"}, [], 0, False),
        ({"key": b"b/", "prefix": True}, [b"b/1", b"b/2", b"b/3"], 3, False),
        ({"key": b"b", "prefix": True}, [b"b", b"b/1", b"b/2", b"b/3"], 4, False),
        ({"key": b"b/", "prefix": True, "limit": 2}, [b"b/1", b"b/2"], 3, True),
        ({"key": b"b/", "prefix": True, "limit": 3}, [b"b/1", b"b/2", b"b/3"], 3, False),
        ({"key": b"", "prefix": True}, [b"a", b"b", b"b/1", b"b/2", b"b/3", b"c"], 6, False),
        ({"key": b"", "prefix": True, "count_only": True}, [], 6, False),
        ({"key": b"q", "prefix": True}, [], 0, False),
    ],
)
def test_range(
    filled: KVStore, kwargs: dict[str, object], keys: list[bytes], count: int, more: bool
) -> None:
    r = filled.range(**kwargs)  # type: ignore[arg-type]
    assert [kv.key for kv in r.kvs] == keys
    assert all(kv.value == b"v-" + kv.key for kv in r.kvs)
    assert (r.count, r.more, r.revision) == (count, more, filled.revision)


def test_range_keys_only_blanks_values_but_keeps_metadata(filled: KVStore) -> None:
    r = filled.range(b"b/", prefix=True, keys_only=True)
    assert [kv.value for kv in r.kvs] == [b"", b"", b""]
    assert r.kvs[0].create_revision == filled.get(b"b/1").create_revision  # type: ignore[union-attr]


def test_range_through_the_log_changes_nothing(filled: KVStore) -> None:
    before = filled.snapshot()
    r = run(filled, encode_range(b"b/", prefix=True, limit=1))
    assert isinstance(r, RangeResult)
    assert ([kv.key for kv in r.kvs], r.count, r.more) == ([b"b/1"], 3, True)
    after = filled.snapshot()
    assert msgpack.unpackb(after)[2:] == msgpack.unpackb(before)[2:]


# --------------------------------------------------------------------------------------------
# Compares

EQ, NE, LT, GT = CompareOp.EQUAL, CompareOp.NOT_EQUAL, CompareOp.LESS, CompareOp.GREATER


@pytest.fixture
def cmp_store() -> KVStore:
    """Key b"k": value b"m", create 2, mod 4, version 3, lease 7."""
    store = KVStore()
    run(store, encode_lease_grant(7, 10))
    run(store, encode_put(b"k", b"a"))  # rev 2
    run(store, encode_put(b"other", b"x"))  # rev 3
    run(store, encode_put(b"k", b"b"))  # rev 4
    run(store, encode_put(b"k", b"m", lease=7))  # rev 5
    kv = store.get(b"k")
    assert kv == KeyValue(b"k", b"m", 2, 5, 3, 7)
    return store


_FIELD = {Target.VERSION: 3, Target.CREATE: 2, Target.MOD: 5, Target.LEASE: 7}
_OPS_EXPECT = {
    # op -> (result when ours < given, ours == given, ours > given)
    EQ: (False, True, False),
    NE: (True, False, True),
    LT: (True, False, False),
    GT: (False, False, True),
}


def _txn_succeeds(store: KVStore, compare: Compare) -> bool:
    r = run(store, encode_txn([compare], [], []))
    assert isinstance(r, TxnResult)
    return r.succeeded


@pytest.mark.parametrize("target", [Target.VERSION, Target.CREATE, Target.MOD, Target.LEASE])
@pytest.mark.parametrize("op", [EQ, NE, LT, GT])
def test_compare_int_targets(cmp_store: KVStore, target: Target, op: CompareOp) -> None:
    ours = _FIELD[target]
    # Given value above ours (ours < given), equal, below (ours > given).
    for given_value, expect in zip((ours + 1, ours, ours - 1), _OPS_EXPECT[op], strict=True):
        compare = Compare(b"k", target, op, given_value)
        assert _txn_succeeds(cmp_store, compare) is expect, (target, op, given_value)


@pytest.mark.parametrize("op", [EQ, NE, LT, GT])
def test_compare_value_is_bytewise(cmp_store: KVStore, op: CompareOp) -> None:
    for given_value, expect in zip((b"n", b"m", b"l"), _OPS_EXPECT[op], strict=True):
        assert _txn_succeeds(cmp_store, compare_value(b"k", op, given_value)) is expect
    # Bytewise, not numeric or length-first: b"m" > b"ll", b"m" < b"m\x00".
    assert _txn_succeeds(cmp_store, compare_value(b"k", ">", b"ll"))
    assert _txn_succeeds(cmp_store, compare_value(b"k", "<", b"m\x00"))


@pytest.mark.parametrize(
    ("compare", "expect"),
    [
        # A missing key compares as zeros...
        (compare_create(b"nope", "=", 0), True),
        (compare_version(b"nope", "=", 0), True),
        (compare_mod(b"nope", "<", 1), True),
        (compare_lease(b"nope", "=", 0), True),
        (compare_version(b"nope", ">", 0), False),
        (compare_create(b"nope", "!=", 0), False),
        # ...except that a VALUE compare on a missing key is always false.
        (compare_value(b"nope", "=", b""), False),
        (compare_value(b"nope", "!=", b"x"), False),
        (compare_value(b"nope", "<", b"x"), False),
        (compare_value(b"nope", ">", b""), False),
    ],
)
def test_compare_on_missing_key_follows_etcd(
    cmp_store: KVStore, compare: Compare, expect: bool
) -> None:
    assert _txn_succeeds(cmp_store, compare) is expect


def test_compare_with_prefix_needs_every_key() -> None:
    store = KVStore()
    run(store, encode_put(b"p/a", b"1"))
    run(store, encode_put(b"p/b", b"2"))
    assert _txn_succeeds(store, compare_version(b"p/", "=", 1, prefix=True))
    run(store, encode_put(b"p/b", b"3"))
    assert not _txn_succeeds(store, compare_version(b"p/", "=", 1, prefix=True))
    assert _txn_succeeds(store, compare_version(b"p/", ">", 0, prefix=True))
    assert _txn_succeeds(store, compare_create(b"q/", "=", 0, prefix=True))
    assert not _txn_succeeds(store, compare_value(b"q/", "!=", b"", prefix=True))


def test_compare_op_symbols() -> None:
    assert CompareOp.parse("=") is CompareOp.parse("==") is EQ
    assert CompareOp.parse("!=") is NE
    assert CompareOp.parse("<") is LT
    assert CompareOp.parse(">") is GT
    with pytest.raises(InvalidCommandError, match="unknown compare operator '>='"):
        CompareOp.parse(">=")


# --------------------------------------------------------------------------------------------
# Txn


def test_txn_is_one_revision_and_reads_see_its_writes() -> None:
    store = KVStore()
    run(store, encode_put(b"x", b"0"))  # rev 2
    r = run(
        store,
        encode_txn(
            [compare_value(b"x", "=", b"0")],
            [
                Range(b"a"),
                Put(b"a", b"1"),
                Put(b"b", b"2"),
                Range(b"", prefix=True),
                DeleteRange(b"x"),
                Range(b"x"),
            ],
            [Put(b"failed", b"!")],
        ),
    )
    assert isinstance(r, TxnResult)
    assert r.succeeded
    assert r.revision == store.revision == 3
    first_read, put_a, put_b, read_all, delete_x, read_x = r.responses
    assert first_read == RangeResult(2, (), 0, False)  # before any write: the old revision
    assert put_a == PutResult(3, None)
    assert put_b == PutResult(3, None)
    assert isinstance(read_all, RangeResult)
    assert [kv.key for kv in read_all.kvs] == [b"a", b"b", b"x"]
    assert read_all.revision == 3
    assert delete_x == DeleteResult(3, 1, (KeyValue(b"x", b"0", 2, 2, 1, 0),))
    assert read_x == RangeResult(3, (), 0, False)
    assert store.get(b"a") == KeyValue(b"a", b"1", 3, 3, 1, 0)
    assert store.get(b"b") == KeyValue(b"b", b"2", 3, 3, 1, 0)
    assert store.get(b"failed") is None


def test_txn_failure_branch() -> None:
    store = KVStore()
    r = run(
        store,
        encode_txn([compare_version(b"x", ">", 0)], [Put(b"yes", b"1")], [Put(b"no", b"1")]),
    )
    assert isinstance(r, TxnResult)
    assert not r.succeeded
    assert r.responses == (PutResult(2, None),)
    assert store.get(b"no") is not None
    assert store.get(b"yes") is None


def test_txn_without_changes_takes_no_revision() -> None:
    store = KVStore()
    run(store, encode_put(b"x", b"0"))
    # Only reads.
    r = run(store, encode_txn([], [Range(b"x")], []))
    assert isinstance(r, TxnResult)
    assert r.revision == 2
    # Compares fail and the failure branch is empty.
    r = run(store, encode_txn([compare_value(b"x", "=", b"1")], [Put(b"x", b"1")], []))
    assert isinstance(r, TxnResult)
    assert (r.succeeded, r.revision, r.responses) == (False, 2, ())
    # A delete that matches nothing.
    r = run(store, encode_txn([], [DeleteRange(b"nothing"), Range(b"x")], []))
    assert isinstance(r, TxnResult)
    assert r.revision == 2
    assert r.responses[0] == DeleteResult(2, 0, ())
    assert store.revision == 2


def test_txn_put_on_unknown_lease_fails_whole_txn() -> None:
    store = KVStore()
    run(store, encode_put(b"x", b"0"))
    before = state(store)
    r = run(store, encode_txn([], [Put(b"a", b"1"), DeleteRange(b"x"), Put(b"b", b"1", 99)], []))
    assert isinstance(r, ErrorResult)
    assert r.code is ErrorCode.LEASE_NOT_FOUND
    assert "99" in r.message
    assert state(store) == before
    # The lease only matters on the branch that runs.
    r = run(
        store, encode_txn([compare_value(b"x", "=", b"0")], [Put(b"a", b"1")], [Put(b"b", b"", 99)])
    )
    assert isinstance(r, TxnResult)
    assert r.succeeded


@pytest.mark.parametrize(
    ("ops", "match"),
    [
        ([Put(b"a", b"1"), Put(b"a", b"2")], "puts key b'a' more than once"),
        ([DeleteRange(b"a"), Put(b"a", b"2")], "both puts and deletes key b'a'"),
        ([Put(b"p/x", b"2"), DeleteRange(b"p/", prefix=True)], "both puts and deletes"),
        ([Put(b"k", b"v")] * 2, "more than once"),
        ([Range(b"a")] * (MAX_TXN_OPS + 1), f"more than {MAX_TXN_OPS}"),
    ],
)
def test_txn_conflicting_ops_are_rejected(ops: list[Put | DeleteRange | Range], match: str) -> None:
    with pytest.raises(InvalidCommandError, match=match):
        Txn((), tuple(ops), ())
    with pytest.raises(InvalidCommandError, match=match):
        encode_txn([], [], ops)
    # A put and a delete of different keys, and deletes that overlap, are fine.
    Txn((), (Put(b"a", b"1"), DeleteRange(b"b"), DeleteRange(b"b"), DeleteRange(b"c", True)))


def test_txn_with_conflicting_ops_in_the_log_is_malformed() -> None:
    """An entry that bypassed encode-side validation still fails the same way on every member."""
    store = KVStore()
    run(store, encode_put(b"a", b"0"))
    before = state(store)
    raw = msgpack.packb(
        [FORMAT_VERSION, 4, [], [[1, b"a", b"1", 0], [1, b"a", b"2", 0]], []], use_bin_type=True
    )
    r = run(store, raw)
    assert isinstance(r, ErrorResult)
    assert r.code is ErrorCode.MALFORMED
    assert "more than once" in r.message
    assert state(store) == before


def test_leader_key_pattern_gives_growing_fencing_tokens() -> None:
    """The HA leader key: take it with create_revision == 0, attached to the agent's lease."""
    store = KVStore()

    def take(lease_id: int, who: bytes) -> TxnResult:
        r = run(
            store,
            encode_txn(
                [compare_create(b"/leader", "=", 0)],
                [Put(b"/leader", who, lease_id)],
                [Range(b"/leader")],
            ),
        )
        assert isinstance(r, TxnResult)
        return r

    run(store, encode_lease_grant(1, 6))
    run(store, encode_lease_grant(2, 6))
    assert take(1, b"node1").succeeded
    token1 = store.get(b"/leader").create_revision  # type: ignore[union-attr]
    lost = take(2, b"node2")
    assert not lost.succeeded
    held = lost.responses[0]
    assert isinstance(held, RangeResult)
    assert held.kvs[0].value == b"node1"
    assert held.kvs[0].lease == 1
    run(store, encode_lease_revoke(1))
    assert store.get(b"/leader") is None
    assert take(2, b"node2").succeeded
    token2 = store.get(b"/leader").create_revision  # type: ignore[union-attr]
    assert token2 > token1


# --------------------------------------------------------------------------------------------
# Leases


def test_lease_grant_and_duplicate() -> None:
    store = KVStore()
    r = run(store, encode_lease_grant(5, 6))
    assert r == LeaseGrantResult(1, 5, 6.0)
    assert store.revision == 1  # leases are not keys: no revision
    r = run(store, encode_lease_grant(5, 60))
    assert isinstance(r, ErrorResult)
    assert r.code is ErrorCode.LEASE_EXISTS
    assert store.leases() == {5: 6.0}
    assert run(store, encode_lease_grant(2**63 - 1, 1.5)) == LeaseGrantResult(1, 2**63 - 1, 1.5)


def test_put_on_unknown_lease_fails_and_changes_nothing() -> None:
    store = KVStore()
    run(store, encode_put(b"k", b"v"))
    before = state(store)
    r = run(store, encode_put(b"k", b"w", lease=3))
    assert isinstance(r, ErrorResult)
    assert not r.ok
    assert r.code is ErrorCode.LEASE_NOT_FOUND
    assert r.revision == 2
    assert state(store) == before
    assert store.applied_index == 2


def test_revoke_deletes_every_attached_key_in_one_revision() -> None:
    store = KVStore()
    run(store, encode_lease_grant(1, 10))
    run(store, encode_lease_grant(2, 10))
    for key in (b"z", b"a", b"m"):
        run(store, encode_put(key, b"v", lease=1))
    run(store, encode_put(b"keep", b"v", lease=2))
    run(store, encode_put(b"free", b"v"))
    watcher = store.watch(b"", prefix=True)
    info = store.lease(1)
    assert info is not None
    assert info.keys == (b"a", b"m", b"z")
    assert store.revision == 6

    r = run(store, encode_lease_revoke(1))
    assert r == LeaseRevokeResult(7, 1, 3)
    assert [kv.key for kv in store.range(b"", prefix=True).kvs] == [b"free", b"keep"]
    assert store.leases() == {2: 10.0}
    assert store.lease(1) is None
    assert collect(watcher) == [
        (EventType.DELETE, b"a", b"", 7),
        (EventType.DELETE, b"m", b"", 7),
        (EventType.DELETE, b"z", b"", 7),
    ]


def test_revoke_without_keys_and_unknown_lease() -> None:
    store = KVStore()
    run(store, encode_lease_grant(1, 10))
    assert run(store, encode_lease_revoke(1)) == LeaseRevokeResult(1, 1, 0)
    r = run(store, encode_lease_revoke(1))
    assert isinstance(r, ErrorResult)
    assert r.code is ErrorCode.LEASE_NOT_FOUND


def test_put_without_lease_detaches_and_delete_forgets() -> None:
    store = KVStore()
    run(store, encode_lease_grant(1, 10))
    run(store, encode_lease_grant(2, 10))
    run(store, encode_put(b"a", b"v", lease=1))
    run(store, encode_put(b"b", b"v", lease=1))
    run(store, encode_put(b"a", b"v2"))  # detached from lease 1
    run(store, encode_put(b"b", b"v2", lease=2))  # moved to lease 2
    assert store.lease(1).keys == ()  # type: ignore[union-attr]
    assert store.lease(2).keys == (b"b",)  # type: ignore[union-attr]
    run(store, encode_delete(b"b"))
    assert store.lease(2).keys == ()  # type: ignore[union-attr]
    run(store, encode_put(b"b", b"v3"))
    assert run(store, encode_lease_revoke(2)) == LeaseRevokeResult(store.revision, 2, 0)
    assert store.get(b"b") is not None
    assert run(store, encode_lease_revoke(1)) == LeaseRevokeResult(store.revision, 1, 0)
    assert store.get(b"a") is not None


# --------------------------------------------------------------------------------------------
# Command validation and encoding


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Put("k", b"v"), "put key must be bytes, got str"),  # type: ignore[arg-type]
        (lambda: Put(b"", b"v"), "put key must not be empty"),
        (lambda: Put(b"k", "v"), "put value must be bytes"),  # type: ignore[arg-type]
        (lambda: Put(b"k", b"v", -1), "put lease must be in"),
        (lambda: Put(b"k", b"v", True), "put lease must be an int, got bool"),
        (lambda: DeleteRange(b""), "delete key must not be empty"),
        (lambda: Range(b"k", limit=-1), "range limit must be in"),
        (lambda: Range(b"k", prefix=1), "range prefix must be a bool"),  # type: ignore[arg-type]
        (lambda: Compare(b"k", Target.VALUE, EQ, 1), "compare value must be bytes"),
        (lambda: Compare(b"k", Target.MOD, EQ, b"1"), "compare mod must be an int"),
        (lambda: Compare(b"k", 0, EQ, b"1"), "compare target must be a Target"),  # type: ignore[arg-type]
        (lambda: Compare(b"k", Target.MOD, 0, 1), "compare op must be a CompareOp"),  # type: ignore[arg-type]
        (lambda: Txn((Put(b"k", b"v"),)), "txn compare must be a Compare"),  # type: ignore[arg-type]
        (lambda: Txn((), (compare_mod(b"k", "=", 1),)), "op must be Put, DeleteRange or Range"),  # type: ignore[arg-type]
        (lambda: LeaseGrant(0, 5), "lease id must be in"),
        (lambda: LeaseGrant(2**63, 5), "lease id must be in"),
        (lambda: LeaseGrant(1, 0), "lease ttl must be in"),
        (lambda: LeaseGrant(1, -3), "lease ttl must be in"),
        (lambda: LeaseGrant(1, math.nan), "lease ttl must be in"),
        (lambda: LeaseGrant(1, math.inf), "lease ttl must be in"),
        (lambda: LeaseGrant(1, True), "lease ttl must be a number"),
        (lambda: LeaseRevoke(-1), "lease id must be in"),
    ],
)
def test_bad_commands_are_refused_with_a_clear_error(build: object, match: str) -> None:
    with pytest.raises(InvalidCommandError, match=match):
        build()  # type: ignore[operator]


COMMANDS = [
    Put(b"k", b"v"),
    Put(b"k", b"", 5),
    DeleteRange(b"k"),
    DeleteRange(b"", prefix=True),
    Range(b"p", prefix=True, limit=3, keys_only=True, count_only=False),
    Txn(
        (compare_value(b"a", "!=", b"x"), compare_lease(b"p/", ">", -1, prefix=True)),
        (Put(b"a", b"1", 2), Range(b"b")),
        (DeleteRange(b"a"),),
    ),
    LeaseGrant(9, 6),
    LeaseGrant(2**63 - 1, 0.25),
    LeaseRevoke(9),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_encode_decode_round_trip(command: object) -> None:
    data = encode(command)  # type: ignore[arg-type]
    assert isinstance(data, bytes)
    assert decode(data) == command
    assert encode(decode(data)) == data


def test_encode_helpers_match_objects() -> None:
    assert encode_put(b"k", b"v", 3) == encode(Put(b"k", b"v", 3))
    assert encode_delete(b"p", prefix=True) == encode(DeleteRange(b"p", True))
    assert encode_range(b"p", True, 2) == encode(Range(b"p", True, 2))
    assert encode_lease_grant(1, 2) == encode(LeaseGrant(1, 2.0))
    assert encode_lease_revoke(1) == encode(LeaseRevoke(1))
    assert encode_txn([], [Put(b"a", b"")]) == encode(Txn((), (Put(b"a", b""),), ()))
    with pytest.raises(InvalidCommandError, match="not a KV command"):
        encode("put")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"\xc1", "not a msgpack KV command"),
        (msgpack.packb({"op": "put"}), "must be a list"),
        (msgpack.packb([2, 1, b"k", b"v", 0]), "unsupported KV command format 2"),
        (msgpack.packb([True, 1, b"k", b"v", 0]), "unsupported KV command format True"),
        (msgpack.packb([1, 1, "k", b"v", 0]), "put key must be bytes, got str"),
        (msgpack.packb([1, 1, b"k", b"v"]), "put must be a list of 3 fields"),
        (msgpack.packb([1, 99, b"k"]), "unknown op code 99"),
        (msgpack.packb([1, 4, [], [[5, 1, 1.0]], []]), "not allowed inside a txn"),
        (msgpack.packb([1, 4, [[b"k", False, 9, 0, 1]], [], []]), "unknown compare target 9"),
        (msgpack.packb([1, 4, [[b"k", False, 1, 7, 1]], [], []]), "unknown compare op 7"),
        (msgpack.packb([1, 5, 1, "6"]), "lease ttl must be a number"),
        (msgpack.packb([1, 1, b"k", b"v", 0]) + b"\x00", "ExtraData"),
    ],
)
def test_malformed_entries_give_error_results(wire: bytes, match: str) -> None:
    store = KVStore()
    run(store, encode_lease_grant(1, 5))
    run(store, encode_put(b"k", b"v", 1))
    before = state(store)
    with pytest.raises(InvalidCommandError, match=match):
        decode(wire)
    r = run(store, wire)
    assert isinstance(r, ErrorResult)
    assert r.code is ErrorCode.MALFORMED
    assert match in r.message
    assert state(store) == before
    assert store.applied_index == 3


# --------------------------------------------------------------------------------------------
# Applied index


def test_applied_index_rules() -> None:
    store = KVStore()
    assert store.apply(1, b"") == NoopResult(1)
    assert store.apply(2, encode_put(b"k", b"v")) == PutResult(2, None)
    store.mark_applied(3)
    assert store.applied_index == 3
    # A replay is skipped and changes nothing.
    r = store.apply(2, encode_put(b"k", b"again"))
    assert isinstance(r, ErrorResult)
    assert r.code is ErrorCode.ALREADY_APPLIED
    assert store.get(b"k").value == b"v"  # type: ignore[union-attr]
    store.mark_applied(3)  # replaying a non-KV entry is fine too
    # A gap means lost entries: refuse loudly.
    with pytest.raises(ValueError, match=r"entries 4\.\.5 are missing"):
        store.apply(6, encode_put(b"k", b"gap"))
    with pytest.raises(ValueError, match=r"entries 4\.\.4 are missing"):
        store.mark_applied(5)
    with pytest.raises(ValueError, match="positive int"):
        store.apply(0, b"")
    assert store.applied_index == 3
    assert store.get(b"k").value == b"v"  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# Watches


def test_watch_delivers_events_in_revision_order_with_prev_kv() -> None:
    store = KVStore()
    calls: list[int] = []
    watcher = store.watch(b"/a/", prefix=True, notify=lambda w: calls.append(w.id))
    exact = store.watch(b"/a/x")
    run(store, encode_put(b"/a/x", b"1"))  # 2
    run(store, encode_put(b"/b/x", b"1"))  # 3, not watched
    run(store, encode_txn([], [Put(b"/a/y", b"2"), Put(b"/a/x", b"3"), Put(b"/b/y", b"")], []))
    run(store, encode_delete(b"/a/", prefix=True))  # 5
    events = watcher.pending()
    assert [(e.type, e.kv.key, e.revision) for e in events] == [
        (EventType.PUT, b"/a/x", 2),
        (EventType.PUT, b"/a/y", 4),
        (EventType.PUT, b"/a/x", 4),
        (EventType.DELETE, b"/a/x", 5),
        (EventType.DELETE, b"/a/y", 5),
    ]
    assert events[0].prev_kv is None
    assert events[2].prev_kv == KeyValue(b"/a/x", b"1", 2, 2, 1, 0)
    assert events[2].kv == KeyValue(b"/a/x", b"3", 2, 4, 2, 0)
    assert events[3].kv == KeyValue(b"/a/x", b"", 0, 5, 0, 0)  # tombstone
    assert events[3].prev_kv == KeyValue(b"/a/x", b"3", 2, 4, 2, 0)
    assert calls == [watcher.id] * 3  # once per applied entry that concerned it
    assert watcher.pending() == []
    assert [(e.kv.key, e.revision) for e in exact.pending()] == [
        (b"/a/x", 2),
        (b"/a/x", 4),
        (b"/a/x", 5),
    ]


def test_watch_resumes_from_an_older_revision() -> None:
    store = KVStore()
    for i in range(5):
        run(store, encode_put(b"k", b"%d" % i))  # revisions 2..6
    run(store, encode_put(b"other", b""))  # 7
    watcher = store.watch(b"k", from_revision=4)
    run(store, encode_put(b"k", b"late"))  # 8
    assert [(v, r) for _, _, v, r in collect(watcher)] == [
        (b"2", 4),
        (b"3", 5),
        (b"4", 6),
        (b"late", 8),
    ]
    run(store, encode_put(b"k", b"next"))
    assert collect(watcher) == [(EventType.PUT, b"k", b"next", 9)]
    # From revision 1: every change so far is still in the history.
    assert [r for *_, r in collect(store.watch(b"", prefix=True, from_revision=1))] == list(
        range(2, 10)
    )


def test_watch_from_a_future_revision_waits_for_it() -> None:
    store = KVStore()
    watcher = store.watch(b"k", from_revision=4)
    run(store, encode_put(b"k", b"a"))  # 2
    run(store, encode_put(b"k", b"b"))  # 3
    assert watcher.pending() == []
    run(store, encode_put(b"k", b"c"))  # 4
    assert collect(watcher) == [(EventType.PUT, b"k", b"c", 4)]


def test_watch_older_than_history_is_compacted() -> None:
    store = KVStore(history_size=3)
    for i in range(6):
        run(store, encode_put(b"k%d" % i, b""))  # revisions 2..7
    assert store.first_watchable_revision == 5
    with pytest.raises(CompactedError) as info:
        store.watch(b"", prefix=True, from_revision=4)
    assert info.value.requested == 4
    assert info.value.first_available == 5
    assert info.value.compact_revision == 4
    assert "revision 4 has been compacted" in str(info.value)
    w = store.watch(b"", prefix=True, from_revision=5)
    assert [r for *_, r in collect(w)] == [5, 6, 7]


def test_resumed_watch_compacted_before_reading_fails_then_is_cancelled() -> None:
    store = KVStore(history_size=2)
    for i in range(3):
        run(store, encode_put(b"k", b"%d" % i))  # 2..4
    watcher = store.watch(b"k", from_revision=3)
    run(store, encode_put(b"k", b"x"))  # 5: history now holds 4, 5
    run(store, encode_put(b"k", b"y"))  # 6: history now holds 5, 6
    with pytest.raises(CompactedError):
        watcher.pending()
    assert watcher.cancelled
    with pytest.raises(CompactedError):
        watcher.pending()


def test_history_keeps_whole_revisions_and_the_newest() -> None:
    store = KVStore(history_size=2)
    run(store, encode_txn([], [Put(b"a", b""), Put(b"b", b""), Put(b"c", b"")], []))  # 2
    # The newest revision alone exceeds the bound: it is kept whole.
    assert store.first_watchable_revision == 1
    assert len(store.watch(b"", prefix=True, from_revision=2).pending()) == 3
    run(store, encode_put(b"d", b""))  # 3: revision 2 goes, as a whole
    assert store.first_watchable_revision == 3
    assert collect(store.watch(b"", prefix=True, from_revision=3)) == [
        (EventType.PUT, b"d", b"", 3)
    ]


def test_slow_watcher_catches_up_from_history_without_loss() -> None:
    store = KVStore(history_size=100, watch_queue_size=3)
    watcher = store.watch(b"k/", prefix=True)
    for i in range(10):
        run(store, encode_put(b"k/%d" % (i % 4), b"%d" % i))
        run(store, encode_put(b"unwatched", b"%d" % i))
    events = collect(watcher)
    assert [v for _, _, v, _ in events] == [b"%d" % i for i in range(10)]
    assert [r for *_, r in events] == list(range(2, 22, 2))
    run(store, encode_put(b"k/0", b"after"))
    assert collect(watcher) == [(EventType.PUT, b"k/0", b"after", 22)]


def test_slow_watcher_beyond_history_gets_compacted() -> None:
    store = KVStore(history_size=4, watch_queue_size=2)
    watcher = store.watch(b"k")
    for i in range(8):
        run(store, encode_put(b"k", b"%d" % i))
    with pytest.raises(CompactedError):
        watcher.pending()
    assert watcher.cancelled


def test_idle_narrow_watcher_is_not_compacted_by_unrelated_traffic() -> None:
    store = KVStore(history_size=5, watch_queue_size=2)
    watcher = store.watch(b"/leader")
    for i in range(50):
        run(store, encode_put(b"/status", b"%d" % i))
    assert watcher.pending() == []
    run(store, encode_put(b"/leader", b"n1"))
    assert collect(watcher) == [(EventType.PUT, b"/leader", b"n1", 52)]


def test_cancel_stops_delivery() -> None:
    store = KVStore()
    calls: list[Watcher] = []
    watcher = store.watch(b"k", notify=calls.append)
    other = store.watch(b"k")
    run(store, encode_put(b"k", b"1"))
    watcher.cancel()
    watcher.cancel()  # idempotent
    run(store, encode_put(b"k", b"2"))
    assert watcher.cancelled
    assert len(calls) == 1
    with pytest.raises(WatchCancelledError, match="was cancelled"):
        watcher.pending()
    assert [v for _, _, v, _ in collect(other)] == [b"1", b"2"]


def test_failing_notify_cancels_only_that_watcher() -> None:
    store = KVStore()

    def boom(w: Watcher) -> None:
        raise RuntimeError("subscriber bug")

    bad = store.watch(b"k", notify=boom)
    good = store.watch(b"k")
    assert run(store, encode_put(b"k", b"1")) == PutResult(2, None)
    assert bad.cancelled
    with pytest.raises(WatchCancelledError, match="notify callback raised RuntimeError"):
        bad.pending()
    assert len(good.pending()) == 1


def test_notify_may_cancel_another_watcher() -> None:
    store = KVStore()
    second: list[Watcher] = []
    first = store.watch(b"k", notify=lambda w: second[0].cancel())
    second.append(store.watch(b"k", notify=lambda w: pytest.fail("cancelled watcher notified")))
    run(store, encode_put(b"k", b"1"))
    assert len(first.pending()) == 1
    assert second[0].cancelled


def test_bad_watch_arguments() -> None:
    store = KVStore()
    with pytest.raises(InvalidCommandError, match="from_revision must be in"):
        store.watch(b"k", from_revision=-1)
    with pytest.raises(InvalidCommandError, match="watch key must not be empty"):
        store.watch(b"")
    with pytest.raises(ValueError, match="history_size"):
        KVStore(history_size=0)


def test_restore_cancels_watchers_that_missed_changes() -> None:
    source = KVStore()
    for i in range(3):
        run(source, encode_put(b"k", b"%d" % i))
    store = KVStore()
    notified: list[int] = []
    behind = store.watch(b"k", notify=lambda w: notified.append(w.id))
    ahead = store.watch(b"k", from_revision=10)
    store.restore(source.snapshot())
    assert notified == [behind.id]
    with pytest.raises(CompactedError) as info:
        behind.pending()
    assert info.value.requested == 2
    assert not ahead.cancelled
    assert ahead.pending() == []
    assert store.first_watchable_revision == store.revision + 1 == 5
    with pytest.raises(CompactedError):
        store.watch(b"k", from_revision=4)
    # Restoring the state a watcher has fully seen does not cancel it.
    caught_up = store.watch(b"k")
    store.restore(source.snapshot())
    assert not caught_up.cancelled
    assert not ahead.cancelled
    run(store, encode_put(b"k", b"new"))
    assert collect(caught_up) == [(EventType.PUT, b"k", b"new", 5)]


# --------------------------------------------------------------------------------------------
# Snapshots


def test_snapshot_round_trip_and_canonical_bytes() -> None:
    store = KVStore()
    run(store, encode_lease_grant(3, 6))
    run(store, encode_put(b"b", b"2", 3))
    run(store, encode_put(b"a", b"1"))
    run(store, encode_delete(b"gone"))
    copy = KVStore()
    copy.restore(store.snapshot())
    assert copy.snapshot() == store.snapshot()
    assert state(copy) == state(store)
    assert copy.applied_index == store.applied_index == 4
    assert copy.revision == 3
    # Insertion order (of keys and of leases) does not leak into the bytes.
    one, two = KVStore(), KVStore()
    for lease_id in (4, 5):
        run(one, encode_lease_grant(lease_id, 6))
    for lease_id in (5, 4):
        run(two, encode_lease_grant(lease_id, 6))
    run(one, encode_txn([], [Put(b"b", b"2", 4), Put(b"a", b"1", 5)]))
    run(two, encode_txn([], [Put(b"a", b"1", 5), Put(b"b", b"2", 4)]))
    assert list(one.leases()) == list(two.leases()) == [4, 5]
    assert one.snapshot() == two.snapshot()


def _snap(
    applied: int, revision: int, kvs: list[list[object]], leases: list[list[object]]
) -> bytes:
    return msgpack.packb([1, applied, revision, kvs, leases], use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 0, 1, []]), "list of 5 fields"),
        (msgpack.packb([7, 0, 1, [], []]), "unsupported KV snapshot format 7"),
        (_snap(0, 0, [], []), "snapshot revision must be in"),
        (_snap(1, 3, [[b"b", b"", 2, 2, 1, 0], [b"a", b"", 3, 3, 1, 0]], []), "out of order"),
        (_snap(1, 3, [[b"a", b"", 2, 2, 1, 0], [b"a", b"", 3, 3, 1, 0]], []), "out of order"),
        (_snap(1, 3, [[b"a", b"", 2, 4, 1, 0]], []), "mod revision of b'a' must be in"),
        (_snap(1, 3, [[b"a", b"", 3, 2, 1, 0]], []), "mod revision of b'a' must be in"),
        (_snap(1, 3, [[b"a", b"", 2, 3, 3, 0]], []), "version of b'a' must be in"),
        (_snap(1, 3, [[b"a", b"", 2, 3, 1, 5]], []), "names lease 5, not in snapshot"),
        (_snap(1, 3, [["a", b"", 2, 3, 1, 0]], []), "snapshot key must be bytes"),
        (_snap(1, 3, [], [[2, 5.0], [1, 5.0]]), "lease 1 is out of order"),
        (_snap(1, 3, [], [[1, -5.0]]), "ttl must be in"),
    ],
)
def test_bad_snapshot_is_refused_and_changes_nothing(data: bytes, match: str) -> None:
    store = KVStore()
    run(store, encode_put(b"keep", b"me"))
    before = store.snapshot()
    with pytest.raises(SnapshotError, match=match):
        store.restore(data)
    assert store.snapshot() == before


# --------------------------------------------------------------------------------------------
# Property tests: random command sequences

KEYS = [b"a", b"ab", b"b", b"/x/1", b"/x/2", b"/y"]
PREFIXES = [b"", b"a", b"/x/", b"/", b"z"]
LEASES = [0, 1, 2, 3]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=3)
lease_ids = st.sampled_from(LEASES)
puts = st.builds(Put, keys, values, lease_ids)
deletes = st.one_of(
    st.builds(DeleteRange, keys), st.builds(DeleteRange, st.sampled_from(PREFIXES), st.just(True))
)
ranges = st.builds(
    Range, st.sampled_from(PREFIXES), st.just(True), st.integers(0, 3), st.booleans(), st.booleans()
)
int_compares = st.builds(
    Compare,
    keys,
    st.sampled_from([Target.VERSION, Target.CREATE, Target.MOD, Target.LEASE]),
    st.sampled_from(list(CompareOp)),
    st.integers(-1, 8),
    st.booleans(),
)
value_compares = st.builds(
    Compare, keys, st.just(Target.VALUE), st.sampled_from(list(CompareOp)), values, st.booleans()
)
ops = st.one_of(puts, deletes, ranges)


@st.composite
def txns(draw: st.DrawFn) -> Txn:
    compares = draw(st.lists(st.one_of(int_compares, value_compares), max_size=3))
    branches = []
    for _ in range(2):
        branch = draw(st.lists(ops, max_size=4))
        try:
            Txn((), tuple(branch), ())
        except InvalidCommandError:
            branch = [op for op in branch if not isinstance(op, Put)]
        branches.append(tuple(branch))
    return Txn(tuple(compares), branches[0], branches[1])


commands = st.one_of(
    puts,
    puts,
    deletes,
    ranges,
    txns(),
    st.builds(LeaseGrant, st.sampled_from(LEASES[1:]), st.sampled_from([1, 2.5, 6])),
    st.builds(LeaseRevoke, st.sampled_from(LEASES[1:])),
)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_invariants(store: KVStore) -> None:
    kvs = store.range(b"", prefix=True).kvs
    assert [kv.key for kv in kvs] == sorted({kv.key for kv in kvs})
    leases = store.leases()
    attached: dict[int, list[bytes]] = {lease_id: [] for lease_id in leases}
    for kv in kvs:
        assert 2 <= kv.create_revision <= kv.mod_revision <= store.revision
        assert 1 <= kv.version <= kv.mod_revision - kv.create_revision + 1
        if kv.lease:
            attached[kv.lease].append(kv.key)
    assert _lease_keys(store) == {k: tuple(v) for k, v in attached.items()}


@PROPS
@given(st.lists(commands, max_size=25))
def test_random_commands_keep_invariants_and_one_revision_per_change(cmds: list[object]) -> None:
    store = KVStore()
    everything = store.watch(b"", prefix=True)
    for cmd in cmds:
        before_rev = store.revision
        before = state(store)
        r = run(store, encode(cmd))  # type: ignore[arg-type]
        events = everything.pending()
        check_invariants(store)
        if isinstance(r, ErrorResult):
            assert state(store) == before
            assert events == []
        assert r.revision == store.revision
        # Exactly one new revision iff anything changed, and every event carries it.
        assert store.revision == before_rev + (1 if events else 0)
        assert all(e.revision == store.revision for e in events)


@PROPS
@given(st.lists(commands, max_size=25), st.lists(commands, max_size=10))
def test_snapshot_restore_is_exact(prefix: list[object], suffix: list[object]) -> None:
    original = KVStore()
    for cmd in prefix:
        run(original, encode(cmd))  # type: ignore[arg-type]
    restored = KVStore(history_size=7)
    restored.restore(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    assert state(restored) == state(original)
    assert restored.applied_index == original.applied_index
    for cmd in suffix:
        data = encode(cmd)  # type: ignore[arg-type]
        assert run(restored, data) == run(original, data)
        assert restored.snapshot() == original.snapshot()


@PROPS
@given(st.lists(commands, max_size=30))
def test_members_fed_the_same_entries_end_byte_identical(cmds: list[object]) -> None:
    entries = [encode(cmd) for cmd in cmds]  # type: ignore[arg-type]
    first, second = KVStore(), KVStore(history_size=3, watch_queue_size=1)
    second.watch(b"", prefix=True)  # watchers must not influence the state
    results_first = [run(first, e) for e in entries]
    results_second = [run(second, e) for e in entries]
    assert results_first == results_second
    assert first.snapshot() == second.snapshot()


@PROPS
@given(st.lists(commands, max_size=20), st.lists(st.sampled_from(KEYS + PREFIXES), max_size=3))
def test_watchers_see_every_matching_change_exactly_once(
    cmds: list[object], watched: list[bytes]
) -> None:
    store = KVStore(history_size=1000, watch_queue_size=2)
    everything = store.watch(b"", prefix=True)
    watchers = [store.watch(w, prefix=True) for w in watched if w] + [store.watch(b"ab")]
    log: list[Event] = []
    seen: dict[int, list[Event]] = {w.id: [] for w in watchers}
    for i, cmd in enumerate(cmds):
        run(store, encode(cmd))  # type: ignore[arg-type]
        log.extend(everything.pending())
        if i % 3 == 0:  # read some watchers late, to exercise queue overflow and catch-up
            for w in watchers:
                seen[w.id].extend(w.pending())
    for w in watchers:
        seen[w.id].extend(w.pending())
        assert seen[w.id] == [e for e in log if w.matches(e.kv.key)]
    revisions = [e.revision for e in log]
    assert revisions == sorted(revisions)


junk_fields = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=True),
        st.binary(max_size=4),
        st.text(max_size=4),
    ),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)


@st.composite
def near_miss_entries(draw: st.DrawFn) -> bytes:
    """Well-formed msgpack that looks like a command: right version, a real op code, junk."""
    op = draw(st.integers(0, 8))
    fields = draw(st.lists(junk_fields, max_size=6))
    return msgpack.packb([FORMAT_VERSION, op, *fields], use_bin_type=True)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), near_miss_entries()))
def test_malformed_entries_never_raise_and_never_change_state(data: bytes) -> None:
    store = KVStore()
    run(store, encode_lease_grant(1, 5))
    run(store, encode_put(b"a", b"1", 1))
    run(store, encode_put(b"b", b"2"))
    watcher = store.watch(b"", prefix=True)
    before = state(store)
    try:
        decode(data)
    except InvalidCommandError:
        r = run(store, data)
        assert isinstance(r, ErrorResult | NoopResult)
        assert state(store) == before
        assert watcher.pending() == []
    else:  # hypothesis built a valid command: it must apply without raising
        run(store, data)
        check_invariants(store)
    assert store.applied_index == 4


@PROPS
@given(
    st.lists(commands, max_size=25),
    st.lists(commands, max_size=10),
    st.integers(min_value=0, max_value=30),
)
def test_snapshot_encoder_in_steps_gives_the_state_it_was_made_from(
    before: list[object], after: list[object], step: int
) -> None:
    """Encoded a few keys per step, interleaved with further changes, the bytes are still those
    of the state at the encoder's creation: what a driver's background snapshot relies on."""
    store = KVStore()
    for cmd in before:
        run(store, encode(cmd))  # type: ignore[arg-type]
    expected = store.snapshot()
    encoder = store.snapshot_encoder()
    assert encoder.applied_index == store.applied_index
    pending = [encode(cmd) for cmd in after]  # type: ignore[arg-type]
    steps = 0
    while not encoder.step(step):
        if pending:
            run(store, pending.pop(0))
        steps += 1
        assert steps <= len(expected)  # every step makes progress
    assert encoder.step(step)  # done stays done
    assert encoder.result() == expected


def test_snapshot_encoder_result_before_the_end_is_an_error() -> None:
    store = KVStore()
    for n in range(5):
        run(store, encode_put(b"k%d" % n, b"v"))
    encoder = store.snapshot_encoder()
    assert not encoder.step(2)
    with pytest.raises(RuntimeError, match="not encoded yet"):
        encoder.result()
