"""Which lease the keys are on, and the fence deadline that follows from it (pure, no I/O).

A lease's TTL is fixed when it is granted, so a live change of ``ttl`` needs a new lease: the
session grants one with the new ttl, moves its keys onto it by compare-and-swap (the leader key
keeps its name and its create revision, the fencing token), then revokes the old one (see
:meth:`hamgr.dcs.session.KvSession.switch_lease`). While the move is under way the keys may be on
either lease, so the deadline is the EARLIER of the two; once the move is confirmed, only the
new lease counts. The rule, for any sequence of changes::

    fence_at = min(renewed_at + ttl for every lease the keys may be on) - safety_margin

where ``renewed_at`` is the instant the lease's last successful grant or keepalive was SENT and
``ttl`` what the store granted. The store counts a lease from some moment after that, so the
fence never lies past the store's expiry of the lease the key is on. Hence a shorter ttl (or a
larger margin) moves the fence back at once, and a longer ttl moves it forward only after the
key sits on the longer lease and that lease was renewed. Replicas need no rule of their own:
they take over when the leader key is gone, which the store decides from the same lease.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["LeaseClock", "Renewal"]


@dataclass(frozen=True)
class Renewal:
    """A successful grant or keepalive of ``lease_id``: sent at ``sent_at`` (hamgr.clock),
    the store's TTL ``ttl``."""

    lease_id: int
    sent_at: float
    ttl: float

    @property
    def expires_no_earlier(self) -> float:
        """The store cannot expire the lease before this instant (it counts from later)."""
        return self.sent_at + self.ttl


@dataclass(frozen=True)
class LeaseClock:
    """The leases this agent's keys may be attached to, each with its latest renewal.

    ``leases`` holds one Renewal per lease (two only while a switch is under way);
    ``retired`` the leases the keys were moved off, whose late keepalive answers must never
    count again (they would lengthen a fence the key's lease no longer grants).
    """

    leases: tuple[Renewal, ...] = ()
    retired: frozenset[int] = frozenset()

    def renewed(self, r: Renewal) -> LeaseClock:
        """A keepalive (or grant) of ``r.lease_id`` succeeded.

        A lease the keys may be on moves to the later of its renewals (an answer that arrives
        late never moves it back). A retired lease counts for nothing. Any other lease is the
        session's new one (the old expired and a new one was granted): it replaces them all.
        """
        if r.lease_id in self.retired:
            return self
        ids = [x.lease_id for x in self.leases]
        if r.lease_id not in ids:
            return LeaseClock((r,), self.retired)
        return replace(
            self,
            leases=tuple(_later(x, r) if x.lease_id == r.lease_id else x for x in self.leases),
        )

    def switching(self, new: Renewal) -> LeaseClock:
        """A new lease was granted and the keys are about to be moved onto it: until the move
        is confirmed they may be on either lease."""
        if new.lease_id in self.retired:
            raise ValueError(f"lease {new.lease_id} was retired: it cannot carry the keys again")
        kept = tuple(x for x in self.leases if x.lease_id != new.lease_id)
        return LeaseClock((*kept, new), self.retired)

    def switched(self, new_id: int) -> LeaseClock:
        """The move onto ``new_id`` is confirmed: the other leases no longer carry the keys."""
        kept = tuple(x for x in self.leases if x.lease_id == new_id)
        if not kept:
            raise ValueError(f"lease {new_id} is not one the keys were being moved onto")
        gone = {x.lease_id for x in self.leases if x.lease_id != new_id}
        return LeaseClock(kept, self.retired | gone)

    def abandoned(self, new_id: int) -> LeaseClock:
        """The move onto ``new_id`` did not happen (the keys stayed where they were)."""
        kept = tuple(x for x in self.leases if x.lease_id != new_id)
        return LeaseClock(kept, self.retired | {new_id})

    @property
    def current(self) -> Renewal | None:
        """The lease that bounds the fence now (the earliest expiry), if any."""
        return min(self.leases, key=lambda x: x.expires_no_earlier, default=None)

    def deadline(self, safety_margin: float) -> float | None:
        """The fence deadline: the earliest possible expiry minus ``safety_margin``."""
        cur = self.current
        return None if cur is None else cur.expires_no_earlier - safety_margin


def _later(old: Renewal, new: Renewal) -> Renewal:
    """The later renewal of one lease (its ttl as the store last said)."""
    return new if new.sent_at >= old.sent_at else old
