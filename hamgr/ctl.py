"""hactl, the operator CLI. It talks to the agents' REST APIs (arrives with the HA agent)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run hactl; until the agent exists it only says so."""
    print("hactl: the HA agent is not built yet; nothing to control", file=sys.stderr)
    return 2
