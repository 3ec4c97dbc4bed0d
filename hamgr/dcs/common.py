"""What both store backends share: the transport they plug in, the stored form of every value,
the assembly of a :class:`ClusterView` from key/value pairs, and the time budget of one call.

A backend (``hamgr/dcs/raft.py``, ``hamgr/dcs/etcd.py``) is a :class:`KvTransport`: a handful
of key/value, txn and lease calls over its own wire. The :class:`Dcs` semantics (sessions,
compare-and-swap rules, what an unknown outcome means) are written once, in
``hamgr/dcs/session.py``, on top of that protocol. So the two backends differ only in transport.

Stored form (see ``hamgr/dcs/base.py`` for the layout): ``initialize`` and ``leader`` hold plain
UTF-8 text (a system identifier, a member name); every other key holds compact, key-sorted JSON
of the model's value (:func:`encode_value`). A value that does not parse raises
:class:`DcsError` naming the key and the field; it is never dropped or overwritten.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import msgspec

from hamgr.dcs.base import DcsError, ScopeKeys
from hamgr.dcs.model import (
    ClusterView,
    LeaderKey,
    MemberState,
    PrimaryPosition,
    SwitchoverRequest,
    SyncState,
    TimelineEntry,
)
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError, convert, decode

__all__ = [
    "MONOTONIC",
    "Compare",
    "Deadline",
    "Delete",
    "KvTransport",
    "LeaseExists",
    "LeaseGone",
    "OutcomeUnknown",
    "Put",
    "RangeSnapshot",
    "StoreRefused",
    "StoreUnavailable",
    "StoredKey",
    "Target",
    "Timer",
    "TxnOutcome",
    "Watched",
    "build_view",
    "decode_history",
    "decode_settings",
    "decode_switchover",
    "decode_sync",
    "encode_history",
    "encode_json",
    "encode_settings",
    "encode_value",
    "poll_for_change",
    "prefix_end",
]


# --- what a watch saw ---------------------------------------------------------------------------


class Watched(StrEnum):
    """How a :meth:`KvTransport.wait_for_change` ended.

    ``CHANGE``: a key that wakes the loop changed (or the history needed was compacted away).
    ``OTHER``: the timeout passed, but keys under ``ignore`` changed meanwhile (the loop does
    not wake for them; a cached view of the scope is out of date all the same), or the wait
    cannot vouch that none did (it ended before it looked, e.g. a timeout of 0).
    ``QUIET``: the timeout passed with the watch in place and no event at all under the prefix
    (ignored keys included) after ``seen``: the only ending that lets a cached view be reused.
    """

    CHANGE = "change"
    OTHER = "other"
    QUIET = "quiet"


# --- what a transport says went wrong ------------------------------------------------------------


class StoreUnavailable(Exception):
    """No answer within the time given (unreachable, no leader, overloaded); nothing to blame
    on the request itself, so it may be tried again while time remains."""


class OutcomeUnknown(StoreUnavailable):
    """A write was sent but no answer says whether it applied: it may or may not have."""


class StoreRefused(Exception):
    """The store refused the request (bad credentials, permission, malformed request):
    repeating it will not help."""


class LeaseGone(Exception):
    """The lease does not exist any more (expired or revoked), or never did."""


class LeaseExists(Exception):
    """A lease with this id exists already (a grant repeated after an unknown outcome)."""


# --- the transport ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One key as the store holds it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class RangeSnapshot:
    """The keys of one range read, all at store ``revision``, in key order."""

    revision: int
    kvs: tuple[StoredKey, ...]

    def get(self, key: str) -> StoredKey | None:
        return next((kv for kv in self.kvs if kv.key == key), None)


class Target(StrEnum):
    """Which revision of a key a txn compare looks at (0 for an absent key)."""

    CREATE = "create"
    MOD = "mod"


@dataclass(frozen=True, slots=True)
class Compare:
    """``<target revision of key> <op> value``, ``op`` one of ``=`` and ``<``."""

    key: str
    target: Target
    op: str
    value: int

    def __post_init__(self) -> None:
        if self.op not in ("=", "<"):
            raise ValueError(f'compare op must be "=" or "<", got {self.op!r}')


@dataclass(frozen=True, slots=True)
class Put:
    """Set ``key`` to ``value``, attached to ``lease`` (0: none)."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key`` (absent is fine)."""

    key: str


@dataclass(frozen=True, slots=True)
class TxnOutcome:
    """Whether the compares held (and the writes ran), and the store revision after it."""

    succeeded: bool
    revision: int


