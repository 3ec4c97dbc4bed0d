"""A restarted or stopping agent and its PostgreSQL: leadership resumed without a demotion,
pause as hands off PostgreSQL, and a stop that never leaves (or starts) a PostgreSQL behind.

A real 3-member cluster on 127.0.0.161-163 (default timing, ttl 10 s: a restarted agent must
renew its previous run's lease before the fencer's deadline, and Python starting on a busy
2-core machine takes a while).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ha.agentcluster import SMALL_PG_CLUSTER, AgentCluster
from tests.ha.clusterops import call, decisions, during, hactl, log_since, log_size, status_of
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HOSTS = ["127.0.0.161", "127.0.0.162", "127.0.0.163"]
TTL = 10.0
BOOT = 90.0
SLOW = {
    "bootstrap": {
        "dcs": {
            **{"ttl": TTL, "loop_wait": 1, "retry_timeout": 2, "safety_margin": 2},
            "postgresql": {"parameters": dict(SMALL_PG_CLUSTER)},
        }
    }
}
DEMOTED = ("Demote", "fencing:", "StopPostgres", "lease deadline has passed")


@pytest.fixture
def cluster(pg_bindir: Path) -> Iterator[AgentCluster]:
    root = Path(tempfile.mkdtemp(prefix="hamgr-resume-", dir="/tmp"))
    os.chmod(root, 0o755)
    overrides = {f"m{i}": dict(SLOW) for i in (1, 2, 3)}
    c = AgentCluster(root, HOSTS, scope="resume", profile="default", member_overrides=overrides)
    failed = True
    try:
        c.start_all()
        primary = c.wait_primary(BOOT)
        c.wait_streaming([n for n in c.members if n != primary], BOOT)
        yield c
        failed = False
    finally:
        c.close()
        if failed:
            print(f"cluster directory kept: {root}\n{c.log_tails(40)}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def postmaster_alive(c: AgentCluster, name: str) -> int | None:
    pid = c.postmaster_pid(name)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def test_kill9_of_the_primarys_agent_resumes_leadership_without_a_demotion(
    cluster: AgentCluster,
) -> None:
    c = cluster
    primary = c.wait_primary(30)
    postmaster = postmaster_alive(c, primary)
    timeline = status_of(c, primary).get("timeline")
    assert postmaster is not None and isinstance(timeline, int)
    with c.connect(primary) as conn:
        conn.execute("CREATE TABLE resume (x int PRIMARY KEY)")
    offset = log_size(c, primary)

    c.kill9_agent(primary)  # the agent only: PostgreSQL and the fencer keep running
    assert postmaster_alive(c, primary) == postmaster
    c.start(primary)
    wait_for(
        lambda: "resumed leadership" in log_since(c, primary, offset),
        TTL,
        f"{primary}'s restarted agent resuming its leadership",
    )
    wait_for(
        lambda: "I am the leader" in (status_of(c, primary).get("reason") or ""),
        30,
        f"{primary} leading again",
    )

    seq = iter(range(1, 1_000_000))
    with c.connect(primary) as conn:

        def still_primary() -> None:
            conn.execute("INSERT INTO resume VALUES (%s)", (next(seq),))
            assert c.primaries() == [primary]

        # Past the old run's last deadline (ttl) and a few keepalives of the new one.
        writes = during(1.5 * TTL, still_primary, interval=0.2)
    assert writes > 10
    assert postmaster_alive(c, primary) == postmaster, "PostgreSQL was restarted or killed"
    assert status_of(c, primary).get("timeline") == timeline, "a failover happened"
    after = log_since(c, primary, offset)
    bad = [d for d in decisions(after) if any(w in d for w in DEMOTED)]
    assert bad == [], bad
    run_dir = c.members[primary].data_dir.with_name(f"{primary}-data.run")
    fenced = (run_dir / "hamgr-fencer.log").read_text(errors="replace")
    assert "FENCE " not in fenced, fenced[-2000:]


def insert_one(c: AgentCluster, name: str, table: str, value: int) -> None:
    with c.connect(name) as conn:
        conn.execute(f"INSERT INTO {table} VALUES (%s)", (value,))


def test_pause_keeps_hands_off_postgresql(cluster: AgentCluster) -> None:
    """Paused: the fencer is disarmed (shown in /patroni and hactl list), the primary is not
    demoted with the store unreachable for longer than ttl, and stopping its agent leaves it
    running without asking for a switchover."""
    c = cluster
    primary = c.wait_primary(30)
    replicas = [n for n in c.members if n != primary]
    postmaster = postmaster_alive(c, primary)
    with c.connect(primary) as conn:
        conn.execute("CREATE TABLE paused (x int PRIMARY KEY)")
    code, body = call(c, replicas[0], "PATCH", "/config", {"pause": True})
    assert code == 200 and body["pause"] is True, (code, body)
    wait_for(
        lambda: status_of(c, primary).get("fencer") == "disarmed",
        30,
        f"{primary} reporting its fencer disarmed",
    )
    listed = hactl(c, replicas[1], "list")
    assert listed.returncode == 0, listed.stderr
    assert "Fencer: disarmed (paused" in listed.stdout, listed.stdout
    offset = log_size(c, primary)

    # The store loses its quorum: the primary's lease can no longer be renewed.
    for r in replicas:
        c.kill9_agent(r)
    seq = iter(range(1, 1_000_000))
    writes = during(1.5 * TTL, lambda: insert_one(c, primary, "paused", next(seq)), 0.5)
    assert writes > 5
    assert postmaster_alive(c, primary) == postmaster, "PostgreSQL was stopped while paused"
    for r in replicas:
        c.start(r)
    wait_for(
        lambda: "paused: I am the leader" in (status_of(c, primary).get("reason") or ""),
        60,
        f"{primary} back in touch with the store",
    )

    assert c.terminate(primary, timeout=60) == 0
    assert postmaster_alive(c, primary) == postmaster, "stopping a paused agent stopped PostgreSQL"
    insert_one(c, primary, "paused", next(seq))
    after = log_since(c, primary, offset)
    assert "handing the primary over" not in after
    assert "PostgreSQL is left running" in after
    bad = [d for d in decisions(after) if any(w in d for w in DEMOTED)]
    assert bad == [], bad
    run_dir = c.members[primary].data_dir.with_name(f"{primary}-data.run")
    fenced = (run_dir / "hamgr-fencer.log").read_text(errors="replace")
    assert "FENCE " not in fenced, fenced[-2000:]


def test_a_stopping_agent_never_leaves_postgresql_running(cluster: AgentCluster) -> None:
    """SIGTERM to the primary's agent: it hands over, and after it exits its PostgreSQL is not
    running (the hand-over's last cycles decide to start it as a standby: not carried out)."""
    c = cluster
    primary = c.wait_primary(30)
    offset = log_size(c, primary)
    assert c.terminate(primary, timeout=90) == 0
    new = c.wait_primary(60, exclude=(primary,))
    assert new != primary

    def not_running() -> None:
        assert postmaster_alive(c, primary) is None, "the stopped agent left PostgreSQL running"

    during(3.0, not_running)
    after = log_since(c, primary, offset)
    assert "handing the primary over" in after


def test_a_paused_failover_waits_for_the_old_primary_to_stop(cluster: AgentCluster) -> None:
    """Paused: POST /failover is refused while the old primary runs (its agent does not
    confirm it stopped); once the operator stopped it, the failover promotes the candidate
    and the old primary is left stopped (hands off)."""
    c = cluster
    primary = c.wait_primary(30)
    candidate = next(n for n in c.members if n != primary)
    code, body = call(c, candidate, "PATCH", "/config", {"pause": True})
    assert code == 200 and body["pause"] is True, (code, body)
    wait_for(lambda: status_of(c, primary).get("pause") is True, 30, f"{primary} paused")
    code, body = call(c, candidate, "POST", "/failover", {"candidate": candidate})
    assert code == 409 and "two primaries" in body["error"], (code, body)
    assert c.primaries() == [primary]

    pid = postmaster_alive(c, primary)
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # the operator stops it (fast shutdown)
    wait_for(lambda: postmaster_alive(c, primary) is None, 60, f"{primary}'s PostgreSQL stopped")

    def its_agent_confirms() -> bool:
        code, cl = c.http(candidate, "/cluster")
        if code != 200:
            return False
        old = next((m for m in cl["members"] if m["name"] == primary), None)
        return old is not None and old["state"] != "running" and cl["leader"] is None

    wait_for(its_agent_confirms, 30, f"{primary}'s agent reporting PostgreSQL stopped")
    code, body = call(c, candidate, "POST", "/failover", {"candidate": candidate}, timeout=90)
    assert code == 200 and candidate in body["message"], (code, body)
    assert c.wait_primary(60) == candidate

    def old_left_stopped() -> None:
        assert postmaster_alive(c, primary) is None

    during(3.0, old_left_stopped)
