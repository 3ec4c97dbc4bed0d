"""Synchronous replication on three real agents with real PostgreSQL (fast profile, ttl 2 s).

- Each mode, switched on the running cluster: the primary's synchronous_standby_names, the
  store's record, the REST health paths, ``hactl list``; nosync honoured.
- A synchronous standby killed is replaced (non-strict); in strict mode, with none left, a
  commit waits while /primary stays 200, and completes when a standby returns.
- A kill -9 of the primary promotes the synchronous standby, never the other one, and loses
  no acknowledged write.
- Asynchronous mode: a member lagging past maximum_lag_on_failover never takes over, even when
  the caught-up member's REST API cannot be reached, and in a two-member cluster (on etcd) where
  no other member can be asked at all: the old primary's position came from the store.
- A crash of the primary between the two writes of a synchronous-set change (both crash points)
  loses no acknowledged commit.

Every wait has a deadline; every process is stopped by PID; iptables rules are removed in a
``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dcs.stores import running_etcd
from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import Writer, call, hactl, has_row, sql, status_of, try_sql
from tests.ha.test_cluster import BOOT, FAILOVER, boot, fresh_cluster, kill_member
from tests.ha.test_fencing_e2e import Partition
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SETTLE = 30.0


@pytest.fixture
def cluster(pg_bindir: Path, request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with fresh_cluster(request) as c:
        yield c


def patch(c: AgentCluster, via: str, **settings: Any) -> None:
    code, body = call(c, via, "PATCH", "/config", settings)
    assert code == 200, (code, body)


def standby_names(c: AgentCluster, primary: str) -> str | None:
    rows = try_sql(c, primary, "SHOW synchronous_standby_names")
    return rows[0][0] if rows else None


def record(c: AgentCluster, via: str) -> dict[str, Any] | None:
    code, body = c.http(via, "/cluster")
    return body.get("sync") if code == 200 and isinstance(body, dict) else None


def settled(c: AgentCluster, primary: str, names: str, members: list[str], acks: int) -> bool:
    rec = record(c, primary)
    return (
        standby_names(c, primary) == names
        and rec is not None
        and rec["members"] == members
        and rec["acks"] == acks
    )


def quoted(*names: str) -> str:
    return ", ".join(f'"{n}"' for n in names)


def wait_sync(c: AgentCluster, primary: str, names: str, members: list[str], acks: int) -> None:
    wait_for(
        partial(settled, c, primary, names, members, acks),
        SETTLE,
        f"synchronous_standby_names {names!r} and the record {members} acks {acks}",
    )


def sync_standby(c: AgentCluster, primary: str) -> str:
    def one() -> str | None:
        rec = record(c, primary)
        return rec["members"][0] if rec and rec["acks"] == 1 and rec["members"] else None

    return wait_for(one, SETTLE, "a synchronous standby recorded")


def test_modes_take_effect_on_the_running_cluster(cluster: AgentCluster) -> None:
    c = cluster
    primary, (r1, r2) = boot(c)
    patch(c, primary, synchronous_mode="on")
    sync = sync_standby(c, primary)
    other = r2 if sync == r1 else r1
    wait_sync(c, primary, f"FIRST 1 ({quoted(sync)})", [sync], 1)
    assert c.http(sync, "/synchronous")[0] == 200 and c.http(sync, "/asynchronous")[0] == 503
    assert c.http(other, "/synchronous")[0] == 503 and c.http(other, "/asynchronous")[0] == 200
    listing = hactl(c, primary, "list")
    assert listing.returncode == 0 and "Sync Standby" in listing.stdout, listing.stdout

    patch(c, primary, synchronous_node_count=2)
    both = sorted([r1, r2])
    wait_sync(c, primary, f"FIRST 2 ({quoted(*both)})", both, 2)

    # nosync on `other`, applied by a reload of its configuration: it leaves the set.
    config = yaml.safe_load(c.members[other].config.read_text())
    config["tags"] = {"nosync": True}
    c.members[other].config.write_text(yaml.safe_dump(config, sort_keys=False))
    done = hactl(c, other, "reload", other)
    assert done.returncode == 0, done.stderr
    wait_sync(c, primary, f"FIRST 1 ({quoted(sync)})", [sync], 1)

    patch(c, primary, synchronous_mode="quorum", synchronous_node_count=1)
    wait_sync(c, primary, f"ANY 1 ({quoted(sync)})", [sync], 1)
    assert c.http(sync, "/quorum")[0] == 200 and c.http(other, "/quorum")[0] == 503
    assert "Quorum Standby" in hactl(c, primary, "list").stdout

    patch(c, primary, synchronous_mode="off")
    wait_for(
        lambda: standby_names(c, primary) == "" and record(c, primary) is None,
        SETTLE,
        "asynchronous again: no standby names, no record",
    )


def _sync_waiters(c: AgentCluster, primary: str) -> int:
    rows = try_sql(c, primary, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
    return rows[0][0] if rows else 0


def test_lost_synchronous_standby_is_replaced_and_strict_mode_blocks(
    cluster: AgentCluster,
) -> None:
    c = cluster
    primary, (r1, r2) = boot(c)
    sql(c, primary, "CREATE TABLE strict_rows (x int PRIMARY KEY)")
    patch(c, primary, synchronous_mode="on")
    first = sync_standby(c, primary)
    second = r2 if first == r1 else r1
    kill_member(c, first)
    wait_sync(c, primary, f"FIRST 1 ({quoted(second)})", [second], 1)
    sql(c, primary, "INSERT INTO strict_rows VALUES (1)")
    assert has_row(c, second, "strict_rows", 1)

    # The last standby's PostgreSQL dies and cannot start again (its data directory is made
    # unreadable); its agent and store member live on, so the store keeps its majority.
    patch(c, primary, synchronous_mode_strict=True)
    data = c.members[second].data_dir
    mode = data.stat().st_mode & 0o7777
    data.chmod(0)
    c.kill9_postgres(second)
    done = threading.Event()
    failure: list[BaseException] = []

    def insert() -> None:
        try:
            with c.connect(primary) as conn:
                conn.execute("INSERT INTO strict_rows VALUES (2)")
            done.set()
        except BaseException as exc:  # reported by the assertion below
            failure.append(exc)

    writer = threading.Thread(target=insert, daemon=True)
    writer.start()
    wait_for(lambda: _sync_waiters(c, primary) >= 1, SETTLE, "a commit waiting for a standby")
    assert not done.is_set()
    assert c.http(primary, "/primary")[0] == 200
    reason = status_of(c, primary).get("reason", "")
    wait_for(
        lambda: "synchronous_mode_strict: commits wait" in status_of(c, primary).get("reason", ""),
        SETTLE,
        f"the primary's reason to say why commits wait (now: {reason!r})",
    )
    data.chmod(mode)
    wait_for(done.is_set, 60, "the waiting commit to complete once a standby returned")
    writer.join(timeout=10)
    assert failure == []
    assert has_row(c, second, "strict_rows", 2)
    assert c.primaries() == [primary]


@pytest.mark.parametrize("mode", ["on", "quorum"])
def test_failover_promotes_a_synchronous_standby_and_loses_nothing(
    cluster: AgentCluster, mode: str
) -> None:
    c = cluster
    primary, (r1, r2) = boot(c)
    sql(c, primary, "CREATE TABLE sync_rows (x int PRIMARY KEY)")
    patch(c, primary, synchronous_mode=mode)
    if mode == "on":
        sync = sync_standby(c, primary)
        allowed = {sync}
    else:
        both = sorted([r1, r2])
        wait_sync(c, primary, f"ANY 1 ({quoted(*both)})", both, 1)
        allowed = set(both)
    writer = Writer(c, "sync_rows")
    writer.start()
    try:
        wait_for(lambda: writer.count() > 200, 60, "200 acknowledged writes")
        kill_member(c, primary)
        promoted = c.wait_primary(FAILOVER, exclude=(primary,))
        assert promoted in allowed, f"{promoted} was promoted, not one of {sorted(allowed)}"
        after = writer.count()
        wait_for(lambda: writer.count() > after + 50, 60, "writes flowing again")
    finally:
        writer.stop()
    with c.connect(promoted) as conn:
        present = {r[0] for r in conn.execute("SELECT x FROM sync_rows").fetchall()}
    lost = sorted(set(writer.acked) - present)
    assert lost == [], f"acknowledged writes lost: {lost[:20]}"
    assert c.primaries() == [promoted]


def test_lagging_member_never_takes_over_when_the_caught_up_one_cannot_be_asked(
    cluster: AgentCluster,
) -> None:
    why = Partition.unavailable()
    if why:
        pytest.skip(why)
    c = cluster
    primary, (lagging, caught_up) = boot(c)
    with behind(c, primary, lagging, via=caught_up):
        # Nobody can ask the caught-up member's REST API any more (its store port stays open),
        # and it cannot race before the lagging one decided (its postmaster is frozen, so its
        # agent cannot observe it).
        rule = ["INPUT", "-d", c.members[caught_up].host, "-p", "tcp", "--dport", "8008"]
        reject = ["-j", "REJECT", "--reject-with", "tcp-reset"]
        _iptables("-I", rule, reject)
        postmaster = c.postmaster_pid(caught_up)
        assert postmaster is not None
        os.kill(postmaster, signal.SIGSTOP)
        try:
            kill_member(c, primary)
            wait_for(
                lambda: (
                    "behind the last position" in status_of(c, lagging).get("reason", "")
                    or try_sql(c, lagging, "SELECT pg_is_in_recovery()") == [(False,)]
                ),
                FAILOVER,
                f"{lagging} to decide alone",
            )
            assert "behind the last position" in status_of(c, lagging).get("reason", "")
            assert c.http(lagging, "/primary")[0] == 503
        finally:
            os.kill(postmaster, signal.SIGCONT)
            _iptables("-D", rule, reject)
        assert c.wait_primary(FAILOVER, exclude=(primary,)) == caught_up


@contextlib.contextmanager
def behind(c: AgentCluster, primary: str, lagging: str, via: str) -> Iterator[None]:
    """`lagging` stops receiving (its WAL sender on the primary is frozen) while the primary
    writes about 2 MB, far past maximum_lag_on_failover (set to 64 kB), and that position
    reaches the store (read through `via`'s /cluster). The WAL sender resumes on exit."""
    patch(c, primary, maximum_lag_on_failover=65536)
    sql(c, primary, "CREATE TABLE lag_rows (x int, pad text)")
    wait_for(partial(has_table, c, lagging), 30, f"lag_rows on {lagging}")
    rows = sql(
        c, primary, "SELECT pid FROM pg_stat_replication WHERE application_name = %s", (lagging,)
    )
    sender = int(rows[0][0])
    os.kill(sender, signal.SIGSTOP)
    try:
        sql(
            c,
            primary,
            "INSERT INTO lag_rows SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g",
        )
        target = _lsn(c, primary)
        wait_for(lambda: _recorded_lsn(c, via) >= target, 30, "the position in the store")
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sender, signal.SIGCONT)


