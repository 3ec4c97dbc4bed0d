"""The agent's Prometheus metrics, on a registry of their own, served at ``GET /metrics``.

:class:`Metrics` owns a ``CollectorRegistry`` (never the global one, so several agents in one
test process do not mix) and offers typed update methods for the agent and the HA loop; the
REST API serves :meth:`Metrics.exposition` through :meth:`Metrics.api_hook`. Names follow
Prometheus' conventions: the ``hamgr_`` prefix, base units in the name (``_seconds``,
``_bytes``), ``_total`` for counters::

    hamgr_build_info{version}                         1
    hamgr_postgres_role{role}                         1 for this member's role, 0 for the others
                                                      (primary, replica, stopped, uninitialized)
    hamgr_postgres_timeline                           PostgreSQL's timeline (absent: unknown)
    hamgr_cluster_paused                              1 while the cluster is paused
    hamgr_replication_lag_bytes{member}               WAL each replica is behind the leader
    hamgr_leader_changes_total                        new leader keys seen since start
    hamgr_failovers_total                             promotions not asked for by a switchover
    hamgr_pg_rewinds_total{result}                    pg_rewind runs of this member (rewound,
                                                      nothing: no divergence found, failed)
    hamgr_ha_loop_duration_seconds                    histogram of HA loop cycles
    hamgr_lease_keepalive_duration_seconds            histogram of successful lease renewals
    hamgr_lease_keepalive_failures_total              lease renewals that failed
    hamgr_lease_keepalive_age_seconds                 since the last successful renewal was sent
    hamgr_fence_remaining_seconds                     until this primary's fence deadline (the
                                                      fencer stops PostgreSQL then; absent: no
                                                      deadline held, not the leader)
    hamgr_store_term                                  the store member's Raft term
    hamgr_store_commit_index                          its commit index
    hamgr_store_applied_index                         its applied index
    hamgr_store_apply_lag_entries                     commit - applied
    hamgr_store_leader                                1 while this member leads the store
    hamgr_store_peers_connected                       other members this one has a link to
    hamgr_store_messages_dropped_total{reason}        Raft messages that never left (queue_full,
                                                      unknown_peer, oversize, unreachable)
    hamgr_store_fsync_duration_seconds                histogram of the Raft log's durable saves
    hamgr_store_commit_duration_seconds               histogram of writes proposed on this member
                                                      (as Raft leader), from proposal to applied

Gauges whose value is not known yet are absent rather than made up. The keepalive age and the
fence margin are computed when scraped, on the deadline clock (``hamgr.clock``).

Wiring (the lead's part)::

    metrics = Metrics()
    web = await api.serve(view, listen, auth,
                          metrics=metrics.api_hook(lambda: metrics.set_store_status(node.status())))
    # HA loop, per cycle:  metrics.observe_loop(duration); metrics.observe_view(view)
    #                      metrics.set_member(state.role, state.timeline, view.settings.pause)
    # keepalive timer:     metrics.observe_keepalive(latency, ok, at=sent)
    # store:               node.on_save = metrics.observe_fsync
    #                      node.on_commit = metrics.observe_commit
    # at each scrape:      metrics.set_fence_deadline(fence_at if the key is held else None)
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hamgr import __version__
from hamgr import clock as deadline_clock
from hamgr.dcs.model import ClusterView, Role

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = get_args(Role)
REWIND_RESULTS = ("rewound", "nothing", "failed")
"""Outcomes of a pg_rewind run (hamgr_pg_rewinds_total{result})."""

LOOP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
KEEPALIVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
COMMIT_BUCKETS = KEEPALIVE_BUCKETS
FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: The classic text format (what generate_latest writes for our names), which every Prometheus
#: version reads; prometheus-client's own CONTENT_TYPE_LATEST moved to 1.0.0 in recent releases.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: What :meth:`Metrics.api_hook` returns: the exposition body and its content type.
ScrapeHook = Callable[[], Awaitable[tuple[bytes, str]]]


def _seconds(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def replica_lags(view: ClusterView) -> dict[str, int]:
    """Bytes of WAL each replica is behind the leader, as ``GET /cluster`` reports them.

    Empty without a leader or while the leader's position is unknown; a replica whose
    position is unknown is left out.
    """
    if view.leader is None:
        return {}
    holder = view.member(view.leader.name)
    top = holder.position if holder else None
    if top is None:
        return {}
    return {
        m.name: max(0, top - pos)
        for m in view.members
        if m.name != view.leader.name and m.role == "replica" and (pos := m.position) is not None
    }


class _State:
    """The gauges' current values (None: not known yet)."""

    def __init__(self) -> None:
        self.role: str | None = None
        self.timeline: int | None = None
        self.paused: bool | None = None
        self.lags: dict[str, int] = {}
        self.keepalive_sent_at: float | None = None
        self.fence_at: float | None = None
        self.term: int | None = None
        self.commit: int | None = None
        self.applied: int | None = None
        self.store_leader: bool | None = None
        self.peers_connected: int | None = None
        self.dropped: dict[str, int] = {}


