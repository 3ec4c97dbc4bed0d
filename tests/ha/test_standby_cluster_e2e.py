"""A standby cluster and permanent slots with real agents and PostgreSQL, as in Patroni.

Two local clusters: the primary cluster ``main13`` (127.0.13.1-2) declares the permanent slot
``standby_b`` (``bootstrap.dcs.slots``); the standby cluster ``standby13`` (127.0.13.11-12, and
a store witness on .13 so that its store keeps a quorum when a member dies) is bootstrapped with
``bootstrap.dcs.standby_cluster`` pointing at main13's primary, through that slot.
The tests run in order on the module's clusters: the standby cluster clones and
follows (writes on the primary cluster reach both its members; the holder answers
/standby-leader, never /primary); its standby leader dies and the other member becomes standby
leader without promoting; ``hactl switchover`` and ``hactl failover --candidate`` move the
standby leader's role back and forth, nobody ever leaving recovery (sampled on both members
throughout); removing ``standby_cluster`` with ``hactl edit-config`` promotes it;
a switchover of the primary cluster finds the permanent slot on the new primary too.
Every wait has a deadline; every process started is stopped by PID.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ha.agentcluster import SMALL_PG_CLUSTER, AgentCluster, cluster_of_test
from tests.ha.clusterops import call, hactl, has_row, sql, try_sql
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MAIN_HOSTS = ["127.0.13.1", "127.0.13.2"]
STANDBY_HOSTS = ["127.0.13.11", "127.0.13.12", "127.0.13.13"]
PG_MEMBERS = ("m1", "m2")
"""The standby cluster's members that run PostgreSQL (m3 is a store witness)."""
SLOT = "standby_b"
BOOT = 90.0
MOVE = 60.0
"""Seconds for a failover, a promotion or a write to travel (margin for a shared machine)."""


def _bootstrap(**dcs: Any) -> dict[str, Any]:
    return {"dcs": {"postgresql": {"parameters": dict(SMALL_PG_CLUSTER)}, **dcs}}


