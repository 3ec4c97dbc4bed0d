"""KvSession: the :class:`~hamgr.dcs.base.Dcs` semantics, once, over any :class:`KvTransport`.

The backends (``RaftDcs``, ``EtcdDcs``) are this class with their transport plugged in. What
lives here is everything a backend must not get wrong on its own:

- One lease per session, granted with ``ttl`` under a lock (so concurrent callers never grant
  two), with an id chosen here, so a grant repeated after an unknown outcome finds its own lease
  (``LeaseExists``) instead of leaking a second one.
- The compare-and-swap of every conditional write, and what each method does when a write's
  outcome is unknown (the connection broke after sending): repeat it where that is safe, else
  read the key back and decide from what is there, else raise DcsError saying so.
- The ``retry_timeout`` budget: every method ends within it, with a DcsError naming the method
  and the last problem met (see :class:`~hamgr.dcs.common.Deadline`).
- ``keepalive`` takes ``sent_at`` just before the request leaves; retries inside the budget keep
  that first instant, which can only make the fence earlier, never later.
- A live ttl change (``switch_lease``): a new lease, the caller's fence hook, the keys moved onto
  it by compare-and-swap, the old lease revoked, in that order (see hamgr/ha/leaseclock.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from hamgr import clock
from hamgr.dcs.base import DcsError, KeepaliveResult, scope_keys
from hamgr.dcs.common import (
    MONOTONIC,
    Compare,
    Deadline,
    Delete,
    KvTransport,
    LeaseExists,
    LeaseGone,
    OutcomeUnknown,
    Put,
    RangeSnapshot,
    StoredKey,
    StoreRefused,
    StoreUnavailable,
    Target,
    Timer,
    Watched,
    build_view,
    decode_history,
    decode_settings,
    decode_switchover,
    decode_sync,
    encode_history,
    encode_settings,
    encode_value,
)
from hamgr.dcs.model import (
    ClusterView,
    LeaderKey,
    MemberName,
    MemberState,
    PrimaryPosition,
    SwitchoverRequest,
    SyncState,
    TimelineEntry,
)
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError, convert

__all__ = ["KvSession", "held_leader"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_RETRY_PAUSE = 0.05
"""Pause before trying again after a transport gave up early (it retries inside itself)."""

_HARD_CAP_GRACE = 0.1
"""How long past its budget a transport call may run before it is cancelled (a transport is
expected to honour its timeout; this only bounds one that does not)."""

_DEFAULTS = DynamicSettings()

_MOVE_TRIES = 5
"""Reads and compare-and-swaps a lease switch tries before leaving it to the next keepalive."""


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return float(value)


class KvSession:
    """One agent's session with the store for one scope; implements :class:`Dcs`.

    ``ttl`` is the TTL the session's lease is granted with, ``retry_timeout`` each call's
    budget. The HA loop sets both from the settings it read (:meth:`apply_timing`): a new
    ``retry_timeout`` bounds the next call, a new ``ttl`` the next lease granted, and
    :meth:`switch_lease` moves the keys onto a lease of the new ttl. ``timer`` counts the
    budgets and waits the pauses between tries (tests pass a virtual one).
    """

    def __init__(
        self,
        scope: str,
        name: str,
        transport: KvTransport,
        *,
        ttl: float = _DEFAULTS.ttl,
        retry_timeout: float = _DEFAULTS.retry_timeout,
        timer: Timer = MONOTONIC,
    ) -> None:
        for field, value in (("scope", scope), ("name", name)):
            try:
                convert(value, MemberName)
            except ModelError as exc:
                raise ValueError(f"{field}: {exc.problem}") from None
        self.scope = scope
        self.name = name
        self.keys = scope_keys(scope)
        self.ttl = _positive("ttl", ttl)
        self.retry_timeout = _positive("retry_timeout", retry_timeout)
        self._transport = transport
        self._timer = timer
        self._lease: int | None = None
        self._lease_ttl = self.ttl
        self._lease_asked = self.ttl
        """The ttl the current lease was asked for (the store may grant more: its minimum)."""
        self._lease_lock = asyncio.Lock()
        self._seen: RangeSnapshot | None = None
        self._view: tuple[ClusterView, float] | None = None
        """The last :meth:`get_cluster`'s view and when (on ``timer``) its read was sent."""
        self._quiet = False
        """Whether the last :meth:`watch` ended QUIET (see :meth:`cached_cluster`)."""
        self._published: tuple[bytes, int] | None = None
        """The member key's value and lease as this session last wrote them."""
        self._ids = random.SystemRandom()
        self.before_grant: Callable[[int], None] | None = None
        """Called with a lease id just before it is granted (the agent writes it down, so that
        a restarted agent finds every lease it may hold; see :meth:`adopt_lease`). An error
        it raises stops the grant."""

    @property
    def lease_id(self) -> int | None:
        """The session's lease, while it has one."""
        return self._lease

    # -- plumbing

    def _deadline(self, what: str) -> Deadline:
        return Deadline(what, self.retry_timeout, self._timer)

    async def _call(self, d: Deadline, fn: Callable[..., Awaitable[T]]) -> T:
        """Run ``fn(timeout=...)``, one transport call, inside ``d``; again after an early
        StoreUnavailable.

        OutcomeUnknown, LeaseGone and LeaseExists go to the caller, who knows what they mean
        for its write; a refusal becomes DcsError at once.
        """
        if getattr(fn, "func", None) not in (
            self._transport.range,
            self._transport.lease_keepalive,
        ):
            self._quiet = False  # a write of ours: a cached view may no longer be the store's
        while True:
            timeout = d.remaining()
            try:
                async with asyncio.timeout(timeout + _HARD_CAP_GRACE):
                    return await fn(timeout=timeout)
            except OutcomeUnknown:
                raise
            except StoreUnavailable as exc:
                d.last = exc
            except TimeoutError:
                d.last = TimeoutError(f"the transport did not return within {timeout:g} s")
            except StoreRefused as exc:
                raise d.fail(exc) from exc
            await d.pause(_RETRY_PAUSE)

    async def _read_key(self, d: Deadline, key: str) -> StoredKey | None:
        snap = await self._call(d, partial(self._transport.range, key, prefix=False))
        return snap.get(key)

    async def _txn(self, d: Deadline, compares: list[Compare], success: list[Put | Delete]) -> bool:
        outcome = await self._call(d, partial(self._transport.txn, compares, success))
        return outcome.succeeded

    async def _write_idempotent(self, d: Deadline, fn: Callable[..., Awaitable[T]]) -> T:
        """A write that may simply be repeated when its outcome is unknown."""
        while True:
            try:
                return await self._call(d, fn)
            except OutcomeUnknown as exc:
                await _unknown(d, exc)

    # -- the lease

    async def _ensure_lease(self, d: Deadline) -> int:
        """The session's lease, granted with ``ttl`` if there is none (one grant at a time;
        waiting for another caller's grant counts against this call's budget)."""
        try:
            async with asyncio.timeout(d.remaining()):
                await self._lease_lock.acquire()
        except TimeoutError:
            raise d.expired() from None
        try:
            return await self._grant_locked(d)
        finally:
            self._lease_lock.release()

    async def _grant_locked(self, d: Deadline) -> int:
        if self._lease is None:
            lease_id, granted, _ = await self._grant(d, self.ttl, announce=True)
            self._lease, self._lease_ttl, self._lease_asked = lease_id, granted, self.ttl
        return self._lease

    async def _grant(self, d: Deadline, ttl: float, *, announce: bool) -> tuple[int, float, float]:
        """Grant a new lease of ``ttl``: (its id, the TTL granted, when the grant was sent).

        ``announce``: call :attr:`before_grant` with the id before it is granted."""
        lease_id = self._ids.getrandbits(62) + 1
        sent = False
        sent_at = clock.now()
        while True:
            if announce and self.before_grant is not None and not sent:
                self.before_grant(lease_id)
            try:
                granted = await self._call(d, partial(self._transport.lease_grant, lease_id, ttl))
            except OutcomeUnknown as exc:
                sent = True
                await _unknown(d, exc)
                continue
            except LeaseExists:
                if not sent:  # someone else's lease has this id (a 1 in 2**62 chance)
                    lease_id = self._ids.getrandbits(62) + 1
                    sent_at = clock.now()
                    continue
                granted = ttl  # our earlier attempt did apply
            return lease_id, granted, sent_at

    def apply_timing(self, ttl: float, retry_timeout: float) -> None:
        """Take the cluster's current ttl (for the next lease, see :meth:`switch_lease`) and
        retry_timeout (every call from now on)."""
        self.ttl = _positive("ttl", ttl)
        self.retry_timeout = _positive("retry_timeout", retry_timeout)

    async def switch_lease(
        self, before_move: Callable[[KeepaliveResult], Awaitable[None]]
    ) -> KeepaliveResult | None:
        """Move the keys onto a new lease of the current ttl (see :meth:`Dcs.switch_lease`)."""
        async with self._lease_lock:
            old = self._lease
            if old is None or self._lease_asked == self.ttl:
                return None
            d = self._deadline("switch_lease")
            ttl = self.ttl
            new, granted, sent_at = await self._grant(d, ttl, announce=False)
            grant = KeepaliveResult(True, sent_at, granted, new)
            # The new lease is never revoked when the move fails: the keys may be on it (an
            # answer lost), and a revoke would delete the leader key at once, while this
            # primary's fence runs on. Unrenewed, it expires by itself, ttl after its grant.
            await before_move(grant)
            if not await self._move_keys(d, old, new):
                return None
            self._lease, self._lease_ttl, self._lease_asked = new, granted, ttl
        if self.before_grant is not None:
            try:
                self.before_grant(new)
            except OSError as exc:  # a restart would then not find this lease: no resume
                log.warning("could not write down lease %d: %s", new, exc)
        await self._revoke_quietly(old)
        return grant

    async def _move_keys(self, d: Deadline, old: int, new: int) -> bool:
        """Put the leader key (if on ``old`` and ours) and the member key onto ``new`` in one
        txn, each compared on its mod revision (the leader key keeps its name and its create
        revision, the fencing token); True when they are on ``new``, False when they surely are
        not (no key of ours on ``old`` any more, or every compare lost to a newer write);
        DcsError when a lost answer leaves it open."""
        keys = self.keys
        unknown: OutcomeUnknown | None = None
        for _ in range(_MOVE_TRIES):
            snap = await self._call(d, partial(self._transport.range, keys.prefix, prefix=True))
            leader, member = snap.get(keys.leader), snap.get(keys.member(self.name))
            compares: list[Compare] = []
            puts: list[Put | Delete] = []
            for kv in (leader, member):
                if kv is None or kv.lease != old:
                    continue
                if kv is leader and kv.value != self.name.encode():
                    continue
                compares.append(Compare(kv.key, Target.MOD, "=", kv.mod_revision))
                puts.append(Put(kv.key, kv.value, new))
            if not puts:
                # Nothing of ours left on the old lease. Moved already (an earlier attempt whose
                # outcome was unknown did apply), or the old lease expired with its keys, or
                # nothing was published yet (no move: the next keepalive tells which).
                mine = (kv for kv in (leader, member) if kv is not None and kv.lease == new)
                return any(mine)
            try:
                if await self._txn(d, compares, puts):
                    return True
            except OutcomeUnknown as exc:
                unknown = exc
                await _unknown(d, exc)
            except LeaseGone as exc:
                raise d.fail(exc) from exc
            # A key changed meanwhile (the member key is published every loop), or the outcome
            # is unknown: read again; keys already on the new lease are left alone.
        if unknown is not None:
            # A txn whose answer was lost may still apply: the keys may end on either lease.
            raise d.fail(f"moving the keys onto lease {new}: {unknown}")
        return False

    async def _revoke_quietly(self, lease_id: int) -> None:
        """Revoke a lease this session no longer uses (best effort: it expires anyway)."""
        d = self._deadline("revoke")
        try:
            with contextlib.suppress(LeaseGone):
                await self._write_idempotent(d, partial(self._transport.lease_revoke, lease_id))
        except DcsError as exc:
            log.warning("could not revoke lease %d (it expires by itself): %s", lease_id, exc)

    async def adopt_lease(self, lease_id: int) -> tuple[KeepaliveResult, LeaderKey | None]:
        """Take over ``lease_id``, a lease an earlier agent process of this member granted.

        The lease becomes this session's only if a keepalive on it succeeds now (the result is
        returned: its ``sent_at`` is where a fence deadline may be counted from, never from
        anything older). Then the leader key is read: it is returned only while it names this
        member AND is attached to this very lease, so a key of an older session, or one that
        merely carries this member's name, is never taken for ours. On a failed keepalive the
        lease is gone, and with it every key attached to it: (not ok, None).
        """
        if type(lease_id) is not int or lease_id < 1:
            raise ValueError(f"adopt_lease: lease id must be an int >= 1, got {lease_id!r}")
        async with self._lease_lock:
            if self._lease is not None and self._lease != lease_id:
                raise DcsError(f"adopt_lease: this session already holds lease {self._lease}")
            d = self._deadline("adopt_lease")
            sent_at = clock.now()
            try:
                ttl = await self._call(d, partial(self._transport.lease_keepalive, lease_id))
            except LeaseGone:
                return KeepaliveResult(False, sent_at, self._lease_ttl), None
            except OutcomeUnknown as exc:
                raise d.fail(exc) from exc
            self._lease, self._lease_ttl, self._lease_asked = lease_id, ttl, ttl
        result = KeepaliveResult(True, sent_at, ttl, lease_id)
        kv = await self._read_key(d, self.keys.leader)
        return result, held_leader(kv, lease_id, self.name)

    def _forget_lease(self, lease_id: int) -> None:
        if self._lease == lease_id:
            self._lease = None

    # -- Dcs: reads

    async def get_cluster(self) -> ClusterView:
        """Everything under the scope, read in ONE linearizable range (one revision)."""
        d = self._deadline("get_cluster")
        prefix = self.keys.prefix
        sent_at = self._timer.now()
        self._quiet = False
        snap = await self._call(d, partial(self._transport.range, prefix, prefix=True))
        view = build_view(self.keys, snap)
        self._seen = snap
        self._view = (view, sent_at)
        return view

    def cached_cluster(self, max_age: float) -> ClusterView | None:
        """The last :meth:`get_cluster`'s view, when it may stand for a new read: the last
        :meth:`watch` (it watched from that read's revision + 1) ended QUIET, no event at all
        under the scope, member keys included, with the watch in place and answering (and, on
        the embedded store, the local member able to vouch for its copy), and that read was
        sent less than ``max_age`` seconds ago: a lagging or cut-off store member sees no
        events, so age bounds how stale silence can make the view. No write of this session
        since the watch (any call but a read or a keepalive counts). One answer per such
        watch. Else None: read again."""
        quiet, self._quiet = self._quiet, False  # one answer per quiet watch
        if self._view is None or not quiet:
            return None
        view, sent_at = self._view
        return view if self._timer.now() - sent_at < max_age else None

    async def watch(self, timeout: float) -> bool:
        """Wait for a change under the scope after the last :meth:`get_cluster`; member keys
        do not end the wait, but any event under the scope (theirs included) keeps
        :meth:`cached_cluster` from answering until the next read."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError(f"watch timeout must be >= 0 seconds, got {timeout!r}")
        self._quiet = False
        try:
            seen = await self._transport.wait_for_change(
                self.keys.prefix, self._seen, timeout, ignore=self.keys.members
            )
        except (StoreUnavailable, StoreRefused) as exc:
            raise DcsError(f"watch: {exc}") from exc
        self._quiet = seen is Watched.QUIET and self._seen is not None
        return seen is Watched.CHANGE

    # -- Dcs: initialize

    async def take_initialize(self, sysid: str) -> bool:
        """Create ``initialize`` if absent; True if this call created it."""
        _check_sysid(sysid)
        d = self._deadline("take_initialize")
        key = self.keys.initialize
        while True:
            try:
                return await self._txn(
                    d, [Compare(key, Target.CREATE, "=", 0)], [Put(key, sysid.encode())]
                )
            except OutcomeUnknown as exc:
                await _unknown(d, exc)
                kv = await self._read_key(d, key)
                if kv is None:
                    continue  # it did not apply: try again
                if kv.value != sysid.encode():
                    return False
                # The key holds our value, but every candidate writes the same one.
                raise d.fail(
                    f"the create of {key} may or may not have been ours ({exc}); "
                    "read the cluster again"
                ) from exc

    async def set_initialize(self, sysid: str) -> None:
        """Overwrite ``initialize`` with ``sysid``."""
        _check_sysid(sysid)
        d = self._deadline("set_initialize")
        op = Put(self.keys.initialize, sysid.encode())
        await self._write_idempotent(d, partial(self._transport.put, op))

    async def delete_initialize(self, revision: int | None = None) -> None:
        """Delete ``initialize`` (with ``revision``: only while it is that write); absent is
        fine."""
        if revision is not None and (type(revision) is not int or revision < 1):
            raise ValueError(f"delete_initialize: revision must be an int >= 1, got {revision!r}")
        d = self._deadline("delete_initialize")
        key = self.keys.initialize
        if revision is None:
            await self._write_idempotent(d, partial(self._transport.delete, key))
            return
        # Repeating a compare-and-delete is harmless: once it applied, the compare fails.
        compare = [Compare(key, Target.MOD, "=", revision)]
        await self._write_idempotent(d, partial(self._transport.txn, compare, [Delete(key)]))

    # -- Dcs: member and leader keys

    async def touch_member(self, member: MemberState) -> None:
        """Write this agent's member key attached to the session's lease, unless the store
        already holds exactly that (see :meth:`_member_current`): an idle agent publishes the
        same state every loop, and each write would be a Raft entry fsync'ed on every member."""
        if member.name != self.name:
            raise ValueError(
                f"touch_member: this session belongs to {self.name!r}, got the state of "
                f"{member.name!r}"
            )
        key, value = self.keys.member(self.name), encode_value(member)
        if self._member_current(key, value):
            return
        d = self._deadline("touch_member")
        while True:
            lease = await self._ensure_lease(d)
            op = Put(key, value, lease)
            try:
                await self._write_idempotent(d, partial(self._transport.put, op))
                self._published = (value, lease)
                return
            except LeaseGone as exc:
                d.last = exc
                self._forget_lease(lease)

    def _member_current(self, key: str, value: bytes) -> bool:
        """Whether the member key needs no write: this session wrote ``value`` on its current
        lease last, and the last :meth:`get_cluster` (the HA loop reads it just before it
        publishes) saw the key with that value on that lease. A new lease, a changed state, or
        a key deleted or overwritten since (e.g. its lease expired) all mean a write."""
        lease = self._lease
        if lease is None or self._published != (value, lease) or self._seen is None:
            return False
        seen = self._seen.get(key)
        return seen is not None and seen.value == value and seen.lease == lease

    async def acquire_leader(self) -> LeaderKey | None:
        """txn(create_revision(leader) == 0 -> put name with the lease)."""
        d = self._deadline("acquire_leader")
        key, name = self.keys.leader, self.name
        while True:
            lease = await self._ensure_lease(d)
            try:
                outcome = await self._call(
                    d,
                    partial(
                        self._transport.txn,
                        [Compare(key, Target.CREATE, "=", 0)],
                        [Put(key, name.encode(), lease)],
                    ),
                )
            except LeaseGone as exc:
                d.last = exc
                self._forget_lease(lease)
                continue
            except OutcomeUnknown as exc:
                await _unknown(d, exc)
                kv = await self._read_key(d, key)
                if kv is None:
                    continue  # not applied (or already expired with our lease): try again
                if kv.lease == lease and kv.value == name.encode():
                    return LeaderKey(name, kv.create_revision)
                return None
            if not outcome.succeeded:
                return None
            return LeaderKey(name, outcome.revision)

    async def keepalive(self) -> KeepaliveResult:
        """Renew the lease; ``sent_at`` is taken just before the request leaves."""
        lease = self._lease
        if lease is None:
            return KeepaliveResult(False, clock.now(), self._lease_ttl)
        d = self._deadline("keepalive")
        sent_at = clock.now()
        try:
            ttl = await self._call(d, partial(self._transport.lease_keepalive, lease))
        except LeaseGone:
            self._forget_lease(lease)
            return KeepaliveResult(False, sent_at, self._lease_ttl)
        except OutcomeUnknown as exc:  # a transport should not say this of a keepalive
            raise d.fail(exc) from exc
        return KeepaliveResult(True, sent_at, ttl, lease)

    async def release_leader(self, expected: LeaderKey) -> bool:
        """Delete the leader key only if its create revision is still ``expected.revision``.

        After an unknown outcome the key being absent counts as released by this call.
        """
        d = self._deadline("release_leader")
        key = self.keys.leader
        compares = [Compare(key, Target.CREATE, "=", expected.revision)]
        unknown = False
        while True:
            try:
                if await self._txn(d, compares, [Delete(key)]):
                    return True
            except OutcomeUnknown as exc:
                unknown = True
                await _unknown(d, exc)
                continue
            if not unknown:
                return False
            return await self._read_key(d, key) is None

    # -- Dcs: operator requests and settings

    async def set_switchover(
        self,
        request: SwitchoverRequest | None,
        *,
        expected: SwitchoverRequest | None = None,
    ) -> bool:
        """Store or delete the switchover request; with ``expected``, only if it is stored."""
        d = self._deadline("set_switchover")
        key = self.keys.switchover
        write: Put | Delete = Delete(key) if request is None else Put(key, encode_value(request))
        if expected is None:
            if isinstance(write, Put):
                await self._write_idempotent(d, partial(self._transport.put, write))
            else:
                await self._write_idempotent(d, partial(self._transport.delete, key))
            return True
        unknown = False
        while True:
            kv = await self._read_key(d, key)
            current = decode_switchover(kv) if kv is not None else None
            if current != expected:
                return unknown and current == request  # our write did apply, after all
            assert kv is not None
            try:
                if await self._txn(d, [Compare(key, Target.MOD, "=", kv.mod_revision)], [write]):
                    return True
            except OutcomeUnknown as exc:
                unknown = True
                await _unknown(d, exc)
            # changed meanwhile, or unknown: read again and decide

    async def set_settings(self, settings: DynamicSettings, expected_revision: int) -> bool:
        """Compare-and-swap ``config``: write only if ``mod_revision <= expected_revision``."""
        if type(expected_revision) is not int or expected_revision < 0:
            raise ValueError(f"expected_revision must be an int >= 0, got {expected_revision!r}")
        d = self._deadline("set_settings")
        key = self.keys.config
        compares = [Compare(key, Target.MOD, "<", expected_revision + 1)]
        write = Put(key, encode_settings(settings))
        while True:
            try:
                return await self._txn(d, compares, [write])
            except OutcomeUnknown as exc:
                await _unknown(d, exc)
            kv = await self._read_key(d, key)
            if kv is not None and kv.mod_revision > expected_revision:
                return decode_settings(kv) == settings

    async def set_sync(self, state: SyncState | None, expected_revision: int) -> bool:
        """Compare-and-swap ``sync``: write (or delete) only while its mod revision is still
        ``expected_revision`` (0: absent). After an unknown outcome, read it back: the write
        applied if the key now holds exactly what was written."""
        if type(expected_revision) is not int or expected_revision < 0:
            raise ValueError(f"expected_revision must be an int >= 0, got {expected_revision!r}")
        d = self._deadline("set_sync")
        key = self.keys.sync
        write: Put | Delete = Delete(key) if state is None else Put(key, encode_value(state))
        compares = [Compare(key, Target.MOD, "=", expected_revision)]
        while True:
            try:
                return await self._txn(d, compares, [write])
            except OutcomeUnknown as exc:
                await _unknown(d, exc)
            kv = await self._read_key(d, key)
            if state is None:
                if kv is None:
                    return True  # gone: deleted by this call, or already (the same result)
                if kv.mod_revision != expected_revision:
                    return False  # somebody else wrote it meanwhile
            elif kv is not None and kv.mod_revision != expected_revision:
                return decode_sync(kv) == state  # written since: by this call, or another
            # not applied: try again (the compare decides afresh)

    async def set_position(self, position: PrimaryPosition) -> None:
        """Write the primary's WAL position (no lease: it outlives the primary)."""
        d = self._deadline("set_position")
        op = Put(self.keys.position, encode_value(position))
        await self._write_idempotent(d, partial(self._transport.put, op))

    async def append_history(self, entry: TimelineEntry) -> None:
        """Append ``entry`` unless the history already holds its timeline or a later one."""
        d = self._deadline("append_history")
        key = self.keys.history
        while True:
            kv = await self._read_key(d, key)
            history = decode_history(kv) if kv is not None else ()
            if any(h.timeline >= entry.timeline for h in history):
                return
            mod = kv.mod_revision if kv is not None else 0
            write = Put(key, encode_history((*history, entry)))
            try:
                if await self._txn(d, [Compare(key, Target.MOD, "=", mod)], [write]):
                    return
            except OutcomeUnknown as exc:
                await _unknown(d, exc)
            # lost a race or unknown outcome: read again (idempotent by the timeline check)

    # -- Dcs: the end

    async def close(self) -> None:
        """Revoke the lease (its keys vanish at once), then close the transport."""
        d = self._deadline("close")
        try:
            lease = self._lease
            if lease is not None:
                with contextlib.suppress(LeaseGone):  # gone already: nothing to revoke
                    await self._write_idempotent(d, partial(self._transport.lease_revoke, lease))
                self._forget_lease(lease)
        finally:
            await self._transport.close()

    async def abandon(self) -> None:
        """Close the transport without revoking the lease: its keys expire with it, ttl after
        the last keepalive (when the store cannot be reached, a revoke would only wait)."""
        self._lease = None
        await self._transport.close()


def held_leader(kv: StoredKey | None, lease_id: int, name: str) -> LeaderKey | None:
    """The leader key as ours: only when it names ``name`` and is attached to ``lease_id``."""
    if kv is None or kv.lease != lease_id or kv.value != name.encode():
        return None
    return LeaderKey(name, kv.create_revision)


async def _unknown(d: Deadline, exc: OutcomeUnknown) -> None:
    """Note an unknown outcome and pause a little before reading or writing again."""
    d.last = exc
    await d.pause(_RETRY_PAUSE)


def _check_sysid(sysid: str) -> None:
    if not isinstance(sysid, str) or (sysid and not sysid.isdigit()):
        raise ValueError(f"initialize must be a system identifier (digits) or empty, got {sysid!r}")
