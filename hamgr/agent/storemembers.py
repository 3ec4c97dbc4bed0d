"""The store's membership as an operator sees and changes it (``hactl members``): pure rules.

Operators name hosts; Raft names members by node id, unique for all time (DESIGN.md). A record
per name, ``/hamgr/<scope>/store-members/<name>`` (JSON, no lease), ties the two: every agent
and witness writes its own at start, ``members add`` writes the newcomer's before proposing it,
``members remove`` marks it removed and keeps it, so that a removed id is never given again.

Changes go one at a time through the store's single-server membership change: a new member
joins as a learner (it votes on nothing and counts in no quorum while it catches up, by
snapshot when the log was compacted), and the Raft leader promotes it to voter by itself once
its log matches the leader's commit (`hamgr.raft.core.machine`). The promotion is automatic because
the leader is the one member that knows when the learner has caught up; a voter that had not would
count in the quorum without being able to acknowledge anything new, so a second failure would
stop the store. The checks here refuse, with a reason, what would be unsafe: a change while a
learner is still catching up (the promotion is the pending change), and a removal after which
the voters that still answer are no majority of the voters left.

`hamgr.agent.storeadmin` does the I/O (store reads and writes, asking each member its state).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MemberProbe",
    "MemberRecord",
    "MembershipRefused",
    "StoreConf",
    "check_add",
    "check_remove",
    "members_json",
    "next_node_id",
    "records_prefix",
]


class MembershipRefused(Exception):
    """The change is unsafe or does not fit the membership now; the message says why."""


def records_prefix(scope: str) -> str:
    """Where the name records of `scope`'s store members live (one key per name below it)."""
    return f"/hamgr/{scope}/store-members/"


@dataclass(frozen=True)
class MemberRecord:
    """One name's store member: its node id, Raft address and client address (host:port)."""

    name: str
    node_id: int
    address: str
    client_address: str = ""
    removed: bool = False

    def to_json(self) -> bytes:
        """The record's value in the store."""
        body = {
            "node_id": self.node_id,
            "address": self.address,
            "client_address": self.client_address,
            "removed": self.removed,
        }
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, name: str, raw: bytes) -> MemberRecord | None:
        """The record stored under `name`, or None when the value is not one (ignored)."""
        try:
            body = json.loads(raw)
            node_id = body["node_id"]
            if type(node_id) is not int or node_id <= 0:
                return None
            return cls(
                name,
                node_id,
                str(body.get("address", "")),
                str(body.get("client_address", "")),
                bool(body.get("removed", False)),
            )
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class StoreConf:
    """The membership as one member applied it: voters, learners, the Raft leader (0: none
    known) and its term."""

    voters: tuple[int, ...]
    learners: tuple[int, ...]
    leader: int = 0
    term: int = 0

    def role_of(self, node_id: int) -> str:
        """``voter``, ``learner`` or ``removed`` (not a member now)."""
        if node_id in self.voters:
            return "voter"
        if node_id in self.learners:
            return "learner"
        return "removed"


@dataclass(frozen=True)
class MemberProbe:
    """What one member answered about itself: its Raft role and applied index, or the error."""

    role: str = ""
    applied: int = 0
    term: int = 0
    error: str = ""


def _current(records: Iterable[MemberRecord], conf: StoreConf) -> dict[int, MemberRecord]:
    """Node id -> the record naming it, for the members of `conf` (the newest record wins)."""
    members = set(conf.voters) | set(conf.learners)
    return {r.node_id: r for r in records if r.node_id in members and not r.removed}


def _label(node_id: int, names: Mapping[int, MemberRecord]) -> str:
    rec = names.get(node_id)
    return f"{rec.name} (store member {node_id})" if rec else f"store member {node_id}"


def next_node_id(records: Iterable[MemberRecord], conf: StoreConf) -> int:
    """One above every node id the store has ever had as far as known: current members and
    every record, removed ones included (ids are never reused)."""
    seen = [r.node_id for r in records] + list(conf.voters) + list(conf.learners)
    return max(seen, default=0) + 1


