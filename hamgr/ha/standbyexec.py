"""Carrying out the standby leader's actions (CloneRemote, FollowRemote) for the ActionRunner.

Kept apart from hamgr/ha/execute.py: a standby cluster's leader replicates from the remote
primary of ``standby_cluster`` (hamgr/postgres/standbyleader.py) and never arms the fencer,
since its PostgreSQL is never a primary while the section is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hamgr import postgres
from hamgr.dcs.model import ClusterView
from hamgr.ha import actions as a
from hamgr.ha.inputs import LocalPostgres
from hamgr.postgres.errors import PostgresError
from hamgr.postgres.files import remove_contents
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.standbyleader import (
    clone_standby_leader,
    follow_remote,
    refresh_standby_leader,
)

if TYPE_CHECKING:
    from hamgr.ha.execute import ActionRunner

log = logging.getLogger(__name__)


async def run_standby_action(
    runner: ActionRunner, action: a.CloneRemote | a.FollowRemote, view: ClusterView
) -> bool:
    """Run one standby-leader action; False (and logged) when it could not."""
    sc = view.settings.standby_cluster
    if sc is None:
        log.info("%s: the cluster is no longer a standby cluster", type(action).__name__)
        return False
    if isinstance(action, a.FollowRemote):
        await follow_remote(runner.pg, sc)
        log.info("standby leader: replicating from %s", sc.upstream or "the WAL archive")
        return True
    return await _bootstrap_standby(runner, view)


async def _bootstrap_standby(runner: ActionRunner, view: ClusterView) -> bool:
    """Clone from the remote primary, write the cluster's settings, start; on failure give the
    bootstrap race back (empty data directory, leader and initialize keys deleted)."""
    pg = runner.pg
    sc = view.settings.standby_cluster
    assert sc is not None
    try:
        await clone_standby_leader(pg, sc)
        if runner.bootstrap_settings is not None:
            # Create-if-absent: a config key an operator wrote first is kept.
            await runner.dcs.set_settings(runner.bootstrap_settings, expected_revision=0)
        await postgres.start(pg, wait=False)
        log.info("standby cluster bootstrapped from %s", sc.upstream)
        return True
    except PostgresError as exc:
        log.error("bootstrapping the standby cluster failed: %s; giving the race back", exc)
        if postgres.is_running(pg):
            await postgres.stop(pg, "immediate")
        await asyncio.to_thread(remove_contents, Path(pg.data_dir))
        if runner.lease.key is not None:
            await runner.dcs.release_leader(runner.lease.key)
        runner.lease.key = None
        await runner.dcs.delete_initialize()
        return False


async def keep_standby_leader_conf(
    settings: PgSettings, view: ClusterView, pg: LocalPostgres, holder: bool
) -> None:
    """After each HA loop cycle: on a running standby leader, a changed ``standby_cluster``
    (restore_command, recovery_min_apply_delay...) reaches PostgreSQL by reload, without
    waiting for a restart or a re-pointing. Not while paused (hands off PostgreSQL), nor while
    a switchover or failover is due: the standby leader may have stopped receiving on purpose
    to hand its role over (standbyswitch.py), and it re-points itself if that is aborted."""
    sc = view.settings.standby_cluster
    if sc is None or view.settings.pause or not holder or not (pg.running and pg.role == "replica"):
        return
    if view.switchover is not None and view.switchover.due(time.time()):
        return
    try:
        if await refresh_standby_leader(settings, sc):
            log.info("standby leader: applied the changed standby_cluster settings (reload)")
    except (PostgresError, OSError) as exc:
        log.warning("could not apply the standby_cluster settings: %s", exc)
