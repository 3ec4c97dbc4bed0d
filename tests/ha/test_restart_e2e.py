"""Operator restarts on a real 3-member cluster (agents, embedded store, real PostgreSQL on
127.0.0.244-246): POST/DELETE /restart, hactl restart and hactl flush (hamgr/ha/restartjob.py).

One cluster for the module, the tests in order: a restart scheduled on a replica runs at its
time and not before (its new postmaster started after the scheduled instant); a scheduled
restart is cancelled (DELETE /restart, hactl flush) and a scheduled switchover too; a scheduled
restart is cancelled by a restart meanwhile (as Patroni); ``hactl
restart --pending`` restarts only the member whose PostgreSQL waits for a restart; a replica
restarted while the loop runs is never started, rewound or rebuilt by the loop meanwhile (the
restart is the loop's own step); last, a primary whose lease cannot be confirmed (its peers'
agents frozen: no store quorum) is not restarted. Every wait has a deadline; every process is
stopped by PID.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ha.agentcluster import AgentCluster, cluster_of_test
from tests.ha.clusterops import call, decisions, hactl, log_since, log_size, sql
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTS = ["127.0.0.244", "127.0.0.245", "127.0.0.246"]
BOOT = 90.0
SOON = 30.0
"""Seconds for a change to show (a few loop_waits, with margin for a shared machine)."""
AHEAD = 6.0
"""How far ahead the test schedules the restart it watches run."""
LOOP_TOUCHES_POSTGRES = ("StartReplica", "StartPostgres", "Reinitialize", "Reclone", "Rewind")


@pytest.fixture(scope="module")
def cluster(pg_bindir: Path, request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "restart", HOSTS, scope="rst") as c:
        c.start_all()
        primary = c.wait_primary(BOOT)
        c.wait_streaming([n for n in c.members if n != primary], BOOT)
        yield c


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


def roles(c: AgentCluster) -> tuple[str, list[str]]:
    primary = c.wait_primary(BOOT)
    return primary, sorted(n for n in c.members if n != primary)


def members(c: AgentCluster, via: str) -> dict[str, dict[str, Any]]:
    code, cl = c.http(via, "/cluster")
    return {m["name"]: m for m in cl["members"]} if code == 200 else {}


def started_at(c: AgentCluster, name: str) -> float:
    """When member `name`'s running postmaster started (wall clock, from PostgreSQL)."""
    return float(sql(c, name, "SELECT extract(epoch FROM pg_postmaster_start_time())")[0][0])


def test_a_scheduled_restart_runs_at_its_time_not_before(cluster: AgentCluster) -> None:
    c = cluster
    primary, (target, _) = roles(c)
    before = c.postmaster_pid(target)
    at = time.time() + AHEAD
    code, body = call(c, target, "POST", "/restart", {"schedule": _iso(at), "role": "replica"})
    assert (code, body) == (202, {"message": "Restart scheduled"}), body
    shown = wait_for(
        lambda: members(c, primary).get(target, {}).get("scheduled_restart"),
        SOON,
        "the scheduled restart in /cluster",
    )
    assert shown["schedule"] == _iso(at) and shown["role"] == "replica", shown
    code, body = call(c, target, "POST", "/restart", {"schedule": _iso(at + 60)})
    assert code == 409 and "already scheduled" in body["error"], body
    wait_for(lambda: c.postmaster_pid(target) not in (None, before), AHEAD + SOON, "the restart")
    c.wait_streaming([target], BOOT)
    assert started_at(c, target) >= at, "restarted before its time"
    wait_for(
        lambda: "scheduled_restart" not in members(c, primary).get(target, {"x": 1}),
        SOON,
        "the schedule gone from /cluster once done",
    )


def test_cancel_a_scheduled_restart_and_switchover(cluster: AgentCluster) -> None:
    c = cluster
    primary, (a, b) = roles(c)
    pids = {n: c.postmaster_pid(n) for n in (a, b)}
    at = _iso(time.time() + 3600)
    assert call(c, a, "POST", "/restart", {"schedule": at})[0] == 202
    assert call(c, a, "DELETE", "/restart") == (200, {"message": "scheduled restart deleted"})
    assert call(c, a, "DELETE", "/restart") == (404, {"error": "no restarts are scheduled"})
    out = hactl(c, primary, "restart", b, "--scheduled", at, "--force")
    assert out.returncode == 0 and f"restart scheduled on {b}" in out.stdout, out.stderr
    wait_for(lambda: members(c, primary)[b].get("scheduled_restart"), SOON, "b's schedule")
    out = hactl(c, primary, "flush", "rst", b, "restart")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"Success: scheduled restart deleted for member {b}\n", out.stdout
    wait_for(lambda: "scheduled_restart" not in members(c, primary)[b], SOON, "flushed")

    code, body = call(
        c, primary, "POST", "/switchover", {"leader": primary, "candidate": a, "scheduled_at": at}
    )
    assert code == 202, body
    code, cl = c.http(b, "/cluster")
    assert cl["scheduled_switchover"] == {"at": at, "from": primary, "to": a}, cl
    out = hactl(c, b, "flush", "rst", "switchover")
    assert (out.returncode, out.stdout) == (0, "Success: scheduled switchover deleted\n"), out
    code, cl = c.http(b, "/cluster")
    assert cl["scheduled_switchover"] is None and cl["switchover"] is None, cl
    assert call(c, b, "DELETE", "/switchover") == (404, {"error": "no switchover is scheduled"})
    assert {n: c.postmaster_pid(n) for n in (a, b)} == pids, "a cancelled restart ran"
    assert c.primaries() == [primary]


