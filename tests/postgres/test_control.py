"""Lifecycle of a real PostgreSQL server: initdb, start, status, stop modes, clear errors."""

from __future__ import annotations

import dataclasses
import os
import pwd
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from hamgr import postgres as pg
from hamgr.postgres.process import resolve_run_as
from hamgr.postgres.sql import query
from tests.tools.poll import wait_for_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = pg.InitdbOptions(no_sync=True)
MakePg = Callable[..., pg.PgSettings]


async def test_initdb_start_status_stop(make_pg: MakePg, pg_os_user: str) -> None:
    s = make_pg("a")
    await pg.initdb(s, FAST)
    owner = pwd.getpwnam(pg_os_user).pw_uid
    st = os.stat(s.data_dir)
    assert (st.st_uid, st.st_mode & 0o777) == (owner, 0o700)
    assert os.stat(s.runtime_dir).st_uid == owner
    assert (s.data_dir / "hamgr.conf").stat().st_uid == owner
    assert not pg.is_running(s)
    stopped = await pg.status(s)
    assert (stopped.running, stopped.role, stopped.initialized) == (False, "stopped", True)

    pid = await pg.start(s)
    assert pid is not None and pid == pg.postmaster_pid(s) and pg.is_running(s)
    assert await pg.start(s) == pid, "start of a running server returns its PID"
    st_primary = await pg.status(s)
    assert st_primary.running and st_primary.role == "primary"
    assert st_primary.in_recovery is False and st_primary.timeline == 1
    assert st_primary.wal_lsn is not None and st_primary.wal_lsn > 0
    assert st_primary.system_identifier and (st_primary.server_version or 0) >= 150000
    assert st_primary.start_time is not None and st_primary.replication == ()
    # Our settings are in force: checksums for pg_rewind, the port we chose.
    rows = await query(
        s,
        "SELECT current_setting('data_checksums') AS c, current_setting('port') AS p, "
        "current_setting('wal_log_hints') AS h",
        what="settings",
    )
    assert rows == [{"c": "on", "p": str(s.port), "h": "on"}]
    assert await pg.timeline_history(s) == []
    # A running server that refuses us is reported, not raised.
    refused = await pg.status(dataclasses.replace(s, superuser_password="wrong"))
    assert (refused.running, refused.role, refused.pid) == (True, "unknown", pid)
    assert refused.error and "password authentication failed" in refused.error

    before = st_primary.wal_lsn
    await query(s, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS i", what="write")
    await pg.checkpoint(s)
    after = await pg.status(s)
    assert after.wal_lsn is not None and after.wal_lsn > before

    assert await pg.stop(s) is True
    assert not pg.is_running(s) and pg.postmaster_pid(s) is None
    assert await pg.stop(s) is False, "stop of a stopped server is a no-op"
    data = await pg.controldata(s)
    assert data.state == "shut down" and data.data_checksums
    assert data.system_identifier == st_primary.system_identifier
    assert await pg.last_checkpoint_location(s) == data.checkpoint_lsn >= after.wal_lsn
    assert (await pg.status(s)).role == "stopped"


async def test_configured_initdb_options_shape_the_new_cluster(make_pg: MakePg) -> None:
    """bootstrap.initdb reaches initdb: PgSettings.initdb is what initdb runs with by default."""
    options = pg.initdb_options(
        [
            {"encoding": "SQL_ASCII"},
            {"lc-collate": "C.UTF-8"},
            {"wal-segsize": 32},
            "data-checksums",
        ]
    )
    s = make_pg("opts", initdb=dataclasses.replace(options, no_sync=True))
    await pg.initdb(s)
    assert (await pg.controldata(s)).data_checksums
    await pg.start(s)
    rows = await query(
        s,
        "SELECT current_setting('server_encoding') AS e, current_setting('wal_segment_size') AS w, "
        "datcollate AS c, datctype AS t FROM pg_database WHERE datname = 'postgres'",
        what="the new cluster's settings",
    )
    # A SQL_ASCII server sends text undecoded: psycopg hands it over as bytes.
    got = {k: v.decode() if isinstance(v, bytes) else v for k, v in rows[0].items()}
    assert got == {"e": "SQL_ASCII", "w": "32MB", "c": "C.UTF-8", "t": "C"}


async def test_stop_modes(make_pg: MakePg) -> None:
    s = make_pg("modes")
    await pg.initdb(s, FAST)
    for mode in ("smart", "fast"):
        await pg.start(s)
        assert await pg.stop(s, mode) is True
        assert (await pg.controldata(s)).state == "shut down", mode
    await pg.start(s)
    await query(s, "CREATE TABLE survivor AS SELECT 1 AS i", what="write")
    assert await pg.stop(s, "immediate") is True
    assert not pg.is_running(s)
    crashed = await pg.controldata(s)
    assert crashed.state == "in production" and not crashed.clean_shutdown
    # A restart recovers from the crash and keeps committed data.
    await pg.restart(s)
    assert await query(s, "SELECT i FROM survivor", what="read") == [{"i": 1}]
    with pytest.raises(ValueError, match="stop mode"):
        await pg.stop(s, "hard")  # type: ignore[arg-type]


async def test_reload_applies_config_and_needs_running_server(make_pg: MakePg) -> None:
    s = make_pg("reload", parameters={"work_mem": "4MB"})
    await pg.initdb(s, FAST)
    with pytest.raises(pg.NotRunningError):
        await pg.reload(s)
    await pg.start(s)
    changed = make_pg("reload", data_dir=s.data_dir, port=s.port, parameters={"work_mem": "7MB"})
    pg.write_config(changed)
    await pg.reload(changed)

    async def work_mem() -> str:
        rows = await query(changed, "SELECT current_setting('work_mem') AS w", what="work_mem")
        return str(rows[0]["w"])

    assert await wait_for_async(work_mem, 10, "work_mem reload", done=lambda v: v == "7MB") == "7MB"


async def _superuser_over_tcp(s: pg.PgSettings) -> str | None:
    """None when the superuser gets in over TCP (database postgres), else the server's reason."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            host=s.host,
            port=s.port,
            user=s.superuser,
            password=s.superuser_password,
            dbname="postgres",
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        return str(exc)
    await conn.close()
    return None


async def test_configured_pg_hba_lines_win(make_pg: MakePg) -> None:
    """The configured lines are pg_hba.conf as given: a reject takes effect even where hamgr's
    own lines (written when none are configured) would let the connection in."""
    lines = [
        "local all postgres scram-sha-256",
        "host all postgres 127.0.0.1/32 reject",
        "host all all 127.0.0.1/32 scram-sha-256",
    ]
    s = make_pg("hba", hba=lines)
    await pg.initdb(s, FAST)
    await pg.start(s)
    assert await query(s, "SELECT 1 AS one", what="over the socket") == [{"one": 1}]
    refused = await _superuser_over_tcp(s)
    assert refused is not None and "pg_hba.conf rejects connection" in refused, refused

    hamgr_own = dataclasses.replace(s, hba=())
    pg.write_config(hamgr_own)
    await pg.reload(hamgr_own)
    let_in = await wait_for_async(
        lambda: _superuser_over_tcp(s), 10, "reload", done=lambda r: r is None
    )
    assert let_in is None
    assert await query(s, "SELECT 1 AS one", what="over the socket") == [{"one": 1}]


async def test_start_failure_reports_server_log(make_pg: MakePg) -> None:
    s = make_pg("badparam", parameters={"shared_buffers": "not-a-size"})
    await pg.initdb(s, FAST)
    with pytest.raises(pg.StartError) as info:
        await pg.start(s, timeout=20)
    message = str(info.value)
    assert "pg_ctl" in message and "shared_buffers" in message and "no server runs" in message
    assert not pg.is_running(s)


async def test_refuses_root_os_user(make_pg: MakePg) -> None:
    s = make_pg("rooted", os_user="root")
    if os.geteuid() == 0:
        with pytest.raises(pg.RootUserError, match="refuses to run as root"):
            await pg.initdb(s, FAST)
        assert not s.data_dir.exists(), "nothing may be created before the refusal"
        with pytest.raises(pg.ConfigError, match="does not exist on this host"):
            await pg.initdb(make_pg("ghost", os_user="no_such_user_hamgr"), FAST)
    else:
        # Not root: programs run as ourselves whatever os_user says.
        assert resolve_run_as("root").uid == os.geteuid()


async def test_wrong_bin_dir_is_named(make_pg: MakePg, pg_tmp_dir: Path) -> None:
    s = make_pg("nobin", bin_dir=pg_tmp_dir / "no-such-bin")
    with pytest.raises(pg.BinaryNotFoundError) as info:
        await pg.initdb(s, FAST)
    assert "initdb" in str(info.value) and str(pg_tmp_dir / "no-such-bin") in str(info.value)
    assert "pg_config --bindir" in str(info.value)
    with pytest.raises(pg.BinaryNotFoundError, match="pg_ctl"):
        await pg.start(make_pg("nobin2", bin_dir=pg_tmp_dir))
    assert not s.data_dir.exists()


async def test_initdb_refuses_non_empty_and_unreachable_dirs(
    make_pg: MakePg, pg_tmp_dir: Path
) -> None:
    s = make_pg("busy")
    s.data_dir.mkdir(parents=True)
    keep = s.data_dir / "precious.txt"
    keep.write_text("do not lose me")
    with pytest.raises(pg.StateError, match="not empty"):
        await pg.initdb(s, FAST)
    assert keep.read_text() == "do not lose me"
    with pytest.raises(pg.StateError, match="holds no cluster"):
        await pg.start(s)
    if os.geteuid() == 0:
        private = pg_tmp_dir / "private"
        private.mkdir(mode=0o700)
        hidden = make_pg("hidden", data_dir=private / "data")
        with pytest.raises(pg.ConfigError, match=f"cannot reach .*{private} is mode 0700"):
            await pg.initdb(hidden, FAST)


async def test_operations_on_a_stopped_server_say_so(make_pg: MakePg) -> None:
    s = make_pg("idle")
    await pg.initdb(s, FAST)
    for call in (pg.promote(s), pg.checkpoint(s)):
        with pytest.raises(pg.NotRunningError):
            await call
    with pytest.raises(pg.StateError, match="no server runs"):
        await pg.list_slots(s)
