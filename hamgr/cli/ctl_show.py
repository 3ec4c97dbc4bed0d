"""``hactl history`` and ``hactl show-config``: the cluster's timeline history and its dynamic
settings, as the agent reads them from the store."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from hamgr.cli.ctl_client import Client
from hamgr.cli.ctl_output import add_format, render


async def cmd_history(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    lines = await client.call("GET", url, "/history")  # Patroni's history lines
    rows = [
        {"TL": tl, "LSN": lsn, "Reason": why, "Timestamp": at, "New Leader": new}
        for tl, lsn, why, at, new in lines
    ]
    print(render(rows, a.format))


async def cmd_show_config(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    settings = await client.call("GET", url, "/config")
    print(yaml.safe_dump(settings, sort_keys=True, default_flow_style=False).rstrip())


def register(command: Any) -> None:
    """Add ``history`` and ``show-config`` to hactl's parser (``command`` is build_parser's
    helper)."""
    add_format(command("history", cmd_history, "show the cluster's timeline history"))
    command("show-config", cmd_show_config, "show the cluster's dynamic settings")
