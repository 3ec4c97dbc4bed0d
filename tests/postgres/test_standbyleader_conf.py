"""The standby leader's recovery config (pure): each standby_cluster key reaches it."""

from __future__ import annotations

from pathlib import Path

from hamgr.config.standby import StandbyCluster
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.standbyleader import render_standby_leader_conf

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
