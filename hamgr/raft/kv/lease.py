"""The leader-side lease clock: which leases are still alive, counted on the leader only.

Pure: time is an input (`now`, float seconds of a monotonic clock), never read here. The KV store
(`hamgr.raft.kv.store`) records each lease's TTL but knows nothing of time; this clock decides when
a lease has expired, and the node turns each expiry into a revoke entry through the log, so every
member deletes the attached keys at the same revision.

The one safety rule: a lease is never reported expired, nor refused a keepalive as expired, before
`start + ttl`, where `start` is the latest of its grant, its last successful keepalive, and the
moment this member became leader. A new leader cannot know when the last keepalive reached the
old one, so `become_leader` restarts every lease's full TTL. A follower counts nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hamgr.raft.errors import LeaseExpiredError, LeaseNotFoundError, NotLeaderError

__all__ = [
    "MIN_TTL_ELECTION_FACTOR",
    "LeaseClock",
    "effective_ttl",
]

MIN_TTL_ELECTION_FACTOR = 1.5
"""A lease's TTL is at least this many election timeouts, so one election cannot expire it."""


def _need_time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


def _need_ttl(name: str, value: object) -> float:
    ttl = _need_time(name, value)
    if ttl <= 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return ttl


def effective_ttl(requested: float, election_timeout_s: float) -> float:
    """The TTL to grant: at least 1.5 x the election timeout, whatever was asked for."""
    requested = _need_ttl("requested ttl", requested)
    election_timeout_s = _need_ttl("election timeout", election_timeout_s)
    return max(requested, MIN_TTL_ELECTION_FACTOR * election_timeout_s)


@dataclass(slots=True)
class _Lease:
    ttl: float
    deadline: float
    reported_at: float | None = None  # when expired() last reported it


class LeaseClock:
    """Counts lease deadlines while this member is the Raft leader.

    The node drives it:
    - `become_leader(now, kv.leases())` after its first commit in a new term;
    - `grant(id, ttl, now)` after a grant entry applies (ignored on followers);
    - `keepalive(id, now)` only after a ReadIndex round confirmed leadership;
    - `revoke(id)` after a revoke entry applies;
    - `expired(now)` on each tick: propose a revoke entry for each id returned. An id is
      reported again every `retry_interval` seconds until revoked, in case a proposal was lost;
    - `step_down()` when it stops being leader.
    """

    def __init__(self, *, retry_interval: float = 1.0) -> None:
        self._retry_interval = _need_ttl("retry_interval", retry_interval)
        self._leases: dict[int, _Lease] = {}
        self._leader = False

    @property
    def is_leader(self) -> bool:
        """True between `become_leader` and `step_down`."""
        return self._leader

    def __len__(self) -> int:
        return len(self._leases)

    def become_leader(self, now: float, leases: Mapping[int, float]) -> None:
        """Start counting: every lease in `leases` (id -> ttl) lives its full TTL from `now`.

        Leases not in `leases` are forgotten. Calling it again while leader never shortens a
        lease that is still known.
        """
        now = _need_time("now", now)
        counted: dict[int, _Lease] = {}
        for lease_id, ttl in leases.items():
            ttl = _need_ttl(f"ttl of lease {lease_id}", ttl)
            deadline = now + ttl
            old = self._leases.get(lease_id) if self._leader else None
            if old is not None:
                deadline = max(deadline, old.deadline)
            counted[lease_id] = _Lease(ttl, deadline)
        self._leases = counted
        self._leader = True

    def step_down(self) -> None:
        """Stop counting and forget every deadline (a later `become_leader` starts afresh)."""
        self._leader = False
        self._leases = {}

    def grant(self, lease_id: int, ttl: float, now: float) -> None:
        """Count a newly granted lease from `now`. On a follower this does nothing."""
        ttl = _need_ttl("ttl", ttl)
        now = _need_time("now", now)
        if not self._leader:
            return
        old = self._leases.get(lease_id)
        deadline = now + ttl if old is None else max(now + ttl, old.deadline)
        self._leases[lease_id] = _Lease(ttl, deadline)

    def keepalive(self, lease_id: int, now: float) -> float:
        """Extend the lease to a full TTL from `now`; return that TTL (seconds left).

        Raises NotLeaderError on a follower, LeaseNotFoundError for an unknown lease and
        LeaseExpiredError once its deadline has passed (its revoke is on the way: the holder
        must not believe it still holds anything).
        """
        lease = self._live(lease_id, now)
        lease.deadline = max(lease.deadline, now + lease.ttl)
        return lease.ttl

    def time_to_live(self, lease_id: int, now: float) -> float:
        """Seconds left before the lease expires (0.0 if it already has but is not revoked yet).

        Raises NotLeaderError on a follower, LeaseNotFoundError for an unknown lease.
        """
        now = _need_time("now", now)
        lease = self._known(lease_id)
        return max(0.0, lease.deadline - now)

    def revoke(self, lease_id: int) -> None:
        """Forget a lease (its revoke entry applied). Unknown ids are ignored."""
        self._leases.pop(lease_id, None)

    def expired(self, now: float) -> list[int]:
        """Leases whose deadline has passed and that were not reported in the last
        `retry_interval` seconds, soonest deadline first. Empty on a follower."""
        now = _need_time("now", now)
        if not self._leader:
            return []
        due = []
        for lease_id, lease in self._leases.items():
            if now < lease.deadline:
                continue
            if lease.reported_at is not None and now - lease.reported_at < self._retry_interval:
                continue
            due.append((lease.deadline, lease_id, lease))
        due.sort(key=lambda item: (item[0], item[1]))
        for _, _, lease in due:
            lease.reported_at = now
        return [lease_id for _, lease_id, _ in due]

    def _known(self, lease_id: int) -> _Lease:
        if not self._leader:
            raise NotLeaderError(0, why="this member is not the Raft leader; it counts no leases")
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(f"lease {lease_id} is not known to the leader")
        return lease

    def _live(self, lease_id: int, now: float) -> _Lease:
        now = _need_time("now", now)
        lease = self._known(lease_id)
        if now >= lease.deadline:
            raise LeaseExpiredError(
                f"lease {lease_id} expired {now - lease.deadline:.3f}s ago; it will be revoked"
            )
        return lease
