"""Making and mending a replica's data directory for the ActionRunner: clone (CloneFrom),
pg_rewind (Rewind), re-clone (Reclone) and emptying it (Reinitialize).

Kept apart from hamgr/ha/execute.py, as hamgr/ha/standbyexec.py is for a standby cluster's
leader. A failed pg_rewind is tried again after a growing pause; after REWIND_ATTEMPTS
failures against one leader the runner's lease state says so (``rewind_failed``), and decide()
re-clones if allowed (``remove_data_directory_on_rewind_failure``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hamgr import clock, postgres
from hamgr.dcs.model import ClusterView
from hamgr.ha.callbacks import REPLICA
from hamgr.postgres import PostgresError
from hamgr.postgres.files import remove_contents
from hamgr.postgres.methods import create_replica

if TYPE_CHECKING:
    from hamgr.ha.execute import ActionRunner

log = logging.getLogger(__name__)

REWIND_ATTEMPTS = 5
"""pg_rewind failures against one leader before giving up (then re-clone, if allowed)."""
REWIND_BACKOFF = 2.0
"""Seconds before the first retry of a failed pg_rewind; doubled after each failure."""


async def clone_from(runner: ActionRunner, view: ClusterView, source: str | None) -> None:
    """Make the replica's data from ``source`` (None: no leader, see CloneFrom)."""
    address = runner.address_of(view, source) if source is not None else None
    slot = runner.slot_for(view, source) if source is not None else None
    methods = runner.methods
    await create_replica(
        runner.pg, methods.replica, scope=methods.scope, source=address, slot_name=slot
    )


async def rewind(runner: ActionRunner, view: ClusterView, leader: str) -> bool:
    """Rewind the stopped data directory to ``leader``'s timeline and start it as its standby;
    False (backing off, see REWIND_BACKOFF) when pg_rewind failed or a retry is not due yet."""
    lease = runner.lease
    if lease.rewind_failed_against == leader and clock.now() < lease.rewind_retry_at:
        return False  # backing off after a failure: the next cycle asks again
    host, port = runner.address_of(view, leader)
    runner.rewinds += 1
    log.warning(
        "running pg_rewind against leader %s (run %d since the agent started)",
        leader,
        runner.rewinds,
    )
    try:
        result = await postgres.rewind(runner.pg, host, port)
    except PostgresError as exc:
        log.error("pg_rewind against %s failed: %s", leader, exc)
        _rewound(runner, "failed")
        if lease.rewind_failed_against != leader:
            lease.rewind_failures = 0
        lease.rewind_failures += 1
        lease.rewind_failed_against = leader
        # A failure may be passing (e.g. the killed postmaster's PID not reaped yet, which
        # pg_rewind's single-user crash recovery takes for a running server): try again
        # after a growing pause, and give up (re-clone, if allowed) only after several.
        lease.rewind_retry_at = clock.now() + REWIND_BACKOFF * 2 ** (lease.rewind_failures - 1)
        lease.rewind_failed = lease.rewind_failures >= REWIND_ATTEMPTS
        return False
    lease.rewind_failed = False
    lease.rewind_failures = 0
    lease.was_primary = False
    _rewound(runner, "rewound" if result.rewound else "nothing")
    if result.rewound:
        log.info("pg_rewind rewound my data directory to leader %s's timeline", leader)
    else:
        log.info("pg_rewind against leader %s: nothing to rewind", leader)
    postgres.configure_standby(runner.pg, host, port, runner.slot_for(view, leader))
    await postgres.start(runner.pg, wait=False)
    runner.started_as(REPLICA)
    return True


def _rewound(runner: ActionRunner, outcome: str) -> None:
    if runner.on_rewind is not None:
        runner.on_rewind(outcome)


async def empty_data_dir(runner: ActionRunner) -> bool:
    """Remove everything in the (stopped) data directory, keeping the directory itself (it
    may be a mount point); False, touching nothing, while PostgreSQL still runs."""
    pg = runner.pg
    if postgres.is_running(pg):
        log.error("not emptying %s: PostgreSQL still runs there", pg.data_dir)
        return False
    data = Path(pg.data_dir)
    log.warning("reinitialize: removing the contents of %s", data)
    await asyncio.to_thread(remove_contents, data)
    return True


async def reclone(runner: ActionRunner, view: ClusterView, leader: str) -> bool:
    """Move the data directory aside and clone it again from ``leader``; False (nothing
    done) unless ``remove_data_directory_on_rewind_failure`` allows it."""
    if not runner.remove_data_on_rewind_failure:
        return False
    data = Path(runner.pg.data_dir)
    aside = data.with_name(f"{data.name}.failed-{int(time.time())}")
    log.warning("moving %s aside to %s and cloning again from %s", data, aside, leader)
    data.rename(aside)
    await clone_from(runner, view, leader)
    runner.lease.rewind_failed = False
    return True
