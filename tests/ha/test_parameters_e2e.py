"""Cluster-wide PostgreSQL parameters on a real 3-member cluster (agents, embedded store, real
PostgreSQL on 127.0.0.191-193): what ``hactl edit-config --set parameters.X=Y`` does.

A reloadable parameter reaches every member's running server (SHOW), except a member whose own
``postgresql.parameters`` sets it (its value wins, as in Patroni); a parameter that needs a
restart (max_connections, cluster-wide only) shows as "Pending restart" in ``hactl list`` for
every member until ``hactl restart`` restarts that member's PostgreSQL, and POST /restart with
``restart_pending`` restarts only where one is pending (``hactl restart --pending`` skips the
others). Every wait has a deadline; every process started is stopped by PID.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ha.agentcluster import SMALL_PG_CLUSTER, AgentCluster, cluster_of_test
from tests.ha.clusterops import call, hactl, try_sql
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTS = ["127.0.0.191", "127.0.0.192", "127.0.0.193"]
BOOT = 90.0
APPLY = 30.0
"""Seconds for a stored change to reach every member's PostgreSQL (a few loop_waits, with margin
for a machine shared by several test runs)."""
OWN_WORK_MEM = "8MB"
"""m3's own postgresql.parameters.work_mem, which must survive the cluster-wide change."""


@pytest.fixture
def cluster(pg_bindir: Path, request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "params", HOSTS, scope="params") as c:
        m3 = c.members["m3"].config
        config = yaml.safe_load(m3.read_text())
        config["postgresql"]["parameters"]["work_mem"] = OWN_WORK_MEM
        m3.write_text(yaml.safe_dump(config, sort_keys=False))
        c.start_all()
        yield c


def show(c: AgentCluster, name: str, parameter: str) -> str | None:
    """``SHOW parameter`` on member `name`, or None while it cannot answer."""
    rows = try_sql(c, name, f"SHOW {parameter}")
    return rows[0][0] if rows else None


def listed(c: AgentCluster, via: str) -> dict[str, dict[str, Any]]:
    """``hactl list -f json`` through member `via`: its rows by member name."""
    out = hactl(c, via, "list", "-f", "json")
    assert out.returncode == 0, out.stderr
    return {row["Member"]: row for row in json.loads(out.stdout)}


def pending_in_list(c: AgentCluster, via: str) -> set[str]:
    """The members that ``hactl list`` marks "Pending restart"."""
    return {n for n, row in listed(c, via).items() if row.get("Pending restart", "")}


def pending_here(c: AgentCluster, name: str) -> bool:
    """What member `name`'s GET /patroni says of a pending restart (True while unreachable)."""
    code, me = c.http(name, "/patroni")
    return code != 200 or me["pending_restart"] is not False


def reason(c: AgentCluster, name: str) -> str:
    """Member `name`'s last decision's reason, from its GET /patroni ("" when unreachable)."""
    code, me = c.http(name, "/patroni")
    return str(me["reason"]) if code == 200 else ""


def edit_config(c: AgentCluster, via: str, *assignments: str) -> None:
    args = [a for kv in assignments for a in ("--set", kv)]
    out = hactl(c, via, "edit-config", *args, "--force")
    assert out.returncode == 0, out.stderr


