"""The timing rules between ``ttl``, ``loop_wait``, ``retry_timeout`` and ``safety_margin``,
stated once: the config file's check (``bootstrap.dcs``) and the dynamic settings (``PATCH
/config``, the stored ``config`` key) both ask :func:`timing_problems`.

- ``ttl >= loop_wait + 2 * retry_timeout``: a primary whose keepalive failed once can still try
  again within the lease, and a replica sees the key expire within one loop of its end.
- ``loop_wait <= safety_margin < ttl``: the primary stops its PostgreSQL at least one HA loop
  before its lease can end (see SAFETY_MARGIN_WHY) and before it has even begun.
"""

from __future__ import annotations

__all__ = ["SAFETY_MARGIN_WHY", "timing_problems"]

SAFETY_MARGIN_WHY = (
    "the primary must stop its PostgreSQL at least one HA loop before its lease can end and "
    "another member take over"
)
"""Why ``safety_margin >= loop_wait``."""


def timing_problems(
    ttl: float, loop_wait: float, retry_timeout: float, safety_margin: float, where: str = ""
) -> list[tuple[str, str]]:
    """Each broken rule as (key, message); `where` prefixes the key names the messages cite
    (``"bootstrap.dcs."`` in the config file)."""
    problems: list[tuple[str, str]] = []
    floor = loop_wait + 2 * retry_timeout
    if floor > ttl:
        problems.append(
            (
                "ttl",
                f"must be >= loop_wait + 2 * retry_timeout = {floor:g}, got {ttl:g}",
            )
        )
    if not safety_margin < ttl:
        problems.append(("safety_margin", f"must be < {where}ttl = {ttl:g}, got {safety_margin:g}"))
    elif safety_margin < loop_wait:
        problems.append(
            (
                "safety_margin",
                f"must be >= {where}loop_wait = {loop_wait:g}: {SAFETY_MARGIN_WHY}, got "
                f"{safety_margin:g}",
            )
        )
    return problems
