"""``hactl members``: the embedded store's members (voters, learners, the Raft leader, each one's
applied index), and ``members add`` / ``members remove`` to change them (/store/members)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from hamgr.cli.ctl_client import Client, confirm
from hamgr.cli.ctl_output import add_format, render


def members_rows(store: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per store member (``GET /store/members``), keyed by the table's columns."""
    rows = []
    for m in store["members"]:
        role = m["role"] + (" (Raft leader)" if m["raft_leader"] else "")
        rows.append(
            {
                "Member": m["name"] or "?",
                "Node id": m["node_id"],
                "Role": role,
                "Address": m["address"],
                "Applied": m["applied"] if m["applied"] is not None else "unreachable",
            }
        )
    return rows


async def cmd_members(
    client: Client, url: str, store: dict[str, Any], a: argparse.Namespace
) -> None:
    """``store`` is the agent's ``GET /store/members`` answer (not the cluster view)."""
    action = getattr(a, "members_action", None)
    if action == "add":
        body: dict[str, Any] = {"name": a.name, "address": a.address}
        if a.id is not None:
            body["node_id"] = a.id
        if a.client_address:
            body["client_address"] = a.client_address
        answer = await client.call("POST", url, "/store/members", body, timeout=a.timeout + 10)
        print(answer["message"])
        return
    if action == "remove":
        confirm(f"Remove {a.name} from the store of cluster {store['scope']}?", a.force)
        path = f"/store/members/{quote(a.name, safe='')}"
        answer = await client.call("DELETE", url, path, timeout=a.timeout + 10)
        print(answer["message"])
        return
    rows = members_rows(store)
    fmt = getattr(a, "format", "pretty")
    if fmt != "pretty":
        print(render(rows, fmt))
        return
    print(render(rows, "pretty", f"Store of cluster {store['scope']}"))
    leader = next((r["Member"] for r in rows if r["Role"].endswith("(Raft leader)")), None)
    print(f" Raft leader: {leader or 'none'} (term {store['term']})")


def register(command: Any, common: argparse.ArgumentParser) -> None:
    """Add ``members`` (with ``add`` and ``remove``) to hactl's parser (``command`` is
    build_parser's helper, ``common`` its options, which the subcommands take too)."""
    p = command(
        "members",
        cmd_members,
        "show the store's members (voters, learners, Raft leader, applied index); change them",
    )
    add_format(p)
    change = p.add_subparsers(dest="members_action", metavar="ACTION")
    add = change.add_parser(
        "add",
        parents=[common],
        help="add a host to the store as a learner (a voter by itself once caught up)",
        description="Add a host to the store as a learner; the Raft leader makes it a voter "
        "once it has caught up. Start its agent with store.raft.join true and the node id "
        "printed here; it clones PostgreSQL once it votes.",
    )
    add.add_argument("name", help="the new member's name (its configuration's name)")
    add.add_argument("address", help="its store.raft.advertise address, host:port")
    add.add_argument("--id", type=int, help="its store.raft.node_id (default: the next unused)")
    add.add_argument("--client-address", help="its store client address (default: port + 100)")
    rm = change.add_parser(
        "remove",
        parents=[common],
        help="remove a member (a dead host) from the store",
        description="Remove a member from the store; refused when the voters left that "
        "answer would be no majority.",
    )
    rm.add_argument("name", help="the member's name (or its node id)")
    rm.add_argument("--force", action="store_true", help="do not ask for confirmation")
