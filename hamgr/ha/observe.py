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
from hamgr.ha.inputs import LocalPostgres, PeerProbe
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
    if not st.running:
        try:
            cd = await postgres.controldata(settings)
            checkpoint_lsn, sysid, timeline = cd.checkpoint_lsn, cd.system_identifier, cd.timeline
        except PostgresError as exc:
            log.warning("pg_controldata failed: %s", exc)
    switch_lsn = None
    tl = st.timeline or timeline
    if st.running and tl is not None and tl > 1:
        try:
            history = await postgres.timeline_history(settings, tl)
            switch_lsn = history[-1].switch_lsn if history else None
        except PostgresError as exc:
            log.debug("timeline history of %s unavailable: %s", tl, exc)
    upstream = None
    if st.upstream is not None and st.upstream.sender_host:
        upstream = f"{st.upstream.sender_host}:{st.upstream.sender_port}"
    role = st.role if st.role in ("primary", "replica", "stopped") else "unknown"
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
    )


def timeline_diverged(view: ClusterView, pg: LocalPostgres) -> bool:
    """Has this (former primary's) data gone past the point where the leader's timeline forked?

    A standby behind on an older timeline simply follows (recovery_target_timeline=latest);
    only WAL beyond the fork point needs pg_rewind. An unknown fork point counts as diverged:
    pg_rewind itself finds out when nothing needs rewinding.
    """
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
    return PeerProbe(
        name=name,
        reachable=True,
        state=data.get("state") if isinstance(data.get("state"), str) else None,
        role=role if isinstance(role, str) else None,
        timeline=timeline if isinstance(timeline, int) and timeline >= 1 else None,
        received_lsn=received,
        replayed_lsn=replayed,
        nofailover=tags.get("nofailover") is True,
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
