"""The KV and lease checks shared by the simulators: what clients saw must fit one history.

`KVHistory` records what clients were told (acknowledged writes, leases granted and kept alive)
and what members did (revokes applied), and raises `Violation` at the first contradiction:

- linearizable KV reads: a read is served at a KV revision no older than every write to its key
  acknowledged before the read began, and it returns that write or a newer one (an acknowledged
  write is never lost; only its lease's revoke may delete a leased key);
- lease safety: a lease's keys are never deleted by its expiry before its TTL has run from the
  send of its grant or of its latest successful keepalive; and once a lease's revoke has applied
  anywhere, no read that begins later returns one of its keys.

Used by `hamgr.raft.sim.kv` (Raft cores, virtual ms) and `hamgr.raft.sim.node` (real
`RaftNode`s on a virtual-time event loop); times are in milliseconds of the simulation's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hamgr.raft.kv.kvresults import KeyValue
from hamgr.raft.sim.check import Violation

__all__ = ["KVHistory"]

MS = 1000.0


@dataclass
class KVHistory:
    """What clients were told and what members applied, checked as it happens."""

    key_acked: dict[bytes, int] = field(default_factory=dict)
    """key -> revision of its newest acknowledged write."""
    lease_ttl: dict[int, float] = field(default_factory=dict)
    """lease -> TTL in seconds, as proposed."""
    alive_from: dict[int, float] = field(default_factory=dict)
    """lease -> send time of its grant or of its latest successful keepalive."""
    revoked_at: dict[int, float] = field(default_factory=dict)
    """lease -> when its revoke first applied on any member."""
    leased_keys: list[tuple[bytes, int]] = field(default_factory=list)
    key_lease: dict[bytes, int] = field(default_factory=dict)
    """key -> the lease its acknowledged write attached (keys are written with one lease)."""
    reads: int = 0

    def lease_granted(self, lease: int, ttl: float, sent: float) -> None:
        """A client sent a grant of `lease` for `ttl` seconds at `sent`."""
        self.lease_ttl[lease] = ttl
        self.alive_from[lease] = sent

    def keepalive_ok(self, lease: int, sent: float) -> None:
        """A keepalive of `lease` sent at `sent` succeeded: the TTL runs from `sent` on."""
        self.alive_from[lease] = max(self.alive_from.get(lease, 0), sent)

    def put_acked(self, key: bytes, revision: int, lease: int = 0) -> None:
        """A write of `key` at `revision` was acknowledged to its client."""
        self.key_acked[key] = max(self.key_acked.get(key, 0), revision)
        if lease:
            self.leased_keys.append((key, lease))
            self.key_lease[key] = lease

    def need_revision(self, key: bytes) -> int:
        """What a read of `key` beginning now must see at least."""
        return self.key_acked.get(key, 0)

    def live_leases(self) -> list[int]:
        """Leases granted (maybe) and not yet seen revoked."""
        return [lease for lease in self.lease_ttl if lease not in self.revoked_at]

    def revoke_applied(self, member: int, lease: int, now: float) -> bool:
        """`member` applied the revoke of `lease` at `now`; True the first time (anywhere)."""
        if lease in self.revoked_at:
            return False
        self.revoked_at[lease] = now
        ttl = self.lease_ttl.get(lease)
        start = self.alive_from.get(lease)
        if ttl is not None and start is not None and now < start + ttl * MS:
            raise Violation(
                f"lease safety: lease {lease} revoked on {member} at {now:.0f} ms, before its "
                f"TTL of {ttl * MS:.0f} ms from its last keepalive sent at {start:.0f} ms"
            )
        return True

    def read_served(
        self,
        member: int,
        key: bytes,
        revision: int,
        got: KeyValue | None,
        sent: float,
        need_revision: int,
    ) -> None:
        """A read of `key` sent at `sent` was served by `member` at KV `revision`, returning
        `got`; `need_revision` is what `need_revision(key)` said when the read began."""
        self.reads += 1
        if revision < need_revision:
            raise Violation(
                f"stale KV read on {member}: key {key!r} read at revision {revision}, "
                f"a write at revision {need_revision} was acknowledged before the read began"
            )
        if need_revision and (got is None or got.mod_revision < need_revision):
            lease = self.key_lease.get(key, 0)
            if not lease or lease not in self.revoked_at:
                raise Violation(
                    f"lost write on {member}: key {key!r} read as "
                    f"{'absent' if got is None else f'written at {got.mod_revision}'}, a write at "
                    f"revision {need_revision} was acknowledged before the read began"
                )
        if got is not None and got.lease:
            gone = self.revoked_at.get(got.lease)
            if gone is not None and gone <= sent:
                raise Violation(
                    f"lease safety: key {key!r} of lease {got.lease} read on {member} after "
                    f"the lease's revoke applied at {gone:.0f} ms"
                )
