"""``hactl version [MEMBER...]``: hactl's version, and each member's agent and PostgreSQL.

As patronictl version: without an agent to ask (no ``--url``, ``-c`` or ``$HAMGR_CONFIG``) it
prints hactl's version only; with one, a line per member (every member, or those named) from
the member's own ``GET /patroni`` (``patroni.version`` and ``server_version``)::

    hactl version 0.1.0

    m1: hamgr 0.1.0 PostgreSQL 15.10
    m2: failed to get version: http://...: cannot connect (Connection refused)

A member that does not answer is shown so and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from hamgr import __version__
from hamgr.cli.ctl_client import Client, CtlError, base_url


def pg_version(number: int) -> str:
    """PostgreSQL's ``server_version_num`` for people: 150010 -> ``15.10``, 90624 -> ``9.6.24``."""
    if number < 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 10000}.{number % 100}"


def version_line(name: str, status: dict[str, Any]) -> str:
    """One member's line from its ``GET /patroni`` answer."""
    agent = (status.get("patroni") or {}).get("version") or "unknown"
    server = status.get("server_version")
    pg = f" PostgreSQL {pg_version(server)}" if isinstance(server, int) and server > 0 else ""
    return f"{name}: hamgr {agent}{pg}"


async def before_agents(a: argparse.Namespace) -> bool:
    """Print hactl's version; True (done) when no agent was named to ask further."""
    print(f"hactl version {__version__}")
    named = getattr(a, "url", None) or getattr(a, "config", None) or os.environ.get("HAMGR_CONFIG")
    return not named


async def cmd_version(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    """A line per member; CtlError (exit 1) after all lines when some member did not answer."""
    known = {m["name"]: m for m in cluster["members"]}
    unknown = [n for n in a.members if n not in known]
    if unknown:
        names = ", ".join(known) or "none"
        raise CtlError(
            f"no member named {', '.join(unknown)} in cluster {cluster['scope']} (members: {names})"
        )
    print()
    failed = []
    for name in a.members or list(known):
        try:
            status = await client.call("GET", base_url(known[name]["api_url"]), "/patroni")
        except CtlError as e:
            print(f"{name}: failed to get version: {e}")
            failed.append(name)
            continue
        print(version_line(name, status if isinstance(status, dict) else {}))
    if failed:
        raise CtlError(f"no version from {', '.join(failed)}")


def register(command: Any) -> None:
    """Add ``version`` to hactl's parser (``command`` is build_parser's helper)."""
    p = command("version", cmd_version, "show the versions of hactl, the agents and PostgreSQL")
    p.add_argument("members", nargs="*", metavar="MEMBER", help="default: every member")
    p.set_defaults(before_agents=before_agents)
