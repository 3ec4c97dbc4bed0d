"""Carrying out the bootstrap (Bootstrap) and its abandonment (AbandonBootstrap) for the
ActionRunner.

Kept apart from hamgr/ha/execute.py, as hamgr/ha/standbyexec.py is for a standby cluster's
leader. A bootstrap writes a marker file in the runtime directory before initdb (or the
operator's bootstrap method) and removes it only once PostgreSQL runs as primary with its users
and the cluster's settings written: a marker left behind (a failed or interrupted bootstrap)
makes decide() abandon what the bootstrap made (stop, give the leader key and the initialize
claim back, empty the data directory) so that the race starts again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hamgr import postgres
from hamgr.dcs.model import ClusterView
from hamgr.ha.callbacks import PRIMARY
from hamgr.postgres import PgSettings, PostgresError
from hamgr.postgres.conf import ensure_runtime_dir
from hamgr.postgres.files import remove_contents, write_file
from hamgr.postgres.methods import (
    run_bootstrap_method,
    run_post_bootstrap,
    wait_for_end_of_recovery,
)
from hamgr.postgres.process import resolve_run_as

if TYPE_CHECKING:
    from hamgr.ha.execute import ActionRunner

log = logging.getLogger(__name__)

BOOTSTRAP_MARKER = "bootstrap-unfinished"
"""File in the runtime directory that a bootstrap writes before initdb and removes once done."""


def bootstrap_marker(pg: PgSettings) -> Path:
    """Present while a bootstrap of this agent's has started and not succeeded."""
    return pg.runtime_dir / BOOTSTRAP_MARKER


def _mark_bootstrap(pg: PgSettings, marker: Path) -> None:
    run_as = resolve_run_as(pg.os_user)
    ensure_runtime_dir(pg, run_as)
    write_file(marker, "a bootstrap of this member started and has not succeeded\n", run_as)


async def run_bootstrap(runner: ActionRunner, view: ClusterView, recovery_timeout: float) -> bool:
    """Bootstrap: make the data directory (initdb or the operator's method), start PostgreSQL
    as primary (waiting up to ``recovery_timeout`` seconds for a method's recovery to end),
    create the users, run post_bootstrap, write the cluster's settings if absent, arm the
    fencer. False on failure, the marker left for the next cycle to abandon."""
    pg = runner.pg
    method = runner.methods.bootstrap
    marker = bootstrap_marker(pg)
    await asyncio.to_thread(_mark_bootstrap, pg, marker)
    try:
        if method is None:
            await postgres.initdb(pg)
        else:
            await run_bootstrap_method(pg, method, runner.methods.scope)
        await postgres.start(pg)
        if method is not None and method.recovery_conf:
            await wait_for_end_of_recovery(pg, recovery_timeout)
        await postgres.bootstrap_users(pg)
        post = runner.methods.post_bootstrap
        if post is not None:
            await run_post_bootstrap(pg, post)
        if runner.bootstrap_settings is not None:
            # Create-if-absent: a config key an operator wrote first is kept.
            await runner.dcs.set_settings(runner.bootstrap_settings, expected_revision=0)
        await runner.arm_fencer()
    except PostgresError as exc:
        # The marker stays: the next cycle abandons what this bootstrap made.
        log.error("bootstrap failed: %s; giving the race back", exc)
        return False
    marker.unlink()
    runner.started_as(PRIMARY)
    return True


async def abandon_bootstrap(runner: ActionRunner, claim_revision: int | None) -> bool:
    """AbandonBootstrap: stop, give the key and the claim back, empty, forget the marker;
    a step that fails stops here and the next cycle decides again."""
    pg = runner.pg
    log.warning("abandoning what an unfinished bootstrap left in %s", pg.data_dir)
    await postgres.stop(pg, "immediate")  # raises while it cannot: nothing else happens
    if runner.lease.key is not None:
        runner.lease.stepping_down = True
        await runner.dcs.release_leader(runner.lease.key)
        runner.lease.key = None
    await runner.disarm_fencer()
    if claim_revision is not None:
        await runner.dcs.delete_initialize(revision=claim_revision)
    # What the bootstrap made goes: the next attempt (here or elsewhere) starts empty.
    await asyncio.to_thread(remove_contents, Path(pg.data_dir))
    bootstrap_marker(pg).unlink(missing_ok=True)
    return True
