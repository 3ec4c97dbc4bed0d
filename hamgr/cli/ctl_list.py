"""``hactl list``: the members, the leader and the maintenance mode, as patronictl list.

As patronictl, ``-t/--timestamp`` prints the time first, and ``-W`` (every 2 s) or ``-w/--watch
SECONDS`` shows the list again and again until interrupted, asking the agents anew each time
(the first that answers, so a watch rides through the loss of the agent it asked first); an
answer that fails prints its error and the watch goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

from hamgr.cli.ctl_client import Client, CtlError
from hamgr.cli.ctl_output import add_format, render

MB = 1 << 20


def _lag_mb(member: dict[str, Any]) -> object:
    if member["role"] in ("leader", "standby_leader"):
        return None
    return "unknown" if member["lag"] is None else round(member["lag"] / MB)


def list_rows(cluster: dict[str, Any], reasons: bool) -> list[dict[str, Any]]:
    """One row per member, keyed by the table's column names.

    As patronictl, a "Pending restart" column appears when some member's PostgreSQL waits for
    a restart to take a changed parameter: ``*`` and the parameters' names on those members.
    """
    pending = any(m.get("pending_restart") for m in cluster["members"])
    rows = []
    for m in cluster["members"]:
        row = {
            "Member": m["name"],
            "Host": f"[{m['host']}]:{m['port']}"
            if ":" in m["host"]
            else f"{m['host']}:{m['port']}",
            "Role": str(m["role"]).replace("_", " ").title(),
            "State": m["state"],
            "TL": m["timeline"],
            "Lag in MB": _lag_mb(m),
        }
        if pending:
            names = m.get("pending_restart_reason") or []
            mark = f"* ({', '.join(names)})" if names else "*"
            row["Pending restart"] = mark if m.get("pending_restart") else ""
        if any(x.get("scheduled_restart") for x in cluster["members"]):
            planned = m.get("scheduled_restart") or {}
            row["Scheduled restart"] = planned.get("schedule") or ""
        if reasons:
            row["Reason"] = m["reason"]
        rows.append(row)
    return rows


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


WATCH_W = 2.0
"""Seconds between two showings with ``-W``, as patronictl."""

_CLEAR = "\x1b[H\x1b[2J"


async def cmd_list(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    """Show the list once, or with ``--watch`` until interrupted (module doc)."""
    if a.watch is None:
        show(cluster, a)
        return
    error: str | None = None
    while True:
        if sys.stdout.isatty():
            print(_CLEAR, end="")
        if error is None:
            show(cluster, a)
        else:
            print(f"hactl: {error}")
        sys.stdout.flush()
        await asyncio.sleep(a.watch)
        try:
            _, cluster = await client.find_cluster(a.urls)
            error = None
        except CtlError as e:
            error = str(e)


def show(cluster: dict[str, Any], a: argparse.Namespace) -> None:
    """The list, in the chosen format, the time first with ``-t``."""
    if a.timestamp:
        print(dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    rows = list_rows(cluster, a.reasons)
    if a.format != "pretty":
        print(render([{"Cluster": cluster["scope"], **r} for r in rows], a.format))
        return
    print(render(rows, "pretty", f"Cluster: {cluster['scope']}"))
    leader = cluster["leader"]
    if leader:
        print(f" Leader: {leader} (fencing token {cluster['fence_token']})")
    else:
        print(" Leader: none")
    if cluster["pause"]:
        print(" Maintenance mode: on")
    fencer = next((m.get("fencer") for m in cluster["members"] if m["name"] == leader), None)
    if fencer:
        why = " (paused: PostgreSQL is left alone)" if cluster["pause"] else ""
        print(f" Fencer: {fencer}{why}")
    req = cluster["switchover"]
    if req:
        at = f" at {_when(req['scheduled_at'])}" if req["scheduled_at"] else ""
        who = " ".join(
            f"{word} {req[key]}"
            for word, key in (("from", "leader"), ("to", "candidate"))
            if req[key]
        )
        print(f" Pending {req['kind']}: {who}{at}")


def register(command: Any) -> None:
    """Add ``list`` to hactl's parser (``command`` is build_parser's helper)."""
    p = command("list", cmd_list, "show the members, the leader and the maintenance mode")
    add_format(p)
    p.add_argument("-r", "--reasons", action="store_true", help="add each member's last reason")
    p.add_argument("-t", "--timestamp", action="store_true", help="print the time first")
    p.add_argument(
        "-W",
        dest="watch",
        action="store_const",
        const=WATCH_W,
        help=f"show the list again every {WATCH_W:g} s until interrupted",
    )
    p.add_argument(
        "-w",
        "--watch",
        dest="watch",
        type=_interval,
        metavar="SECONDS",
        help="show the list again every SECONDS until interrupted",
    )
    p.set_defaults(watch=None)


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return seconds
