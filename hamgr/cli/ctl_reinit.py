"""``hactl reinit`` and ``hactl reload``: sent to named members' agents (default for reload:
every member): rebuild a replica from the leader, re-read the configuration."""

from __future__ import annotations

import argparse
from typing import Any

from hamgr.cli.ctl_client import Client, confirm, member_url


async def cmd_reinit(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    targets = [(name, member_url(cluster, name)) for name in a.members]
    confirm(
        f"Wipe the data directory of {', '.join(a.members)} and clone it again from the leader?",
        a.force,
    )
    for name, target in targets:
        await client.call("POST", target, "/reinitialize")
        print(f"Success: reinitialize started on {name}")


async def cmd_reload(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    names = a.members or [m["name"] for m in cluster["members"]]
    for name, target in [(n, member_url(cluster, n)) for n in names]:
        await client.call("POST", target, "/reload")
        print(f"{name}: reload scheduled")


def register(command: Any) -> None:
    """Add ``reinit`` and ``reload`` to hactl's parser (``command`` is build_parser's helper)."""
    p = command("reinit", cmd_reinit, "rebuild replicas: empty their data and clone the leader")
    p.add_argument("members", nargs="+", metavar="MEMBER")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p = command("reload", cmd_reload, "make the agents re-read their configuration")
    p.add_argument("members", nargs="*", metavar="MEMBER", help="default: every member")
