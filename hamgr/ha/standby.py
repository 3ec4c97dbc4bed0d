"""decide() in a standby cluster (``standby_cluster`` set in the dynamic settings): pure.

As in Patroni, the member that holds the leader key is the *standby leader*: it runs
PostgreSQL as a standby of the remote primary (``host``/``port``, or ``restore_command``) and
never promotes while the section is set; the other members follow it as they would follow a
primary (cascading replication), and when its key is lost they race for it as usual, the winner
re-pointing at the remote primary instead of promoting. A fresh standby cluster is bootstrapped
by pg_basebackup from the remote primary. Removing the section makes the cluster a normal one:
the standby leader then promotes (decide.py's ordinary holder steps).
"""

from __future__ import annotations

from collections.abc import Mapping

from hamgr.config.standby import StandbyCluster
from hamgr.dcs.model import ClusterView, LeaderKey
from hamgr.ha.actions import (
    AcquireLeader,
    Action,
    AppendHistory,
    CloneRemote,
    Decision,
    Demote,
    FollowRemote,
    ReleaseLeader,
    TakeInitialize,
)
from hamgr.ha.inputs import LocalPostgres, LocalState, PeerProbe
from hamgr.ha.standbyswitch import handover, request_aside

__all__ = ["as_standby_leader", "bootstrap_standby", "is_standby_leader", "source"]


def source(sc: StandbyCluster) -> str:
    """Where the standby leader's WAL comes from, for reasons."""
    if sc.upstream is None:
        return "the WAL archive (restore_command)"
    archive = " (and restore_command)" if sc.restore_command else ""
    return f"remote primary {sc.upstream}{archive}"


def bootstrap_standby(sc: StandbyCluster) -> Decision:
    """No cluster in the store and an empty data directory: race to clone the remote primary."""
    if sc.host is None:
        return Decision(
            (),
            "no cluster yet and standby_cluster has no host: a standby cluster is bootstrapped "
            "with pg_basebackup from standby_cluster.host; waiting",
        )
    return Decision(
        (TakeInitialize(""), AcquireLeader(), CloneRemote()),
        f"no cluster yet: racing for the initialize key to bootstrap a standby cluster of "
        f"{sc.upstream}",
    )


def as_standby_leader(
    view: ClusterView,
    local: LocalState,
    peers: Mapping[str, PeerProbe] | None,
    key: LeaderKey,
    renew: tuple[Action, ...],
    upkeep: tuple[Action, ...],
) -> Decision:
    """I hold the leader key of a standby cluster (my lease deadline is ahead): be the standby
    leader, or hand the role over on an operator's request (standbyswitch.py). ``upkeep`` is
    the holder's housekeeping (initialize key, store leadership); history entries are left
    out, the remote's timelines are not promotions of ours."""
    sc = view.settings.standby_cluster
    assert sc is not None
    pg, src = local.pg, source(sc)
    keep = tuple(x for x in upkeep if not isinstance(x, AppendHistory))
    if not pg.initialized:
        if view.initialize == "" and pg.data_dir_empty:
            if sc.host is None:
                return Decision(
                    (ReleaseLeader(key),),
                    "I won the bootstrap race but standby_cluster has no host to clone from: "
                    "releasing the leader key",
                )
            return Decision(
                (*renew, CloneRemote()),
                f"I won the initialize race: bootstrapping a standby cluster of {sc.upstream}",
            )
        return Decision(
            (ReleaseLeader(key),),
            "I hold the leader key but my data directory holds no cluster: releasing it",
        )
    if pg.is_primary:
        return Decision(
            (*renew, Demote("fast")),
            f"standby_cluster is set but my PostgreSQL runs as primary: stopping it to run as "
            f"the standby leader of {src}",
        )
    if not pg.running:
        return Decision(
            (*renew, FollowRemote()),
            f"I am the standby leader: starting PostgreSQL as a standby of {src}",
        )
    if pg.role != "replica":
        return Decision(
            renew, "I am the standby leader; PostgreSQL is starting, role not known yet"
        )
    moving = handover(view, local, peers, key, src)
    if moving is not None:
        return Decision((*renew, *moving[0]), moving[1])
    extra, note = request_aside(view, local)
    note = f"; {note}" if note else ""
    if sc.upstream is not None and pg.upstream != sc.upstream:
        return Decision(
            (*renew, *keep, FollowRemote(), *extra),
            f"I am the standby leader: re-pointing replication from {pg.upstream or 'nowhere'} "
            f"to {src}{note}",
        )
    return Decision(
        (*renew, *keep, *extra),
        f"I am the standby leader (fencing token {key.revision}), replicating from {src}{note}",
    )


def is_standby_leader(view: ClusterView | None, pg: LocalPostgres) -> bool:
    """For the key holder: whether it is the standby leader (a standby cluster, and its
    PostgreSQL runs as a standby), as GET /standby-leader and the role ``standby_leader``
    report it."""
    return (
        view is not None
        and view.settings.standby_cluster is not None
        and pg.running
        and pg.role == "replica"
    )
