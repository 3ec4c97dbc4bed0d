"""Lease safety under faults: a probe that keeps leases alive, lets them lapse, and reads.

Each cycle grants a lease, puts a key under it, keeps it alive (recording when each keepalive
that succeeded was SENT), stops, and reads the key until it is gone and a few times more.
`check_cycles` (pure) then finds the two violations of the store's lease promise:

- **expired early**: a read that returned "absent" before ``send + ttl`` of a keepalive that
  succeeded (the leader processed it at or after its send and extended the lease by the full
  ttl from then, so the key must be there until at least ``send + ttl``);
- **back from the dead**: a read that started after another read had returned "absent" and
  found the key again.

Only cycles whose put was acknowledged count; reads that failed are dropped (a read changes
nothing). All instants are CLOCK_MONOTONIC, one clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import StoreError

PREFIX = b"t/lease/"
TTL = 3.0
READ_PAUSE = 0.05
AFTER_GONE = 5
"""Reads after the first that found the key gone."""


@dataclass
class Cycle:
    """What one cycle saw: the ttl, when the put was acknowledged, the send instants of the
    keepalives (and the grant) that succeeded, and each read as (call, return, present)."""

    key: bytes
    ttl: float
    put_acked: float
    sends: list[float] = field(default_factory=list)
    reads: list[tuple[float, float, bool]] = field(default_factory=list)


def check_cycles(cycles: list[Cycle]) -> list[str]:
    """The violations (module doc), one line each."""
    found = []
    for c in cycles:
        alive_until = max(c.sends, default=c.put_acked) + c.ttl
        for call, ret, present in c.reads:
            if not present and call >= c.put_acked and ret < alive_until:
                found.append(
                    f"{c.key!r}: expired early: read absent at {ret:.3f}, "
                    f"{alive_until - ret:.3f} s before last keepalive send + ttl"
                )
                break
        gone_at = min((ret for _, ret, present in c.reads if not present), default=None)
        if gone_at is not None:
            back = [call for call, _, present in c.reads if present and call > gone_at]
            if back:
                found.append(
                    f"{c.key!r}: back from the dead: present in a read started {back[0]:.3f}, "
                    f"after a read returned absent at {gone_at:.3f}"
                )
    return found


class LeaseProbe:
    """Runs cycles on `client` until `stop` is set (module doc); `cycles` holds what counts."""

    def __init__(self, client: StoreClient, seed: int) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.cycles: list[Cycle] = []
        self.skipped = 0
        self.stop = asyncio.Event()

    async def read(self, cycle: Cycle) -> bool | None:
        call = time.monotonic()
        try:
            got = await self.client.get(cycle.key, timeout=3.0)
        except StoreError:
            return None
        present = bool(got.count)
        cycle.reads.append((call, time.monotonic(), present))
        return present

    async def one(self, n: int) -> None:
        key = PREFIX + b"%d" % n
        try:
            sent = time.monotonic()
            granted = await self.client.lease_grant(TTL, timeout=3.0)
            await self.client.put(key, b"1", granted.lease_id, timeout=3.0)
        except StoreError:
            self.skipped += 1
            return
        cycle = Cycle(key, max(TTL, float(granted.ttl)), time.monotonic(), [sent])
        self.cycles.append(cycle)
        hold_until = time.monotonic() + self.rng.uniform(1.0, 5.0)
        next_keepalive = 0.0
        while time.monotonic() < hold_until and not self.stop.is_set():
            if time.monotonic() >= next_keepalive:
                sent = time.monotonic()
                try:
                    cycle.ttl = max(cycle.ttl, await self.client.lease_keepalive(
                        granted.lease_id, timeout=cycle.ttl / 2))  # fmt: skip
                    cycle.sends.append(sent)
                except StoreError:
                    pass
                next_keepalive = sent + cycle.ttl / 4
            await self.read(cycle)
            await asyncio.sleep(READ_PAUSE)
        deadline = time.monotonic() + 4 * cycle.ttl + 20
        after = 0
        while time.monotonic() < deadline and after <= AFTER_GONE and not self.stop.is_set():
            if await self.read(cycle) is False or after:
                after += 1
            await asyncio.sleep(READ_PAUSE)

    async def run(self) -> None:
        for n in range(100_000):
            if self.stop.is_set():
                return
            await self.one(n)
