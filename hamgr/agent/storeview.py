"""``GET /store``: the store as this agent's member sees it, for the status page and operators.

Read-only and from memory (``RaftNode.status()``, never a store request): the Raft term, this
member's role, commit and applied index, who leads the Raft group, and every voter and learner
with the member name whose agent publishes that store id, its address when the configuration
names it, and whether this member has a link to it. On etcd there is no member of ours: the
answer names the backend and its endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hamgr.dcs.model import ClusterView


def names_by_store_id(view: ClusterView | None) -> dict[int, str]:
    """Store node id -> member name, from what the agents publish (``MemberState.store_id``)."""
    if view is None:
        return {}
    return {m.store_id: m.name for m in view.members if m.store_id}


def address_text(address: tuple[str, int]) -> str:
    """``host:port``, an IPv6 host in brackets."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def store_json(
    status: Mapping[str, Any],
    names: Mapping[int, str],
    addresses: Mapping[int, tuple[str, int]],
) -> dict[str, Any]:
    """The ``GET /store`` answer from ``RaftNode.status()``, the members' names by store id
    and the Raft addresses (host, port) the configuration knows."""
    me = int(status["id"])
    leader = status.get("leader") or None
    voters = set(status.get("voters") or ())
    learners = set(status.get("learners") or ())
    connected = set(status.get("peers_connected") or ())
    members = [
        {
            "id": node,
            "name": names.get(node),
            "suffrage": "voter" if node in voters else "learner",
            "address": address_text(addresses[node]) if node in addresses else None,
            "leader": node == leader,
            "connected": None if node == me else node in connected,
        }
        for node in sorted(voters | learners)
    ]
    return {
        "backend": "raft",
        "id": me,
        "name": names.get(me),
        "state": status.get("state"),
        "role": status.get("role"),
        "term": status.get("term"),
        "leader": leader,
        "leader_name": names.get(leader) if leader else None,
        "commit": status.get("commit"),
        "applied": status.get("applied"),
        "members": members,
    }


def etcd_json(endpoints: Iterable[str]) -> dict[str, Any]:
    """The ``GET /store`` answer of an agent on etcd: no member of ours to describe."""
    return {"backend": "etcd", "endpoints": list(endpoints), "leader": None, "members": []}
