"""Deterministic simulator: N Raft cores, a hostile virtual network and disks, one seed.

Everything random comes from one `random.Random(seed)`, time is virtual (milliseconds), and
events are processed in (time, sequence) order, so a seed replays byte for byte.

Faults: message drops, duplicates, delays and reordering; symmetric and asymmetric partitions;
crashes that keep only what a Ready told the driver to persist (a crash may land between
sending a leader's early messages and persisting, or between persisting and sending); a crash
while a batch is being written leaves a torn tail (a prefix of its records, as the WAL's
recovery keeps); cold restarts of the whole cluster; membership changes and leadership
transfers mid-run. A removed member keeps running (and may campaign) until it learns of its
removal. Clients propose writes and ReadIndex reads throughout.

After every event the checker verifies: at most one leader per term; log matching (same index
and term means same entry and same predecessor); commit safety (an index committed anywhere
always names an entry of the same term); leader completeness, checked the moment a leader wins
(it holds every entry committed in an earlier term, whether or not anyone applied it yet); state
machine safety (every member applies the same entry at the same index, and an applied entry
never changes); linearizable reads (a read is answered at an index at least as new as every
write acknowledged before it began); and, from outside the core, two of its rules: no vote or
acknowledgement leaves a member before it is on its disk, and a leader's commit moves only to
an entry of its term (`--no-rule-checks` leaves these out). Then faults stop and liveness is
checked: a leader is elected and a proposal commits within a bounded virtual time.

Command line: `python -m hamgr.raft.sim --seeds N` prints one line
`seeds=N violations=V liveness_failures=L` (exit 1 when V or L > 0), plus, for each failing
seed, the command that replays it with a trace. `--hunt --break-rule R` runs the bug-hunting
profile against a core that breaks rule R (see `hamgr.raft.sim.breakers`); `--hunt-report`
prints, per broken rule, in how many seeds the checks caught it.
"""

from __future__ import annotations

import argparse
import heapq
import random
from collections.abc import Callable

from hamgr.raft.core.log import LogInvariantError
from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.membership import bootstrap_log
from hamgr.raft.core.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    ProposalDroppedError,
    Ready,
    Role,
    Snapshot,
)
from hamgr.raft.errors import NotLeaderError
from hamgr.raft.sim.breakers import RuleBreakers
from hamgr.raft.sim.check import SafetyChecker, Violation
from hamgr.raft.sim.profiles import SimConfig, hunt_profile, profile
from hamgr.raft.sim.simcli import add_seed_options, chosen_seeds, run_seeds
from hamgr.raft.sim.world import App, Disk, Member, MemberTuning, chain_digest

TICK_MS = 10


