"""What the HA loop observes before each decision: the local PostgreSQL and the peers' state.

I/O lives here (SQL, pg_controldata, HTTP to the peers); the results are the plain inputs of
decide() (hamgr/ha/inputs.py). Observation never raises for a stopped or broken server: it says
what it saw.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp

from hamgr import postgres
from hamgr.dcs.model import ClusterView, MemberState
from hamgr.ha.inputs import LocalPostgres, PeerProbe, Standby
from hamgr.postgres import HeldConnection, PgSettings, PostgresError, TimelineSwitch

log = logging.getLogger(__name__)


def _data_dir_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


class TimelineForks:
    """Where the local timeline forked off its parent, from its history file, read once per
    timeline (the file of a timeline never changes; the loop asks every cycle).

    A file that cannot be read (a standby that has not fetched it yet, a removed pg_wal file)
    is tried again next time, logged once per timeline.
    """

    def __init__(self) -> None:
        self._timeline: int | None = None
        self._fork: TimelineSwitch | None = None
        self._warned: int | None = None
        self.reads = 0
        """History files read so far (how often the cache was missed)."""

    async def fork(self, settings: PgSettings, timeline: int | None) -> TimelineSwitch | None:
        """The last line of ``timeline``'s history file (None on timeline 1 or unknown)."""
        if timeline is None or timeline <= 1:
            return None
        if timeline == self._timeline:
            return self._fork
        self.reads += 1
        try:
            switches = await postgres.timeline_history(settings, timeline)
        except PostgresError as exc:
            if self._warned != timeline:
                self._warned = timeline
                log.warning("cannot read where timeline %d began: %s", timeline, exc)
            return None
        fork = switches[-1] if switches else None
        if fork is not None and fork.timeline >= timeline:
            if self._warned != timeline:
                self._warned = timeline
                log.warning(
                    "timeline %d's history file ends with timeline %d; ignoring it",
                    timeline,
                    fork.timeline,
                )
            return None
        self._timeline, self._fork = timeline, fork
        return fork


async def observe_postgres(
    settings: PgSettings,
    forks: TimelineForks | None = None,
    held: HeldConnection | None = None,
) -> LocalPostgres:
    """The local PostgreSQL as decide() needs it; with ``forks``, also where its timeline
    began (a new one is read from its history file, the same one comes from memory); with
    ``held``, over that persistent connection instead of a new one each time."""
    data_dir = Path(settings.data_dir)
    initialized = postgres.is_initialized(settings)
    if not initialized:
        return LocalPostgres(initialized=False, data_dir_empty=_data_dir_empty(data_dir))
    st = await postgres.status(settings, held)
    checkpoint_lsn = sysid = timeline = None
    cluster_state = None
    if not st.running:
        try:
            cd = await postgres.controldata(settings)
            checkpoint_lsn, sysid, timeline = cd.checkpoint_lsn, cd.system_identifier, cd.timeline
            cluster_state = cd.state
            if cd.min_recovery_end_lsn:
                # A stopped standby got as far as its minimum recovery point's timeline.
                timeline = max(timeline, cd.min_recovery_end_timeline)
        except PostgresError as exc:
            log.warning("pg_controldata failed: %s", exc)
    tl = st.timeline or timeline
    fork = await forks.fork(settings, tl) if forks is not None else None
    upstream = None
    if st.upstream is not None and st.upstream.sender_host:
        upstream = f"{st.upstream.sender_host}:{st.upstream.sender_port}"
    role = st.role if st.role in ("primary", "replica", "stopped") else "unknown"
    standbys = tuple(Standby(r.application_name, r.state, r.flush_lsn) for r in st.replication)
    return LocalPostgres(
        initialized=True,
        data_dir_empty=False,
        running=st.running,
        role=role,
        timeline=tl,
        received_lsn=st.receive_lsn,
        replayed_lsn=st.replay_lsn,
        current_lsn=st.wal_lsn,
        system_identifier=st.system_identifier or sysid,
        upstream=upstream,
        checkpoint_lsn=checkpoint_lsn,
        timeline_switch_lsn=fork.switch_lsn if fork else None,
        timeline_parent=fork.timeline if fork else None,
        cluster_state=cluster_state,
        detached=role == "replica" and st.upstream_configured is False and st.upstream is None,
        sync_standby_names=st.sync_standby_names,
        standbys=standbys,
        pending_restart=st.pending_restart,
        server_version=st.server_version,
        postmaster_started=st.start_time.timestamp() if st.start_time is not None else None,
    )


def timeline_diverged(view: ClusterView, pg: LocalPostgres, was_primary: bool) -> bool:
    """Has this data dir gone past the point where the leader's timeline forked?

    A former primary is judged as below. A standby follows timeline switches by itself
    (recovery_target_timeline=latest) unless it replayed past the fork (see
    :func:`_standby_past_fork`).
    A running former primary (started as a standby) is judged by the WAL it replayed; a clean
    shutdown ends at its last checkpoint. A crashed primary's WAL may run past its checkpoint:
    it is started as a standby first (crash recovery) and judged again then. An unknown fork
    point counts as diverged (pg_rewind finds out when nothing needs rewinding).
    """
    if not was_primary:
        return _standby_past_fork(view, pg)
    leader = view.member(view.leader.name) if view.leader else None
    if leader is None or leader.timeline is None or pg.timeline is None:
        return False
    if pg.timeline >= leader.timeline:
        return False
    position = pg.position if pg.running else pg.checkpoint_lsn
    forks = [e for e in view.history if e.timeline == pg.timeline]
    if not forks or position is None:
        return True
    return position > forks[0].switch_lsn


