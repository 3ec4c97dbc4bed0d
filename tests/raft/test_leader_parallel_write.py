"""A leader writes its log in parallel with replication (Raft thesis 10.2.1), step by step.

The leader sends its appends and heartbeats before its own write is durable, applies what a
quorum of the others made durable and answers reads meanwhile, and counts its own copy only
once the driver reports the write with `RaftCore.persisted` (etcd's MsgStorageAppendResp).
Followers and candidates still persist before they answer. `Cluster.slow_disk` holds the
leader's write open until `finish_write`.
"""

from __future__ import annotations

from hamgr.raft.core.types import Message, MsgType, Role
from tests.raft.harness import Cluster
from tests.raft.test_core_scenarios import elect


def _appends_of(c: Cluster, index: int) -> set[int]:
    """Members to whom an append carrying entry `index` waits in the outbox."""
    return {
        m.to for m in c.outbox if m.type == MsgType.APP and any(e.index == index for e in m.entries)
    }


def _stalled_leader(ids: list[int]) -> Cluster:
    c = Cluster(ids)
    elect(c, 1)
    c.slow_disk.add(1)
    return c


def _durable(c: Cluster, i: int, index: int) -> bool:
    return any(e.index == index for e in c.nodes[i].entries)


def test_leader_sends_appends_before_its_own_write() -> None:
    c = _stalled_leader([1, 2, 3])
    index = c.propose(1, b"a")
    assert c.nodes[1].writing is not None and not _durable(c, 1, index)
    assert _appends_of(c, index) == {2, 3}
    # Heartbeats go out too while the write runs.
    c.outbox.clear()
    c.tick(1)
    assert {m.to for m in c.outbox if m.type == MsgType.HEARTBEAT} == {2, 3}


def test_followers_alone_commit_what_the_leader_has_not_written() -> None:
    """Two followers of three are a majority: the entry commits and applies on the leader
    before its own write returns (etcd does the same)."""
    c = _stalled_leader([1, 2, 3])
    index = c.propose(1, b"a")
    c.deliver()
    leader = c.core(1)
    assert leader.log.committed >= index
    assert leader.prs[1].match < index  # its own copy still does not count
    assert not _durable(c, 1, index)
    assert c.applied_data(1) == [b"a"]
    c.finish_write(1)
    assert _durable(c, 1, index) and leader.prs[1].match >= index


def test_leader_never_counts_its_unwritten_copy() -> None:
    """Leader + one follower is a majority of three only once the leader's copy is durable."""
    c = _stalled_leader([1, 2, 3])
    c.isolated.add(3)
    index = c.propose(1, b"a")
    c.deliver()
    leader = c.core(1)
    assert leader.prs[2].match >= index
    assert leader.log.committed < index and c.applied_data(1) == []
    c.finish_write(1)
    assert leader.log.committed >= index
    assert c.applied_data(1) == [b"a"]


def test_read_index_answered_while_the_leader_writes() -> None:
    c = _stalled_leader([1, 2, 3])
    c.propose(1, b"a")
    c.deliver()
    committed = c.core(1).log.committed
    assert c.nodes[1].writing is not None
    c.core(1).read_index(b"r1")
    c.drive(1)
    c.deliver()
    assert (committed, b"r1") in c.nodes[1].read_states
    assert c.nodes[1].writing is not None


def test_leader_crash_before_its_write_loses_nothing_committed() -> None:
    c = _stalled_leader([1, 2, 3])
    index = c.propose(1, b"a")
    c.deliver()
    assert c.core(1).log.committed >= index and c.applied_data(1) == [b"a"]
    c.crash(1)  # the write never finished: the entry is not on the leader's disk
    assert not _durable(c, 1, index)
    c.slow_disk.clear()
    elect(c, 2)
    c.start(1)
    c.propose(2, b"b")
    c.deliver()
    c.tick(2)
    c.deliver()
    for i in (1, 2, 3):
        assert c.applied_data(i) == [b"a", b"b"], i
        assert _durable(c, i, index)


def test_a_deposed_leader_waits_for_its_write_before_answering() -> None:
    """Once it is no longer leader, a member with a write in flight sends nothing that
    depends on storage (acks, votes) until that write returned."""
    c = _stalled_leader([1, 2, 3])
    c.propose(1, b"a")
    c.deliver()
    leader = c.core(1)
    higher = Message(MsgType.APP, 1, 2, leader.term + 1, index=0, log_term=0, commit=0)
    leader.step(higher)
    assert leader.role == Role.FOLLOWER
    c.outbox.clear()
    c.drive(1)
    assert c.outbox == []  # its answer promises a term not yet on its disk
    c.finish_write(1)
    assert any(m.type == MsgType.APP_RESP and m.to == 2 for m in c.outbox)
    assert c.nodes[1].hard_state.term == leader.term
