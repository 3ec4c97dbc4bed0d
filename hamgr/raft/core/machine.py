"""The Raft state machine: pure, deterministic, driven by its caller (etcd-io/raft is the model).

Inputs: `tick()`, `step(message)`, `propose(data)`, `read_index(ctx)`, `transfer_leadership(to)`,
`propose_conf_change(change)`, `compact(index, data)`, and `persisted(index, term)` (a write the
driver finished after `advance(durable=False)`). Output: `ready()` returns a `Ready` batch (see
types.Ready for the order in which a driver must handle it), then `advance()`.
No sockets, clocks, disks, threads or asyncio here; randomness comes from an injected `Random`.

Rules this module keeps (the simulator checks them):
- at most one vote per term, persisted before the vote is sent; PreVote before a real election;
- a member that heard from a live leader within the election timeout ignores vote requests
  (unless they follow a leadership transfer); a leader that has not heard from a quorum for an
  election timeout steps down (CheckQuorum);
- a new leader appends a no-op; commit only by counting replicas of a current-term entry;
- a follower truncates only at the first conflict and never below its commit index;
- a leader may send its appends before its own write is durable, but counts its own copy of
  an entry only once the driver reports it durable (`advance()` or `persisted`); followers and
  candidates send votes and acknowledgements only in `messages`, after the batch is durable;
- ReadIndex is served only once the leader has committed an entry of its term, and only after a
  quorum answered a heartbeat sent after the read arrived;
- membership changes take effect when applied, one at a time, only after the term's no-op
  committed; no member campaigns while a committed change is not yet applied; learners are
  promoted by the leader when caught up; a removed leader steps down.
"""

from __future__ import annotations

import random

from hamgr.raft.core.config import RaftConfig
from hamgr.raft.core.log import RaftLog
from hamgr.raft.core.membership import apply_conf_change
from hamgr.raft.core.progress import Progress, ProgressState
from hamgr.raft.core.quorum import VoteResult, committed_index, has_quorum, vote_result
from hamgr.raft.core.readonly import PendingReads
from hamgr.raft.core.replication import (
    AckOutcome,
    answer_append,
    next_append,
    take_append_response,
    take_heartbeat_response,
)
from hamgr.raft.core.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    ProposalDroppedError,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from hamgr.raft.errors import NotLeaderError

TRANSFER_CONTEXT = b"transfer"
_PRE_ELECTION, _ELECTION, _TRANSFER = "pre-election", "election", "transfer"