def has_table(c: AgentCluster, name: str) -> bool:
    return try_sql(c, name, "SELECT 1 FROM lag_rows") is not None


def _lsn(c: AgentCluster, name: str) -> int:
    rows = sql(c, name, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    return int(rows[0][0])


def _recorded_lsn(c: AgentCluster, via: str) -> int:
    code, body = c.http(via, "/cluster")
    pos = body.get("position") if code == 200 and isinstance(body, dict) else None
    return int(pos["lsn"]) if pos else -1


def _iptables(
    op: str, rule: list[str], target: tuple[str, ...] | list[str] = ("-j", "DROP")
) -> None:
    cmd = ["iptables", "-w", "5", op, *rule, *target]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def _store_put(c: AgentCluster, via: str, key: str, value: str) -> None:
    put = [
        *(sys.executable, "-m", "hamgr", "store-ctl", "--config", str(c.members[via].config)),
        *("--timeout", "5", "put", key, value),
    ]
    done = subprocess.run(put, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("crash_after", ["record-widened", "postgres-changed"])
def test_a_crash_between_the_two_writes_loses_no_acknowledged_commit(
    cluster: AgentCluster, crash_after: str
) -> None:
    """The primary dies between the store's write and PostgreSQL's while replacing its
    synchronous standby S by O. The state such a crash leaves is made by hand while the cluster
    is paused (so no agent repairs it): the record names S and O with one acknowledgement, and
    PostgreSQL still waits for S (``record-widened``) or already for O (``postgres-changed``).
    The member PostgreSQL waits for (W) gets every acknowledged write; the other (L) stops
    receiving (its WAL sender is frozen), and W's REST API is cut off, so L sees only itself.
    Then the primary's host is killed and the cluster resumed: L must not take over (it lacks
    acknowledged writes and cannot see W); W must, holding everything acknowledged."""
    why = Partition.unavailable()
    if why:
        pytest.skip(why)
    c = cluster
    primary, (r1, r2) = boot(c)
    sql(c, primary, "CREATE TABLE crash_rows (x int PRIMARY KEY)")
    patch(c, primary, synchronous_mode="on")
    s = sync_standby(c, primary)
    o = r2 if s == r1 else r1
    wait_sync(c, primary, f"FIRST 1 ({quoted(s)})", [s], 1)
    patch(c, primary, pause=True)
    wait_for(lambda: all(status_of(c, n).get("pause") for n in c.members), SETTLE, "paused")
    widened = json.dumps({"leader": primary, "members": sorted([s, o]), "acks": 1})
    _store_put(c, s, f"/hamgr/{c.scope}/sync", widened)
    waited, lagging = (s, o) if crash_after == "record-widened" else (o, s)
    if crash_after == "postgres-changed":
        conf = c.members[primary].data_dir / "hamgr-sync.conf"
        conf.write_text(f"synchronous_standby_names = 'FIRST 1 (\"{o}\")'\n")
        sql(c, primary, "SELECT pg_reload_conf()")
        wait_for(
            lambda: standby_names(c, primary) == f'FIRST 1 ("{o}")',
            SETTLE,
            "PostgreSQL waiting for O",
        )
    rows = sql(
        c, primary, "SELECT pid FROM pg_stat_replication WHERE application_name = %s", (lagging,)
    )
    os.kill(int(rows[0][0]), signal.SIGSTOP)
    writer = Writer(c, "crash_rows")
    writer.start()
    try:
        wait_for(lambda: writer.count() > 100, 60, "100 acknowledged writes")
        kill_member(c, primary)
    finally:
        writer.stop()
    # L must race first and alone: W's API refuses connections at once, and W's agent cannot
    # observe its PostgreSQL (postmaster frozen) until L has decided.
    rule = ["INPUT", "-d", c.members[waited].host, "-p", "tcp", "--dport", "8008"]
    reject = ["-j", "REJECT", "--reject-with", "tcp-reset"]
    _iptables("-I", rule, reject)
    postmaster = c.postmaster_pid(waited)
    assert postmaster is not None
    os.kill(postmaster, signal.SIGSTOP)
    try:
        patch(c, lagging, pause=False)
        wait_for(
            lambda: (
                "needs 2" in status_of(c, lagging).get("reason", "")
                or try_sql(c, lagging, "SELECT pg_is_in_recovery()") == [(False,)]
            ),
            FAILOVER,
            f"{lagging} to decide alone",
        )
    finally:
        os.kill(postmaster, signal.SIGCONT)
        _iptables("-D", rule, reject)
    assert c.wait_primary(FAILOVER, exclude=(primary,)) == waited
    with c.connect(waited) as conn:
        present = {r[0] for r in conn.execute("SELECT x FROM crash_rows").fetchall()}
    lost = sorted(set(writer.acked) - present)
    assert lost == [], f"{waited} lacks acknowledged writes: {lost[:20]}"


@pytest.fixture
def two_on_etcd(
    pg_bindir: Path, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentCluster]:
    """Two database hosts over a real 3-member etcd (a two-member cluster cannot keep the
    embedded store's majority when one dies; with etcd it can fail over)."""
    with running_etcd(tmp_path_factory.mktemp("etcd2"), first_host=87) as etcd:
        root = Path(tempfile.mkdtemp(prefix="hamgr-it2-", dir="/tmp"))
        os.chmod(root, 0o755)
        hosts = ["127.0.0.161", "127.0.0.162"]
        c = AgentCluster(root, hosts, scope="two", etcd_hosts=etcd.endpoints)
        try:
            yield c
        finally:
            for name, m in c.members.items():
                if m.proc is not None and m.proc.poll() is None:
                    kill_member(c, name)
            c.close()
            shutil.rmtree(root, ignore_errors=True)


def test_two_member_cluster_never_promotes_a_replica_behind_the_recorded_position(
    two_on_etcd: AgentCluster,
) -> None:
    """Nobody else can tell the replica how far the dead primary got: the position the primary
    recorded in the store does, and maximum_lag_on_failover holds against it."""
    c = two_on_etcd
    c.start_all()
    primary = c.wait_primary(BOOT)
    (replica,) = [n for n in c.members if n != primary]
    c.wait_streaming([replica], BOOT)
    with behind(c, primary, replica, via=replica):
        kill_member(c, primary)
        wait_for(
            lambda: "behind the last position" in status_of(c, replica).get("reason", ""),
            FAILOVER,
            f"{replica} refusing to take over: behind the position recorded in the store",
        )
        assert c.http(replica, "/primary")[0] == 503
        assert try_sql(c, replica, "SELECT pg_is_in_recovery()") == [(True,)]
