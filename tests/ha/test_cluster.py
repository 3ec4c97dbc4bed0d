"""Three real `hamgr agent` processes with real PostgreSQL: bootstrap, failover, rejoin with
pg_rewind, switchover without losing acknowledged writes, a replica's death, pause, the REST
API on a live cluster, and HAProxy routing by GET /primary; each on the agents' embedded store
and again on a real 3-member etcd (``store.backend: etcd``).

Each destructive test gets a fresh AgentCluster (fast timing profile: ttl 2 s) on three of the
loopback addresses 127.0.0.121-129, in a /tmp directory the postgres user can reach; the
non-destructive ones share one cluster (TestLiveCluster). Everything waits on a condition with a
deadline; every process started is stopped by PID, whatever happened.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.dcs.stores import running_etcd
from tests.ha.agentcluster import API_AUTH, AgentCluster, cluster_of_test
from tests.ha.clusterops import (
    Writer,
    call,
    connect_through,
    decisions,
    during,
    freeze_walsenders,
    hactl,
    haproxy_binary,
    has_row,
    log_since,
    log_size,
    reached_through,
    running_haproxy,
    seed_bootstrap_claim,
    sql,
    status_of,
    store_leader,
    streaming_on,
    try_sql,
)
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TTL = 2.0  # the fast profile's
BOOT = 60.0  # bootstrap of three members on a shared 2-core machine, with margin
FAILOVER = 30.0
_TRIPLETS = itertools.cycle([[f"127.0.0.{base + i}" for i in range(3)] for base in (121, 124, 127)])
HAPROXY_LISTEN = "127.0.0.129:15432"
# decide()'s reasons when a lease deadline passed (hamgr/ha/decide.py).
_FENCED = re.compile(r"decision: fencing:|lease deadline has passed")


_SCOPES = itertools.count(1)


@pytest.fixture(scope="module", params=["raft", "etcd"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str] | None]:
    """Every test here runs twice: with the agents' embedded store (None), and against a real
    3-member etcd on 127.0.0.84-86 (its host:port list; Debian's etcd-server, installed by
    deploy/dev.sh; the etcd runs are skipped, saying so, where it is missing)."""
    if request.param == "raft":
        yield None
        return
    with running_etcd(tmp_path_factory.mktemp("etcd"), first_host=84) as etcd:
        yield etcd.endpoints


@contextlib.contextmanager
def fresh_cluster(
    request: pytest.FixtureRequest, etcd_hosts: list[str] | None = None
) -> Iterator[AgentCluster]:
    """A new cluster (not started) in its own /tmp directory, on the embedded store or on
    `etcd_hosts` (a scope of its own there); closed whatever happens, its directory removed
    unless a test failed or IT_KEEP_CLUSTER is set (then it is kept, and the logs' tails
    printed)."""
    hosts = next(_TRIPLETS)
    scope = f"it{next(_SCOPES)}"
    with cluster_of_test(request, "it", hosts, scope=scope, etcd_hosts=etcd_hosts) as c:
        yield c


@pytest.fixture
def cluster(
    pg_bindir: Path, request: pytest.FixtureRequest, backend: list[str] | None
) -> Iterator[AgentCluster]:
    """A fresh, not yet started cluster of three members."""
    with fresh_cluster(request, backend) as c:
        yield c


def embedded_store_only(c: AgentCluster, why: str) -> None:
    if c.backend != "raft":
        pytest.skip(f"embedded store only: {why}")


def boot(c: AgentCluster) -> tuple[str, list[str]]:
    """Start every agent; the primary and its two streaming replicas."""
    c.start_all()
    primary = c.wait_primary(BOOT)
    replicas = [n for n in c.members if n != primary]
    c.wait_streaming(replicas, BOOT)
    return primary, replicas


def kill_member(c: AgentCluster, name: str) -> None:
    """A host crash: SIGKILL the agent and the postmaster with all its children."""
    c.kill9_agent(name)
    c.kill9_postgres(name)


def timeline_of(c: AgentCluster, name: str) -> int:
    tl = status_of(c, name).get("timeline")
    assert isinstance(tl, int), f"{name} reports no timeline"
    return tl


def row_everywhere(c: AgentCluster, names: list[str], table: str, value: int) -> None:
    for n in names:
        wait_for(partial(has_row, c, n, table, value), 30, f"row {value} of {table} on {n}")


# -- 1 and 6: one live cluster, nothing destructive -------------------------------------------


@pytest.fixture(scope="class")
def live(
    pg_bindir: Path, request: pytest.FixtureRequest, backend: list[str] | None
) -> Iterator[tuple[AgentCluster, str, list[str]]]:
    """One booted cluster for TestLiveCluster: (cluster, primary, replicas)."""
    with fresh_cluster(request, backend) as c:
        primary, replicas = boot(c)
        yield c, primary, replicas


class TestLiveCluster:
    """Bootstrap and the REST API, on one cluster that every test here leaves as it found it."""

    def test_bootstrap_one_primary_two_streaming_replicas(
        self, live: tuple[AgentCluster, str, list[str]]
    ) -> None:
        c, primary, replicas = live
        assert c.primaries() == [primary]
        for r in replicas:
            assert status_of(c, r)["role"] == "replica"
        sql(c, primary, "CREATE TABLE boot_rows (x int PRIMARY KEY)")
        sql(c, primary, "INSERT INTO boot_rows VALUES (42)")
        row_everywhere(c, replicas, "boot_rows", 42)
        # The bootstrap primary was never fenced: the leader key's lease is renewed while
        # initdb runs, and the fence deadline is computed from this agent's ttl.
        for n in c.members:
            fenced = [d for d in decisions(log_since(c, n)) if _FENCED.search(d)]
            assert fenced == [], f"{n} fenced itself during bootstrap: {fenced}"

    def test_rest_endpoints_on_a_live_cluster(
        self, live: tuple[AgentCluster, str, list[str]]
    ) -> None:
        c, primary, replicas = live
        r1, r2 = replicas
        for path in ("/primary", "/read-write", "/leader", "/health", "/liveness", "/readiness"):
            assert c.http(primary, path)[0] == 200, f"{path} on the primary"
        assert c.http(primary, "/replica")[0] == 503
        for r in replicas:
            for path in ("/primary", "/read-write", "/leader"):
                assert c.http(r, path)[0] == 503, f"{path} on replica {r}"
            for path in ("/replica", "/replica?lag=1TB", "/health", "/liveness", "/readiness"):
                assert c.http(r, path)[0] == 200, f"{path} on replica {r}"
        code, body = c.http(r1, "/replica?lag=lots")
        assert code == 400 and "lag" in body["error"]

        # Lag: a replica whose replay is paused falls behind the primary's published position.
        sql(c, primary, "CREATE TABLE lag_rows (x int)")
        wait_for(lambda: try_sql(c, r1, "SELECT 1 FROM lag_rows") is not None, 30, "lag_rows on r1")
        sql(c, r1, "SELECT pg_wal_replay_pause()")
        try:
            sql(c, primary, "INSERT INTO lag_rows SELECT generate_series(1, 1000)")
            wait_for(lambda: c.http(r1, "/replica?lag=0")[0] == 503, 15, "r1 lagging (lag=0)")
            assert c.http(r1, "/replica?lag=1TB")[0] == 200
            lag = c.http(r1, "/patroni")[1]["lag"]
            assert isinstance(lag, int) and lag > 0
        finally:
            sql(c, r1, "SELECT pg_wal_replay_resume()")
        wait_for(lambda: c.http(r1, "/replica?lag=0")[0] == 200, 15, "r1 caught up (lag=0)")

        # /cluster: every member with role, state, timeline, positions, lag, tags and reason.
        code, cl = c.http(r2, "/cluster")
        assert code == 200 and cl["leader"] == primary and cl["pause"] is False
        assert isinstance(cl["fence_token"], int) and cl["fence_token"] > 0
        members = {m["name"]: m for m in cl["members"]}
        assert set(members) == set(c.members)
        for name, m in members.items():
            assert m["role"] == ("leader" if name == primary else "replica"), m
            assert m["state"] == "running" and m["timeline"] == 1, m
            assert isinstance(m["received_lsn"], int) and isinstance(m["replayed_lsn"], int), m
            assert isinstance(m["tags"], dict), m
            assert isinstance(m["reason"], str) and m["reason"], m
            if name == primary:
                assert m["lag"] is None and "leader" in m["reason"], m
            else:
                assert isinstance(m["lag"], int) and m["lag"] >= 0, m
                assert "following leader" in m["reason"] or "re-pointing" in m["reason"], m

        # Unsafe methods need the API's credentials; refused requests change nothing.
        ask = {"leader": primary, "candidate": r1}
        for auth in (None, ("admin", "wrong"), ("nobody", API_AUTH[1])):
            code, body = call(c, r1, "POST", "/switchover", ask, auth=auth)
            assert code == 401 and "authentication" in body["error"], (auth, code, body)
            code, body = call(c, r1, "PATCH", "/config", {"pause": True}, auth=auth)
            assert code == 401, (auth, code, body)
            code, body = call(c, primary, "POST", "/restart", {}, auth=auth)
            assert code == 401, (auth, code, body)
        code, body = call(c, r1, "PATCH", "/config", {"ttl": "soon"})
        assert code == 400 and "ttl" in body["error"], body
        code, cl = c.http(primary, "/cluster")
        assert cl["leader"] == primary and cl["pause"] is False and cl["switchover"] is None
        assert c.primaries() == [primary]

    def test_reinit_rebuilds_a_replica_from_the_leader(
        self, live: tuple[AgentCluster, str, list[str]]
    ) -> None:
        c, primary, replicas = live
        target = replicas[1]
        sql(c, primary, "CREATE TABLE reinit_rows (x int PRIMARY KEY)")
        sql(c, primary, "INSERT INTO reinit_rows VALUES (7)")
        row_everywhere(c, [target], "reinit_rows", 7)
        marker = c.members[target].data_dir / "hamgr-reinit-marker"
        marker.write_text("gone after a reinit")
        refused = hactl(c, primary, "reinit", primary, "--force")
        assert refused.returncode == 1 and "I am the leader" in refused.stderr
        done = hactl(c, primary, "reinit", target, "--force")
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"Success: reinitialize started on {target}\n"
        wait_for(lambda: not marker.exists(), 60, f"{target}'s data directory emptied")
        c.wait_streaming([target], BOOT)
        sql(c, primary, "INSERT INTO reinit_rows VALUES (8)")
        row_everywhere(c, [target], "reinit_rows", 8)
        assert c.primaries() == [primary]


# -- 2: failover by kill -9, and the old primary's return --------------------------------------


def test_kill9_primary_failover_then_old_primary_rewinds_and_streams(
    cluster: AgentCluster,
) -> None:
    c = cluster
    old, replicas = boot(c)
    sql(c, old, "CREATE TABLE t (x int PRIMARY KEY)")
    sql(c, old, "INSERT INTO t VALUES (1)")
    row_everywhere(c, replicas, "t", 1)

    # Divergence: with the primary's WAL senders frozen, rows it acknowledges reach no standby.
    freeze_walsenders(c, old, expected=2)
    sql(c, old, "INSERT INTO t SELECT generate_series(1000, 1999)")
    for r in replicas:
        assert not has_row(c, r, "t", 1000), f"{r} got WAL from frozen WAL senders"

    kill_member(c, old)
    new = c.wait_primary(FAILOVER, exclude=(old,))
    assert c.primaries() == [new]
    tl = timeline_of(c, new)
    assert tl >= 2
    assert not has_row(c, new, "t", 1000), "the diverged rows cannot be on the new primary"
    sql(c, new, "INSERT INTO t VALUES (2)")
    other = next(r for r in replicas if r != new)
    wait_for(lambda: streaming_on(c, other, tl), FAILOVER, f"{other} streaming on timeline {tl}")

    offset = log_size(c, old)
    c.start(old)
    wait_for(lambda: streaming_on(c, old, tl), 60, f"old primary {old} streaming on timeline {tl}")
    row_everywhere(c, [old], "t", 2)
    assert not has_row(c, old, "t", 1000), "the rewound member kept its diverged rows"
    assert c.primaries() == [new]
    rejoin = log_since(c, old, offset)
    assert "rewinding with pg_rewind" in rejoin, decisions(rejoin)
    assert "pg_rewind rewound my data directory" in rejoin, decisions(rejoin)
    sql(c, new, "INSERT INTO t VALUES (3)")
    row_everywhere(c, [old, other], "t", 3)


# -- 3: switchover under continuous writes -----------------------------------------------------


def test_switchover_loses_no_acknowledged_write(cluster: AgentCluster) -> None:
    c = cluster
    old, replicas = boot(c)
    candidate = sorted(replicas)[-1]  # not the one a default choice would pick first
    sql(c, old, "CREATE TABLE s (x int PRIMARY KEY)")
    writer = Writer(c, "s")
    writer.start()
    try:
        wait_for(lambda: writer.count() >= 50, 30, "50 acknowledged writes before the switchover")
        code, body = call(
            c, old, "POST", "/switchover", {"leader": old, "candidate": candidate}, timeout=45
        )
        assert code == 200, (code, body)
        assert body["message"] == f"Successfully switched over to {candidate}"
        wait_for(lambda: c.primaries() == [candidate], FAILOVER, f"{candidate} sole primary")
        before = writer.by_member.get(candidate, 0)
        wait_for(
            lambda: writer.by_member.get(candidate, 0) >= before + 50,
            30,
            f"50 acknowledged writes on {candidate}",
        )
    finally:
        writer.stop()
    acked = set(writer.acked)
    stored = {row[0] for row in sql(c, candidate, "SELECT x FROM s")}
    lost = sorted(acked - stored)
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:20]}"
    assert writer.by_member.get(old, 0) > 0 and writer.by_member.get(candidate, 0) > 0

    tl = timeline_of(c, candidate)
    wait_for(lambda: streaming_on(c, old, tl), 60, f"old primary {old} streaming from {candidate}")
    senders = sql(c, candidate, "SELECT application_name, state FROM pg_stat_replication")
    assert (old, "streaming") in [tuple(r) for r in senders], senders
    last = max(acked)
    row_everywhere(c, [old], "s", last)


# -- 4: a replica's death ----------------------------------------------------------------------


def test_orphaned_bootstrap_claim_is_dropped_and_the_cluster_bootstraps(
    cluster: AgentCluster,
) -> None:
    """A claimant that died between claiming the cluster and taking the leader key leaves
    ``initialize`` empty with no leader; the others must not wait for it forever: after ttl
    one drops the claim, the race starts again and one member bootstraps the cluster."""
    embedded_store_only(cluster, "the claim is seeded through the members' own stores")
    seed_bootstrap_claim(cluster)
    primary, replicas = boot(cluster)
    logs = {n: log_since(cluster, n) for n in cluster.members}
    waited = [n for n, text in logs.items() if "another member is bootstrapping" in text]
    dropped = [n for n, text in logs.items() if "giving the bootstrap race back" in text]
    assert waited and dropped, f"waited: {waited}, dropped: {dropped}"
    assert [n for n, text in logs.items() if "I am the leader" in text] == [primary]
    assert sorted([primary, *replicas]) == sorted(cluster.members)


def test_replica_death_does_not_disturb_the_primary(cluster: AgentCluster) -> None:
    c = cluster
    embedded_store_only(c, "the store's leadership lives on the agents' hosts")
    primary, replicas = boot(c)
    # The hardest replica to lose is the store's leader: the agents keep it on a replica.

    def leader_on_a_replica() -> str | None:
        lead = store_leader(c, primary)
        return lead if lead in replicas else None

    victim = wait_for(leader_on_a_replica, 30, "the store's leadership on a replica", 0.5)
    survivor = next(r for r in replicas if r != victim)
    sql(c, primary, "CREATE TABLE r (x int PRIMARY KEY)")
    edited = hactl(c, primary, "edit-config", "--set", "member_slots_ttl=2", "--force")
    assert edited.returncode == 0, edited.stderr
    offset = log_size(c, primary)
    kill_member(c, victim)

    seq = iter(range(1, 1_000_000))
    with c.connect(primary) as conn:

        def still_primary() -> None:
            conn.execute("INSERT INTO r VALUES (%s)", (next(seq),))
            assert c.primaries() == [primary]

        writes = during(4 * TTL, still_primary, interval=0.1)
    assert writes > 10
    assert status_of(c, survivor).get("role") == "replica"
    row_everywhere(c, [survivor], "r", writes)
    after = decisions(log_since(c, primary, offset))
    bad = [d for d in after if "Demote" in d or _FENCED.search(d)]
    assert bad == [], bad

    # Gone for longer than ttl + member_slots_ttl: its slot no longer holds back WAL. When it
    # comes back it gets a slot again and streams.
    def slots() -> set[str]:
        return {r[0] for r in sql(c, primary, "SELECT slot_name FROM pg_replication_slots")}

    wait_for(lambda: victim not in slots(), 30, f"the slot of {victim} dropped")
    assert survivor in slots()
    c.start(victim)
    c.wait_streaming([victim], BOOT)
    wait_for(lambda: victim in slots(), 30, f"the slot of {victim} again")


# -- 5: pause ----------------------------------------------------------------------------------


def sees_pause(c: AgentCluster, name: str) -> bool:
    return status_of(c, name).get("pause") is True


def test_pause_prevents_failover_until_resumed(cluster: AgentCluster) -> None:
    c = cluster
    primary, replicas = boot(c)
    code, body = call(c, replicas[0], "PATCH", "/config", {"pause": True})
    assert code == 200 and body["pause"] is True, (code, body)
    for n in c.members:
        wait_for(partial(sees_pause, c, n), 15, f"{n} sees the pause")

    kill_member(c, primary)

    def nobody_promoted() -> None:
        assert c.primaries() == []
        for r in replicas:
            assert status_of(c, r).get("role") in ("replica", None), status_of(c, r)

    during(3 * TTL, nobody_promoted)
    code, cl = c.http(replicas[0], "/cluster")
    assert code == 200 and cl["pause"] is True and cl["leader"] is None, cl
    for r in replicas:
        assert "paused" in status_of(c, r)["reason"]
    listed = hactl(c, replicas[1], "list", "-r")
    assert listed.returncode == 0, listed.stderr
    assert "Maintenance mode: on" in listed.stdout, listed.stdout

    resumed = hactl(c, replicas[1], "resume")
    assert resumed.returncode == 0, resumed.stderr
    new = c.wait_primary(FAILOVER, exclude=(primary,))
    assert new in replicas and c.primaries() == [new]
    code, cl = c.http(new, "/cluster")
    assert cl["pause"] is False and cl["leader"] == new


# -- 7: HAProxy ----------------------------------------------------------------------------------


def routed_to(host: str) -> bool:
    """Three connections in a row through HAProxy reach the primary at `host`: HAProxy
    balances over the servers it holds up, so none of the others is up any more."""
    return all(reached_through(HAPROXY_LISTEN) == (host, False) for _ in range(3))


def test_haproxy_routes_to_the_primary_and_follows_a_failover(cluster: AgentCluster) -> None:
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (Debian package haproxy; deploy/dev.sh installs it)")
    c = cluster
    primary, _ = boot(c)
    host = {n: m.host for n, m in c.members.items()}
    with running_haproxy(c, HAPROXY_LISTEN, c.root / "haproxy.log"):
        wait_for(lambda: routed_to(host[primary]), 15, f"HAProxy routing to {primary} only")
        with connect_through(HAPROXY_LISTEN) as conn:
            conn.execute("CREATE TABLE h (x int)")
            conn.execute("INSERT INTO h VALUES (1)")
        kill_member(c, primary)
        new = c.wait_primary(FAILOVER, exclude=(primary,))
        wait_for(lambda: routed_to(host[new]), 10, f"HAProxy routing to the new primary {new}")
        with connect_through(HAPROXY_LISTEN) as conn:
            conn.execute("INSERT INTO h VALUES (2)")
            assert conn.execute("SELECT count(*) FROM h").fetchone() == (2,)