@pytest.fixture(scope="module")
def main(pg_bindir: Path, request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    boot = {"bootstrap": _bootstrap(slots={SLOT: {"type": "physical"}})}
    overrides = {"m1": boot, "m2": boot}
    with cluster_of_test(
        request, "main13", MAIN_HOSTS, scope="main13", member_overrides=overrides
    ) as c:
        c.start_all()
        first = c.wait_primary(BOOT)
        c.wait_streaming([n for n in c.members if n != first], BOOT)
        yield c


@pytest.fixture(scope="module")
def standby(main: AgentCluster, request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    remote = {"host": main.members[main.wait_primary(BOOT)].host, "primary_slot_name": SLOT}
    boot = {"bootstrap": _bootstrap(standby_cluster=remote)}
    overrides = {"m1": boot, "m2": boot}
    with cluster_of_test(
        request,
        "standby13",
        STANDBY_HOSTS,
        scope="standby13",
        member_overrides=overrides,
        witnesses=("m3",),
    ) as c:
        c.start_all()
        yield c


def standby_leader(c: AgentCluster) -> str | None:
    """The one member answering GET /standby-leader 200, if exactly one does."""
    found = [n for n in PG_MEMBERS if c.http(n, "/standby-leader", 1.0)[0] == 200]
    return found[0] if len(found) == 1 else None


def slots_on(c: AgentCluster, name: str) -> set[str]:
    rows = try_sql(c, name, "SELECT slot_name FROM pg_replication_slots") or []
    return {r[0] for r in rows}


def reported(c: AgentCluster, name: str) -> list[str]:
    """The replication slots member `name`'s GET /patroni reports it keeps."""
    code, body = c.http(name, "/patroni")
    return list(body.get("replication_slots", [])) if code == 200 else []


def wait_row(c: AgentCluster, name: str, value: int) -> None:
    """Until member `name` holds row `value` of table t13."""
    wait_for(lambda: has_row(c, name, "t13", value), MOVE, f"row {value} on {name}")


def roles(c: AgentCluster, via: str) -> dict[str, str]:
    """``hactl list -f json`` through `via`: each member's Role column."""
    out = hactl(c, via, "list", "-f", "json")
    assert out.returncode == 0, out.stderr
    return {row["Member"]: row["Role"] for row in json.loads(out.stdout)}


def test_a_standby_cluster_clones_the_primary_cluster_and_follows_it(
    main: AgentCluster, standby: AgentCluster
) -> None:
    primary = main.wait_primary(MOVE)
    assert SLOT in slots_on(main, primary), "the permanent slot is created on the primary"
    wait_for(lambda: SLOT in reported(main, primary), MOVE, f"/patroni reporting {SLOT}")
    leader = wait_for(lambda: standby_leader(standby), BOOT, "a standby leader")
    other = next(n for n in PG_MEMBERS if n != leader)
    standby.wait_streaming([other], BOOT)
    # As Patroni: /leader 200 on the standby leader, /primary 503; nobody is primary.
    assert standby.http(leader, "/leader")[0] == 200
    assert standby.http(leader, "/primary")[0] == 503
    assert standby.primaries() == []
    assert standby.http(leader, "/patroni")[1]["role"] == "standby_leader"
    shown = roles(standby, other)
    assert (shown[leader], shown[other]) == ("Standby Leader", "Replica")
    # The standby leader streams from the primary cluster through the declared slot.
    query = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
    wait_for(lambda: sql(main, primary, query, (SLOT,)) == [(True,)], MOVE, f"{SLOT} in use")
    sql(main, primary, "CREATE TABLE t13 (x int)")
    sql(main, primary, "INSERT INTO t13 VALUES (1)")
    for name in PG_MEMBERS:
        wait_row(standby, name, 1)


def test_the_standby_leader_fails_over_without_promoting(
    main: AgentCluster, standby: AgentCluster
) -> None:
    old = wait_for(lambda: standby_leader(standby), MOVE, "a standby leader")
    new = next(n for n in PG_MEMBERS if n != old)
    standby.kill9_agent(old)
    standby.kill9_postgres(old)
    wait_for(lambda: standby_leader(standby) == new, MOVE, f"{new} as standby leader")
    assert standby.primaries() == []
    sql(main, main.wait_primary(MOVE), "INSERT INTO t13 VALUES (2)")
    wait_row(standby, new, 2)
    # The old standby leader comes back as a member that follows the new one.
    standby.start(old)
    standby.wait_streaming([old], BOOT)
    wait_row(standby, old, 2)


class RecoverySampler(threading.Thread):
    """Asks every PostgreSQL member ``pg_is_in_recovery()`` over and over, until stopped or
    ``limit`` seconds: ``seen[name]`` holds each answer (None: it could not answer then)."""

    def __init__(self, c: AgentCluster, limit: float = 4 * MOVE) -> None:
        super().__init__(name="recovery-sampler", daemon=True)
        self.c, self.limit = c, limit
        self.seen: dict[str, list[bool | None]] = {n: [] for n in PG_MEMBERS}
        self._halt = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._halt.is_set() and time.monotonic() < end:
            for name in PG_MEMBERS:
                rows = try_sql(self.c, name, "SELECT pg_is_in_recovery()")
                self.seen[name].append(rows[0][0] if rows else None)
            self._halt.wait(0.05)

    def stop(self) -> dict[str, list[bool | None]]:
        self._halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the sampler did not stop"
        return self.seen


def move_standby_leader(
    main: AgentCluster, standby: AgentCluster, via: str, to: str, row: int, *args: str
) -> None:
    """``hactl ARGS --force`` through member `via`, then: `to` is the standby leader (GET
    /standby-leader 200 there), streams from the primary cluster through the slot, and a row
    written there reaches both members."""
    out = hactl(standby, via, *args, "--force")
    assert out.returncode == 0, out.stderr
    assert f"over to {to}" in out.stdout, out.stdout
    assert wait_for(lambda: standby_leader(standby), MOVE, f"{to} as standby leader") == to
    assert standby.http(to, "/standby-leader")[0] == 200
    primary = main.wait_primary(MOVE)
    query = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
    wait_for(lambda: sql(main, primary, query, (SLOT,)) == [(True,)], MOVE, f"{SLOT} in use")
    sql(main, primary, "INSERT INTO t13 VALUES (%s)", (row,))
    for name in PG_MEMBERS:
        wait_row(standby, name, row)


def test_switchover_and_failover_move_the_standby_leader_without_promoting(
    main: AgentCluster, standby: AgentCluster
) -> None:
    old = wait_for(lambda: standby_leader(standby), MOVE, "a standby leader")
    new = next(n for n in PG_MEMBERS if n != old)
    standby.wait_streaming([new], MOVE)
    sampler = RecoverySampler(standby)
    sampler.start()
    try:
        move_standby_leader(main, standby, new, new, 10, "switchover", "--candidate", new)
        assert standby.http(old, "/standby-leader")[0] == 503
        standby.wait_streaming([old], MOVE)
        move_standby_leader(main, standby, new, old, 11, "failover", "--candidate", old)
    finally:
        seen = sampler.stop()
    assert standby.primaries() == []
    for name, answers in seen.items():
        assert False not in answers, f"{name} left recovery: {answers}"
        assert answers.count(True) >= 2, f"{name} was hardly sampled: {answers}"


def test_removing_standby_cluster_promotes_the_standby_leader(standby: AgentCluster) -> None:
    leader = wait_for(lambda: standby_leader(standby), MOVE, "a standby leader")
    other = next(n for n in PG_MEMBERS if n != leader)
    out = hactl(standby, other, "edit-config", "--set", "standby_cluster=null", "--force")
    assert out.returncode == 0, out.stderr
    assert standby.wait_primary(MOVE) == leader
    assert standby_leader(standby) is None
    sql(standby, leader, "INSERT INTO t13 VALUES (3)")
    wait_row(standby, other, 3)
    assert roles(standby, other)[leader] == "Leader"


def test_permanent_slots_follow_the_primary_through_a_switchover(main: AgentCluster) -> None:
    old = main.wait_primary(MOVE)
    new = next(n for n in main.members if n != old)
    code, body = call(main, new, "POST", "/switchover", {"leader": old, "candidate": new})
    assert code == 200, body
    assert main.wait_primary(MOVE) == new
    wait_for(lambda: SLOT in slots_on(main, new), MOVE, f"slot {SLOT} on the new primary")
    wait_for(lambda: SLOT in reported(main, new), MOVE, f"{new}'s /patroni reporting {SLOT}")
    code, config = call(main, new, "GET", "/config")
    assert config["slots"] == {SLOT: {"type": "physical"}}
