"""A hand-driven cluster of Raft cores for scripted scenario tests.

Nothing happens unless the test says so: messages wait in an outbox until `deliver()` hands them
over (through a filter), time moves only by `tick()`, and a crash keeps only what Ready batches
persisted. This makes the paper's tricky cases reproducible step by step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hamgr.raft.core.config import RaftConfig
from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.membership import bootstrap_log
from hamgr.raft.core.types import Entry, HardState, Message, Ready, Role, Snapshot
from hamgr.raft.sim.breakers import RuleBreakers, make_core

Filter = Callable[[Message], bool]


@dataclass
class Node:
    """One member's durable state, its running core and what it applied."""

    id: int
    hard_state: HardState
    snapshot: Snapshot
    entries: list[Entry]
    core: RaftCore | None = None
    applied: list[Entry] = field(default_factory=list)
    read_states: list[tuple[int, bytes]] = field(default_factory=list)
    held: Ready | None = None  # persisted and sent, its committed entries not yet applied
    writing: Ready | None = None  # a leader's batch sent and applied, its write not finished


class Cluster:
    """Cores wired through a manual network."""

    def __init__(
        self,
        ids: list[int],
        *,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_size_per_msg: int = 1 << 20,
        rule_breakers: RuleBreakers | None = None,
        seed: int = 1,
    ) -> None:
        self.rng = random.Random(seed)
        self.cfg = dict(
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_size_per_msg=max_size_per_msg,
        )
        self.breakers = rule_breakers or RuleBreakers()
        self.nodes: dict[int, Node] = {}
        self.outbox: list[Message] = []
        self.isolated: set[int] = set()
        self.slow_apply: set[int] = set()
        self.slow_disk: set[int] = set()
        hs, entries = bootstrap_log(ids)
        for i in ids:
            self.nodes[i] = Node(i, hs, Snapshot(), list(entries))
            self.start(i)

    def add_empty(self, node_id: int) -> None:
        """A brand-new member with an empty log (it joins through a membership change)."""
        self.nodes[node_id] = Node(node_id, HardState(), Snapshot(), [])
        self.start(node_id)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, i: int) -> None:
        """(Re)start member i from its durable state."""
        n = self.nodes[i]
        n.core = make_core(
            RaftConfig(id=i, **self.cfg),  # type: ignore[arg-type]
            random.Random(self.rng.getrandbits(32)),
            self.breakers,
            hard_state=n.hard_state,
            snapshot=n.snapshot,
            entries=list(n.entries),
        )
        n.applied = [e for e in n.applied if e.index <= n.snapshot.meta.index]
        self.drive(i)

    def crash(self, i: int) -> None:
        """Stop member i; its unsent messages and volatile state are lost."""
        self.nodes[i].core = None
        self.nodes[i].held = None
        self.nodes[i].writing = None
        self.outbox = [m for m in self.outbox if m.frm != i]

    def core(self, i: int) -> RaftCore:
        """The running core of member i."""
        core = self.nodes[i].core
        assert core is not None, f"member {i} is down"
        return core

    # -- driving --------------------------------------------------------------------------

    def drive(self, i: int) -> None:
        """Handle every pending Ready of member i, following the Ready contract.

        A member in `slow_apply` stops after persisting and sending a Ready that carries
        committed entries, before applying them: like a driver that yields to the event loop
        between batches, while messages and ticks keep reaching the core. `finish_apply` ends it.
        A leader in `slow_disk` sends and applies a batch at once but its write stays
        unfinished until `finish_write`; meanwhile it handles only batches that touch no
        storage (`RaftCore.ready(persist=False)`), as `RaftNode` does while an fsync runs.
        """
        n = self.nodes[i]
        while n.core is not None and n.held is None and n.core.has_ready():
            if n.writing is not None:
                if n.core.role != Role.LEADER or not n.core.has_ready(persist=False):
                    return
                rd = n.core.ready(persist=False)
                self.outbox.extend(rd.messages_early)
                self._apply_and_advance(n, rd)
                continue
            rd = n.core.ready()
            self.outbox.extend(rd.messages_early)
            stores = rd.snapshot is not None or rd.entries or rd.hard_state is not None
            if i in self.slow_disk and n.core.role == Role.LEADER and stores:
                # As RaftNode does: the leader's write runs on while it sends and applies.
                n.writing = rd
                n.applied.extend(rd.committed_entries)
                n.read_states.extend((rs.index, rs.ctx) for rs in rd.read_states)
                n.core.advance(durable=False)
                continue
            self._persist(n, rd)
            self.outbox.extend(rd.messages)
            if i in self.slow_apply and rd.committed_entries:
                n.held = rd
                return
            self._apply_and_advance(n, rd)

    def finish_write(self, i: int) -> None:
        """The slow write of leader i (see `slow_disk`) returns: durable, acknowledged."""
        n = self.nodes[i]
        rd, n.writing = n.writing, None
        assert rd is not None, f"member {i} has no write in flight"
        assert n.core is not None
        self._persist(n, rd)
        self.outbox.extend(rd.messages)
        if rd.entries:
            n.core.persisted(rd.entries[-1].index, rd.entries[-1].term)
        self.drive(i)

    @staticmethod
    def _persist(n: Node, rd: Ready) -> None:
        if rd.snapshot is not None:
            n.snapshot = rd.snapshot
            n.entries = []
            n.applied = []
        if rd.entries:
            first = rd.entries[0].index
            n.entries = [e for e in n.entries if e.index < first] + rd.entries
        if rd.hard_state is not None:
            n.hard_state = rd.hard_state

    def _apply_and_advance(self, n: Node, rd: Ready) -> None:
        assert n.core is not None
        n.applied.extend(rd.committed_entries)
        n.read_states.extend((rs.index, rs.ctx) for rs in rd.read_states)
        n.core.advance()

    def finish_apply(self, i: int) -> None:
        """Apply the Ready member i holds (see `drive`), advance, and drive on."""
        n = self.nodes[i]
        rd, n.held = n.held, None
        if rd is not None and n.core is not None:
            self._apply_and_advance(n, rd)
        self.drive(i)

    def tick(self, i: int, times: int = 1) -> None:
        """Advance member i's clock."""
        for _ in range(times):
            self.core(i).tick()
            self.drive(i)

    def deliver(self, allow: Filter | None = None, rounds: int = 200) -> int:
        """Deliver queued messages (and the replies they cause) until quiet; returns count.

        Messages to or from isolated members are dropped, as are those `allow` refuses.
        """
        delivered = 0
        for _ in range(rounds):
            if not self.outbox:
                return delivered
            batch, self.outbox = self.outbox, []
            for m in batch:
                if m.frm in self.isolated or m.to in self.isolated:
                    continue
                if allow is not None and not allow(m):
                    continue
                node = self.nodes.get(m.to)
                if node is None or node.core is None:
                    continue
                node.core.step(m)
                self.drive(m.to)
                delivered += 1
        raise AssertionError("network did not quiesce")

    def campaign(self, i: int, allow: Filter | None = None) -> None:
        """Let member i's election timer fire (others' timers stay put) and run the election."""
        core = self.core(i)
        for _ in range(2 * self.cfg["election_tick"]):
            if core.role != Role.FOLLOWER:
                break
            self.tick(i)
        self.deliver(allow)

    def expire_lease(self, *ids: int) -> None:
        """Tick members until they stop trusting a silent leader; drop what they sent meanwhile."""
        for i in ids:
            for _ in range(self.cfg["election_tick"]):
                self.core(i).tick()
            self.drive(i)
        self.outbox = [m for m in self.outbox if m.frm not in ids]

    def leader(self) -> int | None:
        """The member that is leader in the highest term, if any."""
        best = None
        for n in self.nodes.values():
            core = n.core
            if core is None or core.role != Role.LEADER:
                continue
            if best is None or core.term > self.core(best).term:
                best = n.id
        return best

    def propose(self, i: int, data: bytes) -> int:
        """Propose at member i and deliver the resulting traffic."""
        index = self.core(i).propose(data)
        self.drive(i)
        return index

    def applied_data(self, i: int) -> list[bytes]:
        """The application data member i applied, in order (no-ops and conf changes left out)."""
        return [e.data for e in self.nodes[i].applied if e.data and e.type == 0]
