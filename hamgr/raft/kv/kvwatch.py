"""Watches on the KV store: change events, the subscribers that receive them, and the bounded
history that lets a subscriber resume from a recent revision.

`KVStore.watch` (in `hamgr.raft.kv.store`) hands out `Watcher`s; the store tells its `WatchHub`
about each revision's events (`publish`) and about a restore (`restart`), and the hub queues each
event for the watchers it concerns, in revision order. No asyncio and no threads here: a `Watcher`
queues events and calls an optional `notify(watcher)` callback that a driver can wire to an event
loop (e.g. `loop.call_soon_threadsafe(event.set)` or `event.set`).

Kept apart from the store because it is a separate job with its own bookkeeping (history
trimming, per-watcher queues, catch-up after falling behind) that never changes the replicated
state: two members with different watchers still hold byte-identical stores.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from hamgr.raft.kv.kvcommands import INT64_MAX, key_in, need_bool, need_int, need_key
from hamgr.raft.kv.kvresults import KeyValue

__all__ = [
    "CompactedError",
    "Event",
    "EventType",
    "WatchCancelledError",
    "WatchHub",
    "Watcher",
]


class CompactedError(Exception):
    """A watch asked for events older than the bounded history still holds.

    The subscriber must re-read the current state (`range`) and watch again from
    `range(...).revision + 1`.
    """

    def __init__(self, requested: int, first_available: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted from the watch history; "
            f"the oldest revision still watchable is {first_available}"
        )
        self.requested = requested
        self.first_available = first_available

    @property
    def compact_revision(self) -> int:
        """The newest revision no longer available (etcd's CompactRevision)."""
        return self.first_available - 1


class WatchCancelledError(Exception):
    """The watch was cancelled (by its owner, or because its notify callback raised)."""


class EventType(StrEnum):
    """What happened to a key."""

    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as a watcher sees it; `prev_kv` is the key's state before (None if new)."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None

    @property
    def revision(self) -> int:
        """The revision of the change."""
        return self.kv.mod_revision


class Watcher:
    """A subscription to changes of one key or prefix, created by `KVStore.watch`.

    Events queue up inside the watcher; `pending()` takes them. After each applied entry that
    produced events for it, the store calls `notify(watcher)` (if given) from inside `apply`: the
    callback must be quick and must not call back into the store's `apply`. A watcher that falls
    more than the store's `watch_queue_size` events behind stops queueing and later catches up
    from the store's history, or gets a CompactedError if the history no longer reaches back.
    """

    __slots__ = (
        "_error",
        "_hub",
        "_notify",
        "_queue",
        "_resync_from",
        "_start",
        "id",
        "key",
        "prefix",
    )

    def __init__(
        self,
        hub: WatchHub,
        watch_id: int,
        key: bytes,
        prefix: bool,
        start: int,
        resync_from: int | None,
        notify: Callable[[Watcher], None] | None,
    ) -> None:
        self._hub: WatchHub | None = hub
        self.id = watch_id
        self.key = key
        self.prefix = prefix
        self._start = start
        self._resync_from = resync_from
        self._notify = notify
        self._queue: list[Event] = []
        self._error: Exception | None = None

    @property
    def cancelled(self) -> bool:
        """True once cancelled, by `cancel()` or by the store (compaction, failing callback)."""
        return self._hub is None

    def matches(self, key: bytes) -> bool:
        """Whether a change to `key` concerns this watcher."""
        return key_in(key, self.key, self.prefix)

    def pending(self) -> list[Event]:
        """Take the queued events, oldest first (an empty list if none).

        Raises CompactedError if events this watcher needed are gone from the history (it is
        then cancelled), and WatchCancelledError after cancellation.
        """
        if self._error is not None:
            raise self._error
        hub = self._hub
        if hub is None:
            raise WatchCancelledError(f"watch {self.id} on {self.key!r} was cancelled")
        if self._resync_from is not None:
            events = hub._history_since(self._resync_from, self)  # may raise CompactedError
            self._resync_from = None
            return events
        events, self._queue = self._queue, []
        return events

    def cancel(self) -> None:
        """Stop watching; idempotent. Queued events are dropped."""
        if self._hub is not None:
            self._hub._watchers.pop(self.id, None)
            self._hub = None
        self._queue = []

    def _next_needed(self, store_revision: int) -> int:
        """The oldest revision this watcher has not been given yet."""
        if self._resync_from is not None:
            return self._resync_from
        if self._queue:
            return self._queue[0].revision
        return max(self._start, store_revision + 1)

    def _fail(self, error: Exception) -> None:
        self.cancel()
        self._error = error

    def _push(self, event: Event, queue_size: int) -> bool:
        """Queue `event` if it concerns us; True if it did."""
        if event.revision < self._start or not self.matches(event.kv.key):
            return False
        if self._resync_from is None:
            if len(self._queue) >= queue_size:
                # Too far behind: drop the queue, catch up from history in pending().
                self._resync_from = self._queue[0].revision
                self._queue = []
            else:
                self._queue.append(event)
        return True

    def _call_notify(self) -> None:
        if self._notify is None:
            return
        try:
            self._notify(self)
        except Exception as exc:
            error = WatchCancelledError(
                f"watch {self.id} on {self.key!r} cancelled: its notify callback raised "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self._fail(error)


def _event_revision(event: Event) -> int:
    return event.kv.mod_revision


class WatchHub:
    """One store's watchers and the bounded history of recent events they catch up from.

    `history_size` bounds the events kept (the latest revision's events are always kept, even if
    it alone exceeds the bound); `queue_size` bounds each watcher's queue before it falls back to
    catching up from history. The store validates both.
    """

    def __init__(self, history_size: int, queue_size: int, first_watchable: int) -> None:
        self._history_size = history_size
        self._queue_size = queue_size
        self._history: list[Event] = []
        self._history_start = 0  # events before this index are dropped (lazily deleted)
        self._first_watchable = first_watchable
        self._watchers: dict[int, Watcher] = {}
        self._next_watch_id = 1

    @property
    def first_watchable(self) -> int:
        """The oldest revision a new watch can start from."""
        return self._first_watchable

    def watch(
        self,
        key: bytes,
        *,
        prefix: bool,
        from_revision: int,
        notify: Callable[[Watcher], None] | None,
        revision: int,
    ) -> Watcher:
        """A new watcher on `key` (or under it), given the store's current `revision`; see
        `KVStore.watch`. Raises InvalidCommandError on bad arguments, CompactedError if
        `from_revision` is older than the history reaches."""
        need_bool("watch prefix", prefix)
        need_key("watch key", key, prefix)
        need_int("from_revision", from_revision, 0, INT64_MAX)
        resync_from: int | None = None
        if from_revision == 0:
            start = revision + 1
        else:
            start = from_revision
            if from_revision <= revision:
                if from_revision < self._first_watchable:
                    raise CompactedError(from_revision, self._first_watchable)
                resync_from = from_revision
        watcher = Watcher(self, self._next_watch_id, key, prefix, start, resync_from, notify)
        self._watchers[watcher.id] = watcher
        self._next_watch_id += 1
        return watcher

    def publish(self, events: list[Event], revision: int) -> None:
        """Record the events of the new store `revision`, then queue and notify watchers."""
        self._history.extend(events)
        self._trim_history(revision)
        touched: list[Watcher] = []
        for watcher in list(self._watchers.values()):
            hit = False
            for event in events:
                hit = watcher._push(event, self._queue_size) or hit
            if hit:
                touched.append(watcher)
        for watcher in touched:
            if not watcher.cancelled:
                watcher._call_notify()

    def restart(self, old_revision: int, revision: int) -> None:
        """The store jumped from `old_revision` to a restored snapshot at `revision`.

        The history restarts empty. A watcher that still needs a revision the snapshot folds in
        is cancelled with a CompactedError and notified (it must re-read and watch again); one
        that waits only for revisions beyond the snapshot's carries on.
        """
        needed = {w.id: w._next_needed(old_revision) for w in self._watchers.values()}
        self._history = []
        self._history_start = 0
        self._first_watchable = revision + 1
        for watcher in list(self._watchers.values()):
            if needed[watcher.id] <= revision:
                watcher._fail(CompactedError(needed[watcher.id], self._first_watchable))
                if watcher._notify is not None:
                    # Already cancelled with the CompactedError; a failing callback changes nothing.
                    with contextlib.suppress(Exception):
                        watcher._notify(watcher)

    def _history_since(self, revision: int, watcher: Watcher) -> list[Event]:
        if revision < self._first_watchable:
            error = CompactedError(revision, self._first_watchable)
            watcher._fail(error)
            raise error
        lo = bisect.bisect_left(
            self._history, revision, lo=self._history_start, key=_event_revision
        )
        return [e for e in self._history[lo:] if watcher.matches(e.kv.key)]

    def _trim_history(self, revision: int) -> None:
        history = self._history
        excess = len(history) - self._history_start - self._history_size
        if excess <= 0:
            return
        cut = self._history_start + excess
        last_dropped = history[cut - 1].revision
        if last_dropped >= revision:
            # Never drop the newest revision: a watcher must always be able to catch up to now.
            cut = bisect.bisect_left(history, revision, lo=self._history_start, key=_event_revision)
            if cut == self._history_start:
                return
            last_dropped = history[cut - 1].revision
        # Drop whole revisions only, so a resumed watch never sees half a txn.
        cut = bisect.bisect_right(history, last_dropped, lo=cut, key=_event_revision)
        self._history_start = cut
        self._first_watchable = last_dropped + 1
        if self._history_start > len(history) // 2:
            del history[: self._history_start]
            self._history_start = 0
