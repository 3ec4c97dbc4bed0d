"""Which PostgreSQL parameters a member runs with: the cluster's and its own, merged as Patroni.

The cluster-wide ``parameters`` (``bootstrap.dcs.postgresql.parameters``, then ``hactl
edit-config`` / PATCH /config) apply to every member; a member's own ``postgresql.parameters``
win over them, except for :data:`CLUSTER_WIDE_ONLY`: parameters a standby cannot run with
a value different from (smaller than) its primary's, or that every member needs alike for
replication and pg_rewind to work. Those come from the cluster-wide settings only, as in
Patroni (its ``CMDLINE_OPTIONS``), and the agent refuses them in ``postgresql.parameters``
(:func:`local_only_problems`) instead of silently ignoring them as Patroni does. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from hamgr.postgres.settings import ParamValue

CLUSTER_WIDE_ONLY = frozenset(
    {
        # A hot standby refuses to start (or stops replaying) with less than its primary.
        "max_connections",
        "max_locks_per_transaction",
        "max_worker_processes",
        "max_prepared_transactions",
        "max_wal_senders",
        "track_commit_timestamp",
        # Replication and pg_rewind: the same on every member, whoever becomes primary.
        "wal_level",
        "max_replication_slots",
        "wal_keep_size",
        "wal_log_hints",
    }
)
"""Parameters that only the cluster-wide settings set (lower-case names)."""


def cluster_wide_only(name: str) -> bool:
    """Whether parameter ``name`` (PostgreSQL's names are case-insensitive) is cluster-wide only."""
    return name.lower() in CLUSTER_WIDE_ONLY


def effective_parameters(
    cluster: Mapping[str, ParamValue], local: Mapping[str, ParamValue]
) -> dict[str, ParamValue]:
    """The parameters a member runs with: ``cluster``'s, then ``local``'s on top of them,
    except that a local value of a :data:`CLUSTER_WIDE_ONLY` parameter never counts.

    A name given in both (in any letter case) keeps one entry, the winner's spelling.
    """
    out: dict[str, ParamValue] = {}
    for source, is_local in ((cluster, False), (local, True)):
        for name, value in source.items():
            if is_local and cluster_wide_only(name):
                continue
            for old in [k for k in out if k.lower() == name.lower()]:
                del out[old]
            out[name] = value
    return out


def local_only_problems(local: Mapping[str, object], where: str) -> list[str]:
    """One message per :data:`CLUSTER_WIDE_ONLY` parameter in a member's own ``local``
    parameters (``where`` names the setting): it would not take effect there."""
    return [
        f"{where}: {name!r} must be the same on every member: set it cluster-wide "
        "(bootstrap.dcs.postgresql.parameters, or hactl edit-config --set "
        f"parameters.{name}=...)"
        for name in local
        if cluster_wide_only(name)
    ]
