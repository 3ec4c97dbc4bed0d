"""Which member a hactl command means, by name or by role, and its PostgreSQL address.

``hactl dsn`` and ``hactl query`` choose a member as patronictl does: a member named with
``-m/--member`` (or ``dsn NAME``), else the first with ``-r/--role`` (``primary``, ``replica``,
``any``; ``leader`` is ``primary``'s Patroni spelling), else the primary. Name and role
together are refused, as patronictl refuses them. Pure: the input is ``GET /cluster``'s answer.
"""

from __future__ import annotations

from typing import Any

from hamgr.cli.ctl_client import CtlError

ROLES = ("primary", "leader", "replica", "any")
"""What ``-r/--role`` takes (``leader`` is the same as ``primary``)."""

_REPLICA_ROLES = ("replica", "sync_standby", "quorum_standby")


def _running(member: dict[str, Any]) -> bool:
    return member.get("state") in ("running", "streaming")


def candidates(cluster: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The members that have ``role``, the most useful first.

    ``primary``: the leader only. ``replica``: running replicas before the others, least lag
    first. ``any``: the leader, then the replicas as for ``replica``, then the rest.
    """
    if role not in ROLES:
        raise CtlError(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
    members = list(cluster["members"])
    leader = [m for m in members if m["name"] == cluster.get("leader")]
    if role in ("primary", "leader"):
        return leader

    def lag(m: dict[str, Any]) -> tuple[bool, float]:
        return (not _running(m), float("inf") if m.get("lag") is None else m["lag"])

    replicas = sorted((m for m in members if m["role"] in _REPLICA_ROLES), key=lag)
    if role == "replica":
        return replicas
    rest = [m for m in members if m not in leader and m not in replicas]
    return leader + replicas + rest


def pick_member(cluster: dict[str, Any], name: str | None, role: str | None) -> dict[str, Any]:
    """The member ``name`` (any role), else the first member with ``role`` (default primary).

    CtlError when both are given, when no member has that name (the error lists the members)
    or when none has that role.
    """
    if name is not None and role is not None:
        raise CtlError("--role and a member name are mutually exclusive: give one")
    if name is not None:
        for m in cluster["members"]:
            if m["name"] == name:
                return m
        names = ", ".join(m["name"] for m in cluster["members"]) or "none"
        raise CtlError(f"no member named {name} in cluster {cluster['scope']} (members: {names})")
    wanted = role or "primary"
    found = candidates(cluster, wanted)
    if not found:
        if wanted in ("primary", "leader"):
            raise CtlError(
                f"cluster {cluster['scope']} has no primary (no member holds the leader key)"
            )
        raise CtlError(f"cluster {cluster['scope']} has no member with role {wanted}")
    return found[0]


def dsn(member: dict[str, Any]) -> str:
    """The libpq connection string of ``member``'s PostgreSQL, as patronictl dsn prints it."""
    return f"host={member['host']} port={member['port']}"
