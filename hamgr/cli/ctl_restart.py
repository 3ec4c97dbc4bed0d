"""hactl restart and hactl flush, as patronictl's (registered by hamgr/cli/hactl.py).

``hactl restart [MEMBER...]``: every member when none is named, narrowed by ``--role``
(``primary``, ``replica``, ``any``) and, for an immediate restart, ``--pending`` (only members
whose PostgreSQL waits for a restart). ``--scheduled TIME`` (ISO 8601, or ``now``) schedules
it on each agent instead (POST /restart ``schedule``; with ``--force`` a restart already
scheduled there is replaced). ``--pg-version V`` restarts only where the running PostgreSQL is
older; ``--timeout S`` is the time PostgreSQL may take to come back (a primary that does not
gives its leader key to a replica) and how long hactl waits. The agents check the filters
again when the restart runs (hamgr/ha/restartplan.py).

``hactl flush CLUSTER [MEMBER...] restart|switchover``: cancel scheduled restarts (on the named
members, default all, narrowed by ``--role``) or the scheduled switchover.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from hamgr.cli.ctl_client import Client, Command, CtlError, confirm, member_url
from hamgr.cli.ctl_switch import scheduled_time
from hamgr.dcs.restartrequest import parse_version
from hamgr.dcs.strict import ModelError

ROLES = ("primary", "replica", "any")


def role_of(member: dict[str, Any]) -> str:
    """A /cluster member's role as ``--role`` names it: the leader is ``primary``."""
    return "primary" if member["role"] in ("leader", "standby_leader") else "replica"


def chosen(cluster: dict[str, Any], names: list[str], role: str) -> list[dict[str, Any]]:
    """The /cluster members named (all when none), with role ``role`` (or ``any``)."""
    for name in names:
        member_url(cluster, name)  # CtlError naming the members when there is no such one
    picked = [m for m in cluster["members"] if not names or m["name"] in names]
    return [m for m in picked if role == "any" or role_of(m) == role]


def restart_body(a: argparse.Namespace) -> dict[str, Any]:
    """POST /restart's body from the options."""
    body: dict[str, Any] = {}
    if a.pending:
        body["restart_pending"] = True
    if a.role != "any":
        body["role"] = a.role  # checked again by the agent, at the time it restarts
    if a.pg_version:
        body["postgres_version"] = a.pg_version
    if a.scheduled:
        body["schedule"] = a.scheduled
    if a.timeout_given:
        body["timeout"] = a.timeout
    return body


async def cmd_restart(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    members = chosen(cluster, a.members, a.role)
    if a.pending and not a.scheduled:
        # Scheduled: whether a restart is pending may change until then; the agent checks.
        members = [m for m in members if m.get("pending_restart")]
    if not members:
        print("No member to restart (none matches the filters)")
        return
    names = ", ".join(m["name"] for m in members)
    when = f" at {a.scheduled}" if a.scheduled else ""
    confirm(f"Restart PostgreSQL on {names}{when}?", a.force)
    body = restart_body(a)
    failed = []
    for m in members:
        target = member_url(cluster, m["name"])
        try:
            if a.scheduled and a.force and m.get("scheduled_restart"):
                await client.call("DELETE", target, "/restart")
            await client.call("POST", target, "/restart", body, timeout=a.timeout + 120)
        except CtlError as e:
            print(f"Failed: restart on {m['name']}: {e}")
            failed.append(m["name"])
            continue
        done = f"restart scheduled on {m['name']}{when}" if a.scheduled else None
        print(f"Success: {done or 'restarted PostgreSQL on ' + m['name']}")
    if failed:
        raise CtlError(f"restart failed on {', '.join(failed)}")


async def cmd_flush(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    if a.cluster != cluster["scope"]:
        raise CtlError(f"cluster {a.cluster}: the agent at {url} serves cluster {cluster['scope']}")
    if a.target == "switchover":
        if not cluster.get("scheduled_switchover"):
            print("No pending scheduled switchover")
            return
        answer = await client.call("DELETE", url, "/switchover")
        print(f"Success: {answer['message']}")
        return
    for m in chosen(cluster, a.members, a.role):
        if not m.get("scheduled_restart"):
            print(f"No scheduled restart for member {m['name']}")
            continue
        answer = await client.call("DELETE", member_url(cluster, m["name"]), "/restart")
        print(f"Success: {answer['message']} for member {m['name']}")


def _version(text: str) -> str:
    try:
        parse_version(text)
    except ModelError as e:
        raise argparse.ArgumentTypeError(e.problem) from None
    return text


def register(command: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    """Add ``restart`` and ``flush`` to hactl's parser (``command`` is hamgr/cli/hactl.py's)."""
    p = command(
        "restart", cmd_restart, "restart PostgreSQL on members (default: all), or schedule it"
    )
    p.add_argument("members", nargs="*", metavar="MEMBER", help="default: every member")
    p.add_argument("--role", "-r", choices=ROLES, default="any", help="only members in this role")
    p.add_argument("--pending", action="store_true", help="only where a restart is pending")
    p.add_argument("--scheduled", type=scheduled_time, help="when: ISO 8601 time, or now")
    p.add_argument("--pg-version", type=_version, help="only where PostgreSQL is older (15.4)")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p.epilog = (
        "--timeout S: seconds PostgreSQL may take to come back (a primary that does not gives "
        "its leader key to a replica), and to wait for each agent's answer"
    )
    p = command("flush", cmd_flush, "cancel scheduled restarts or the scheduled switchover")
    p.add_argument("cluster", metavar="CLUSTER", help="the cluster's name (scope)")
    p.add_argument("members", nargs="*", metavar="MEMBER", help="default: every member")
    p.add_argument("target", choices=("restart", "switchover"))
    p.add_argument("--role", "-r", choices=ROLES, default="any", help="only members in this role")