class Simulator:
    """Runs one seed. `run()` returns None on success or a description of what went wrong."""

    def __init__(self, seed: int, cfg: SimConfig, trace: Callable[[str], None] | None = None):
        self.seed = seed
        self.cfg = cfg
        self.rng = random.Random(seed)
        self._trace = trace
        self.now = 0
        self._seq = 0
        self._events: list[tuple[int, int, str, object]] = []
        self.members: dict[int, Member] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.faults_on = True
        self.check = SafetyChecker()
        self.max_acked = 0
        self.acked_writes = 0
        self.reads_served = 0
        self._next_id = cfg.nodes + 1
        self._write_seq = 0
        self._probe: tuple[int, int] | None = None
        self.live_at: int | None = None
        hard_state, entries = bootstrap_log(list(range(1, cfg.nodes + 1)))
        for i in range(1, cfg.nodes + 1):
            self._add_member(i, Disk(hard_state, Snapshot(), list(entries)))

    # -- plumbing -------------------------------------------------------------------------

    def log(self, text: str) -> None:
        """Add a line to the trace (only when tracing)."""
        if self._trace is not None:
            self._trace(f"{self.now:>7} {text}")

    def schedule(self, delay: int, kind: str, payload: object = None) -> None:
        """Queue an event `delay` ms from now."""
        self._seq += 1
        heapq.heappush(self._events, (self.now + delay, self._seq, kind, payload))

    def _add_member(self, node_id: int, disk: Disk) -> Member:
        c = self.cfg
        tuning = MemberTuning(
            c.election_tick, c.heartbeat_tick, c.max_inflight, c.max_size_per_msg, c.rule_breakers
        )
        m = Member(node_id, disk, self.rng, tuning)
        self.members[node_id] = m
        m.start()
        self._member_started(m)
        self.schedule(self.rng.randrange(1, TICK_MS + 1), "tick", node_id)
        return m

    def between(self, bounds: tuple[int, int]) -> int:
        """A random duration within inclusive bounds."""
        return self.rng.randint(bounds[0], bounds[1])

    # -- the run --------------------------------------------------------------------------

    def run(self) -> str | None:
        """Fault phase, then liveness phase. None means every check passed."""
        cfg = self.cfg
        self.schedule(self.between(cfg.fault_every_ms), "fault")
        self.schedule(self.between(cfg.propose_every_ms), "propose")
        self.schedule(self.between(cfg.read_every_ms), "read")
        self.schedule(cfg.fault_ms, "heal")
        deadline = cfg.fault_ms + cfg.liveness_ms
        try:
            while self._events and self.live_at is None:
                t, _, kind, payload = heapq.heappop(self._events)
                if t > deadline:
                    break
                self.now = t
                self._dispatch(kind, payload)
        except (Violation, LogInvariantError) as exc:
            self.log(f"VIOLATION {exc}")
            return f"violation: {exc}"
        if self.live_at is None:
            return (
                f"liveness: no proposal committed within {cfg.liveness_ms} ms after faults stopped"
            )
        return None

    def _dispatch(self, kind: str, payload: object) -> None:
        if kind == "tick":
            self._on_tick(payload)  # type: ignore[arg-type]
        elif kind == "msg":
            self._deliver(payload)  # type: ignore[arg-type]
        elif kind == "propose":
            self._client_propose()
        elif kind == "read":
            self._client_read()
        elif kind == "fault":
            self._inject_fault()
        elif kind == "restart":
            self._restart(payload)  # type: ignore[arg-type]
        elif kind == "unblock":
            self.blocked.discard(payload)  # type: ignore[arg-type, unused-ignore]
        elif kind == "heal_partition":
            self.blocked.clear()
            self.log("partition healed")
        elif kind == "heal":
            self._heal_all()
        elif kind == "probe":
            self._liveness_probe()
        elif kind == "synced":
            self._on_synced(*payload)  # type: ignore[misc]
        elif kind == "crash_leader":
            self._crash_leader(*payload)  # type: ignore[misc]

    def _on_tick(self, node_id: int) -> None:
        m = self.members[node_id]
        if not m.up or m.core is None:
            return
        m.core.tick()
        self._drive(m)
        if m.up:
            self._ticked(m)
        self.schedule(TICK_MS, "tick", node_id)

    # -- network --------------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        if self.cfg.rule_checks and msg.type in (MsgType.APP_RESP, MsgType.VOTE_RESP):
            self.check.rule_ack_durable(msg.frm, msg, self.members[msg.frm].disk)
        if (msg.frm, msg.to) in self.blocked:
            return
        if self.faults_on and self.rng.random() < self.cfg.drop:
            return
        copies = 2 if self.faults_on and self.rng.random() < self.cfg.duplicate else 1
        for _ in range(copies):
            delay = self.between(self.cfg.delay_ms)
            if self.faults_on and self.rng.random() < self.cfg.slow_fraction:
                delay += self.rng.randrange(20, 150)
            self.schedule(delay, "msg", msg)

    def _deliver(self, msg: Message) -> None:
        m = self.members.get(msg.to)
        if m is None or not m.up or m.core is None or (msg.frm, msg.to) in self.blocked:
            return
        if self._trace is not None:
            self.log(
                f"deliver {msg.frm}->{msg.to} {msg.type.name} t={msg.term} i={msg.index} "
                f"lt={msg.log_term} n={len(msg.entries)} c={msg.commit} rej={int(msg.reject)}"
            )
        m.core.step(msg)
        self._drive(m)

    # -- the driver loop: the Ready contract ------------------------------------------------

    def _drive(self, m: Member) -> None:
        """Handle member m's Ready batches as `RaftNode` does: one write at a time; while it
        runs, a leader goes on with batches that touch no storage (sends, applies, reads)."""
        self._observe(m)
        core = m.core
        while core is not None and m.up:
            if m.syncing:
                if not m.pipelined or core.role != Role.LEADER:
                    return
                if not core.has_ready(persist=False):
                    return
                rd = core.ready(persist=False)
                for msg in rd.messages_early:
                    self._send(msg)
                self._apply(m, rd)
                core.advance()
                self._after_advance(m)
                self._observe(m)
                core = m.core
                continue
            if not core.has_ready():
                return
            rd = core.ready()
            self._check_ready(m, rd)
            for msg in rd.messages_early:
                self._send(msg)
            if self.cfg.fsync_ms[1] > 0:
                # Like a real driver: the fsync runs while messages keep being stepped.
                m.syncing = True
                m.in_flight = rd if m.disk.records(rd) else None
                pipelined = (
                    core.role == Role.LEADER and rd.snapshot is None and m.in_flight is not None
                )
                m.pipelined = pipelined
                event = (m.id, m.incarnation, rd, pipelined)
                slow = pipelined and self.cfg.slow_disk_ms[1] > 0
                took = self.between(self.cfg.slow_disk_ms if slow else self.cfg.fsync_ms)
                self.schedule(took, "synced", event)
                if pipelined:
                    # A leader does not wait for its own fsync (thesis 10.2.1): it applies and
                    # goes on now, and counts its own copy once the write is durable.
                    self._apply(m, rd)
                    core.advance(durable=False)
                    self._after_advance(m)
                    self._observe(m)
                    core = m.core
                continue
            if not self._finish_ready(m, rd):
                return
            core = m.core

    def _observe(self, m: Member) -> None:
        """Right after each input of a member: record its commits, check a new leader the
        moment it wins, and stop a removed member once it learns it was removed."""
        core = m.core
        if core is None:
            return
        self.check.commit_observed(m.id, core.term, core.log)
        if core.role == Role.LEADER and m.led_term == core.term:
            if self.cfg.rule_checks and core.log.committed > m.leader_commit:
                self.check.rule_leader_commit(m.id, core.term, core.log)
                disks = {v: self.members[v].disk for v in core.conf.voters if v in self.members}
                self.check.rule_commit_durable(m.id, core.log, core.conf.voters, disks)
            m.leader_commit = core.log.committed
        elif core.role == Role.LEADER:
            m.led_term = core.term
            m.leader_commit = core.log.committed
            self.log(f"leader {m.id} term {core.term} voters {core.conf.voters}")
            self.check.became_leader(m.id, core.term, core.log)
            if self.faults_on and self.rng.random() < self.cfg.crash_new_leader:
                delay = self.between(self.cfg.crash_new_leader_ms)
                self.schedule(delay, "crash_leader", (m.id, m.incarnation, core.term))
        if m.id in core.conf.voters or m.id in core.conf.learners:
            m.was_member = True
        elif m.was_member and not m.removed:
            m.removed = True
            self.log(f"member {m.id} learned it was removed; stopping it")
            m.stop()

    def _crash_leader(self, node_id: int, incarnation: int, term: int) -> None:
        m = self.members[node_id]
        if not self.faults_on or m.incarnation != incarnation or m.core is None:
            return
        if m.core.role == Role.LEADER and m.core.term == term:
            self._crash(m, f"as new leader of term {term}", self.rng.randrange(20, 500))

    def _on_synced(self, node_id: int, incarnation: int, rd: Ready, pipelined: bool) -> None:
        m = self.members[node_id]
        if m.incarnation != incarnation or m.core is None:
            return  # crashed while syncing (see _crash for what reached the disk)
        if pipelined:
            if self._maybe_crash(m, "while persisting (leader, after sending)"):
                return
            m.syncing = m.pipelined = False
            m.in_flight = None
            m.disk.persist(rd)
            for msg in rd.messages:
                self._send(msg)
            if rd.entries:
                m.core.persisted(rd.entries[-1].index, rd.entries[-1].term)
            self._drive(m)
            return
        m.syncing = False
        m.in_flight = None
        if self._finish_ready(m, rd):
            self._drive(m)

    def _finish_ready(self, m: Member, rd: Ready) -> bool:
        """Persist, send, apply and advance one Ready; False if the member crashed meanwhile."""
        core = m.core
        assert core is not None
        if self._maybe_crash(m, "before persisting"):
            return False
        if m.disk.records(rd):
            m.in_flight = rd
            if self._maybe_crash(m, "while persisting"):
                return False
            m.in_flight = None
        m.disk.persist(rd)
        if self._maybe_crash(m, "after persisting, before sending"):
            return False
        for msg in rd.messages:
            self._send(msg)
        self._apply(m, rd)
        core.advance()
        self._after_advance(m)
        self._observe(m)
        return m.up

    def _maybe_crash(self, m: Member, where: str) -> bool:
        if not self.faults_on or self.rng.random() >= self.cfg.crash_in_ready:
            return False
        self._crash(m, where, self.rng.randrange(5, 300))
        return True

    def _crash(self, m: Member, where: str, restart_in: int | None) -> None:
        """Kill member m. A batch it was writing leaves a torn tail: some prefix of its
        records (snapshot marker, entries, hard state) reached the disk, the rest did not,
        which is what the WAL's recovery keeps (a record cut short fails its checksum)."""
        rd = m.in_flight
        if rd is not None:
            total = m.disk.records(rd)
            kept = self.rng.randrange(total + 1)
            m.disk.persist_prefix(rd, kept)
            where += f" (torn write: {kept} of {total} records kept)"
        self.log(f"crash {m.id} {where}")
        m.stop()
        self.check.restarted(m.id)
        if restart_in is not None:
            self.schedule(restart_in, "restart", m.id)

    def _check_ready(self, m: Member, rd: Ready) -> None:
        core = m.core
        assert core is not None
        if rd.entries:
            prev_term = core.log.term(rd.entries[0].index - 1)
            self.check.entries_written(m.id, rd.entries, prev_term)

    def _apply(self, m: Member, rd: Ready) -> None:
        if rd.snapshot is not None:
            m.app = App.decode(rd.snapshot.data)
            self.check.snapshot_installed(m.id, rd.snapshot.meta.index, m.app.digest)
            self._snapshot_applied(m, rd.snapshot)
        for e in rd.committed_entries:
            prev = m.app.applied
            m.app.digest = chain_digest(m.app.digest, e)
            m.app.applied = e.index
            self.check.entry_applied(m.id, e, prev, m.app.digest)
            if e.type == EntryType.CONF_CHANGE:
                self._on_conf_applied(e)
            self._entry_applied(m, e)
            self._ack_write(m, e)
        for rs in rd.read_states:
            need = m.reads.pop(rs.ctx, None)
            if need is not None:
                self.check.read_served(m.id, rs.index, need)
                self.reads_served += 1
                self._read_index_served(m, rs.index, rs.ctx)
        self._applied_batch(m)

    # -- hooks for a simulator with a richer state machine (see hamgr.raft.sim.kv) -----------

    def _member_started(self, m: Member) -> None:
        """Member m (re)started from its disk."""

    def _snapshot_applied(self, m: Member, snap: Snapshot) -> None:
        """Member m installed a snapshot from its leader."""

    def _entry_applied(self, m: Member, e: Entry) -> None:
        """Member m applied a committed entry (before a client's write is acknowledged)."""

    def _read_index_served(self, m: Member, index: int, ctx: bytes) -> None:
        """Member m's ReadIndex request `ctx` may be served once `index` is applied."""

    def _applied_batch(self, m: Member) -> None:
        """Member m applied a Ready's snapshot and committed entries."""

    def _ticked(self, m: Member) -> None:
        """Member m's clock ticked (and its Ready was handled)."""

    def _snapshot_data(self, m: Member) -> bytes:
        """What member m's snapshot holds of its state machine."""
        return m.app.encode()

    def _ack_write(self, m: Member, e: Entry) -> None:
        prop = m.proposals.pop(e.index, None)
        if prop is None:
            return
        if prop == (e.term, e.data):
            self.max_acked = max(self.max_acked, e.index)
            self.acked_writes += 1
            if self._probe == (m.id, e.index) and not self.faults_on:
                self.live_at = self.now
                self.log(f"liveness: probe committed at {e.index}")

    def _after_advance(self, m: Member) -> None:
        core = m.core
        if core is None or self.cfg.snapshot_every <= 0:
            return
        lg = core.log
        # As RaftNode: a snapshot only of what is on this member's disk (a leader applies
        # entries the others made durable before its own write returns).
        due = lg.applied - lg.snapshot.meta.index >= self.cfg.snapshot_every
        if due and lg.applied <= lg.stable:
            snap = core.compact(core.snapshot_meta(), self._snapshot_data(m))
            assert snap is not None
            m.disk.compact(snap)
            self.log(f"snapshot {m.id} at {snap.meta.index}")

    def _on_conf_applied(self, e: Entry) -> None:
        change = ConfChange.decode(e.data)
        if change.type == ConfChangeType.REMOVE_NODE:
            # The removed member keeps running (and may campaign) until it learns of it.
            self.log(f"applied: member {change.node_id} removed")

    # -- clients --------------------------------------------------------------------------

    def _leaders_now(self) -> list[Member]:
        return [
            m
            for m in self.members.values()
            if m.up and m.core is not None and m.core.role == Role.LEADER
        ]

    def _first_leader(self) -> tuple[Member, RaftCore] | None:
        """The first member leading now and its core (None: no leader now)."""
        leaders = self._leaders_now()
        if not leaders:
            return None
        core = leaders[0].core
        assert core is not None
        return leaders[0], core

    def _client_turn(self, every_ms: tuple[int, int], kind: str) -> Member | None:
        """The clients' driver: while faults last, the next `kind` event comes within `every_ms`;
        this one goes to a random leader (None: there is none now)."""
        if self.faults_on:
            self.schedule(self.between(every_ms), kind)
        leaders = self._leaders_now()
        if not leaders:
            return None
        return self.rng.choice(leaders)

    def _client_propose(self) -> None:
        m = self._client_turn(self.cfg.propose_every_ms, "propose")
        if m is not None:
            self._write_via(m)

    def _client_read(self) -> None:
        m = self._client_turn(self.cfg.read_every_ms, "read")
        if m is not None:
            self._read_via(m)

    def _propose(self, m: Member, data: bytes) -> int | None:
        """Propose `data` on member m as a client (noted in its proposals, to acknowledge once
        applied); its index, or None when m refused it. The caller drives m afterwards."""
        core = m.core
        if core is None:
            return None  # crashed meanwhile (e.g. while driving an earlier proposal)
        try:
            index = core.propose(data)
        except (NotLeaderError, ProposalDroppedError):
            return None
        m.proposals[index] = (core.term, data)
        return index

    def _write_via(self, m: Member) -> None:
        """A client's write, on leader m (a richer state machine writes other commands)."""
        self._write_seq += 1
        if self._propose(m, b"w%d" % self._write_seq) is not None:
            self._drive(m)

    def _read_via(self, m: Member) -> None:
        """A client's ReadIndex read, on leader m: it must see every acknowledged write."""
        assert m.core is not None
        self._write_seq += 1
        ctx = b"r%d" % self._write_seq
        m.reads[ctx] = self.max_acked
        m.core.read_index(ctx)
        self._drive(m)

    # -- faults ---------------------------------------------------------------------------

    def _inject_fault(self) -> None:
        if not self.faults_on:
            return
        self.schedule(self.between(self.cfg.fault_every_ms), "fault")
        ids = [i for i, m in self.members.items() if not m.removed]
        leaders = [m.id for m in self._leaders_now()]
        roll = self.rng.random()
        if roll < 0.30:
            # Leaders are the interesting victims: crash one half of the time.
            victim = self.rng.choice(leaders if leaders and self.rng.random() < 0.5 else ids)
            writing = [i for i in ids if self.members[i].in_flight is not None]
            if writing and self.rng.random() < self.cfg.crash_mid_write:
                victim = self.rng.choice(writing)
            m = self.members[victim]
            if m.up:
                self._crash(m, "", self.rng.randrange(20, 1500))
        elif roll < 0.50:
            self.rng.shuffle(ids)
            cut = self.rng.randrange(1, len(ids))
            if leaders and self.rng.random() < 0.5:  # isolate a leader alone
                ids.remove(leaders[0])
                ids.insert(0, leaders[0])
                cut = 1
            left, right = ids[:cut], ids[cut:]
            for a in left:
                for b in right:
                    self.blocked.add((a, b))
                    self.blocked.add((b, a))
            self.log(f"partition {left} | {right}")
            self.schedule(self.rng.randrange(50, 2000), "heal_partition")
        elif roll < 0.65:
            a, b = self.rng.sample(ids, 2)
            self.blocked.add((a, b))
            self.log(f"cut link {a}->{b}")
            self.schedule(self.rng.randrange(50, 2000), "unblock", (a, b))
        elif roll < 0.72:
            self.log("cold restart of every member")
            for i in ids:
                if self.members[i].up:
                    self._crash(self.members[i], "", self.rng.randrange(10, 400))
        elif roll < 0.85:
            self._transfer()
        elif self.cfg.membership_changes:
            self._change_membership()

    def _restart(self, node_id: int) -> None:
        m = self.members[node_id]
        if m.up or m.removed:
            return
        self.log(f"restart {node_id}")
        m.start()
        self._member_started(m)
        self.schedule(self.rng.randrange(1, TICK_MS + 1), "tick", node_id)
        self._drive(m)

    def _transfer(self) -> None:
        found = self._first_leader()
        if found is None:
            return
        m, core = found
        targets = [v for v in core.conf.voters if v != m.id]
        if not targets:
            return
        to = self.rng.choice(targets)
        self.log(f"transfer leadership {m.id} -> {to}")
        core.transfer_leadership(to)
        self._drive(m)

    def _change_membership(self) -> None:
        found = self._first_leader()
        if found is None:
            return
        m, core = found
        voters = core.conf.voters
        members = len(voters) + len(core.conf.learners)
        if members < 5 and (len(voters) <= 3 or self.rng.random() < 0.5):
            new_id = self._next_id
            change = ConfChange(ConfChangeType.ADD_NODE, new_id)
        elif len(voters) > 3:
            change = ConfChange(ConfChangeType.REMOVE_NODE, self.rng.choice(voters))
        else:
            return
        try:
            core.propose_conf_change(change)
        except (NotLeaderError, ProposalDroppedError) as exc:
            self.log(f"membership change {change.type.name} {change.node_id} refused: {exc}")
            return
        self.log(f"propose {change.type.name} {change.node_id} via {m.id}")
        if change.type == ConfChangeType.ADD_NODE:
            self._next_id += 1
            self._add_member(new_id, Disk(HardState(), Snapshot()))
        self._drive(m)

    def _heal_all(self) -> None:
        self.faults_on = False
        self.blocked.clear()
        self.log("faults stop: healing the network and restarting every member")
        for i, m in self.members.items():
            if not m.up and not m.removed:
                self._restart(i)
        self.schedule(1, "probe")

    def _liveness_probe(self) -> None:
        if self.live_at is not None:
            return
        self.schedule(5 * TICK_MS, "probe")
        leaders = self._leaders_now()
        if not leaders:
            return
        if self._probe is not None:
            holder = self.members[self._probe[0]]
            if holder in leaders and self._probe[1] in holder.proposals:
                return  # the outstanding probe may still commit
        m = leaders[0]
        index = self._propose(m, b"probe")
        if index is None:
            return
        self._probe = (m.id, index)
        self._drive(m)


