"""What decide() knows besides the cluster view: this agent's own state, and its peers' answers.

The HA loop fills these from observations (the local PostgreSQL, the lease, the REST APIs of
the peers); decide() only reads them. LSNs are byte positions; ``now`` and every deadline are
on the deadline clock (``hamgr.clock``), ``wall_now`` is wall-clock seconds since the epoch (for
scheduled switchovers and the history only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from hamgr.config.values import member_name_problem
from hamgr.dcs.model import MemberTags, ParameterValue

PgRole = Literal["primary", "replica", "stopped", "unknown"]


def _check(name: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")


def _position(*lsns: int | None) -> int | None:
    known = [x for x in lsns if x is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class Standby:
    """One standby streaming from the local primary (a pg_stat_replication row): its
    application name (the member's name), the walsender's state, and the WAL position it
    reported flushed (None: not reported yet)."""

    name: str
    state: str
    flush_lsn: int | None


@dataclass(frozen=True)
class SyncBarrier:
    """The primary's WAL flush position read right after ``synchronous_standby_names`` became
    ``names``: a standby whose flush position passes ``lsn`` holds every commit acknowledged
    before that change."""

    names: str
    lsn: int


@dataclass(frozen=True)
class LocalPostgres:
    """The local PostgreSQL as last observed.

    ``current_lsn`` is a primary's write position; ``upstream`` the ``host:port`` a standby is
    configured to stream from; ``checkpoint_lsn`` the latest checkpoint's location from
    pg_controldata (read while stopped, for the switchover); ``timeline_switch_lsn`` where the
    current timeline began, forking off ``timeline_parent`` (the last line of the timeline's
    history file; None on timeline 1 or when unreadable), for the cluster history. While stopped,
    ``cluster_state`` is pg_controldata's "Database cluster state" ("shut down", "shut down in
    recovery", "in production" after a crash...): whether the data dir last ran as a primary.
    ``detached``: a running standby that streams from nobody on purpose (no primary_conninfo,
    no WAL receiver), so its position cannot move. A primary's ``sync_standby_names`` is what
    its commits wait for, and ``standbys`` are its walsenders (pg_stat_replication).
    ``pending_restart``: the parameters whose new value waits for a restart (pg_settings).
    """

    initialized: bool = False
    data_dir_empty: bool = True
    running: bool = False
    role: PgRole = "stopped"
    timeline: int | None = None
    received_lsn: int | None = None
    replayed_lsn: int | None = None
    current_lsn: int | None = None
    system_identifier: int | None = None
    upstream: str | None = None
    checkpoint_lsn: int | None = None
    timeline_switch_lsn: int | None = None
    timeline_parent: int | None = None
    cluster_state: str | None = None
    detached: bool = False
    sync_standby_names: str | None = None
    standbys: tuple[Standby, ...] = ()
    pending_restart: tuple[str, ...] = ()
    server_version: int | None = None
    """``server_version_num`` of the running server (150010 is 15.10); None while stopped."""
    postmaster_started: float | None = None
    """When the running postmaster started (pg_postmaster_start_time(), Unix seconds); None
    while stopped. A scheduled restart is cancelled when it changes (Patroni's rule)."""

    def __post_init__(self) -> None:
        _check("timeline", self.timeline, 1)
        for name in ("received_lsn", "replayed_lsn", "current_lsn", "checkpoint_lsn"):
            _check(name, getattr(self, name), 0)
        _check("timeline_switch_lsn", self.timeline_switch_lsn, 0)
        _check("timeline_parent", self.timeline_parent, 1)
        if self.timeline_parent is not None and (
            self.timeline is None or self.timeline_parent >= self.timeline
        ):
            raise ValueError(
                f"timeline_parent: expected a timeline before {self.timeline}, "
                f"got {self.timeline_parent}"
            )

    @property
    def is_primary(self) -> bool:
        return self.running and self.role == "primary"

    @property
    def position(self) -> int | None:
        """How much WAL this node has: written (primary) or received/replayed (standby)."""
        if self.role == "primary":
            return self.current_lsn
        return _position(self.received_lsn, self.replayed_lsn)


@dataclass(frozen=True)
class LocalState:
    """This agent: its name and tags, clocks, PostgreSQL, lease and repair state.

    ``leader_revision`` is the create revision of the leader key this agent acquired and has not
    released (None: it holds none); it holds the key only while the view's key still has that
    revision. ``fence_at`` is the deadline of its last successful keepalive (``sent + ttl -
    safety_margin``), the instant its PostgreSQL must have stopped accepting writes.
    ``timeline_diverged`` is computed by the loop against the leader's timeline history;
    ``rewind_failed`` says the last pg_rewind failed. ``switchover_stopped_at`` is when this
    agent stopped its primary for a switchover (Demote ``for_switchover``), or, as a standby
    leader, its WAL receipt (Detach ``for_switchover``). ``store_leader_here``
    says the store's Raft leader runs on this host. ``claim_unled_since`` is since when
    (hamgr.clock) this agent has seen the same ``""`` initialize claim with no leader key.
    ``reinit_requested``: an operator asked to rebuild this replica from the leader.
    ``sync_barrier``: what the primary's last change of synchronous_standby_names returned.
    ``primary_down_since``: since when (hamgr.clock) this agent has held the leader key while
    its (initialized) PostgreSQL was neither primary nor a standby about to be promoted: a
    crashed or unstartable primary, judged against ``primary_start_timeout``.
    ``local_parameters``: this member's own ``postgresql.parameters``; ``applied_parameters``:
    the effective parameters its config file holds and PostgreSQL was last reloaded with
    (None: unknown, nothing is changed); ``refused_parameters``: the last effective ones
    hamgr or PostgreSQL refused to apply (not tried again until they change).
    """

    name: str
    now: float
    wall_now: float
    pg: LocalPostgres
    tags: MemberTags = field(default_factory=MemberTags)
    leader_revision: int | None = None
    fence_at: float | None = None
    use_pg_rewind: bool = True
    reclone_on_rewind_failure: bool = False
    rewind_failed: bool = False
    timeline_diverged: bool = False
    switchover_stopped_at: float | None = None
    store_leader_here: bool = False
    claim_unled_since: float | None = None
    reinit_requested: bool = False
    sync_barrier: SyncBarrier | None = None
    primary_down_since: float | None = None
    local_parameters: Mapping[str, ParameterValue] = field(default_factory=dict)
    clone_without_leader: bool = False
    """A replica method of this member needs no leader (``no_leader``): with the cluster
    initialized and no leader, it may still make its data (e.g. restore a backup)."""
    applied_parameters: Mapping[str, ParameterValue] | None = None
    refused_parameters: Mapping[str, ParameterValue] | None = None
    bootstrap_unfinished: bool = False
    """A bootstrap of this agent's started and did not succeed (failed, or the agent was
    killed halfway): what the data directory holds came from it (see AbandonBootstrap)."""

    def __post_init__(self) -> None:
        problem = member_name_problem(self.name)
        if problem:
            raise ValueError(f"name: {problem}")
        if not (math.isfinite(self.wall_now) and self.wall_now >= 0):
            raise ValueError(f"wall_now: expected seconds since the epoch, got {self.wall_now}")
        if not math.isfinite(self.now):
            raise ValueError(f"now: expected an instant of hamgr.clock, got {self.now}")
        since = self.primary_down_since
        if since is not None and not (math.isfinite(since) and since <= self.now):
            raise ValueError(
                f"primary_down_since: expected an instant of hamgr.clock not after now "
                f"({self.now}), got {since}"
            )
        _check("leader_revision", self.leader_revision, 1)


@dataclass(frozen=True)
class PeerProbe:
    """Another member's answer to ``GET /status`` (``reachable`` False: no answer in time).

    ``state`` is its PostgreSQL's state (``running``, ``stopped``...), ``role`` its role
    (``primary``, ``replica``...). For a primary both LSNs hold its write position.
    ``detached``: a standby that stopped receiving WAL on purpose (its position is final).
    """

    name: str
    reachable: bool
    state: str | None = None
    role: str | None = None
    timeline: int | None = None
    received_lsn: int | None = None
    replayed_lsn: int | None = None
    nofailover: bool = False
    failover_priority: int = 1
    detached: bool = False

    @property
    def priority(self) -> int:
        """Its failover priority in force (0: never takes over)."""
        return 0 if self.nofailover else self.failover_priority

    @property
    def running(self) -> bool:
        return self.reachable and self.state == "running"

    @property
    def position(self) -> int | None:
        return _position(self.received_lsn, self.replayed_lsn)
