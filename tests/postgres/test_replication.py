"""Real primary/replica pairs: clone with a slot, streaming, switchover, failover + rewind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from hamgr import postgres as pg
from hamgr.postgres.sql import query
from tests.tools.poll import wait_for_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = pg.InitdbOptions(no_sync=True)
HOST = "127.0.0.1"
MakePg = Callable[..., pg.PgSettings]


async def make_primary(make_pg: MakePg, name: str, **overrides: Any) -> pg.PgSettings:
    s = make_pg(name, **overrides)
    await pg.initdb(s, FAST)
    await pg.start(s)
    await pg.bootstrap_users(s)
    return s


async def make_replica(
    make_pg: MakePg, name: str, primary: pg.PgSettings, **overrides: Any
) -> pg.PgSettings:
    r = make_pg(name, **overrides)
    assert await pg.create_slot(primary, name) is True
    await pg.clone_from(r, HOST, primary.port, slot_name=name)
    await pg.start(r)
    return r


async def rows(s: pg.PgSettings, sql: str) -> list[dict[str, Any]] | None:
    """Rows of `sql`, or None while it fails (table not replicated yet, server starting)."""
    try:
        return [dict(row) for row in await query(s, sql, what="test query")]
    except pg.SqlError:
        return None


async def test_replica_streams_from_clone_with_slot(make_pg: MakePg) -> None:
    a = await make_primary(make_pg, "a")
    assert await pg.create_slot(a, "b") is True
    assert await pg.create_slot(a, "b") is False, "creating an existing slot is a no-op"
    b = make_pg("b")
    await pg.clone_from(b, HOST, a.port, slot_name="b")
    assert (b.data_dir / "standby.signal").exists()
    assert f"port = {b.port}" in (b.data_dir / "hamgr.conf").read_text()
    await pg.start(b)

    await query(a, "CREATE TABLE t (i int); INSERT INTO t VALUES (42)", what="write")
    await wait_for_async(
        lambda: rows(b, "SELECT i FROM t"),
        20,
        "row on the replica",
        done=lambda r: r == [{"i": 42}],
    )
    primary_lsn = (await pg.status(a)).wal_lsn
    assert primary_lsn is not None
    st_b = await wait_for_async(
        lambda: pg.status(b),
        20,
        "replica replay to reach the primary's LSN",
        done=lambda st: (st.replay_lsn or 0) >= primary_lsn and st.upstream is not None,
    )
    assert st_b.role == "replica" and st_b.in_recovery is True and st_b.timeline == 1
    assert st_b.receive_lsn is not None and st_b.receive_lsn >= st_b.replay_lsn >= primary_lsn
    assert st_b.wal_position == st_b.receive_lsn
    upstream = st_b.upstream
    assert upstream is not None and upstream.status == "streaming"
    assert (upstream.sender_host, upstream.sender_port, upstream.slot_name) == (HOST, a.port, "b")
    assert upstream.received_tli == 1

    st_a = await wait_for_async(
        lambda: pg.status(a),
        20,
        "the primary to see the replica's replay position",
        done=lambda st: any(r.replay_lsn and r.replay_lsn >= primary_lsn for r in st.replication),
    )
    assert st_a.role == "primary" and st_a.system_identifier == st_b.system_identifier
    (row,) = st_a.replication
    assert (row.application_name, row.state, row.sync_state, row.client_addr) == (
        "b",
        "streaming",
        "async",
        HOST,
    )
    assert row.sent_lsn is not None and st_a.wal_lsn is not None
    assert row.replay_lsn <= row.flush_lsn <= row.sent_lsn <= st_a.wal_lsn

    (slot,) = await pg.list_slots(a)
    assert (slot.name, slot.slot_type, slot.active) == ("b", "physical", True)
    assert slot.restart_lsn is not None and slot.restart_lsn > 0
    with pytest.raises(pg.SlotError, match="active"):
        await pg.drop_slot(a, "b")
    assert await pg.drop_slot(a, "nosuchslot") is False
    with pytest.raises(pg.StateError, match="a server runs on it"):
        await pg.clone_from(b, HOST, a.port)
    with pytest.raises(pg.StateError, match="runs as a primary"):
        await pg.follow(a, HOST, b.port)
    with pytest.raises(pg.StateError, match="bootstrap_users needs a primary"):
        await pg.bootstrap_users(b)

    # Stop the replica: the slot becomes inactive, can be dropped, and keeps no WAL.
    await pg.stop(b)
    await wait_for_async(
        lambda: pg.list_slots(a), 20, "the slot to go idle", done=lambda slots: not slots[0].active
    )
    assert await pg.drop_slot(a, "b") is True
    assert await pg.list_slots(a) == []


async def test_switchover_replica_has_shutdown_checkpoint(make_pg: MakePg) -> None:
    a = await make_primary(make_pg, "a")
    b = await make_replica(make_pg, "b", a)
    await query(a, "CREATE TABLE t (i int); INSERT INTO t VALUES (1)", what="write")

    # Clean switchover: stop the primary, check the candidate received its shutdown checkpoint.
    await pg.stop(a, "fast")
    shutdown_checkpoint = await pg.last_checkpoint_location(a)
    st_b = await wait_for_async(
        lambda: pg.status(b),
        20,
        "the replica to receive the shutdown checkpoint",
        done=lambda st: (st.receive_lsn or 0) > shutdown_checkpoint,
    )
    assert st_b.role == "replica"

    assert await pg.promote(b) is True
    st_b = await pg.status(b)
    assert (st_b.role, st_b.timeline, st_b.in_recovery) == ("primary", 2, False)
    assert not (b.data_dir / "standby.signal").exists()
    assert "primary_conninfo" not in (b.data_dir / "hamgr-recovery.conf").read_text()
    assert await pg.promote(b) is False, "promoting a primary is a no-op"
    (switch,) = await pg.timeline_history(b)
    assert switch.timeline == 1 and switch.switch_lsn > shutdown_checkpoint

    # The cleanly stopped old primary needs no rewind and follows the new one.
    result = await pg.rewind(a, HOST, b.port)
    assert result.rewound is False, result.output
    assert "diverged at" in result.output and "same timeline" not in result.output
    assert await pg.create_slot(b, "a") is True
    await pg.follow(a, HOST, b.port, slot_name="a")
    st_a = await wait_for_async(
        lambda: pg.status(a),
        20,
        "the old primary to stream from the new one",
        done=lambda st: st.upstream is not None and st.upstream.status == "streaming",
    )
    assert (st_a.role, st_a.timeline, st_a.upstream.sender_port) == ("replica", 2, b.port)
    await query(b, "INSERT INTO t VALUES (2)", what="write on the new primary")
    await wait_for_async(
        lambda: rows(a, "SELECT i FROM t ORDER BY i"),
        20,
        "the new primary's row on the old primary",
        done=lambda r: r == [{"i": 1}, {"i": 2}],
    )


async def test_failover_rewinds_a_crashed_diverged_primary(make_pg: MakePg) -> None:
    # pg_rewind logs in as a dedicated non-superuser role with just the grants it needs.
    rewinder = {"rewind_user": "rewinder", "rewind_password": "rw-secret"}
    a = await make_primary(make_pg, "a", **rewinder)
    b = await make_replica(make_pg, "b", a, **rewinder)
    assert await rows(a, "SELECT rolsuper FROM pg_roles WHERE rolname = 'rewinder'") == [
        {"rolsuper": False}
    ]
    await query(a, "CREATE TABLE t (v text); INSERT INTO t VALUES ('common')", what="write")
    await wait_for_async(
        lambda: rows(b, "SELECT v FROM t"), 20, "common row", done=lambda r: r == [{"v": "common"}]
    )

    # Failover while the old primary still runs: both accept writes, their histories diverge.
    assert await pg.promote(b) is True
    await query(a, "INSERT INTO t VALUES ('diverged')", what="write on the old primary")
    await query(b, "INSERT INTO t VALUES ('new')", what="write on the new primary")
    assert (await pg.status(b)).timeline == 2

    # The old primary crashes (immediate stop: no shutdown checkpoint).
    assert await pg.stop(a, "immediate") is True
    assert not (await pg.controldata(a)).clean_shutdown

    result = await pg.rewind(a, HOST, b.port)
    assert result.rewound is True, result.output
    assert f"port = {a.port}" in (a.data_dir / "hamgr.conf").read_text(), "own config restored"
    assert await pg.create_slot(b, "a") is True
    pg.configure_standby(a, HOST, b.port, slot_name="a")
    await pg.start(a)
    st_a = await wait_for_async(
        lambda: pg.status(a),
        20,
        "the rewound node to stream from the new primary",
        done=lambda st: st.upstream is not None and st.upstream.status == "streaming",
    )
    assert (st_a.role, st_a.timeline) == ("replica", 2)
    assert st_a.upstream is not None and st_a.upstream.received_tli == 2
    await wait_for_async(
        lambda: rows(a, "SELECT v FROM t ORDER BY v"),
        20,
        "the rewound node to hold the new primary's rows and not its own diverged one",
        done=lambda r: r == [{"v": "common"}, {"v": "new"}],
    )
    history = await pg.timeline_history(a)
    assert [h.timeline for h in history] == [1]
    st_b = await wait_for_async(
        lambda: pg.status(b),
        20,
        "the new primary to list the rewound node",
        done=lambda st: [r.application_name for r in st.replication] == ["a"],
    )
    assert st_b.replication[0].state == "streaming"


async def test_bad_upstream_and_rewind_inputs_are_refused(make_pg: MakePg) -> None:
    a = await make_primary(make_pg, "a")
    with pytest.raises(pg.StateError, match="the server runs; stop it first"):
        await pg.rewind(a, HOST, a.port)
    with pytest.raises(pg.ConfigError, match="primary port 0"):
        pg.configure_standby(a, HOST, 0)
    with pytest.raises(pg.SlotError, match="invalid replication slot name"):
        pg.configure_standby(a, HOST, a.port, slot_name="Bad-Slot")
    nopw = make_pg("c", replication_password=None)
    with pytest.raises(pg.ConfigError, match="replication_password is required"):
        await pg.clone_from(nopw, HOST, a.port)
    # A clone from a port where nothing listens fails with pg_basebackup's own words.
    c = make_pg("d")
    dead_port = make_pg("dead").port
    with pytest.raises(pg.BaseBackupError) as info:
        await pg.clone_from(c, HOST, dead_port, timeout=30)
    assert "pg_basebackup" in str(info.value) and "exited with code" in str(info.value)
    assert str(dead_port) in str(info.value)
    assert pg.is_initialized(c) is False


async def test_clone_from_a_silent_upstream_is_killed_at_the_deadline(make_pg: MakePg) -> None:
    # A listener that accepts connections and never answers: pg_basebackup would hang.
    server = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    c = make_pg("c", connect_timeout=30)
    try:
        # Killed at its own 1 s deadline: 15 s is only how long this test waits for that.
        async with asyncio.timeout(15):
            with pytest.raises(pg.BaseBackupError, match="ran past its deadline") as info:
                await pg.clone_from(c, HOST, port, timeout=1.0)
    finally:
        server.close()
    assert info.value.timed_out and info.value.returncode is None
