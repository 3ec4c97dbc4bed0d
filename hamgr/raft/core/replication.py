"""Log replication, both ends: what a leader sends a follower next, how the follower answers,
and what the answer changes in the leader's view of that follower.

Pure functions over a follower's Progress and a log; the core decides when to call them and
routes the messages they build.
"""

from __future__ import annotations

from enum import Enum

from hamgr.raft.core.log import RaftLog
from hamgr.raft.core.progress import Progress, ProgressState
from hamgr.raft.core.types import Message, MsgType


class AckOutcome(Enum):
    """What a follower's append response meant for its progress."""

    IGNORED = "ignored"  # stale or duplicate: nothing changed
    RETRY = "retry"  # refused: the leader stepped back and should send again
    ADVANCED = "advanced"  # the follower now matches further


def next_append(
    pr: Progress, log: RaftLog, *, to: int, frm: int, term: int, max_bytes: int
) -> Message | None:
    """The append (or snapshot) follower `to` needs now, or None while paused or when nothing
    can be sent. Records the send in `pr`'s flow control."""
    if pr.is_paused():
        return None
    prev = pr.next - 1
    prev_term = log.term(prev)
    if prev_term is None or pr.next < log.first_index():
        snap = log.snapshot
        if snap.meta.index == 0 and pr.next >= log.first_index():
            return None
        pr.become_snapshot(snap.meta.index)
        return Message(MsgType.SNAP, to, frm, term, snapshot=snap)
    entries = log.slice(pr.next, log.last_index() + 1, max_bytes)
    if entries:
        pr.sent_entries(entries[-1].index)
    elif pr.state == ProgressState.PROBE:
        pr.probe_sent = True
    return Message(
        MsgType.APP,
        to,
        frm,
        term,
        log_term=prev_term,
        index=prev,
        entries=tuple(entries),
        commit=log.committed,
    )


def take_append_response(pr: Progress, m: Message, log: RaftLog) -> AckOutcome:
    """Update `pr` from an APP_RESP (accept or refusal) of its follower."""
    pr.recent_active = True
    if m.reject:
        hint = m.reject_hint
        if m.log_term > 0:
            hint = log.find_conflict_by_term(hint, m.log_term)
        if not pr.maybe_decrease_to(m.index, hint):
            return AckOutcome.IGNORED
        if pr.state == ProgressState.REPLICATE:
            pr.become_probe()
        return AckOutcome.RETRY
    if not pr.maybe_update(m.index):
        return AckOutcome.IGNORED
    if pr.state == ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
        pr.become_probe()
        pr.become_replicate()
    return AckOutcome.ADVANCED


def take_heartbeat_response(pr: Progress, election_tick: int) -> None:
    """A heartbeat answer proves the follower is alive: unblock a stalled flow."""
    pr.recent_active = True
    pr.probe_sent = False
    if pr.state == ProgressState.REPLICATE and pr.is_paused():
        pr.inflights.popleft()  # appends may be lost: let one more through to find out
    if pr.state == ProgressState.SNAPSHOT and pr.snapshot_elapsed >= election_tick:
        pr.become_probe()  # the snapshot seems lost: try again


def answer_append(log: RaftLog, m: Message, *, me: int, term: int) -> Message:
    """A follower's handling of an APP: accept what matches (truncating only at the first
    conflict, never below commit) or refuse with a hint where our logs may agree."""
    if m.index < log.committed:
        return Message(MsgType.APP_RESP, m.frm, me, term, index=log.committed)
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        return Message(MsgType.APP_RESP, m.frm, me, term, index=last_new)
    hint = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
    return Message(
        MsgType.APP_RESP,
        m.frm,
        me,
        term,
        index=m.index,
        reject=True,
        reject_hint=hint,
        log_term=log.term(hint) or 0,
    )