class RaftCore:
    """One Raft member's state machine."""

    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
    ) -> None:
        """Start from what storage recovered (see `bootstrap_log` for a founding member)."""
        self.cfg = config
        self.id = config.id
        self._rng = rng
        hs = hard_state or HardState()
        if snapshot is None:
            snapshot = Snapshot()
        self.log = RaftLog(snapshot, list(entries or []), hs.commit)
        self.term = hs.term
        self.vote = hs.vote
        self.conf = snapshot.meta.conf
        self._conf_applied = snapshot.meta.index
        self.role = Role.FOLLOWER
        self.lead = NONE
        self.prs: dict[int, Progress] = {}
        self._votes: dict[int, bool] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = config.election_tick
        self.lead_transferee = NONE
        self._pending_conf_index = 0
        self._pending_reads = PendingReads()
        self._reads_before_commit: list[bytes] = []
        self._read_states: list[ReadState] = []
        self._msgs_early: list[Message] = []
        self._msgs: list[Message] = []
        self._prev_hard = HardState(self.term, self.vote, self.log.committed)
        self._prev_soft = SoftState(NONE, Role.FOLLOWER)
        self._handed: tuple[int | None, int] | None = None  # last entry handed out, applied
        self._handed_committed: list[Entry] = []
        for e in self.log.slice(self.log.first_index(), self.log.committed + 1):
            if e.index > self._conf_applied and e.type == EntryType.CONF_CHANGE:
                self._apply_conf_entry(e)
        self._become_follower(self.term, NONE)

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick."""
        if self.role == Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self.promotable() and self._election_elapsed >= self._randomized_timeout:
                self._election_elapsed = 0
                if not self.has_unapplied_conf_changes():
                    self._campaign(_PRE_ELECTION if self.cfg.pre_vote else _ELECTION)

    def idle_ticks(self) -> int:
        """How many ticks in a row can do nothing but count, the last of them included (at
        least 1).

        A follower of a known leader only counts ticks toward its election timeout until the
        count reaches `election_tick`: no tick before that campaigns (the randomized timeout is
        at least `election_tick`) nor changes what `leader_in_touch` answers; the last one may.
        A driver may wake only for that last tick, provided it applies the counting ticks
        already due before it steps a message (a heartbeat resets the count). Anything else
        ticks one at a time. See `hamgr.raft.server.ticks`.
        """
        if self.role != Role.FOLLOWER or self.lead == NONE:
            return 1
        return max(1, self.cfg.election_tick - self._election_elapsed)

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        for pr in self.prs.values():
            if pr.state == ProgressState.SNAPSHOT:
                pr.snapshot_elapsed += 1
        if self._election_elapsed >= self.cfg.election_tick:
            self._election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                self._become_follower(self.term, NONE)
                return
            self.lead_transferee = NONE
        if self._heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self._heartbeat_elapsed = 0
            self._bcast_heartbeat(b"")
        self._maybe_promote_learner()

    def propose(self, data: bytes) -> int:
        """Append `data` as a new entry (leader only); returns its index (the term is `term`)."""
        return self._propose([data], EntryType.NORMAL)

    def propose_batch(self, items: list[bytes]) -> int:
        """Append several entries at once; returns the index of the last one."""
        return self._propose(items, EntryType.NORMAL)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose one membership change; refused while another is pending or too early."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead)
        if not self._committed_in_term():
            raise ProposalDroppedError("membership change refused: this term's no-op not committed")
        if self._pending_conf_index > self.log.applied:
            raise ProposalDroppedError("membership change refused: another one is pending")
        voters = set(self.conf.voters)
        if change.type == ConfChangeType.REMOVE_NODE and voters == {change.node_id}:
            raise ProposalDroppedError("membership change refused: cannot remove the last voter")
        if change.type == ConfChangeType.ADD_NODE and self._is_member(change.node_id):
            raise ProposalDroppedError(f"node {change.node_id} is already a member")
        if change.type == ConfChangeType.REMOVE_NODE and not self._is_member(change.node_id):
            raise ProposalDroppedError(f"node {change.node_id} is not a member")
        if change.type == ConfChangeType.PROMOTE and change.node_id not in self.conf.learners:
            raise ProposalDroppedError(f"node {change.node_id} is not a learner")
        index = self._propose([change.encode()], EntryType.CONF_CHANGE)
        self._pending_conf_index = index
        return index

    def _propose(self, items: list[bytes], kind: EntryType) -> int:
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead)
        if self.lead_transferee != NONE:
            raise ProposalDroppedError(
                f"proposal dropped: leadership is moving to {self.lead_transferee}"
            )
        first = self.log.last_index() + 1
        entries = [Entry(self.term, first + n, kind, d) for n, d in enumerate(items)]
        self.log.append(entries)
        self._bcast_append()
        return entries[-1].index

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; answered by a ReadState with the same `ctx`."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead)
        if not self._committed_in_term():
            self._reads_before_commit.append(ctx)
            return
        self._start_read(ctx)

    def _start_read(self, ctx: bytes) -> None:
        if len(self.conf.voters) == 1:
            self._read_states.append(ReadState(self.log.committed, ctx))
            return
        self._pending_reads.add(ctx, self.log.committed, self.id)
        self._bcast_heartbeat(ctx)
        # A read round is a heartbeat to every follower (same message, same answers): the next
        # plain one is due a full heartbeat interval later. With clients reading every second
        # or so (the HA agents), most plain heartbeats are never sent.
        self._heartbeat_elapsed = 0

    def transfer_leadership(self, to: int) -> None:
        """Hand leadership to voter `to` once it has caught up (leader only)."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead)
        if to == self.id or to == self.lead_transferee:
            return
        if to not in self.conf.voters:
            raise ValueError(f"cannot transfer leadership to {to}: not a voter")
        self.lead_transferee = to
        self._election_elapsed = 0
        if self.prs[to].match == self.log.last_index():
            self._send(Message(MsgType.TIMEOUT_NOW, to, self.id, self.term))
        else:
            self._send_append(to)

    def snapshot_meta(self) -> SnapshotMeta:
        """Where a snapshot of the application's state taken now stands: the applied index, its
        term and the configuration in force there. Hand it back to `compact` with the data."""
        index = self.log.applied
        term = self.log.term(index)
        if term is None:
            raise ValueError(f"no term known for the applied index {index}")
        return SnapshotMeta(index, term, self.conf)

    def compact(self, meta: SnapshotMeta, data: bytes) -> Snapshot | None:
        """Adopt the application's snapshot `data` of its state at `meta` (from `snapshot_meta`,
        taken when the state was there; entries applied since are fine).

        None, and nothing changes, when the log already holds a snapshot at or past that index
        (one installed from the leader overtook it).
        """
        if meta.index <= self.log.snapshot.meta.index:
            return None
        if meta.index > self.log.applied:
            raise ValueError(
                f"snapshot index {meta.index} is beyond the applied index {self.log.applied}"
            )
        if self.log.term(meta.index) != meta.term:
            raise ValueError(
                f"snapshot at index {meta.index} has term {meta.term}, "
                f"the log {self.log.term(meta.index)}"
            )
        snap = Snapshot(meta, data)
        self.log.compact(snap, self.cfg.snapshot_retain_entries)
        return snap

    # -- queries --------------------------------------------------------------------------

    def promotable(self) -> bool:
        """May this member campaign (is it a voter)?"""
        return self.id in self.conf.voters

    def has_unapplied_conf_changes(self) -> bool:
        """Is a committed membership change not yet applied (handed out but not advanced past,
        or not yet handed out)? Such a member must not campaign: it would count votes in the
        old configuration while others already count in the new one, so two majorities could
        each elect a leader in one term (etcd's `hasUnappliedConfChanges` refuses the same).
        """
        lg = self.log
        lo = max(lg.applied, self._conf_applied, lg.snapshot.meta.index) + 1
        return any(e.type == EntryType.CONF_CHANGE for e in lg.slice(lo, lg.committed + 1))

    def hard_state(self) -> HardState:
        """The current hard state."""
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        """Current leader and role."""
        return SoftState(self.lead, self.role)

    def leader_in_touch(self) -> bool:
        """True while this member is the leader, or a follower that heard from its leader
        within the last election timeout. CheckQuorum takes office from a leader cut off from
        a majority within that timeout, so such a member's log lags the cluster's by no more
        than about that long (a follower cut off stops being in touch at the same point)."""
        if self.role == Role.LEADER:
            return True
        return (
            self.role == Role.FOLLOWER
            and self.lead != NONE
            and self._election_elapsed < self.cfg.election_tick
        )

    def _is_member(self, node: int) -> bool:
        return node in self.conf.voters or node in self.conf.learners

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    # -- Ready / advance ------------------------------------------------------------------

    def has_ready(self, *, persist: bool = True) -> bool:
        """Is there anything for the driver to do? With `persist=False`: anything a batch that
        leaves storage alone would carry (see `ready`)."""
        # Field by field, not soft_state()/hard_state() compared with the previous ones: the
        # driver asks after every tick and every message, and building them was most of it.
        lg = self.log
        soft, hard = self._prev_soft, self._prev_hard
        light = bool(
            self._msgs_early
            or self._read_states
            or (lg.committed > lg.applied and lg.pending_snapshot is None)
            or self.lead != soft.leader
            or self.role != soft.role
        )
        if not persist:
            return light
        return bool(
            light
            or self._msgs
            or lg.pending_snapshot
            or lg.unstable_entries()
            or self.term != hard.term
            or self.vote != hard.vote
            or lg.committed != hard.commit
        )

    def ready(self, *, persist: bool = True) -> Ready:
        """Collect the next batch of work. Call `advance()` when it has been handled.

        `persist=False` is for a driver whose previous batch is still being written (a leader
        that replicates while its own fsync runs, thesis 10.2.1): the batch carries only what
        depends on nothing unsaved (the leader's appends and heartbeats, entries already
        committed, confirmed reads, the soft state) and leaves entries, hard state, snapshot
        and the messages that promise them (`messages`) for a later full batch.
        """
        if self._handed is not None:
            raise RuntimeError("ready() called again before advance()")
        lg = self.log
        rd = Ready()
        soft = self.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        applied = lg.applied
        handed_last: int | None = None
        if persist:
            hard = self.hard_state()
            if hard != self._prev_hard:
                rd.hard_state = hard
                self._prev_hard = hard
            if lg.pending_snapshot is not None:
                rd.snapshot = lg.pending_snapshot
                lg.pending_snapshot = None
                applied = rd.snapshot.meta.index
                lg.applied = applied
                self._conf_applied = max(self._conf_applied, applied)
            rd.entries = lg.unstable_entries()
            handed_last = lg.mark_handed_out()
            rd.messages, self._msgs = self._msgs, []
        if lg.pending_snapshot is None:
            rd.committed_entries = lg.next_committed(self.cfg.max_apply_bytes_per_ready)
        if rd.committed_entries:
            applied = rd.committed_entries[-1].index
        rd.messages_early, self._msgs_early = self._msgs_early, []
        rd.read_states, self._read_states = self._read_states, []
        self._handed = (handed_last, applied)
        self._handed_committed = rd.committed_entries
        return rd

    def advance(self, *, durable: bool = True) -> None:
        """The last Ready has been handled: its messages sent, its committed entries applied
        and (unless `durable=False`) its entries, hard state and snapshot durable.

        A driver that sends and applies while the batch's write still runs passes
        `durable=False` and reports the write with `persisted` once its fsync returned.
        """
        if self._handed is None:
            raise RuntimeError("advance() without ready()")
        handed_last, applied = self._handed
        committed_entries = self._handed_committed
        self._handed = None
        self._handed_committed = []
        for e in committed_entries:
            if e.type == EntryType.CONF_CHANGE and e.index > self._conf_applied:
                self._apply_conf_entry(e)
        self.log.applied = max(self.log.applied, applied)
        if durable and handed_last is not None:
            self.log.stable_to(handed_last)
            self._self_ack()

    def persisted(self, index: int, term: int) -> None:
        """The driver's write of a batch whose last entry (or snapshot) is (`index`, `term`)
        is durable: etcd's MsgStorageAppendResp. Ignored when the log no longer holds that
        entry (replaced meanwhile). A leader counts its own copy toward commit only from here
        on, so it never commits by counting an entry it has not persisted itself.
        """
        if self.log.term(index) != term:
            return
        self.log.stable_to(index)
        self._self_ack()

    def _self_ack(self) -> None:
        if self.role == Role.LEADER:
            me = self.prs.get(self.id)
            if me is not None and me.maybe_update(self.log.stable) and self._maybe_commit():
                self._bcast_append()

    # -- membership -----------------------------------------------------------------------

    def _apply_conf_entry(self, entry: Entry) -> None:
        self._conf_applied = entry.index
        try:
            change = ConfChange.decode(entry.data)
        except ValueError:
            return  # a malformed change applies as a no-op on every member alike
        self.conf = apply_conf_change(self.conf, change)
        if self.role != Role.LEADER:
            return
        if change.node_id == self.id and change.type == ConfChangeType.REMOVE_NODE:
            self._bcast_append()  # let the others learn the commit before we go quiet
            self._become_follower(self.term, NONE)
            return
        self._sync_progress()
        if self.lead_transferee not in self.conf.voters:
            self.lead_transferee = NONE
        if self._maybe_commit():
            self._bcast_append()

    def _sync_progress(self) -> None:
        members = set(self.conf.voters) | set(self.conf.learners)
        for node in list(self.prs):
            if node not in members:
                del self.prs[node]
        for node in sorted(members):
            pr = self.prs.get(node)
            if pr is None:
                pr = Progress(self.log.last_index() + 1, self.cfg.max_inflight_msgs)
                pr.recent_active = True
                self.prs[node] = pr
                if node != self.id:
                    self._send_append(node)
            pr.is_learner = node in self.conf.learners

    def _maybe_promote_learner(self) -> None:
        if not self.conf.learners or self._pending_conf_index > self.log.applied:
            return
        if not self._committed_in_term() or self.lead_transferee != NONE:
            return
        for node in self.conf.learners:
            pr = self.prs.get(node)
            if pr is not None and pr.match >= self.log.committed:
                self.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, node))
                return

    # -- role changes ---------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        et = self.cfg.election_tick
        self._randomized_timeout = et + self._rng.randrange(et)
        self._votes = {}
        self.lead_transferee = NONE
        self._pending_reads.clear()
        self._reads_before_commit.clear()
        self.prs = {}

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def _become_pre_candidate(self) -> None:
        # A pre-candidate keeps its term and vote: nothing changes unless the real election runs.
        self._votes = {}
        self.role = Role.PRE_CANDIDATE
        self.lead = NONE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        last = self.log.last_index()
        for node in self.conf.voters + self.conf.learners:
            pr = Progress(last + 1, self.cfg.max_inflight_msgs, node in self.conf.learners)
            pr.recent_active = True
            self.prs[node] = pr
        me = self.prs.get(self.id)
        if me is not None:
            me.maybe_update(self.log.stable)
            me.become_replicate()
        # No membership change until everything in the log at election time is applied.
        self._pending_conf_index = last
        self.log.append([Entry(self.term, last + 1)])
        self._bcast_append()

    def _campaign(self, kind: str) -> None:
        if not self.promotable():
            return
        if kind == _PRE_ELECTION:
            self._become_pre_candidate()
            msg_type, term = MsgType.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            msg_type, term = MsgType.VOTE, self.term
        self._votes[self.id] = True
        if vote_result(self.conf.voters, self._votes) == VoteResult.WON:
            self._won_election()
            return
        ctx = TRANSFER_CONTEXT if kind == _TRANSFER else b""
        for node in self.conf.voters:
            if node != self.id:
                self._send(
                    Message(
                        msg_type,
                        node,
                        self.id,
                        term,
                        log_term=self.log.last_term(),
                        index=self.log.last_index(),
                        context=ctx,
                    )
                )

    def _won_election(self) -> None:
        if self.role == Role.PRE_CANDIDATE:
            self._campaign(_ELECTION)
        else:
            self._become_leader()

    # -- stepping messages ----------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Handle a message from another member."""
        if m.to != self.id or m.frm == self.id:
            return
        if m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead != NONE
                    and self._election_elapsed < self.cfg.election_tick
                )
                if in_lease and m.context != TRANSFER_CONTEXT:
                    return
            if m.type == MsgType.PRE_VOTE or (m.type == MsgType.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change our term
            elif m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if m.type in (MsgType.APP, MsgType.HEARTBEAT) and (
                self.cfg.check_quorum or self.cfg.pre_vote
            ):
                # A deposed leader (e.g. back from a partition) learns our term and steps down.
                self._send(Message(MsgType.APP_RESP, m.frm, self.id, self.term))
            elif m.type == MsgType.PRE_VOTE:
                self._send(Message(MsgType.PRE_VOTE_RESP, m.frm, self.id, self.term, reject=True))
            return

        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MsgType.PRE_VOTE and m.term > self.term)
        )
        up_to_date = self._candidate_log_up_to_date(m)
        resp = MsgType.VOTE_RESP if m.type == MsgType.VOTE else MsgType.PRE_VOTE_RESP
        if can_vote and up_to_date:
            self._send(Message(resp, m.frm, self.id, m.term))
            if m.type == MsgType.VOTE:
                self._election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(resp, m.frm, self.id, self.term, reject=True))

    def _candidate_log_up_to_date(self, m: Message) -> bool:
        """Raft's election restriction: is the candidate's log at least as new as ours?"""
        return self.log.is_up_to_date(m.index, m.log_term)

    def _step_candidate(self, m: Message) -> None:
        if m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            self._become_follower(m.term, m.frm)
            self._step_follower(m)
            return
        want = MsgType.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MsgType.VOTE_RESP
        if m.type != want:
            return
        if m.frm not in self._votes:
            self._votes[m.frm] = not m.reject
        result = vote_result(self.conf.voters, self._votes)
        if result == VoteResult.WON:
            self._won_election()
        elif result == VoteResult.LOST:
            self._become_follower(self.term, NONE)

    def _step_follower(self, m: Message) -> None:
        if m.type == MsgType.APP:
            self._election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif m.type == MsgType.HEARTBEAT:
            self._election_elapsed = 0
            self.lead = m.frm
            self.log.commit_to(min(m.commit, self.log.last_index()))
            self._send(
                Message(MsgType.HEARTBEAT_RESP, m.frm, self.id, self.term, context=m.context)
            )
        elif m.type == MsgType.SNAP:
            self._election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif (
            m.type == MsgType.TIMEOUT_NOW
            and self.promotable()
            and not self.has_unapplied_conf_changes()
        ):
            self._campaign(_TRANSFER)

    def _handle_append(self, m: Message) -> None:
        self._send(answer_append(self.log, m, me=self.id, term=self.term))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        lg = self.log
        if snap is None or snap.meta.index <= lg.committed:
            self._send(Message(MsgType.APP_RESP, m.frm, self.id, self.term, index=lg.committed))
            return
        if lg.match_term(snap.meta.index, snap.meta.term):
            # Our log already holds the snapshot's last entry: keep it, and acknowledge only
            # what the snapshot proves (entries after it were never checked against the
            # leader's log and may differ), as the paper and etcd do.
            lg.commit_to(snap.meta.index)
            self._send(Message(MsgType.APP_RESP, m.frm, self.id, self.term, index=lg.committed))
            return
        lg.restore(snap)
        self.conf = snap.meta.conf
        # Conf changes handed out before this snapshot must not be re-applied over it.
        self._conf_applied = snap.meta.index
        self._send(Message(MsgType.APP_RESP, m.frm, self.id, self.term, index=lg.last_index()))

    def _step_leader(self, m: Message) -> None:
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        if m.type == MsgType.APP_RESP:
            self._handle_append_response(m, pr)
        elif m.type == MsgType.HEARTBEAT_RESP:
            take_heartbeat_response(pr, self.cfg.election_tick)
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._read_states.extend(
                    self._pending_reads.ack(m.context, m.frm, self.conf.voters)
                )

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        was_paused = pr.is_paused()
        outcome = take_append_response(pr, m, self.log)
        if outcome == AckOutcome.RETRY:
            self._send_append(m.frm)
        if outcome != AckOutcome.ADVANCED:
            return
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._send_append(m.frm)
        last = self.log.last_index()
        while pr.match < last and pr.next <= last and self._send_append(m.frm):
            pass
        if m.frm == self.lead_transferee and pr.match == last:
            self._send(Message(MsgType.TIMEOUT_NOW, m.frm, self.id, self.term))
        self._maybe_promote_learner()

    # -- leader machinery -----------------------------------------------------------------

    def _maybe_commit(self) -> bool:
        index = committed_index(self.conf.voters, {n: pr.match for n, pr in self.prs.items()})
        if index <= self.log.committed:
            return False
        if not self._may_commit_by_counting(index):
            return False
        first_in_term = not self._committed_in_term()
        self.log.commit_to(index)
        if first_in_term and self._committed_in_term():
            reads, self._reads_before_commit = self._reads_before_commit, []
            for ctx in reads:
                self._start_read(ctx)
        return True

    def _may_commit_by_counting(self, index: int) -> bool:
        """Only an entry of the leader's own term commits by counting replicas (figure 8)."""
        return self.log.term(index) == self.term

    def _quorum_active(self) -> bool:
        active = {self.id} | {n for n, pr in self.prs.items() if pr.recent_active}
        for pr in self.prs.values():
            pr.recent_active = False
        return has_quorum(self.conf.voters, active)

    def _bcast_append(self) -> None:
        for node in self.prs:
            if node != self.id:
                self._send_append(node)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        for node, pr in self.prs.items():
            if node != self.id:
                commit = min(pr.match, self.log.committed)
                self._send(
                    Message(MsgType.HEARTBEAT, node, self.id, self.term, commit=commit, context=ctx)
                )

    def _send_append(self, to: int) -> bool:
        """Send `to` what it lacks (entries or a snapshot); False when nothing was sent."""
        m = next_append(
            self.prs[to],
            self.log,
            to=to,
            frm=self.id,
            term=self.term,
            max_bytes=self.cfg.max_size_per_msg,
        )
        if m is not None:
            self._send(m)
        return m is not None

    def _send(self, m: Message) -> None:
        if self.role == Role.LEADER and m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            self._msgs_early.append(m)
        else:
            self._msgs.append(m)