def test_edit_config_parameters_reach_every_member(cluster: AgentCluster) -> None:
    c = cluster
    primary = c.wait_primary(BOOT)
    replicas = [n for n in c.members if n != primary]
    c.wait_streaming(replicas, BOOT)
    names = sorted(c.members)
    assert show(c, "m3", "work_mem") == OWN_WORK_MEM
    start_connections = str(SMALL_PG_CLUSTER["max_connections"])
    assert {n: show(c, n, "max_connections") for n in names} == dict.fromkeys(
        names, start_connections
    )

    # 1. Reloadable parameters: every member's server runs with them, without a restart,
    #    except where a member's own value wins (m3's work_mem).
    edit_config(c, primary, "parameters.work_mem=64MB", "parameters.maintenance_work_mem=96MB")
    for n in names:
        wait_for(
            lambda n=n: show(c, n, "maintenance_work_mem") == "96MB",  # type: ignore[misc]
            APPLY,
            f"maintenance_work_mem=96MB on {n}",
        )
    assert {n: show(c, n, "work_mem") for n in names} == {
        **{n: "64MB" for n in names if n != "m3"},
        "m3": OWN_WORK_MEM,
    }
    assert pending_in_list(c, primary) == set(), "a reload needs no restart"

    # 1b. A value PostgreSQL refuses is not taken: the file goes back, the reason says so, and
    #     the servers keep the value in force. One hamgr can tell is refused at once.
    edit_config(c, primary, "parameters.maintenance_work_mem=banana")
    for n in names:
        wait_for(
            lambda n=n: "were refused" in reason(c, n),  # type: ignore[misc]
            APPLY,
            f"{n} reporting the refusal",
        )
        assert show(c, n, "maintenance_work_mem") == "96MB"
        conf = (c.members[n].data_dir / "hamgr.conf").read_text()
        assert "banana" not in conf and "maintenance_work_mem = '96MB'" in conf, conf
    edit_config(c, primary, "parameters.maintenance_work_mem=96MB")
    bad = hactl(c, primary, "edit-config", "--set", "parameters.max_connections=lots", "--force")
    assert bad.returncode == 1 and "max_connections='lots' must be an integer" in bad.stderr, bad

    # 2. A parameter that needs a restart: every member shows it pending, in hactl list (a
    #    "Pending restart" column as patronictl's), GET /patroni and GET /cluster.
    raised = int(start_connections) + 10
    edit_config(c, primary, f"parameters.max_connections={raised}")
    wait_for(
        lambda: pending_in_list(c, primary) == set(names),
        APPLY,
        "every member marked 'Pending restart' in hactl list",
    )
    row = listed(c, primary)[replicas[0]]
    assert "max_connections" in row["Pending restart"], row
    pretty = hactl(c, primary, "list")
    assert pretty.returncode == 0 and "Pending restart" in pretty.stdout, pretty.stdout
    for n in names:
        code, me = c.http(n, "/patroni")
        assert code == 200 and me["pending_restart"] is True, me
        assert me["pending_restart_reason"] == ["max_connections"], me
        assert show(c, n, "max_connections") == start_connections  # not yet in force
    code, cl = c.http(primary, "/cluster")
    assert code == 200 and all(m["pending_restart"] for m in cl["members"]), cl

    # 3. hactl restart of one replica: its PostgreSQL runs with the new value, and it is no
    #    longer pending, at once in its own /patroni and soon in the list; the others still are.
    target, other = replicas
    out = hactl(c, primary, "restart", target, "--force")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: show(c, target, "max_connections") == str(raised), APPLY, "new value")
    wait_for(lambda: not pending_here(c, target), APPLY, f"{target}'s /patroni not pending")
    wait_for(
        lambda: pending_in_list(c, primary) == set(names) - {target},
        APPLY,
        f"{target} no longer pending in hactl list",
    )
    c.wait_streaming([target], BOOT)

    # 4. restart_pending (hactl restart --pending) restarts where one is pending, and is
    #    refused, restarting nothing, where none is.
    out = hactl(c, primary, "restart", other, "--pending", "--force")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: show(c, other, "max_connections") == str(raised), APPLY, "new value")
    wait_for(lambda: not pending_here(c, other), APPLY, f"{other}'s /patroni not pending")
    wait_for(
        lambda: pending_in_list(c, primary) == {primary},
        APPLY,
        "only the primary still pending in hactl list",
    )
    postmaster = c.postmaster_pid(other)
    skipped = hactl(c, primary, "restart", other, "--pending", "--force")
    assert skipped.returncode == 0 and "No member to restart" in skipped.stdout, skipped
    assert c.postmaster_pid(other) == postmaster, "restarted although nothing was pending"
    code, body = call(c, other, "POST", "/restart", {"restart_pending": True})
    assert code == 503 and "pending restart flag is not set" in body["error"], body
    assert c.postmaster_pid(other) == postmaster, "restarted although nothing was pending"
    c.wait_streaming(replicas, BOOT)
    assert c.primaries() == [primary]
