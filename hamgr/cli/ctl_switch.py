"""``hactl switchover`` and ``hactl failover``: move the primary cleanly, or promote a named
member even without a leader (POST /switchover, /failover); both ask for confirmation."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from hamgr.cli.ctl_client import Client, CtlError, confirm


def scheduled_time(text: str) -> str | None:
    """``--scheduled``: ISO 8601 (no timezone: local time) or ``now``, as ISO with a timezone."""
    if text.lower() == "now":
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time like 2030-01-31T04:00 or 'now', got {text!r}"
        ) from None
    return (when if when.tzinfo else when.astimezone()).isoformat()


async def cmd_switchover(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    leader = a.leader or cluster["leader"]
    if not leader:
        raise CtlError("the cluster has no leader: use hactl failover --candidate NAME")
    body: dict[str, Any] = {"leader": leader}
    if a.candidate:
        body["candidate"] = a.candidate
    if a.scheduled:
        body["scheduled_at"] = a.scheduled
    to = f" to {a.candidate}" if a.candidate else ""
    when = f" at {a.scheduled}" if a.scheduled else " now"
    confirm(f"Switch over cluster {cluster['scope']} from {leader}{to}{when}?", a.force)
    answer = await client.call("POST", url, "/switchover", body, timeout=a.timeout + 60)
    print(answer["message"])


async def cmd_failover(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    current = cluster["leader"]
    what = f"demoting {current}" if current else "with no leader now"
    if current and any(m.get("role") == "standby_leader" for m in cluster["members"]):
        what = f"{current} hands the standby leader's role over; nobody is promoted"
    if cluster["pause"]:
        what = "paused: nobody is demoted"
        if a.force_paused:
            what += (
                f"; FORCED: if {current or 'the old primary'} still runs PostgreSQL as primary, "
                f"it and {a.candidate} both accept writes: two primaries"
            )
    confirm(f"Fail over cluster {cluster['scope']} to {a.candidate} ({what})?", a.force)
    force = a.ignore_sync or (a.force_paused and cluster["pause"])
    answer = await client.call(
        "POST",
        url,
        "/failover",
        {"candidate": a.candidate, **({"force": True} if force else {})},
        timeout=a.timeout + 60,
    )
    print(answer["message"])


def register(command: Any) -> None:
    """Add ``switchover`` and ``failover`` to hactl's parser (``command`` is build_parser's
    helper)."""
    p = command("switchover", cmd_switchover, "move the primary to another member, cleanly")
    p.add_argument("--leader", help="the current leader (default: as the cluster says)")
    p.add_argument("--candidate", help="the member to promote (default: the best replica)")
    p.add_argument("--scheduled", type=scheduled_time, help="when: ISO 8601 time, or now")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p = command("failover", cmd_failover, "promote a named member, even without a leader")
    p.add_argument(
        "--ignore-sync",
        action="store_true",
        help="in synchronous mode, promote a member outside the synchronous set (it may lack "
        "acknowledged commits)",
    )
    p.add_argument(
        "--force-paused",
        action="store_true",
        help="while paused, fail over although the old primary's agent does not confirm that "
        "its PostgreSQL stopped: if it still runs, two primaries accept writes",
    )
    p.add_argument("--candidate", required=True, help="the member to promote")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
