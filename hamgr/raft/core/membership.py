"""Membership as data: the founding log and how one single-server change alters a ConfState.

Membership lives in the log (and in snapshots) like everything else, so every member derives
the same ConfState from the same applied entries.
"""

from __future__ import annotations

from hamgr.raft.core.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
)


def bootstrap_log(voters: list[int]) -> tuple[HardState, list[Entry]]:
    """The identical first log that every founding member persists before its first start.

    Membership lives in the log (and in snapshots), so a member that joins later learns the
    founding voters by replaying these committed entries, like any other membership change.
    A member that joins an existing cluster starts from an empty log instead.
    """
    if not voters or len(set(voters)) != len(voters) or min(voters) <= NONE:
        raise ValueError(f"founding voters must be distinct positive ids, got {voters}")
    changes = []
    for node in sorted(voters):
        changes.append(ConfChange(ConfChangeType.ADD_NODE, node))
        changes.append(ConfChange(ConfChangeType.PROMOTE, node))
    entries = [Entry(1, n + 1, EntryType.CONF_CHANGE, c.encode()) for n, c in enumerate(changes)]
    return HardState(term=1, vote=NONE, commit=len(entries)), entries


def apply_conf_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The membership after `change`: ADD_NODE adds a learner, PROMOTE makes a learner a voter,
    REMOVE_NODE removes a voter or learner. A change that does not fit (e.g. promoting a
    non-learner) leaves the membership as it was, identically on every member."""
    node = change.node_id
    voters = [v for v in conf.voters if v != node]
    learners = [v for v in conf.learners if v != node]
    if change.type == ConfChangeType.ADD_NODE:
        if node in conf.voters:
            return conf
        learners.append(node)
    elif change.type == ConfChangeType.PROMOTE:
        if node not in conf.learners:
            return conf
        voters.append(node)
    return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))
