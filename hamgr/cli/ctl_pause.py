"""``hactl pause`` and ``hactl resume``: the cluster's maintenance mode (PATCH /config)."""

from __future__ import annotations

import argparse
from typing import Any

from hamgr.cli.ctl_client import Client, CtlError


async def _set_pause(client: Client, url: str, cluster: dict[str, Any], pause: bool) -> None:
    if cluster["pause"] == pause:
        raise CtlError(f"cluster {cluster['scope']} is already {'paused' if pause else 'resumed'}")
    await client.call("PATCH", url, "/config", {"pause": pause})
    print(f"Success: cluster management is {'paused' if pause else 'resumed'}")


async def cmd_pause(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    await _set_pause(client, url, cluster, True)


async def cmd_resume(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    await _set_pause(client, url, cluster, False)


def register(command: Any) -> None:
    """Add ``pause`` and ``resume`` to hactl's parser (``command`` is build_parser's helper)."""
    command("pause", cmd_pause, "stop automatic failover and PostgreSQL management")
    command("resume", cmd_resume, "resume automatic failover and PostgreSQL management")