class KvTransport(Protocol):
    """The calls a backend provides. ``timeout`` is the call's whole budget in seconds: the
    transport retries inside it (failover, redirects) and raises :class:`StoreUnavailable`
    when it is spent. Writes that may have applied raise :class:`OutcomeUnknown`; calls naming
    a lease that is gone raise :class:`LeaseGone`; a refusal raises :class:`StoreRefused`."""

    async def range(self, key: str, *, prefix: bool, timeout: float) -> RangeSnapshot:
        """A linearizable read of ``key`` (or every key under it)."""
        ...

    async def put(self, op: Put, *, timeout: float) -> int:
        """Write one key; returns the new store revision."""
        ...

    async def delete(self, key: str, *, timeout: float) -> int:
        """Delete one key; returns the store revision."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Put | Delete], *, timeout: float
    ) -> TxnOutcome:
        """Run ``success`` if every compare holds, all at one revision."""
        ...

    async def lease_grant(self, lease_id: int, ttl: float, *, timeout: float) -> float:
        """Grant lease ``lease_id`` of at least ``ttl`` seconds; returns the granted TTL.
        Raises :class:`LeaseExists` if the id is taken."""
        ...

    async def lease_keepalive(self, lease_id: int, *, timeout: float) -> float:
        """Renew the lease to its full TTL once the store confirmed it (returns the TTL)."""
        ...

    async def lease_revoke(self, lease_id: int, *, timeout: float) -> None:
        """Revoke the lease, deleting its keys at one revision."""
        ...

    async def wait_for_change(
        self, prefix: str, seen: RangeSnapshot | None, timeout: float, ignore: str = ""
    ) -> Watched:
        """``CHANGE`` once a key under ``prefix`` (but not under ``ignore``, when given) changed
        after ``seen`` (None: after the call began); when ``timeout`` passed without, ``OTHER``
        if a key under ``ignore`` changed meanwhile, else ``QUIET``. Every event under
        ``prefix`` counts: a transport that cannot tell must not answer ``QUIET``."""
        ...

    async def close(self) -> None:
        """Close connections."""
        ...


# --- the time budget of one call ----------------------------------------------------------------


class Timer(Protocol):
    """Where a call's budget is counted and its pauses are waited: the monotonic clock in
    production (:data:`MONOTONIC`); a test passes a virtual one, so that it controls time
    instead of waiting for it and measuring it."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Let `seconds` pass."""
        ...


class _MonotonicTimer:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


MONOTONIC: Timer = _MonotonicTimer()
"""The system's monotonic clock and asyncio's sleep."""