def _standby_past_fork(view: ClusterView, pg: LocalPostgres) -> bool:
    """A standby that replayed WAL of its old timeline past the point where the leader's
    timeline forked: it received that WAL from the old primary after the fork (e.g. it was
    ahead of the member that took over, or kept streaming from a frozen primary). PostgreSQL
    refuses to follow the new timeline then ("forked off ... before current recovery point")
    and its WAL receiver keeps failing; only pg_rewind brings it back. A standby that follows
    reports the timeline it receives (or, not streaming, the newest timeline in its pg_wal), so
    it is judged on the leader's timeline and never here; only a known fork point counts."""
    leader = view.member(view.leader.name) if view.leader else None
    if leader is None or leader.timeline is None or pg.timeline is None:
        return False
    if not (pg.running and pg.role == "replica"):
        return False
    if pg.timeline >= leader.timeline or pg.replayed_lsn is None:
        return False
    forks = [e for e in view.history if e.timeline == pg.timeline]
    return bool(forks) and pg.replayed_lsn > forks[0].switch_lsn


def last_ran_as_primary(view: ClusterView, pg: LocalPostgres, before: bool) -> bool:
    """Did this data dir last run as a primary? Once it streams the leader's timeline from the
    leader, it is a standby like any other."""
    if pg.is_primary or (not pg.running and pg.cluster_state in ("in production", "shut down")):
        return True
    leader = view.member(view.leader.name) if view.leader else None
    if (
        pg.running
        and pg.role == "replica"
        and leader is not None
        and pg.upstream == leader.conn_url
        and pg.timeline is not None
        and leader.timeline is not None
        and pg.timeline >= leader.timeline
    ):
        return False
    return before


UnledClaim = tuple[int, float]
"""A bootstrap claim with no leader: the initialize key's revision, and since when it is seen."""


def unled_claim(view: ClusterView, seen: UnledClaim | None, now: float) -> UnledClaim | None:
    """Follow the ``""`` initialize claim while no leader key exists: the same claim keeps the
    instant it was first seen without a leader; a leader, or any other write, resets it."""
    if view.initialize != "" or view.leader is not None or not view.initialize_revision:
        return None
    if seen is not None and seen[0] == view.initialize_revision:
        return seen
    return view.initialize_revision, now


def primary_down_since(
    holder: bool, pg: LocalPostgres, seen: float | None, now: float
) -> float | None:
    """Follow how long the leader key's holder has had no PostgreSQL up as primary (stopped,
    crashed, starting or in crash recovery): the first instant seen is kept while that lasts;
    a primary that runs, a standby (about to be promoted), an uninitialized data directory
    (bootstrap, clone) or not holding the key resets it. For ``primary_start_timeout``."""
    waiting = holder and pg.initialized and not pg.is_primary
    if not waiting or (pg.running and pg.role == "replica"):
        return None
    return now if seen is None else seen


def probe_from_json(name: str, data: dict[str, Any]) -> PeerProbe:
    """A peer's /patroni answer as a PeerProbe (missing or odd fields count as unknown)."""

    def lsn(*keys: str) -> int | None:
        value: Any = data.get("xlog", {})
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        return value if isinstance(value, int) and value >= 0 else None

    role = data.get("role")
    received = lsn("received_location") or lsn("location")
    replayed = lsn("replayed_location") or lsn("location")
    timeline = data.get("timeline")
    raw_tags = data.get("tags")
    tags: dict[str, Any] = raw_tags if isinstance(raw_tags, dict) else {}
    priority = tags.get("failover_priority")
    if isinstance(priority, bool):
        priority = None
    return PeerProbe(
        name=name,
        reachable=True,
        state=data.get("state") if isinstance(data.get("state"), str) else None,
        role=role if isinstance(role, str) else None,
        timeline=timeline if isinstance(timeline, int) and timeline >= 1 else None,
        received_lsn=received,
        replayed_lsn=replayed,
        nofailover=tags.get("nofailover") is True,
        failover_priority=priority if isinstance(priority, int) and priority >= 0 else 1,
        detached=data.get("detached") is True,
    )


async def probe_peers(
    http: aiohttp.ClientSession, members: list[MemberState], timeout: float
) -> dict[str, PeerProbe]:
    """Ask every member's REST API for its state, all at once, each within `timeout`."""

    async def one(m: MemberState) -> PeerProbe:
        try:
            async with http.get(
                f"{m.api_url}/patroni", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                data = await resp.json(content_type=None)
            if not isinstance(data, dict):
                return PeerProbe(m.name, reachable=False)
            return probe_from_json(m.name, data)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.info("probe of %s at %s failed: %s", m.name, m.api_url, exc)
            return PeerProbe(m.name, reachable=False)

    probes = await asyncio.gather(*(one(m) for m in members))
    return {p.name: p for p in probes}
