"""The replicated key-value state machine that the Raft log drives, with etcd v3 semantics.

Pure and deterministic: no clock, no I/O, no randomness. Every member applies the same committed
entries in the same order with `KVStore.apply` and ends in byte-identical state (`snapshot()`).
This module holds the store itself (apply, reads, snapshot/restore); the rest of the KV is split
into modules with one job each, and callers import each name from the module that defines it:

- `hamgr.raft.kv.kvcommands`: the commands (`Put`, `DeleteRange`, `Range`, `Txn`, `LeaseGrant`,
  `LeaseRevoke`) and their msgpack wire format (`encode` / `encode_*`, `decode`). Both ends run
  the same validation, so a proposer learns of a bad command before it reaches the log, and a
  malformed entry that does reach it becomes an `ErrorResult` on every member, changing nothing.
- `hamgr.raft.kv.kvresults`: `KeyValue`, `LeaseInfo` and the `Result` of applying an entry.
- `hamgr.raft.kv.kvsnapshot`: the snapshot format; its encoder works a slice at a time.
- `hamgr.raft.kv.kvwatch`: watches (`KVStore.watch`) deliver PUT/DELETE events in revision order to
  in-process subscribers, resumable from a recent revision out of a bounded history of events.
  No asyncio: a `Watcher` queues events and calls an optional `notify(watcher)` callback that a
  driver can wire to an event loop (e.g. `loop.call_soon_threadsafe(event.set)` or `event.set`).

Revisions follow etcd: the store starts at revision 1; each command that changes at least one key
takes exactly one new revision (a txn is one revision however many ops it has; a delete that
matches nothing, a read-only txn, a lease grant and a revoke of a lease without keys take none).
Each key carries create_revision, mod_revision, version and lease; deleting a key forgets it, so a
later put creates it again with a new create_revision and version 1.

Leases are granted with an id chosen by the proposer and a TTL that the store records but never
counts: expiry is decided by the leader's `hamgr.raft.kv.lease.LeaseClock` and arrives here as a
revoke entry, which deletes every attached key in one revision.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from hamgr.raft.kv.kvcommands import (
    Command,
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
    decode,
    need_key,
)
from hamgr.raft.kv.kvresults import (
    INITIAL_REVISION,
    DeleteResult,
    ErrorCode,
    ErrorResult,
    KeyValue,
    LeaseGrantResult,
    LeaseInfo,
    LeaseRevokeResult,
    NoopResult,
    PutResult,
    RangeResult,
    Result,
    TxnResult,
)
from hamgr.raft.kv.kvsnapshot import (
    LeaseRecord,
    SnapshotEncoder,
    parse_snapshot,
)
from hamgr.raft.kv.kvwatch import (
    Event,
    EventType,
    Watcher,
    WatchHub,
)

__all__ = [
    "KVStore",
]


class KVStore:
    """The replicated KV: apply committed entries, answer reads, serve watches, snapshot/restore.

    `history_size` bounds the events kept for resuming watches (the latest revision's events are
    always kept, even if it alone exceeds the bound); `watch_queue_size` bounds each watcher's
    queue before it falls back to catching up from history.
    """

    def __init__(self, *, history_size: int = 10_000, watch_queue_size: int = 1_000) -> None:
        if type(history_size) is not int or history_size < 1:
            raise ValueError(f"history_size must be an int >= 1, got {history_size!r}")
        if type(watch_queue_size) is not int or watch_queue_size < 1:
            raise ValueError(f"watch_queue_size must be an int >= 1, got {watch_queue_size!r}")
        self._kvs: dict[bytes, KeyValue] = {}
        self._keys: list[bytes] = []  # sorted, for prefix ranges
        self._leases: dict[int, LeaseRecord] = {}
        self._revision = INITIAL_REVISION
        self._applied_index = 0
        self._watches = WatchHub(history_size, watch_queue_size, INITIAL_REVISION)

    # ---- properties

    @property
    def revision(self) -> int:
        """The revision of the latest change (1 for an empty store)."""
        return self._revision

    @property
    def applied_index(self) -> int:
        """The index of the last log entry applied (0 before any)."""
        return self._applied_index

    # ---- applying the log

    def apply(self, index: int, data: bytes) -> Result:
        """Apply the committed entry at `index`; the same entries give the same results and state
        on every member.

        Empty `data` (a leader's no-op) gives a NoopResult. A malformed command, a put on an
        unknown lease, a duplicate lease id... give an ErrorResult and change no key or lease;
        `applied_index` still advances. An entry at or below `applied_index` (a replay) is
        skipped with an ErrorResult(ALREADY_APPLIED). An index that skips ahead of
        `applied_index + 1` means the driver lost entries: ValueError, and nothing changes.
        """
        if self._is_replay(index):
            return ErrorResult(
                self._revision,
                ErrorCode.ALREADY_APPLIED,
                f"entry {index} was already applied (applied index {self._applied_index})",
            )
        self._advance_index(index)
        if not data:
            return NoopResult(self._revision)
        try:
            command = decode(data)
        except InvalidCommandError as exc:
            return ErrorResult(self._revision, ErrorCode.MALFORMED, str(exc))
        return self._execute(command)

    def mark_applied(self, index: int) -> None:
        """Record that the entry at `index` was applied without touching the KV (e.g. a
        membership change). Same index rules as `apply`."""
        if not self._is_replay(index):
            self._advance_index(index)

    def _is_replay(self, index: int) -> bool:
        if type(index) is not int or index < 1:
            raise ValueError(f"entry index must be a positive int, got {index!r}")
        return index <= self._applied_index

    def _advance_index(self, index: int) -> None:
        if index != self._applied_index + 1:
            raise ValueError(
                f"entry index {index} skips ahead: applied index is {self._applied_index}, "
                f"so entries {self._applied_index + 1}..{index - 1} are missing"
            )
        self._applied_index = index

    def _execute(self, command: Command) -> Result:
        if isinstance(command, Put):
            return self._exec_put(command)
        if isinstance(command, DeleteRange):
            events: list[Event] = []
            prevs = self._delete(command, self._revision + 1, events)
            self._commit(events)
            return DeleteResult(self._revision, len(prevs), prevs)
        if isinstance(command, Range):
            return self._range(command, self._revision)
        if isinstance(command, Txn):
            return self._exec_txn(command)
        if isinstance(command, LeaseGrant):
            if command.lease_id in self._leases:
                return ErrorResult(
                    self._revision,
                    ErrorCode.LEASE_EXISTS,
                    f"lease {command.lease_id} already exists",
                )
            self._leases[command.lease_id] = LeaseRecord(command.ttl)
            return LeaseGrantResult(self._revision, command.lease_id, command.ttl)
        return self._exec_revoke(command)

    def _lease_missing(self, op: Put) -> ErrorResult | None:
        if op.lease and op.lease not in self._leases:
            return ErrorResult(
                self._revision,
                ErrorCode.LEASE_NOT_FOUND,
                f"put of key {op.key!r} names lease {op.lease}, which does not exist",
            )
        return None

    def _exec_put(self, op: Put) -> Result:
        error = self._lease_missing(op)
        if error is not None:
            return error
        events: list[Event] = []
        prev = self._put(op, self._revision + 1, events)
        self._commit(events)
        return PutResult(self._revision, prev)

    def _exec_txn(self, txn: Txn) -> Result:
        succeeded = all(self._compare(c) for c in txn.compares)
        ops = txn.success if succeeded else txn.failure
        for op in ops:  # check everything that can fail before changing anything
            if isinstance(op, Put):
                error = self._lease_missing(op)
                if error is not None:
                    return error
        new_revision = self._revision + 1
        events: list[Event] = []
        responses: list[PutResult | DeleteResult | RangeResult] = []
        for op in ops:
            if isinstance(op, Put):
                prev = self._put(op, new_revision, events)
                responses.append(PutResult(new_revision, prev))
            elif isinstance(op, DeleteRange):
                prevs = self._delete(op, new_revision, events)
                seen = new_revision if events else self._revision
                responses.append(DeleteResult(seen, len(prevs), prevs))
            else:
                responses.append(self._range(op, new_revision if events else self._revision))
        self._commit(events)
        return TxnResult(self._revision, succeeded, tuple(responses))

    def _exec_revoke(self, op: LeaseRevoke) -> Result:
        lease = self._leases.get(op.lease_id)
        if lease is None:
            return ErrorResult(
                self._revision, ErrorCode.LEASE_NOT_FOUND, f"lease {op.lease_id} does not exist"
            )
        new_revision = self._revision + 1
        events: list[Event] = []
        for key in sorted(lease.keys):  # sorted: event order must not depend on set order
            self._delete(DeleteRange(key), new_revision, events)
        del self._leases[op.lease_id]
        self._commit(events)
        return LeaseRevokeResult(self._revision, op.lease_id, len(events))

    # ---- primitive changes (callers have validated; nothing here can fail)

    def _put(self, op: Put, revision: int, events: list[Event]) -> KeyValue | None:
        prev = self._kvs.get(op.key)
        if prev is None:
            kv = KeyValue(op.key, op.value, revision, revision, 1, op.lease)
            bisect.insort(self._keys, op.key)
        else:
            kv = KeyValue(
                op.key, op.value, prev.create_revision, revision, prev.version + 1, op.lease
            )
            if prev.lease and prev.lease != op.lease:
                self._leases[prev.lease].keys.discard(op.key)
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        self._kvs[op.key] = kv
        events.append(Event(EventType.PUT, kv, prev))
        return prev

    def _delete(self, op: DeleteRange, revision: int, events: list[Event]) -> tuple[KeyValue, ...]:
        keys = self._matching_keys(op.key, op.prefix)
        if not keys:
            return ()
        prevs = tuple(self._kvs.pop(key) for key in keys)
        lo = bisect.bisect_left(self._keys, keys[0])
        if op.prefix:
            del self._keys[lo : lo + len(keys)]
        else:
            del self._keys[lo]
        for prev in prevs:
            if prev.lease:
                self._leases[prev.lease].keys.discard(prev.key)
            tombstone = KeyValue(prev.key, b"", 0, revision, 0, 0)
            events.append(Event(EventType.DELETE, tombstone, prev))
        return prevs

    def _commit(self, events: list[Event]) -> None:
        """Close one command: a new revision if anything changed, then history and watchers."""
        if not events:
            return
        self._revision += 1
        self._watches.publish(events, self._revision)

    # ---- reads

    def _matching_keys(self, key: bytes, prefix: bool) -> list[bytes]:
        if not prefix:
            return [key] if key in self._kvs else []
        keys = self._keys
        lo = bisect.bisect_left(keys, key)
        hi = lo
        while hi < len(keys) and keys[hi].startswith(key):
            hi += 1
        return keys[lo:hi]

    def _range(self, op: Range, revision: int) -> RangeResult:
        keys = self._matching_keys(op.key, op.prefix)
        count = len(keys)
        more = False
        if op.count_only:
            keys = []
        elif op.limit and count > op.limit:
            keys = keys[: op.limit]
            more = True
        kvs = [self._kvs[k] for k in keys]
        if op.keys_only:
            kvs = [
                KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                for kv in kvs
            ]
        return RangeResult(revision, tuple(kvs), count, more)

    def _compare(self, c: Compare) -> bool:
        kvs = [self._kvs[k] for k in self._matching_keys(c.key, c.prefix)]
        if not kvs:
            if c.target is Target.VALUE:
                return False  # etcd: a missing value cannot be compared, whatever the operator
            kvs = [KeyValue(c.key, b"", 0, 0, 0, 0)]
        return all(_compare_kv(c, kv) for kv in kvs)

    def range(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> RangeResult:
        """Read the current state (locally: serve it after a ReadIndex for linearizable reads).

        Raises InvalidCommandError on bad arguments.
        """
        return self._range(Range(key, prefix, limit, keys_only, count_only), self._revision)

    def get(self, key: bytes) -> KeyValue | None:
        """The current state of one key, or None."""
        need_key("key", key, prefix=False)
        return self._kvs.get(key)

    def leases(self) -> dict[int, float]:
        """Every lease and its granted TTL (what `LeaseClock.become_leader` needs)."""
        return {lease_id: lease.ttl for lease_id, lease in sorted(self._leases.items())}

    def lease(self, lease_id: int) -> LeaseInfo | None:
        """One lease with its attached keys, or None if it does not exist."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return LeaseInfo(lease_id, lease.ttl, tuple(sorted(lease.keys)))

    # ---- watches

    def watch(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        from_revision: int = 0,
        notify: Callable[[Watcher], None] | None = None,
    ) -> Watcher:
        """Watch `key` (or every key under it with `prefix`) for changes.

        `from_revision` 0 means changes after the current revision; an older revision replays
        the changes since then from the history (CompactedError if it no longer reaches that
        far); a future revision waits for it.
        """
        return self._watches.watch(
            key, prefix=prefix, from_revision=from_revision, notify=notify, revision=self._revision
        )

    @property
    def first_watchable_revision(self) -> int:
        """The oldest revision a new watch can start from."""
        return self._watches.first_watchable

    # ---- snapshots

    def snapshot(self) -> bytes:
        """The whole replicated state as canonical bytes: equal states give equal bytes.

        Holds the applied index, the revision, every key and every lease; not the watch history.
        """
        encoder = self.snapshot_encoder()
        encoder.step(len(self._keys))
        return encoder.result()

    def snapshot_encoder(self) -> SnapshotEncoder:
        """The state as it is now, to encode a slice at a time (see `hamgr.raft.kv.kvsnapshot`);
        later changes to the store do not reach it."""
        return SnapshotEncoder(
            self._applied_index,
            self._revision,
            dict(self._kvs),
            list(self._keys),
            [(lease_id, lease.ttl) for lease_id, lease in self._leases.items()],
        )

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises SnapshotError (and changes nothing)
        if the bytes are malformed or inconsistent.

        The watch history restarts empty. A watcher that still needs a revision the snapshot
        folds in is cancelled with a CompactedError and notified (it must re-read and watch
        again); one that waits only for revisions beyond the snapshot's carries on.
        """
        applied_index, revision, kvs, keys, leases = parse_snapshot(data)
        old_revision = self._revision
        self._applied_index = applied_index
        self._revision = revision
        self._kvs = kvs
        self._keys = keys
        self._leases = leases
        self._watches.restart(old_revision, revision)


def _compare_kv(c: Compare, kv: KeyValue) -> bool:
    want = c.value
    if isinstance(want, bytes):  # Target.VALUE (checked in Compare.__post_init__)
        result = (kv.value > want) - (kv.value < want)
    else:
        ours = {
            Target.VERSION: kv.version,
            Target.CREATE: kv.create_revision,
            Target.MOD: kv.mod_revision,
            Target.LEASE: kv.lease,
        }[c.target]
        result = (ours > want) - (ours < want)
    if c.op is CompareOp.EQUAL:
        return result == 0
    if c.op is CompareOp.NOT_EQUAL:
        return result != 0
    if c.op is CompareOp.LESS:
        return result < 0
    return result > 0
