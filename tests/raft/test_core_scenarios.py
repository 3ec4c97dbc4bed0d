"""Scripted scenarios of the Raft paper and of etcd-io/raft's test suite, step by step."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamgr.raft.core.config import RaftConfig
from hamgr.raft.core.log import LogInvariantError, RaftLog
from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.membership import bootstrap_log
from hamgr.raft.core.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    Message,
    MsgType,
    ProposalDroppedError,
    Role,
    Snapshot,
    SnapshotMeta,
)
from hamgr.raft.errors import NotLeaderError
from hamgr.raft.sim.breakers import RuleBreakers
from tests.raft.harness import Cluster

ELECTION_TYPES = {MsgType.PRE_VOTE, MsgType.PRE_VOTE_RESP, MsgType.VOTE, MsgType.VOTE_RESP}


def elect(c: Cluster, i: int, votes_only: bool = False) -> None:
    """Make member i win an election: the others first stop trusting the old leader.

    With `votes_only`, nothing but election traffic is delivered (the new leader's no-op stays
    in the outbox, as in the paper's figure 8).
    """
    others = [n for n, node in c.nodes.items() if n != i and node.core is not None]
    for _ in range(3):  # a first pre-vote may only teach i a newer term
        c.expire_lease(*others)
        c.campaign(i, (lambda m: m.type in ELECTION_TYPES) if votes_only else None)
        if c.leader() == i:
            break
    assert c.leader() == i
    if not votes_only:
        c.deliver()


def test_election_and_replication() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    assert c.core(1).term == 2
    c.propose(1, b"a")
    c.deliver()
    c.tick(1)  # a heartbeat carries the commit index to followers
    c.deliver()
    for i in (1, 2, 3):
        assert c.applied_data(i) == [b"a"]


def test_leader_appends_noop_and_commits_only_current_term() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    last = c.core(1).log.entry(c.core(1).log.last_index())
    assert last.term == 2 and last.data == b""  # the no-op of the new term
    assert c.core(1).log.committed == last.index


def _figure8(breakers: RuleBreakers) -> tuple[Cluster, int]:
    """Raft paper, figure 8: an old-term entry replicated to a majority is NOT yet committed.

    Returns the cluster and the index at which S1 had its term-2 entry.
    """
    c = Cluster([1, 2, 3, 4, 5], max_size_per_msg=1, rule_breakers=breakers)
    elect(c, 1)  # term 2
    # (a) S1 appends x at index i in term 2, replicated to S2 only.
    c.isolated = {3, 4, 5}
    i = c.propose(1, b"x")
    c.deliver()
    assert c.core(2).log.term(i) == 2
    # (b) S1 crashes; S5 wins term 3 with S3 and S4, appends its no-op at i, then crashes.
    c.crash(1)
    c.isolated = {1, 2}
    elect(c, 5, votes_only=True)
    assert c.core(5).term == 3 and c.core(5).log.term(i) == 3
    c.isolated = set()
    c.outbox = [m for m in c.outbox if m.frm != 5]
    c.crash(5)
    # (c) S1 restarts and wins term 4 with S2 and S3; it sends x (one entry per message) to S3
    # but not its term-4 no-op, so x sits on a majority {S1, S2, S3}.
    c.start(1)
    c.isolated = {4, 5}
    elect(c, 1, votes_only=True)
    core1 = c.core(1)
    assert core1.term == 4

    def only_x_to_s3(m: Message) -> bool:
        if m.to in (1, 2):
            return True  # S2 has x already; S5 can win later without S2's vote
        s3_lacks_x = c.core(3).log.term(i) is None  # probes that S3 will refuse may pass
        return m.to == 3 and (s3_lacks_x or all(e.index <= i for e in m.entries))

    for _ in range(3):
        c.tick(1)
        c.deliver(allow=only_x_to_s3)
    assert c.core(3).log.term(i) == 2
    return c, i


def test_figure8_old_term_entry_commits_only_through_current_term() -> None:
    c, i = _figure8(RuleBreakers())
    assert c.core(1).log.committed < i, "an entry of term 2 was committed by counting replicas"
    # S1 crashes; S5 comes back and wins term 5 (its log ends in term 3): it overwrites x.
    c.crash(1)
    c.outbox.clear()
    c.start(5)
    c.isolated = {1}
    elect(c, 5)
    c.propose(5, b"y")
    c.deliver()
    c.tick(5)
    c.deliver()
    for n in (2, 3, 4, 5):
        assert c.core(n).log.term(i) == 3
        assert b"x" not in c.applied_data(n)
        assert c.applied_data(n) == [b"y"]


def test_figure8_breaker_commits_old_term_entry() -> None:
    """The rule breaker makes S1 commit x too early: the scenario tells the two apart."""
    c, i = _figure8(RuleBreakers(commit_old_term_by_counting=True))
    assert c.core(1).log.committed >= i
    assert b"x" in c.applied_data(1)


def test_prevote_keeps_rejoining_member_from_disturbing_leader() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    term = c.core(1).term
    c.isolated = {3}
    for _ in range(5):
        c.tick(3, 20)
        c.deliver()
    assert c.core(3).term == term  # pre-votes do not raise the term
    c.isolated = set()
    c.tick(3, 20)
    c.deliver()
    c.tick(1)
    c.deliver()
    assert c.leader() == 1 and c.core(1).term == term
    assert c.core(3).role == Role.FOLLOWER and c.core(3).lead == 1


def test_without_prevote_rejoining_member_disturbs_leader() -> None:
    """The contrast case: it shows the previous test would notice a missing PreVote."""
    c = Cluster([1, 2, 3], pre_vote=False, check_quorum=False)
    elect(c, 1)
    term = c.core(1).term
    c.isolated = {3}
    c.tick(3, 40)
    c.deliver()
    assert c.core(3).term > term
    c.isolated = set()
    c.tick(3, 20)  # its next election reaches the leader with a higher term
    c.deliver()
    assert c.core(1).term > term  # the leader was deposed by the higher term


def test_vote_ignored_while_live_leader_known() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    term = c.core(2).term
    vote = Message(MsgType.VOTE, 2, 3, term + 1, log_term=99, index=99)
    c.core(2).step(vote)
    c.drive(2)
    assert c.core(2).term == term and c.core(2).vote == 1
    assert not [m for m in c.outbox if m.type == MsgType.VOTE_RESP]


def test_check_quorum_steps_down_within_one_election_timeout() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.isolated = {1}
    ticks = 0
    while c.core(1).role == Role.LEADER and ticks < 100:
        c.tick(1)
        c.deliver()
        ticks += 1
    assert c.core(1).role == Role.FOLLOWER
    assert ticks <= 2 * 10  # at most one full election timeout after the last contact
    with pytest.raises(NotLeaderError):
        c.core(1).propose(b"z")


def test_leadership_transfer_to_lagging_follower() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.isolated = {3}
    for n in range(5):
        c.propose(1, b"v%d" % n)
    c.deliver()
    c.isolated = set()
    c.core(1).transfer_leadership(3)
    with pytest.raises(ProposalDroppedError):
        c.core(1).propose(b"dropped")
    c.drive(1)
    c.deliver()
    assert c.leader() == 3
    assert c.core(3).term == 3
    assert c.core(1).role == Role.FOLLOWER and c.core(1).lead == 3


def test_transfer_aborts_after_election_timeout() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.isolated = {3}
    c.core(1).transfer_leadership(3)
    c.drive(1)
    c.tick(1, 10)
    c.deliver()
    assert c.core(1).lead_transferee == 0
    c.propose(1, b"after")  # proposals flow again


def test_learner_is_promoted_once_caught_up() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    for n in range(10):
        c.propose(1, b"d%d" % n)
    c.deliver()
    c.add_empty(4)
    c.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, 4))
    c.drive(1)
    c.deliver()
    for _ in range(10):
        c.tick(1)
        c.deliver()
    for i in (1, 2, 3, 4):
        assert c.core(i).conf.voters == (1, 2, 3, 4), i
        assert c.core(i).conf.learners == ()
    assert c.applied_data(4) == [b"d%d" % n for n in range(10)]
    c.crash(1)
    elect(c, 4)  # a promoted member can win: it is a real voter now


def test_one_membership_change_at_a_time() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, 4))
    with pytest.raises(ProposalDroppedError):
        c.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, 5))


def test_membership_change_waits_for_term_noop() -> None:
    c = Cluster([1, 2, 3])
    c.isolated = {2, 3}
    c.tick(1, 20)
    c.isolated = set()
    c.deliver(allow=lambda m: m.type != MsgType.APP_RESP)
    assert c.core(1).role == Role.LEADER
    with pytest.raises(ProposalDroppedError):
        c.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, 4))


def test_removed_leader_steps_down_and_stays_quiet() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.core(1).propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))
    c.drive(1)
    c.deliver()
    assert c.core(1).role == Role.FOLLOWER
    assert c.core(1).conf.voters == (2, 3)
    c.tick(1, 50)  # a non-member never campaigns
    assert c.core(1).role == Role.FOLLOWER
    elect(c, 2)
    assert c.core(2).conf.voters == (2, 3)


def _committed_removal_not_yet_applied_on_2() -> Cluster:
    """Leader 1 commits the removal of 3; member 2 persisted and acknowledged it and knows it is
    committed, but its driver yields before applying it (2 still counts votes in {1, 2, 3})."""
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.slow_apply = {2}
    index = c.core(1).propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))
    c.drive(1)
    c.deliver()
    c.tick(1)  # the heartbeat tells 2 that the change committed
    c.deliver()
    core2 = c.core(2)
    assert c.core(1).conf.voters == (1, 2)
    assert core2.log.committed >= index and c.nodes[2].held is not None
    assert core2.conf.voters == (1, 2, 3)
    c.isolated = {1}  # the leader goes silent: 2's election timer runs out
    return c


def test_no_campaign_while_a_committed_conf_change_is_unapplied() -> None:
    c = _committed_removal_not_yet_applied_on_2()
    core2 = c.core(2)
    for _ in range(3 * 10):
        core2.tick()
    assert core2.role == Role.FOLLOWER
    assert not [m for m in c.outbox if m.frm == 2 and m.type in ELECTION_TYPES]
    assert core2.has_unapplied_conf_changes()
    c.finish_apply(2)  # the apply catches up: 2 now counts in {1, 2} and may campaign
    assert core2.conf.voters == (1, 2) and not core2.has_unapplied_conf_changes()
    for _ in range(3 * 10):
        core2.tick()
    c.drive(2)
    assert core2.role != Role.FOLLOWER
    assert [m for m in c.outbox if m.frm == 2 and m.type == MsgType.PRE_VOTE]


def test_no_transfer_campaign_while_a_committed_conf_change_is_unapplied() -> None:
    c = _committed_removal_not_yet_applied_on_2()
    core2 = c.core(2)
    timeout_now = Message(MsgType.TIMEOUT_NOW, 2, 1, core2.term)
    core2.step(timeout_now)
    assert core2.role == Role.FOLLOWER and core2.term == c.core(1).term
    c.finish_apply(2)
    core2.step(timeout_now)
    assert core2.role == Role.CANDIDATE


def test_compact_adopts_a_snapshot_taken_before_later_applies() -> None:
    """A driver encodes its snapshot in the background: the core adopts it at the index it was
    taken at, with the configuration of then, however far the log moved on meanwhile."""
    c = Cluster([1, 2, 3])
    elect(c, 1)
    for n in range(10):
        c.propose(1, b"a%d" % n)
    c.deliver()
    core1 = c.core(1)
    meta = core1.snapshot_meta()
    assert meta.index == core1.log.applied and meta.conf == core1.conf
    for n in range(5):
        c.propose(1, b"b%d" % n)
    c.deliver()
    assert core1.log.applied > meta.index
    snap = core1.compact(meta, b"state-at-then")
    assert snap is not None and snap.meta == meta
    assert core1.log.snapshot is snap and core1.log.first_index() == meta.index + 1
    assert core1.compact(meta, b"again") is None  # not newer than what the log holds
    assert core1.log.snapshot is snap
    now = core1.snapshot_meta()
    with pytest.raises(ValueError, match="beyond the applied index"):
        core1.compact(SnapshotMeta(now.index + 1, now.term, now.conf), b"")
    with pytest.raises(ValueError, match="has term"):
        core1.compact(SnapshotMeta(now.index, now.term + 1, now.conf), b"")
    assert core1.log.snapshot is snap


def test_snapshot_installed_on_far_behind_follower() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.isolated = {3}
    for n in range(30):
        c.propose(1, b"s%d" % n)
    c.deliver()
    c.tick(1)
    c.deliver()
    core1 = c.core(1)
    snap = core1.compact(core1.snapshot_meta(), b"state-at-%d" % core1.log.applied)
    assert snap is not None
    assert core1.log.first_index() == snap.meta.index + 1
    c.isolated = set()
    for _ in range(5):
        c.tick(1)
        c.deliver()
    n3 = c.nodes[3]
    assert n3.snapshot.meta.index == snap.meta.index
    assert n3.snapshot.data == snap.data
    assert c.core(3).log.committed >= snap.meta.index
    c.propose(1, b"after-snapshot")
    c.deliver()
    c.tick(1)
    c.deliver()
    assert c.applied_data(3)[-1] == b"after-snapshot"
    assert c.core(3).log.term(c.core(3).log.last_index()) == c.core(1).term


def test_snapshot_matching_our_log_acknowledges_only_what_it_proves() -> None:
    """A follower holds the snapshot's last entry (index 10, term 2) and, after it, two entries
    of an old leader that the new leader never sent (its own 11 and 12 are of term 3). Its
    answer to the snapshot must not claim 12: the leader would count those unchecked entries
    as copies of its own and could commit them without a real majority."""
    hs, boot = bootstrap_log([1, 2, 3])
    entries = [*boot, *(Entry(2, i, data=b"e%d" % i) for i in range(len(boot) + 1, 13))]
    follower = RaftCore(RaftConfig(id=2), random.Random(1), hard_state=hs, entries=entries)
    conf = follower.conf
    snap = Snapshot(SnapshotMeta(10, 2, conf), b"state-at-10")
    follower.step(Message(MsgType.SNAP, 2, 1, 3, snapshot=snap))
    rd = follower.ready()
    acks = [m for m in rd.messages if m.type == MsgType.APP_RESP and not m.reject]
    assert [m.index for m in acks] == [10]
    assert follower.log.committed == 10 and follower.log.last_index() == 12
    assert rd.snapshot is None  # the log is kept, not replaced


def test_read_index_waits_for_term_commit_and_quorum() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.propose(1, b"w")
    c.deliver()
    c.core(1).read_index(b"r1")
    c.drive(1)
    assert c.nodes[1].read_states == []  # needs a quorum heartbeat round first
    c.deliver()
    assert c.nodes[1].read_states == [(c.core(1).log.committed, b"r1")]


def test_deposed_leader_serves_no_read() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    c.isolated = {1}
    elect(c, 2)
    c.core(1).read_index(b"stale")
    c.drive(1)
    c.deliver()
    c.isolated = set()
    c.deliver()
    assert c.nodes[1].read_states == []
    assert c.core(1).role == Role.FOLLOWER or c.core(1).term < c.core(2).term


def test_follower_read_index_is_refused_with_leader_hint() -> None:
    c = Cluster([1, 2, 3])
    elect(c, 1)
    with pytest.raises(NotLeaderError, match="leader is 1"):
        c.core(2).read_index(b"r")


def test_vote_survives_restart() -> None:
    c = Cluster([1, 2, 3])
    c.tick(1, 20)
    c.deliver(allow=lambda m: m.frm == 1 or m.to == 1)
    voted = c.core(2).vote
    c.crash(2)
    c.start(2)
    assert c.core(2).vote == voted == 1


def test_forget_vote_breaker_forgets() -> None:
    c = Cluster([1, 2, 3], rule_breakers=RuleBreakers(forget_vote_on_restart=True))
    c.tick(1, 20)
    c.deliver()
    c.crash(2)
    c.start(2)
    assert c.core(2).vote == 0


def test_flow_control_limits_inflight_appends() -> None:
    c = Cluster([1, 2, 3], max_size_per_msg=1)
    elect(c, 1)
    c.isolated = set()
    for n in range(300):
        c.core(1).propose(b"f%d" % n)
    c.drive(1)
    apps = [m for m in c.outbox if m.type == MsgType.APP and m.to == 2]
    assert 0 < len(apps) <= 256
    assert all(len(m.entries) <= 1 for m in apps)


def test_committed_entry_is_never_truncated() -> None:
    log = RaftLog(Snapshot(), [Entry(1, 1), Entry(1, 2)], committed=2)
    with pytest.raises(LogInvariantError, match="committed"):
        log.append([Entry(2, 2)])


def test_follower_truncates_only_at_first_conflict() -> None:
    log = RaftLog(Snapshot(), [Entry(1, 1), Entry(1, 2), Entry(2, 3), Entry(2, 4)], committed=1)
    # A stale append that only repeats entries we hold must not cut the suffix after it.
    assert log.maybe_append(1, 1, 1, (Entry(1, 2),)) == 2
    assert log.last_index() == 4
    assert log.maybe_append(2, 1, 1, (Entry(3, 3),)) == 3
    assert log.last_index() == 3 and log.term(3) == 3


@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=2, max_value=50))
def test_randomized_election_timeout_in_range(seed: int, et: int) -> None:
    core = RaftCore(RaftConfig(id=1, election_tick=et), random.Random(seed))
    assert et <= core._randomized_timeout < 2 * et
