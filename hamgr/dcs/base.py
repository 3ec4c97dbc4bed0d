"""The coordination-store contract the HA loop needs, and what a backend must guarantee.

Two backends implement :class:`Dcs`: the embedded Raft KV (``hamgr/dcs/raft.py``, the default)
and an existing etcd v3 cluster (``hamgr/dcs/etcd.py``). The HA logic sees nothing else.

Key layout of one cluster, ``scope`` (see :func:`scope_keys`)::

    /hamgr/<scope>/initialize       "" while bootstrapping, then the system identifier
    /hamgr/<scope>/config           DynamicSettings as JSON
    /hamgr/<scope>/leader           the holder's member name, attached to its lease
    /hamgr/<scope>/members/<name>   MemberState as JSON, attached to that agent's lease
    /hamgr/<scope>/switchover       SwitchoverRequest as JSON
    /hamgr/<scope>/history          a JSON list of TimelineEntry
    /hamgr/<scope>/sync             SyncState as JSON: the primary's synchronous standbys
    /hamgr/<scope>/position         PrimaryPosition as JSON: how far the last primary got

Sessions: each client owns ONE lease, granted with ``ttl`` (DynamicSettings.ttl) when it first
needs one. The member key and the leader key are attached to it, so both vanish at the same
store revision when the lease expires (the agent died or was cut off) or is revoked. A lease's
TTL is fixed at its grant: when ``ttl`` changes, :meth:`Dcs.switch_lease` moves both keys onto
a new lease (the leader key keeps its name and create revision) and revokes the old one.

Errors: every method raises :class:`DcsError` when the store cannot answer within
``retry_timeout`` (the backend retries inside that budget); a lost compare-and-swap or create
race is NOT an error, it is the ``False`` / ``None`` result documented on each method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

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


class DcsError(Exception):
    """The store did not answer in time, or refused the request; the message says which."""


@dataclass(frozen=True)
class ScopeKeys:
    """The keys of one scope, spelled once for every backend."""

    prefix: str
    initialize: str
    config: str
    leader: str
    members: str
    switchover: str
    history: str
    sync: str
    position: str

    def member(self, name: str) -> str:
        return self.members + name


def scope_keys(scope: str) -> ScopeKeys:
    """The key layout of ``scope`` (a validated member-name-like word)."""
    prefix = f"/hamgr/{scope}/"
    return ScopeKeys(
        prefix=prefix,
        initialize=prefix + "initialize",
        config=prefix + "config",
        leader=prefix + "leader",
        members=prefix + "members/",
        switchover=prefix + "switchover",
        history=prefix + "history",
        sync=prefix + "sync",
        position=prefix + "position",
    )


@dataclass(frozen=True)
class KeepaliveResult:
    """One lease renewal. ``sent_at`` is the instant the request was SENT, on the deadline
    clock (``hamgr.clock.now()``, CLOCK_BOOTTIME on Linux).

    The store may count the lease from any moment after sending, never before, so the holder's
    safe deadline is ``sent_at + ttl - safety_margin`` (:meth:`fence_at`), whatever the reply's
    delay was. ``ok`` False means the lease is gone (expired or revoked): its keys are gone too.
    """

    ok: bool
    sent_at: float
    ttl: float
    lease_id: int = 0
    """The lease renewed (0: unknown), so that a late answer is counted for that lease only."""

    def fence_at(self, safety_margin: float) -> float | None:
        """The instant PostgreSQL must stop accepting writes unless a newer renewal succeeds."""
        return self.sent_at + self.ttl - safety_margin if self.ok else None


class Dcs(Protocol):
    """One agent's session with the coordination store, for one scope.

    All methods are coroutines and may raise :class:`DcsError`. Writes are linearizable: once a
    method returns, every later :meth:`get_cluster` (by any agent) sees the write.
    """

    ttl: float
    """The ttl new leases are asked for (see :meth:`apply_timing`)."""
    retry_timeout: float
    """Each call's budget in seconds."""

    async def get_cluster(self) -> ClusterView:
        """Everything under the scope, read at one store revision (a linearizable read).

        Absent keys read as their empty value: no ``config`` key gives default settings, no
        ``history`` an empty tuple. A stored value that does not parse raises DcsError naming
        the key and the field (from :class:`~hamgr.dcs.strict.ModelError`); it is never dropped.
        """
        ...

    def cached_cluster(self, max_age: float) -> ClusterView | None:
        """The last :meth:`get_cluster`'s view, if it may stand in for a new read, else None.

        Only right after a :meth:`watch` that timed out with no event at all under the scope
        (member keys included) since that read, the watch in place and answering, no write
        of this session since, and the read sent less than ``max_age`` seconds ago (a store
        member that lags or is cut off sees no events: age bounds what silence can hide).
        At most one answer per such watch. The HA loop uses it to skip a read while nothing
        happens; whatever it decides to DO is decided again on a fresh read.
        """
        ...

    async def take_initialize(self, sysid: str) -> bool:
        """Create ``initialize`` with ``sysid`` if it is absent; True if this call created it.

        The bootstrap race: every candidate calls it with ``""``, exactly one gets True and
        bootstraps. A member that adopts an existing data directory calls it with its system
        identifier. The key is not attached to a lease: it outlives every agent.
        """
        ...

    async def set_initialize(self, sysid: str) -> None:
        """Overwrite ``initialize`` with ``sysid``: the bootstrap winner, once initdb is done."""
        ...

    async def delete_initialize(self, revision: int | None = None) -> None:
        """Delete ``initialize`` (a failed bootstrap gives the race back). Absent is fine.

        With ``revision``, only while the key still is that write (its mod revision): an agent
        dropping a claim it judged orphaned never deletes a newer claim or a system identifier.
        """
        ...

    async def touch_member(self, member: MemberState) -> None:
        """Write ``members/<member.name>`` attached to this session's lease.

        Granting the lease first if there is none. The key vanishes when the lease does, so a
        dead agent disappears from the member list within ttl. Nothing is written when the
        store, as the last :meth:`get_cluster` read it, already holds exactly this state on
        this session's current lease (the keepalive keeps the key alive; a rewrite would only
        cost every store member a log write).
        """
        ...

    async def acquire_leader(self) -> LeaderKey | None:
        """Take the leader key for this agent, if nobody holds it.

        One transaction: if ``create_revision(leader) == 0`` then put the agent's name attached
        to this session's lease. Returns the key with its create revision (the fencing token,
        which only grows) or None if the key was held. Attaching the key does not extend the
        lease: the fence deadline stays that of the lease's last successful keepalive.
        """
        ...

    async def keepalive(self) -> KeepaliveResult:
        """Renew this session's lease; ``sent_at`` is taken just before the request is sent.

        The backend answers ``ok`` only after the store confirmed the renewal with a quorum (the
        Raft leader confirms it still leads before replying). ``ok`` False: the lease expired;
        the next :meth:`touch_member` grants a new one.
        """
        ...

    def apply_timing(self, ttl: float, retry_timeout: float) -> None:
        """Take the cluster's current ``ttl`` and ``retry_timeout`` (the HA loop calls this with
        every view it reads): ``retry_timeout`` bounds every later call at once; a new ``ttl``
        applies to the next lease granted, and :meth:`switch_lease` moves the keys onto one."""
        ...

    async def switch_lease(
        self, before_move: Callable[[KeepaliveResult], Awaitable[None]]
    ) -> KeepaliveResult | None:
        """Move this session's keys onto a new lease granted with the current ``ttl``, when the
        lease they are on was granted with another one; None when there is nothing to move (or
        the move did not happen: the keys stayed where they were).

        Order, so that a fence never lies past the store's expiry of the key's lease: grant
        the new lease (its renewal counted from before the grant was sent); ``before_move``
        with that grant (the agent moves its fence to the earlier of both leases' expiries;
        an error it raises stops the switch); move the leader key (compare-and-swap on its mod
        revision: the key keeps its name and its create revision, the fencing token) and the
        member key onto it; only then revoke the old lease. Returns the grant. A failed move
        never revokes the new lease (the keys may be on it): it expires, unrenewed. DcsError
        when it is not known which lease the keys are on (the caller keeps counting both).
        """
        ...

    async def adopt_lease(self, lease_id: int) -> tuple[KeepaliveResult, LeaderKey | None]:
        """Take over ``lease_id``, granted by an earlier process of this agent, if a keepalive
        on it succeeds now; returns that keepalive and the leader key when it names this agent
        and is attached to that lease (a restarted agent resumes its leadership with it)."""
        ...

    async def release_leader(self, expected: LeaderKey) -> bool:
        """Delete the leader key only if its create revision still equals ``expected``'s.

        True if this call deleted it; False if it was gone or belongs to someone else (a newer
        holder's key is never deleted by an old one). The lease is kept.
        """
        ...

    async def set_switchover(
        self,
        request: SwitchoverRequest | None,
        *,
        expected: SwitchoverRequest | None = None,
    ) -> bool:
        """Store ``request`` at ``switchover``, or delete it when None.

        With ``expected``, only if the stored request still equals it (so that clearing a
        finished request never deletes a newer one); True if the write happened.
        """
        ...

    async def set_settings(self, settings: DynamicSettings, expected_revision: int) -> bool:
        """Compare-and-swap the ``config`` key.

        Writes only if ``config`` was not modified after store revision ``expected_revision``
        (``mod_revision <= expected_revision``; with 0 the key must be absent). Pass the
        ``revision`` of the view the change was based on. True if written, False if someone
        changed the settings meanwhile (read again and retry).
        """
        ...

    async def append_history(self, entry: TimelineEntry) -> None:
        """Append ``entry`` to ``history`` (read-modify-write under compare-and-swap).

        Idempotent: nothing is written when the history already holds ``entry.timeline`` or a
        later timeline, so an agent that repeats the call after a crash adds no duplicate.
        """
        ...

    async def set_sync(self, state: SyncState | None, expected_revision: int) -> bool:
        """Compare-and-swap the ``sync`` key (None deletes it).

        Writes only if ``sync``'s mod revision still equals ``expected_revision`` (0: the key
        must be absent): the primary changes its synchronous-standby record only on top of the
        record it based the change on (:attr:`ClusterView.sync_revision`). True if written.
        """
        ...

    async def set_position(self, position: PrimaryPosition) -> None:
        """Write ``position`` (the primary's WAL position; attached to no lease)."""
        ...

    async def watch(self, timeout: float) -> bool:
        """Wait until anything under the scope but the member keys changes after the last
        :meth:`get_cluster` (members publish every cycle; waking on those would make every
        agent's publication wake all the others at once, forever).

        True as soon as a change happened (including one before the call), False when
        ``timeout`` seconds passed without one. The HA loop uses it to wake at once when the
        leader key goes, instead of sleeping a whole ``loop_wait``. Member keys that changed do
        not end the wait, but they keep :meth:`cached_cluster` from answering.
        """
        ...

    async def close(self) -> None:
        """End the session: revoke the lease (the member key, and the leader key if still held,
        vanish at once) and close connections. A primary stops PostgreSQL before this."""
        ...