def check_add(
    conf: StoreConf,
    records: Iterable[MemberRecord],
    name: str,
    address: str,
    node_id: int,
) -> None:
    """Raise MembershipRefused unless member `name` (`node_id`, Raft `address`) may be added
    now: a Raft leader is known, no learner is still catching up (one change at a time), and
    neither the name, the id nor the address belongs to a member now (nor the id ever)."""
    records = list(records)
    names = _current(records, conf)
    if conf.leader == 0:
        raise MembershipRefused("the store has no leader now: no membership change can commit")
    if conf.learners:
        pending = ", ".join(_label(n, names) for n in conf.learners)
        raise MembershipRefused(
            f"another change is pending: {pending} is still a learner catching up (it becomes "
            "a voter by itself once caught up); wait until hactl members shows it as a voter, "
            "or remove it"
        )
    for rec in names.values():
        if rec.name == name:
            raise MembershipRefused(
                f"{name} is already store member {rec.node_id}; remove it first to replace it"
            )
        if rec.address == address:
            raise MembershipRefused(
                f"{address} is already the address of {_label(rec.node_id, names)}"
            )
    if node_id in conf.voters or node_id in conf.learners:
        raise MembershipRefused(f"node id {node_id} is already {_label(node_id, names)}")
    used = {r.node_id: r.name for r in records if r.name != name}
    if node_id in used:
        raise MembershipRefused(
            f"node id {node_id} was {used[node_id]}'s: ids are never reused (pick another, or "
            "leave it out to get the next free one)"
        )


def find_member(conf: StoreConf, records: Iterable[MemberRecord], who: str) -> int:
    """The node id of member `who` (its name, or its node id as digits); MembershipRefused
    naming the members when there is none."""
    names = _current(records, conf)
    for node_id, rec in names.items():
        if rec.name == who:
            return node_id
    if who.isdigit() and int(who) in (set(conf.voters) | set(conf.learners)):
        return int(who)
    known = ", ".join(_label(n, names) for n in sorted(set(conf.voters) | set(conf.learners)))
    raise MembershipRefused(f"no store member named {who} (members: {known or 'none'})")


def check_remove(
    conf: StoreConf,
    records: Iterable[MemberRecord],
    who: str,
    answering: Iterable[int],
) -> int:
    """The node id to remove for `who`, or MembershipRefused when it is unsafe: the last voter,
    or a removal after which the voters that answer now (`answering`) are no majority of the
    voters left (the change itself, and every write after it, could not commit)."""
    records = list(records)
    node_id = find_member(conf, records, who)
    names = _current(records, conf)
    if conf.leader == 0:
        raise MembershipRefused("the store has no leader now: no membership change can commit")
    if node_id in conf.learners:
        return node_id  # a learner counts in no quorum: removing it is always safe
    left = set(conf.voters) - {node_id}
    if not left:
        raise MembershipRefused(f"{_label(node_id, names)} is the last voter of the store")
    up = left & set(answering)
    if len(up) <= len(left) // 2:
        down = ", ".join(_label(n, names) for n in sorted(left - up))
        raise MembershipRefused(
            f"removing {_label(node_id, names)} would leave {len(left)} voters of which only "
            f"{len(up)} answer (not answering: {down}): no majority, the store would stop; "
            "bring those back, or remove a member that does not answer first"
        )
    return node_id


def members_json(
    scope: str,
    conf: StoreConf,
    records: Iterable[MemberRecord],
    probes: Mapping[int, MemberProbe],
    addresses: Mapping[int, tuple[str, str]],
) -> dict[str, Any]:
    """``GET /store/members``: the leader, term and every member (voters first) with its name,
    role, addresses (`addresses`: id -> (raft, client) as known here) and what it answered."""
    names = _current(records, conf)
    out = []
    for node_id in [*conf.voters, *conf.learners]:
        rec = names.get(node_id)
        raft, client = addresses.get(node_id, ("", ""))
        probe = probes.get(node_id, MemberProbe(error="not asked"))
        entry: dict[str, Any] = {
            "name": rec.name if rec else "",
            "node_id": node_id,
            "role": conf.role_of(node_id),
            "raft_leader": node_id == conf.leader,
            "address": (rec.address if rec and rec.address else raft),
            "client_address": (rec.client_address if rec and rec.client_address else client),
            "applied": probe.applied if not probe.error else None,
        }
        if probe.error:
            entry["error"] = probe.error
        out.append(entry)
    return {
        "scope": scope,
        "leader": conf.leader,
        "term": conf.term,
        "voters": list(conf.voters),
        "learners": list(conf.learners),
        "members": out,
    }