class Deadline:
    """The ``retry_timeout`` budget of one Dcs call, and the last problem met inside it."""

    def __init__(self, what: str, budget: float, timer: Timer = MONOTONIC) -> None:
        self.what = what
        self.budget = budget
        self.timer = timer
        self.end = timer.now() + budget
        self.last: BaseException | None = None

    def remaining(self) -> float:
        """Seconds left; raises :meth:`expired` when none are."""
        left = self.end - self.timer.now()
        if left <= 0:
            raise self.expired()
        return left

    def expired(self) -> DcsError:
        why = f"; last error: {self.last}" if self.last is not None else ""
        return DcsError(f"{self.what}: no answer from the store within {self.budget:g} s{why}")

    def fail(self, problem: object) -> DcsError:
        """A DcsError for ``problem`` met while doing ``what``."""
        return DcsError(f"{self.what}: {problem}")

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` or until the budget ends, whichever is sooner."""
        await self.timer.sleep(max(0.0, min(seconds, self.end - self.timer.now())))


async def poll_for_change(
    read: Callable[[float], Awaitable[RangeSnapshot]],
    seen: RangeSnapshot | None,
    timeout: float,
    interval: float,
    ignore: str = "",
    timer: Timer = MONOTONIC,
) -> Watched:
    """Watch by polling: read the prefix every ``interval`` until its keys differ from ``seen``
    (a key created, deleted or modified after it) or ``timeout`` passes.

    ``read(timeout)`` reads the prefix. With no ``seen``, the first read is the baseline. Keys
    under ``ignore`` do not end the wait; once one differs the ending is ``OTHER``. Only a wait
    that compared at least one read with its baseline can end ``QUIET``.
    """
    end = timer.now() + timeout
    baseline = _fingerprint(seen, ignore) if seen is not None else None
    whole = _fingerprint(seen) if seen is not None else None
    outcome: Watched | None = None
    while True:
        left = end - timer.now()
        if left <= 0:
            return outcome or Watched.OTHER
        snap = await read(left)
        if baseline is None or whole is None:
            baseline, whole = _fingerprint(snap, ignore), _fingerprint(snap)
        elif _fingerprint(snap, ignore) != baseline:
            return Watched.CHANGE
        elif outcome is not Watched.OTHER:
            outcome = Watched.QUIET if _fingerprint(snap) == whole else Watched.OTHER
        await timer.sleep(max(0.0, min(interval, end - timer.now())))


def _fingerprint(snap: RangeSnapshot, ignore: str = "") -> frozenset[tuple[str, int]]:
    return frozenset(
        (kv.key, kv.mod_revision) for kv in snap.kvs if not (ignore and kv.key.startswith(ignore))
    )


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


# --- values -------------------------------------------------------------------------------------


def encode_json(value: Any) -> bytes:
    """Compact, key-sorted JSON of a JSON-friendly value (``to_dict()`` output)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def encode_value(value: MemberState | SwitchoverRequest | SyncState | PrimaryPosition) -> bytes:
    """The stored form of one of the model's JSON keys: its Struct as compact, key-sorted JSON.

    The value is checked first as its readers will check it (bounds included, which building a
    value in code does not check), so that nothing is written that agents then refuse to read:
    raises ModelError naming the field."""
    data = msgspec.to_builtins(value)
    convert(data, type(value))
    return encode_json(data)


def encode_settings(settings: DynamicSettings) -> bytes:
    """The stored form of the dynamic settings (the ``config`` key), checked as
    :func:`decode_settings` reads it (a value built in code has not been): raises ModelError."""
    data = settings.to_dict()
    DynamicSettings.from_dict(data)
    return encode_json(data)


def encode_history(entries: Sequence[TimelineEntry]) -> bytes:
    """The stored form of the history, checked as :func:`decode_history` reads it."""
    data = msgspec.to_builtins(list(entries))
    _ordered(convert(data, tuple[TimelineEntry, ...]))
    return encode_json(data)


def _text(kv: StoredKey) -> str:
    try:
        return kv.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DcsError(f"{kv.key}: not UTF-8 text ({exc})") from None


def _json(kv: StoredKey) -> Any:
    try:
        return json.loads(kv.value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DcsError(f"{kv.key}: not valid JSON ({exc})") from None


def _model(kv: StoredKey, parse: Callable[[Any], Any]) -> Any:
    try:
        return parse(_json(kv))
    except ModelError as exc:
        raise DcsError(f"{kv.key}: {exc}") from None


def decode_settings(kv: StoredKey) -> DynamicSettings:
    settings: DynamicSettings = _model(kv, DynamicSettings.from_dict)
    return settings


T = TypeVar("T")


def _struct(kv: StoredKey, into: type[T]) -> T:
    try:
        return decode(kv.value, into)
    except ModelError as exc:
        raise DcsError(f"{kv.key}: {exc}") from None


def decode_switchover(kv: StoredKey) -> SwitchoverRequest:
    return _struct(kv, SwitchoverRequest)


def decode_sync(kv: StoredKey) -> SyncState:
    return _struct(kv, SyncState)


def _ordered(entries: tuple[TimelineEntry, ...]) -> tuple[TimelineEntry, ...]:
    timelines = [h.timeline for h in entries]
    if timelines != sorted(set(timelines)):
        raise ModelError("history", f"timelines must increase, got {timelines}")
    return entries


def decode_history(kv: StoredKey) -> tuple[TimelineEntry, ...]:
    history = _struct(kv, tuple[TimelineEntry, ...])
    try:
        return _ordered(history)
    except ModelError as exc:
        raise DcsError(f"{kv.key}: {exc}") from None


def _member(kv: StoredKey, name: str) -> MemberState:
    member = _struct(kv, MemberState)
    if member.name != name:
        raise DcsError(f"{kv.key}: holds the state of member {member.name!r}, not of {name!r}")
    return member


def build_view(keys: ScopeKeys, snap: RangeSnapshot) -> ClusterView:
    """The cluster view of one range read of ``keys.prefix``.

    Keys under the prefix that this version does not know are ignored (a newer agent may add
    some); a known key whose value does not parse raises DcsError naming it.
    """
    fields: dict[str, Any] = {"revision": snap.revision}
    members: list[MemberState] = []
    for kv in snap.kvs:
        if kv.key == keys.initialize:
            fields["initialize"] = _text(kv)
            fields["initialize_revision"] = kv.mod_revision
        elif kv.key == keys.config:
            fields["settings"] = decode_settings(kv)
            fields["settings_revision"] = kv.mod_revision
        elif kv.key == keys.leader:
            try:
                fields["leader"] = convert(
                    {"name": _text(kv), "revision": kv.create_revision}, LeaderKey
                )
            except ModelError as exc:
                raise DcsError(f"{kv.key}: {exc}") from None
        elif kv.key.startswith(keys.members):
            members.append(_member(kv, kv.key[len(keys.members) :]))
        elif kv.key == keys.switchover:
            fields["switchover"] = decode_switchover(kv)
        elif kv.key == keys.history:
            fields["history"] = decode_history(kv)
        elif kv.key == keys.sync:
            fields["sync"] = decode_sync(kv)
            fields["sync_revision"] = kv.mod_revision
        elif kv.key == keys.position:
            fields["position"] = _struct(kv, PrimaryPosition)
    try:
        return ClusterView(members=tuple(members), **fields)
    except ModelError as exc:
        key = keys.prefix + exc.field.split(".")[0].split("[")[0]
        raise DcsError(f"{key}: {exc}") from None