def hunt_report(
    seeds: list[int], rules: list[str], simulator: type[Simulator] = Simulator
) -> list[str]:
    """For each rule: in how many hunt seeds its breaking was caught, by all checks and by
    Raft's end properties alone (election safety, log matching, leader completeness, commit
    and state machine safety, linearizable reads). One line per rule."""
    lines = []
    for rule in rules:
        breakers = RuleBreakers(**{rule: True})
        caught = [0, 0]
        for n, checks in enumerate((True, False)):
            for seed in seeds:
                cfg = hunt_profile(seed, breakers, rule_checks=checks)
                result = simulator(seed, cfg).run()
                caught[n] += result is not None and result.startswith("violation")
        lines.append(
            f"hunt rule={rule} seeds={len(seeds)} caught={caught[0]} "
            f"caught_by_end_properties={caught[1]}"
        )
    return lines


def run_seed(
    seed: int,
    base: SimConfig | None = None,
    trace: Callable[[str], None] | None = None,
) -> str | None:
    """Run one seed with its per-seed profile; None when every check passed."""
    return Simulator(seed, profile(seed, base), trace).run()


def main(
    argv: list[str] | None = None,
    *,
    simulator: type[Simulator] = Simulator,
    prog: str = "python -m hamgr.raft.sim",
) -> int:
    """Command line entry point (also of `hamgr.raft.sim.kv`, with its `simulator`)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    add_seed_options(ap, 100, "use the bug-hunting profile")
    ap.add_argument(
        "--no-rule-checks",
        action="store_true",
        help="check only Raft's end properties, not the rules seen from outside the core",
    )
    ap.add_argument(
        "--hunt-report",
        action="store_true",
        help="for each --break-rule (default: all), in how many hunt seeds it is caught",
    )
    ap.add_argument(
        "--break-rule",
        action="append",
        default=[],
        choices=RuleBreakers.names(),
        help="test only: make the core break this rule (repeatable)",
    )
    args = ap.parse_args(argv)
    seeds = chosen_seeds(ap, args)
    if args.hunt_report:
        for line in hunt_report(seeds, args.break_rule or RuleBreakers.names(), simulator):
            print(line)
        return 0
    breakers = RuleBreakers(**{name: True for name in args.break_rule})
    checks = not args.no_rule_checks
    extra = "".join(f" --break-rule {name}" for name in args.break_rule)
    extra += " --hunt" if args.hunt else ""
    extra += "" if checks else " --no-rule-checks"
    trace = print if args.trace else None

    def run(seed: int) -> str | None:
        if args.hunt:
            cfg = hunt_profile(seed, breakers, rule_checks=checks)
        else:
            cfg = profile(seed, SimConfig(rule_breakers=breakers, rule_checks=checks))
        return simulator(seed, cfg, trace).run()

    return run_seeds(seeds, run, prog, extra)
