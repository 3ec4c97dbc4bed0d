"""``hactl topology``: the members as a tree of who streams from whom, as patronictl topology.

The primary comes first; each replica is indented below the member it streams from (``+ m2``,
a cascading replica's ``  + m3`` below its upstream's row). As in Patroni, a replica's upstream
is the member its ``replicatefrom`` tag names when that is another replica of the cluster,
else the primary. The columns are ``hactl list``'s. :func:`topology_order` is pure.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from hamgr.cli.ctl_client import Client
from hamgr.cli.ctl_list import list_rows
from hamgr.cli.ctl_output import render


def _upstream(member: dict[str, Any], replicas: set[str], leader: str | None) -> str | None:
    parent = (member.get("tags") or {}).get("replicatefrom")
    if isinstance(parent, str) and parent != member["name"] and parent in replicas:
        return parent
    return leader


def topology_order(members: Sequence[dict[str, Any]], leader: str | None) -> list[tuple[int, str]]:
    """``(depth, name)`` for every member, in tree order: the leader at depth 0, each replica
    right below its upstream at one more than its upstream's depth, siblings in their given
    order.

    Without a leader the replicas are the roots (depth 0). A member whose ``replicatefrom``
    chain loops without reaching the leader is listed below the leader (or as a root): no
    member is ever left out.
    """
    names = [m["name"] for m in members]
    replicas = {n for n in names if n != leader}
    children: dict[str | None, list[str]] = {}
    for m in members:
        if m["name"] != leader:
            children.setdefault(_upstream(m, replicas, leader), []).append(m["name"])
    out: list[tuple[int, str]] = []
    seen: set[str] = set()

    def walk(name: str, depth: int) -> None:
        seen.add(name)
        out.append((depth, name))
        for child in children.get(name, []):
            if child not in seen:
                walk(child, depth + 1)

    if leader is not None and leader in names:
        walk(leader, 0)
        base = 1
    else:
        base = 0
        for root in children.get(leader, []):
            walk(root, 0)
    for name in names:  # members on a replicatefrom loop that never reaches the leader
        if name not in seen:
            walk(name, base)
    return out


def indent(name: str, depth: int) -> str:
    """``m3`` at depth 2 as patronictl shows it: ``  + m3``."""
    return name if depth == 0 else "  " * (depth - 1) + "+ " + name


def topology_rows(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """``hactl list``'s rows in tree order, each Member cell indented by its depth."""
    rows = {r["Member"]: r for r in list_rows(cluster, reasons=False)}
    return [
        {**rows[name], "Member": indent(name, depth)}
        for depth, name in topology_order(cluster["members"], cluster.get("leader"))
    ]


async def cmd_topology(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    """Print the tree (one table, titled with the cluster's name)."""
    print(render(topology_rows(cluster), "pretty", f"Cluster: {cluster['scope']}"))


def register(command: Any) -> None:
    """Add ``topology`` to hactl's parser (``command`` is build_parser's helper)."""
    command("topology", cmd_topology, "show the members as a tree of who streams from whom")
