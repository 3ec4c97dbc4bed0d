"""One chaos run: a schedule (`tests.chaos.nemesis`) played on a `ChaosCluster`, then checked.

`run_schedule` waits for the cluster to settle, creates the table, starts one direct writer
per member (`bench/ackwriter.py` through `bench/writers.py`, from the root namespace straight to
the member's PostgreSQL, not through the relay: a client on a cut-off primary's side keeps
writing to it), samples the leader every `SAMPLE` s, plays the steps (inject, hold, heal), heals
everything, measures how long the cluster takes to settle (one primary, every replica
streaming), stops the writers and reads the final primary's rows. Beside the nemesis, `StoreProbes`
runs the KV workload and the lease probe against the store. `Report.findings` holds each
checker's verdict (`tests.chaos.checkers`). Every process it starts is killed by PID.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hamgr.raft.errors import StoreError
from tests.chaos import checkers
from tests.chaos.harness import ChaosCluster
from tests.chaos.nemesis import Fault, Step
from tests.ha.agentcluster import PASSWORD
from tests.tools.kvworkload import Workload
from tests.tools.leaseprobe import LeaseProbe, check_cycles
from tests.tools.linearizability import Recorder

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from procs import Procs
from writers import SEQ_STRIDE, WriterSet, WriterSpec

TABLE = "chaos_writes"
SETTLE = 120.0
"""Bound (s) for the cluster to settle at the start and after the nemesis (liveness)."""
SAMPLE = 0.5
WRITE_RATE = 20.0
CANCEL_AFTER = 5.0
AFTER_SETTLE = 3.0
"""Seconds the writers go on after the cluster settled, so the final primary takes writes."""


@dataclass
class Report:
    """What a run found."""

    seed: int
    findings: list[checkers.Finding] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    false_failovers: int = 0
    samples: list[tuple[float, str | None, int]] = field(default_factory=list)
    """(seconds into the run, leader, fence token) as sampled."""

    @property
    def violations(self) -> int:
        return sum(f.violations for f in self.findings if f.checker != "no false failover")


class Sampler:
    """Asks the members who leads (GET /cluster; the answer with the highest fence token wins,
    since a cut-off member's view may be stale) every SAMPLE s, in a thread."""

    def __init__(self, cluster: ChaosCluster, start: float) -> None:
        self.cluster = cluster
        self.start = start
        self.samples: list[tuple[float, str | None, int]] = []
        self.serving: list[tuple[float, bool]] = []
        """(seconds into the run, whether the leader said it serves as primary)."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="leader-sampler", daemon=True)

    def leader(self) -> tuple[str | None, int]:
        best: tuple[str | None, int] = (None, -1)
        for name in self.cluster.members:
            status, body = self.cluster.http(name, "/cluster", 0.5)
            if status == 200 and isinstance(body, dict):
                token = int(body.get("fence_token") or 0)
                if token > best[1]:
                    best = (body.get("leader"), token)
        return best

    def run(self) -> None:
        while not self.stop.wait(SAMPLE):
            at = time.monotonic() - self.start
            leader, token = self.leader()
            self.samples.append((at, leader, token))
            if leader is not None:
                status, body = self.cluster.http(leader, "/patroni", 0.5)
                if status == 200 and isinstance(body, dict):
                    self.serving.append((at, body.get("primary_serving") is not False))

    def latest(self) -> str | None:
        for _, leader, _ in reversed(self.samples):
            if leader is not None:
                return leader
        return None


class StoreProbes:
    """The store's own checks, run beside the nemesis on an event loop in a thread: the KV
    workload (`tests.tools.kvworkload`: registers checked for linearizability, acknowledged
    unique keys present) and the lease probe (`tests.tools.leaseprobe`)."""

    def __init__(self, cluster: ChaosCluster, seed: int, max_seconds: float) -> None:
        self.cluster = cluster
        self.seed = seed
        self.max_seconds = max_seconds
        self.findings: list[checkers.Finding] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="store-probes", daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the store probes did not start")

    def stop(self, timeout: float = 120.0) -> list[checkers.Finding]:
        """Stop the probes, check what they recorded; the findings."""
        if self.loop is not None and self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout)
        if self.thread.is_alive():
            return [checkers.Finding("store probes", 1, f"did not stop within {timeout:g} s")]
        return self.findings

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported as a finding, not lost in a thread
            self.findings.append(checkers.Finding("store probes", 1, f"crashed: {exc!r}"))
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        workload = Workload(
            self.cluster, Recorder(), clients=2, seed=self.seed, max_seconds=self.max_seconds
        )
        async with self.cluster.client(timeout=3.0) as client:
            probe = LeaseProbe(client, self.seed)
            workload.start()
            probing = asyncio.create_task(probe.run())
            self.ready.set()
            await self.stopping.wait()
            probe.stop.set()
            await workload.stop()
            await probing
            try:
                await workload.check(client)
                kv = checkers.Finding(
                    "KV linearizable", 0, f"{len(workload.acked)} unique keys acknowledged"
                )
            except (AssertionError, StoreError) as exc:
                kv = checkers.Finding("KV linearizable", 1, str(exc)[:2000])
        self.findings.append(kv)
        lease = check_cycles(probe.cycles)
        detail = f"{len(probe.cycles)} cycles ({probe.skipped} skipped)" + (
            f": {'; '.join(lease[:3])}" if lease else ""
        )
        self.findings.append(checkers.Finding("leases", len(lease), detail))


class Player:
    """Injects and heals the faults of each step on `cluster`."""

    def __init__(self, cluster: ChaosCluster, seed: int, log: Callable[[str], None]) -> None:
        self.c = cluster
        self.rng = random.Random(seed ^ 0x5EED)
        self.log = log
        self.sticky: str | None = None
        self.leader: Callable[[], str | None] = lambda: None

    def resolve(self, role: str) -> str:
        names = list(self.c.members)
        primary = self.leader()
        if role == "sticky":
            if self.sticky is None:
                self.sticky = primary or names[0]
            return self.sticky
        if role == "primary" and primary is not None:
            return primary
        if role == "replica" and primary is not None:
            return self.rng.choice([n for n in names if n != primary])
        return self.rng.choice(names)

    def inject(self, step: Step) -> None:
        default: dict[str, Any] = {}
        links: dict[tuple[str, str], dict[str, Any]] = {}
        for fault in step.faults:
            target = self.resolve(fault.role)
            self.log(f"inject {fault} on {target}")
            self._one(fault, target, default, links)
        self.c.network(default, links)

    def _one(
        self,
        fault: Fault,
        m: str,
        default: dict[str, Any],
        links: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        c, p = self.c, fault.params
        others = [n for n in c.members if n != m]
        if fault.kind in ("isolate", "split"):
            minority = [m]
            want = (len(c.members) - 1) // 2
            if fault.kind == "split" and want > 1:
                minority += self.rng.sample(others, want - 1)
            for a in minority:
                for b in c.members:
                    if b not in minority:
                        links[(a, b)] = links[(b, a)] = {"cut": p["mode"]}
        elif fault.kind == "oneway":
            for o in others:
                links[(m, o) if p["direction"] == "out" else (o, m)] = {"cut": "blackhole"}
        elif fault.kind == "bridge":
            for a in others:
                for b in others:
                    if a != b:
                        links[(a, b)] = {"cut": "refuse"}
        elif fault.kind == "kill9":
            c.kill9(m, p["process"])
        elif fault.kind == "freeze":
            c.freeze(m, p["process"])
        elif fault.kind == "fsync":
            c.fsync_stall(m, p["stall"])
        elif fault.kind == "diskfull":
            c.fill_disk(m)
        elif fault.kind == "links":
            default.update(p)
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")


def _wait(until: float, stop: Callable[[], bool] = lambda: False) -> None:
    while time.monotonic() < until and not stop():
        time.sleep(min(0.2, max(0.0, until - time.monotonic())))


def settle(c: ChaosCluster, timeout: float) -> str | None:
    """Wait until exactly one member answers GET /primary 200 and every other GET /replica
    200; the primary, or None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = c.primaries()
        if len(found) == 1 and all(
            c.http(n, "/replica", 1.0)[0] == 200 for n in c.members if n != found[0]
        ):
            return found[0]
        time.sleep(0.3)
    return None


def _states(c: ChaosCluster) -> str:
    """One line per member: what GET /primary, /replica and /patroni answer (why a cluster
    did not settle)."""
    lines = []
    for name in c.members:
        primary, _ = c.http(name, "/primary", 1.0)
        replica, _ = c.http(name, "/replica", 1.0)
        status, body = c.http(name, "/patroni", 1.0)
        keys = ("state", "role", "timeline", "xlog", "streaming", "holds_leader_key", "detached")
        brief = {k: body.get(k) for k in keys} if isinstance(body, dict) else body
        lines.append(f"{name}: /primary {primary}, /replica {replica}, /patroni {status} {brief}")
    return "\n".join(lines)


def run_schedule(
    c: ChaosCluster,
    steps: list[Step],
    *,
    seed: int,
    seconds: float,
    log: Callable[[str], None] = print,
    store_checks: bool = True,
) -> Report:
    """Play `steps` (a schedule of `seconds`) on `c` and check (module doc); with
    `store_checks` the KV workload and the lease probe run beside (`StoreProbes`)."""
    report = Report(seed)
    primary = settle(c, SETTLE)
    if primary is None:
        raise RuntimeError(f"the cluster did not settle within {SETTLE:g} s:\n{c.log_tails()}")
    with c.connect(primary) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (seq bigint PRIMARY KEY)")
    start = time.monotonic()

    def note(text: str) -> None:
        at = time.monotonic() - start
        report.events.append((at, text))
        log(f"[{at:7.1f}s] {text}")

    note(f"settled: primary {primary}")
    sampler = Sampler(c, start)
    player = Player(c, seed, note)
    player.leader = sampler.latest
    player.sticky = primary  # the gentle phase stalls the fsyncs of the primary's member
    specs = [
        WriterSpec(name, m.host, m.pg_port, SEQ_STRIDE * i, WRITE_RATE, CANCEL_AFTER, True)
        for i, (name, m) in enumerate(c.members.items(), start=1)
    ]
    final: str | None = None
    unclean: list[str] = []
    gentle_until = next((s.at for s in steps if s.phase != "gentle"), seconds)
    with Procs() as procs:
        writers = WriterSet(procs, specs, TABLE, c.root, PASSWORD)
        writers.start()
        sampler.thread.start()
        probes = StoreProbes(c, seed, seconds + 3 * SETTLE) if store_checks else None
        if probes is not None:
            probes.start()
        try:
            for i, step in enumerate(steps):
                _wait(start + step.at)
                player.inject(step)
                _wait(start + step.at + step.hold)
                following = steps[i + 1] if i + 1 < len(steps) else None
                if step.phase != "gentle" or following is None or following.phase != "gentle":
                    again = c.heal_all()
                    note(f"healed; agents started again: {', '.join(again)}" if again else "healed")
            _wait(start + seconds)
            c.heal_all()
            healed_at = time.monotonic()
            final = settle(c, SETTLE)
            settled_after = time.monotonic() - healed_at if final else None
            note(f"after the nemesis: primary {final}")
            if final is None:
                note(f"not settled; each member says:\n{_states(c)}\n{c.log_tails(40)}")
            report.findings.append(checkers.liveness(settled_after, SETTLE, final))
            _wait(time.monotonic() + AFTER_SETTLE)
            if probes is not None:
                report.findings += probes.stop()
                probes = None
        finally:
            if probes is not None:
                probes.stop(timeout=30)
            sampler.stop.set()
            sampler.thread.join(timeout=10)
            unclean = writers.stop()
            c.heal_all()
        if unclean:
            note(f"writers that did not stop cleanly: {unclean}")
        records = writers.records()
    report.samples = sampler.samples
    acks = {label: [t for _, t in r.acks] for label, r in records.items()}
    report.findings.append(checkers.split_brain(acks))
    final = settle(c, 10.0) if final is not None else None
    acked = [seq for r in records.values() for seq, _ in r.acks]
    if final is None:
        report.findings.append(
            checkers.Finding("acknowledged writes", 0, "not checked: no primary at the end")
        )
    else:
        with c.connect(final) as conn:
            rows = conn.execute(f"SELECT seq FROM {TABLE}").fetchall()
        present = {int(r[0]) for r in rows}
        report.findings.append(checkers.lost_writes(acked, present, synchronous=c.sync))
    finding, report.false_failovers = checkers.failovers(
        [(t, leader) for t, leader, _ in sampler.samples], gentle_until, sampler.serving
    )
    report.findings.append(finding)
    local = sum(len(r.local) for r in records.values())
    note(f"writes: {len(acked)} acknowledged, {local} committed locally only (not acks)")
    return report
