"""A concurrent KV workload against the store, checked for linearizability afterwards.

Client tasks, each with its own StoreClient, write unique values to a few registers, write keys
of their own once each, and read the registers; `check()` reads every register once more and
checks each register's history (`tests.tools.linearizability`) and the unique keys (every
acknowledged one present, every failed one absent). Used by the store's fault tests
(tests/raft/test_store_faults.py) and the chaos runs (tests/chaos), on anything with a
`client()` that makes a StoreClient to every member.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import StoreError, StoreOutcomeUnknownError
from tests.tools.linearizability import READ, WRITE, Recorder, check_per_key
from tests.tools.poll import wait_for_async


class ClientSource(Protocol):
    """Makes a StoreClient to every member of a store (ProcCluster, ChaosCluster)."""

    def client(self, ids: list[int] | None = None, **options: object) -> StoreClient: ...


REGISTERS = [b"t/r/0", b"t/r/1", b"t/r/2"]
"""Keys the workload writes (unique values) and reads, checked for linearizability."""
UNIQUE = b"t/u/"
"""Prefix of keys the workload writes once each: acknowledged ones must all be there."""


# --- the concurrent workload ---------------------------------------------------------------------


@dataclass
class Workload:
    """Client tasks, each with its own StoreClient to every member, writing unique values to
    `REGISTERS`, writing keys of their own under `UNIQUE`, and reading the registers. Register
    operations go to `rec`; unique keys are sorted into acknowledged / unknown / failed."""

    procs: ClientSource
    rec: Recorder
    clients: int = 4
    seed: int = 1
    max_seconds: float = 60.0
    acked: set[bytes] = field(default_factory=set)
    unknown: set[bytes] = field(default_factory=set)
    failed: set[bytes] = field(default_factory=set)
    done_ok: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(c)) for c in range(self.clients)]

    async def stop(self) -> None:
        """Stop every worker after its current operation; re-raise what one raised."""
        self._stop.set()
        async with asyncio.timeout(15.0):
            await asyncio.gather(*self._tasks)

    async def wait_ok(self, more: int, timeout: float = 15.0) -> None:
        """Wait until `more` further operations have succeeded."""
        target = self.done_ok + more

        async def reached() -> bool:
            for t in self._tasks:
                if t.done():
                    t.result()  # a worker that died: show why
                    raise AssertionError("a workload client stopped early")
            return self.done_ok >= target

        await wait_for_async(reached, timeout, f"{more} more successful operations")

    async def _worker(self, cid: int) -> None:
        rng = random.Random(self.seed * 1000 + cid)
        deadline = time.monotonic() + self.max_seconds
        async with self.procs.client(timeout=3.0) as client:
            for n in range(100_000):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                roll = rng.random()
                if roll < 0.4:
                    key = rng.choice(REGISTERS)
                    await self._write_register(client, cid, key, b"c%d-%d" % (cid, n))
                elif roll < 0.6:
                    await self._write_unique(client, UNIQUE + b"%d/%d" % (cid, n))
                else:
                    await self._read_register(client, cid, rng.choice(REGISTERS))
                await asyncio.sleep(0.01)  # pace: four clients, not a load test

    async def _write_register(
        self, client: StoreClient, cid: int, key: bytes, value: bytes
    ) -> None:
        h = self.rec.invoke(cid, key, WRITE, value)
        try:
            await client.put(key, value)
        except StoreOutcomeUnknownError:
            self.rec.unknown(h)
        except StoreError:
            self.rec.failed(h)  # the client's contract: it certainly did not apply
        else:
            self.rec.ok(h)
            self.done_ok += 1

    async def _write_unique(self, client: StoreClient, key: bytes) -> None:
        try:
            await client.put(key, b"1")
        except StoreOutcomeUnknownError:
            self.unknown.add(key)
        except StoreError:
            self.failed.add(key)
        else:
            self.acked.add(key)
            self.done_ok += 1

    async def _read_register(self, client: StoreClient, cid: int, key: bytes) -> None:
        h = self.rec.invoke(cid, key, READ)
        try:
            got = await client.get(key)
        except StoreError:
            self.rec.failed(h)  # a read changes nothing: dropping it is sound
            return
        self.rec.ok(h, got.kvs[0].value if got.count else None)
        self.done_ok += 1

    async def check(self, client: StoreClient) -> None:
        """After the faults: read every register once more (recorded), check each register's
        history, and check the unique keys: every acknowledged one present, every failed one
        absent, nothing present that was never written."""
        for key in REGISTERS:
            h = self.rec.invoke("final", key, READ)
            got = await client.get(key)
            self.rec.ok(h, got.kvs[0].value if got.count else None)
        histories = self.rec.by_key()
        result = check_per_key(histories)
        assert result.ok, result.explanation
        present = {kv.key for kv in (await client.get(UNIQUE, prefix=True, keys_only=True)).kvs}
        assert self.acked <= present, f"acknowledged but lost: {sorted(self.acked - present)[:5]}"
        assert not (self.failed & present), f"failed but applied: {sorted(self.failed & present)}"
        assert present <= self.acked | self.unknown
        writes = sum(op.kind == WRITE for ops in histories.values() for op in ops)
        unknown = sum(not op.completed for ops in histories.values() for op in ops)
        print(
            f"workload: {sum(map(len, histories.values()))} register ops ({writes} writes, "
            f"{unknown} unknown); unique keys {len(self.acked)} acked, {len(self.unknown)} "
            f"unknown, {len(self.failed)} failed"
        )
        assert writes >= 30 and len(self.acked) >= 10, (writes, len(self.acked))
