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
from hamgr.postgres import PgSettings, PostgresError

log = logging.getLogger(__name__)


def _data_dir_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


async def observe_postgres(settings: PgSettings) -> LocalPostgres:
    """The local PostgreSQL as decide() needs it."""
    data_dir = Path(settings.data_dir)
    initialized = postgres.is_initialized(settings)
    if not initialized:
        return LocalPostgres(initialized=False, data_dir_empty=_data_dir_empty(data_dir))
    st = await postgres.status(settings)
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
    switch_lsn = None
    tl = st.timeline or timeline
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
        timeline_switch_lsn=switch_lsn,
        cluster_state=cluster_state,
        detached=role == "replica" and st.upstream_configured is False and st.upstream is None,
        sync_standby_names=st.sync_standby_names,
        standbys=standbys,
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
    and the standby streams from nobody; only pg_rewind brings it back. Judged only while it
    does not stream (a streaming standby reports the timeline it receives) and only against a
    known fork point: a standby whose upstream is down may report an older timeline than the
    one it replays, which this rule then takes for a divergence; pg_rewind then finds nothing
    to do, and the price is one restart."""
    leader = view.member(view.leader.name) if view.leader else None
    if leader is None or leader.timeline is None or pg.timeline is None:
        return False
    if not (pg.running and pg.role == "replica" and pg.upstream is None):
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