def test_a_restart_meanwhile_cancels_the_scheduled_one(cluster: AgentCluster) -> None:
    """Patroni's rule: once PostgreSQL was restarted after a restart was scheduled, the
    scheduled one is cancelled (the restart it asked for happened)."""
    c = cluster
    primary, (a, _) = roles(c)
    assert call(c, a, "POST", "/restart", {"schedule": _iso(time.time() + 3600)})[0] == 202
    wait_for(lambda: members(c, primary)[a].get("scheduled_restart"), SOON, "a's schedule")
    before = started_at(c, a)
    assert call(c, a, "POST", "/restart", {}) == (200, {"message": "restarted successfully"})
    wait_for(
        lambda: "scheduled_restart" not in members(c, primary)[a],
        SOON,
        "the schedule cancelled once PostgreSQL restarted meanwhile",
    )
    assert started_at(c, a) > before
    assert call(c, a, "DELETE", "/restart") == (404, {"error": "no restarts are scheduled"})


def test_pending_restarts_only_the_pending_member(cluster: AgentCluster) -> None:
    c = cluster
    primary, replicas = roles(c)
    # A parameter that needs a restart, on the primary only (postgresql.auto.conf is local).
    sql(c, primary, "ALTER SYSTEM SET max_files_per_process = 900")
    sql(c, primary, "SELECT pg_reload_conf()")
    wait_for(
        lambda: {n for n, m in members(c, primary).items() if m["pending_restart"]} == {primary},
        SOON,
        "only the primary pending in /cluster",
    )
    pids = {n: c.postmaster_pid(n) for n in c.members}
    out = hactl(c, replicas[0], "restart", "--pending", "--force")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"Success: restarted PostgreSQL on {primary}\n", out.stdout
    assert sql(c, primary, "SHOW max_files_per_process") == [("900",)]
    assert c.postmaster_pid(primary) != pids[primary]
    assert {n: c.postmaster_pid(n) for n in replicas} == {n: pids[n] for n in replicas}
    assert c.primaries() == [primary], "the primary restarted as primary, keeping its key"
    _, me = c.http(primary, "/patroni")
    assert me["pending_restart"] is False and me["fencer"] == "armed", me
    c.wait_streaming(replicas, BOOT)


def test_the_loop_never_acts_on_a_replica_mid_restart(cluster: AgentCluster) -> None:
    c = cluster
    _, (target, _) = roles(c)
    before = c.postmaster_pid(target)
    offset = log_size(c, target)
    for _ in range(3):  # a few restarts, each beside running loop cycles
        code, body = call(c, target, "POST", "/restart", {"timeout": 60}, timeout=90)
        assert (code, body) == (200, {"message": "restarted successfully"}), body
    c.wait_streaming([target], BOOT)
    text = log_since(c, target, offset)
    assert text.count("restarting PostgreSQL (replica") == 3, text
    acted = [d for d in decisions(text) if any(k in d for k in LOOP_TOUCHES_POSTGRES)]
    assert acted == [], acted
    assert c.postmaster_pid(target) != before


def test_a_primary_without_a_confirmed_lease_is_not_restarted(cluster: AgentCluster) -> None:
    c = cluster
    primary, replicas = roles(c)
    before = c.postmaster_pid(primary)
    frozen = []
    try:
        for n in replicas:  # their store members too: the primary's store has no quorum
            c.sigstop_agent(n)
            frozen.append(n)
        code, body = call(c, primary, "POST", "/restart", {"timeout": 30}, timeout=60)
        assert code == 503, body
        said = body["error"]
        assert any(
            why in said
            for why in ("the store is unreachable", "(fenced)", "does not hold the leader key",
                        "PostgreSQL is not running")
        ), said  # fmt: skip
        assert c.postmaster_pid(primary) in (before, None), "restarted without its lease"
    finally:
        for n in frozen:
            c.sigcont_agent(n)
