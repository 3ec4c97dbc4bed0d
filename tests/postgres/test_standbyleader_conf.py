"""The standby leader's recovery config: each standby_cluster key reaches it (pure), and a
changed one reaches the running server (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from hamgr import postgres as pg
from hamgr.config.standby import StandbyCluster
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.sql import query
from hamgr.postgres.standbyleader import refresh_standby_leader, render_standby_leader_conf
from tests.tools.poll import wait_for_async

PG = PgSettings(bin_dir=Path("/b"), data_dir=Path("/srv/pg"), name="b1", replication_password="x")


def test_every_key_reaches_the_recovery_config() -> None:
    sc = StandbyCluster(
        host="10.0.0.5",
        port=6543,
        primary_slot_name="dc2",
        restore_command="cp /archive/%f %p",
        recovery_min_apply_delay="5min",
    )
    text = render_standby_leader_conf(PG, sc)
    assert "host=10.0.0.5" in text and "port=6543" in text and "application_name=b1" in text
    assert "primary_slot_name = 'dc2'" in text
    assert "restore_command = 'cp /archive/%f %p'" in text
    assert "recovery_min_apply_delay = '5min'" in text
    assert "recovery_target_timeline = 'latest'" in text


def test_archive_only_streams_from_nobody() -> None:
    text = render_standby_leader_conf(PG, StandbyCluster(restore_command="cp a %p"))
    assert "primary_conninfo = ''" in text
    assert "primary_slot_name = ''" in text
    assert "recovery_min_apply_delay = '0'" in text


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_changed_standby_cluster_reaches_the_running_server(
    make_pg: Callable[..., PgSettings],
) -> None:
    """refresh_standby_leader (run after each HA loop cycle on the standby leader) rewrites the
    config and reloads only when standby_cluster changed."""
    s = make_pg("sl")
    await pg.initdb(s, pg.InitdbOptions(no_sync=True))
    await pg.start(s)
    sc = StandbyCluster(host="127.0.0.1", port=1, recovery_min_apply_delay="5min")
    assert await refresh_standby_leader(s, sc)
    assert not await refresh_standby_leader(s, sc)

    async def shown(name: str) -> object:
        rows = await query(s, f"SHOW {name}", what=f"SHOW {name}")
        return next(iter(rows[0].values()))

    await wait_for_async(
        lambda: shown("recovery_min_apply_delay"), 30, "5min", done=lambda v: v == "5min"
    )
    changed = msgspec.structs.replace(sc, recovery_min_apply_delay="2s", restore_command="true %p")
    assert await refresh_standby_leader(s, changed)
    await wait_for_async(
        lambda: shown("restore_command"), 30, "reloaded", done=lambda v: v == "true %p"
    )
    assert await shown("recovery_min_apply_delay") == "2s"