class _StateCollector(Collector):
    """Turns a :class:`_State` into gauge families at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterable[Metric]:
        return list(self._families(_State(), None))

    def collect(self) -> Iterable[Metric]:
        with self._m._lock:
            state = _copy(self._m._state)
        return list(self._families(state, self._m._clock()))

    def _families(self, s: _State, now: float | None) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "hamgr_build_info", "hamgr's version (always 1)", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        role = GaugeMetricFamily(
            "hamgr_postgres_role",
            "1 for the role this member's PostgreSQL has, 0 for the others",
            labels=["role"],
        )
        if s.role is not None:
            for r in ROLES:
                role.add_metric([r], 1 if r == s.role else 0)
        yield role
        yield _gauge("hamgr_postgres_timeline", "PostgreSQL's current timeline", s.timeline)
        yield _gauge(
            "hamgr_cluster_paused",
            "1 while the cluster is paused (no automatic failover)",
            None if s.paused is None else int(s.paused),
        )
        lag = GaugeMetricFamily(
            "hamgr_replication_lag_bytes",
            "Bytes of WAL each replica is behind the leader",
            labels=["member"],
        )
        for name, value in sorted(s.lags.items()):
            lag.add_metric([name], value)
        yield lag
        age = None
        if s.keepalive_sent_at is not None and now is not None:
            age = max(0.0, now - s.keepalive_sent_at)
        yield _gauge(
            "hamgr_lease_keepalive_age_seconds",
            "Seconds since the last successful lease keepalive was sent",
            age,
        )
        margin = None
        if s.fence_at is not None and now is not None:
            margin = s.fence_at - now
        yield _gauge(
            "hamgr_fence_remaining_seconds",
            "Seconds until the fencer stops this primary's PostgreSQL unless a keepalive moves "
            "the deadline (negative: past it)",
            margin,
        )
        yield _gauge("hamgr_store_term", "The store member's Raft term", s.term)
        yield _gauge("hamgr_store_commit_index", "The store member's commit index", s.commit)
        yield _gauge("hamgr_store_applied_index", "The store member's applied index", s.applied)
        apply_lag = None
        if s.commit is not None and s.applied is not None:
            apply_lag = max(0, s.commit - s.applied)
        yield _gauge(
            "hamgr_store_apply_lag_entries",
            "Committed store entries not yet applied on this member",
            apply_lag,
        )
        yield _gauge(
            "hamgr_store_leader",
            "1 while this member leads the store's Raft group",
            None if s.store_leader is None else int(s.store_leader),
        )
        yield _gauge(
            "hamgr_store_peers_connected",
            "Other store members this one has an open link to",
            s.peers_connected,
        )
        dropped = CounterMetricFamily(
            "hamgr_store_messages_dropped",
            "Raft messages this member never sent, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(s.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], value)
    return family


def _copy(s: _State) -> _State:
    out = _State()
    out.__dict__.update(s.__dict__)
    out.lags = dict(s.lags)
    out.dropped = dict(s.dropped)
    return out


class Metrics:
    """One agent's metrics. Update methods are cheap and may be called from any thread.

    ``clock`` is the deadline clock (``hamgr.clock.now``): ``at`` of :meth:`observe_keepalive`
    (a keepalive's ``sent_at``) is read on it.
    """

    def __init__(self, *, clock: Callable[[], float] = deadline_clock.now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _State()
        self._leader_revision: int | None = None
        self._timeline_seen: int | None = None
        self._view_seen = False
        self.registry = CollectorRegistry()
        r = self.registry
        self._leader_changes = Counter(
            "hamgr_leader_changes",
            "Times a new leader key (a new primary's term) appeared since the agent started",
            registry=r,
        )
        self._failovers = Counter(
            "hamgr_failovers",
            "Promotions not asked for by a switchover, seen since the agent started",
            registry=r,
        )
        self._rewinds = Counter(
            "hamgr_pg_rewinds",
            "pg_rewind runs of this member since the agent started, by outcome",
            ["result"],
            registry=r,
        )
        for result in REWIND_RESULTS:
            self._rewinds.labels(result=result)
        self._loop = Histogram(
            "hamgr_ha_loop_duration_seconds",
            "How long HA loop cycles take (observe, decide, act, publish)",
            buckets=LOOP_BUCKETS,
            registry=r,
        )
        self._keepalive = Histogram(
            "hamgr_lease_keepalive_duration_seconds",
            "How long successful lease keepalives take, from sending to the answer",
            buckets=KEEPALIVE_BUCKETS,
            registry=r,
        )
        self._keepalive_failures = Counter(
            "hamgr_lease_keepalive_failures",
            "Lease keepalives that failed (store unreachable, lease gone)",
            registry=r,
        )
        self._fsync = Histogram(
            "hamgr_store_fsync_duration_seconds",
            "How long the store's durable saves of Raft log batches take (write and fsync)",
            buckets=FSYNC_BUCKETS,
            registry=r,
        )
        self._commit = Histogram(
            "hamgr_store_commit_duration_seconds",
            "How long writes proposed on this store member (while Raft leader) take to commit "
            "and apply",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        r.register(_StateCollector(self))

    # -- the HA loop ------------------------------------------------------------------------

    def observe_loop(self, duration_s: float) -> None:
        """One HA loop cycle took ``duration_s`` seconds."""
        self._loop.observe(_seconds("duration_s", duration_s))

    def observe_keepalive(self, latency_s: float, ok: bool, at: float | None = None) -> None:
        """A lease keepalive took ``latency_s`` and succeeded (``ok``) or failed.

        ``at`` is the instant (hamgr.clock) it was SENT (the fence deadline counts from there);
        default: now minus ``latency_s``. Only successes move the keepalive age.
        """
        latency = _seconds("latency_s", latency_s)
        if not ok:
            self._keepalive_failures.inc()
            return
        sent = self._clock() - latency if at is None else at
        if not math.isfinite(sent):
            raise ValueError(f"at must be a finite instant of hamgr.clock, got {at!r}")
        self._keepalive.observe(latency)
        with self._lock:
            last = self._state.keepalive_sent_at
            if last is None or sent > last:
                self._state.keepalive_sent_at = sent

    def set_member(self, role: str, timeline: int | None, paused: bool) -> None:
        """This member's PostgreSQL role and timeline (None: unknown), and the pause state."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if timeline is not None and (
            isinstance(timeline, bool) or not isinstance(timeline, int) or timeline < 1
        ):
            raise ValueError(f"timeline must be an integer >= 1 or None, got {timeline!r}")
        with self._lock:
            self._state.role = role
            self._state.timeline = timeline
            self._state.paused = bool(paused)

    def set_replica_lags(self, lags: Mapping[str, int]) -> None:
        """Every replica's lag in bytes; replicas not named here are dropped from the metric."""
        checked = {str(name): _count(f"lag of {name}", value) for name, value in lags.items()}
        with self._lock:
            self._state.lags = checked

    def leader_changed(self) -> None:
        """A new leader key appeared (a new primary's term began)."""
        self._leader_changes.inc()

    def failover(self) -> None:
        """A promotion happened that no switchover asked for."""
        self._failovers.inc()

    def observe_rewind(self, result: str) -> None:
        """One pg_rewind run of this member ended: ``rewound``, ``nothing`` or ``failed``."""
        if result not in REWIND_RESULTS:
            raise ValueError(f"result must be one of {', '.join(REWIND_RESULTS)}, got {result!r}")
        self._rewinds.labels(result=result).inc()

    def observe_view(self, view: ClusterView) -> None:
        """Derive what a cluster view tells: leader changes, failovers, replica lags.

        The first view is the baseline. After it, every leader key with a new create revision
        counts as a leader change, and every new timeline in the history whose reason is not a
        switchover (an automatic failover, or one requested with ``hactl failover``) counts as a
        failover.
        """
        key = view.leader
        newest = view.history[-1].timeline if view.history else 0
        with self._lock:
            first = not self._view_seen
            self._view_seen = True
            changed = key is not None and key.revision != self._leader_revision
            if key is not None:
                self._leader_revision = key.revision
            seen = self._timeline_seen
            self._timeline_seen = max(seen or 0, newest)
        if not first and changed:
            self.leader_changed()
        if not first and seen is not None:
            for entry in view.history:
                if entry.timeline > seen and not entry.reason.startswith("switchover"):
                    self.failover()
        self.set_replica_lags(replica_lags(view))

    # -- the store --------------------------------------------------------------------------

    def set_store(
        self, term: int, commit: int, applied: int, *, leader: bool | None = None
    ) -> None:
        """The store member's Raft term, commit and applied index (and whether it leads)."""
        values = (_count("term", term), _count("commit", commit), _count("applied", applied))
        with self._lock:
            self._state.term, self._state.commit, self._state.applied = values
            if leader is not None:
                self._state.store_leader = bool(leader)

    def set_store_status(self, status: Mapping[str, Any]) -> None:
        """:meth:`set_store` from ``RaftNode.status()``; a node not started yet (no term in
        its status) changes nothing."""
        if "term" not in status:
            return
        self.set_store(
            status["term"],
            status["commit"],
            status["applied"],
            leader=status.get("role") == "leader",
        )
        peers = status.get("peers_connected")
        dropped = status.get("messages_dropped") or {}
        with self._lock:
            self._state.peers_connected = None if peers is None else len(peers)
            self._state.dropped = {str(k): _count(f"dropped {k}", v) for k, v in dropped.items()}

    def observe_fsync(self, seconds: float) -> None:
        """One durable save of the store's log (write + fsync) took ``seconds``."""
        self._fsync.observe(_seconds("seconds", seconds))

    def observe_commit(self, seconds: float) -> None:
        """One write proposed on the store member took ``seconds`` from proposal to applied."""
        self._commit.observe(_seconds("seconds", seconds))

    def set_fence_deadline(self, at: float | None) -> None:
        """This primary's fence deadline, an instant of the deadline clock (None: none held)."""
        if at is not None and not math.isfinite(at):
            raise ValueError(f"at must be a finite instant of hamgr.clock, got {at!r}")
        with self._lock:
            self._state.fence_at = at

    # -- serving ----------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)

    def api_hook(self, refresh: Callable[[], None] | None = None) -> ScrapeHook:
        """The ``metrics=`` hook of ``hamgr.agent.api.build_app``/``serve``: calls ``refresh`` (for
        values read at scrape time, such as the store's status; its failure is logged and the
        last values are served), then returns the exposition and its content type."""

        async def scrape() -> tuple[bytes, str]:
            if refresh is not None:
                try:
                    refresh()
                except Exception:
                    log.exception("refreshing the metrics before a scrape failed")
            return self.exposition(), CONTENT_TYPE

        return scrape
