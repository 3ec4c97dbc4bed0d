"""Clusters that change shape, live: real `hamgr agent` processes, real PostgreSQL, real sockets.

- A 3-member cluster loses a replica's host for good (SIGKILL of agent and PostgreSQL, its
  files removed); `hactl members remove` takes it out of the store, a fresh host (new name, new
  address, empty directories) is added with `hactl members add`, joins as a learner, becomes a
  voter and clones PostgreSQL: three members again, every replica streaming, while a writer
  keeps committing on the primary, which never changes. Unsafe changes are refused on the way.
- Two database hosts and a witness (a configuration without a postgresql section: its agent
  runs a store member only): losing the witness changes nothing; losing the primary's host
  promotes the replica.
- A 5-member store (three database hosts and two witnesses): a dead witness is removed and a
  new one added the same way, with the refusals that five members allow.

Each test has its own AgentCluster on 127.0.0.201-209 (fast timing profile) in /tmp; waits are
on conditions with deadlines; everything started is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import Writer, during, hactl, has_row, sql
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOOT = 90.0
CHANGE = 60.0
FAILOVER = 30.0


@contextlib.contextmanager
def cluster_on(
    request: pytest.FixtureRequest, hosts: list[str], witnesses: tuple[str, ...] = ()
) -> Iterator[AgentCluster]:
    """A new cluster (not started) on `hosts`; closed whatever happens, its directory removed
    unless a test failed or IT_KEEP_CLUSTER is set."""
    root = Path(tempfile.mkdtemp(prefix="hamgr-members-", dir="/tmp"))
    os.chmod(root, 0o755)
    c = AgentCluster(root, hosts, scope="members", witnesses=witnesses)
    passed = False
    try:
        yield c
        passed = True
    finally:
        for name, m in list(c.members.items()):
            if m.proc is not None and m.proc.poll() is None:
                c.kill9_agent(name)
                c.kill9_postgres(name)
        c.close()
        if not passed or os.environ.get("IT_KEEP_CLUSTER"):
            print(f"cluster directory kept: {root}\n{c.log_tails(40)}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def members(c: AgentCluster, via: str) -> dict[str, dict[str, Any]]:
    """`hactl members -f json` through member `via`: name -> its row ({} if it failed)."""
    out = hactl(c, via, "members", "-f", "json")
    if out.returncode != 0:
        return {}
    return {row["Member"]: row for row in json.loads(out.stdout)}


def voters_caught_up(c: AgentCluster, via: str, names: set[str]) -> bool:
    """Exactly `names` are the store's members, all voters, each answering with its applied
    index."""
    rows = members(c, via)
    return set(rows) == names and all(
        r["Role"].startswith("voter") and isinstance(r["Applied"], int) for r in rows.values()
    )


def refused(c: AgentCluster, via: str, *args: str) -> str:
    """Run a hactl members change that must be refused (409); its error line. A 503 (the
    store busy electing, say) is asked again."""

    def ask() -> str | None:
        out = hactl(c, via, "members", *args)
        assert out.returncode != 0, f"hactl members {' '.join(args)} was not refused"
        return out.stderr if "409" in out.stderr else None

    reason = wait_for(ask, CHANGE, f"hactl members {' '.join(args)} refused", 0.5)
    assert "refused" in reason
    return str(reason)


def done(c: AgentCluster, via: str, *args: str) -> str:
    out = hactl(c, via, "members", *args)
    assert out.returncode == 0, f"hactl members {' '.join(args)}: {out.stderr}"
    return out.stdout


def test_replace_a_dead_host_without_an_outage_of_the_primary(
    pg_bindir: Path, request: pytest.FixtureRequest
) -> None:
    hosts = [f"127.0.0.{201 + i}" for i in range(3)]
    with cluster_on(request, hosts) as c:
        c.start_all()
        primary = c.wait_primary(BOOT)
        replicas = [n for n in c.members if n != primary]
        c.wait_streaming(replicas, BOOT)
        wait_for(
            lambda: voters_caught_up(c, primary, set(c.members)), CHANGE, "3 named voters", 0.5
        )
        sql(c, primary, "CREATE TABLE replace_rows (x int PRIMARY KEY)")
        writer = Writer(c, "replace_rows", limit=240.0)
        writer.start()
        try:
            committed = wait_for(lambda: writer.count() or None, 30, "the writer committing")

            def progress(what: str) -> None:
                """The writer committed more since the last check (no outage)."""
                nonlocal committed
                now = wait_for(
                    lambda: writer.count() if writer.count() > committed else None,
                    10,
                    f"the writer committing after {what}",
                )
                committed = now

            dead, survivor = replicas
            c.destroy(dead)
            progress("a replica's host was lost")
            row = wait_for(
                lambda: members(c, primary).get(dead, {}).get("Applied") == "unreachable" or None,
                CHANGE,
                f"{dead} shown unreachable",
                0.5,
            )
            assert row
            # Removing the live replica now would leave {survivor, dead}: one of two answers.
            reason = refused(c, primary, "remove", survivor, "--force")
            assert "no majority" in reason
            assert "removed" in done(c, primary, "remove", dead, "--force")
            wait_for(
                lambda: voters_caught_up(c, primary, {primary, survivor}), CHANGE, "2 voters", 0.5
            )
            progress(f"{dead} was removed")

            new = c.add_host("m4", "127.0.0.204", node_id=4)
            added = done(c, survivor, "add", new.name, f"{new.host}:7000")
            assert "store member 4" in added and "learner" in added
            # Its agent is not started yet: it stays a learner, so the next add must wait.
            assert members(c, primary)["m4"]["Role"] == "learner"
            reason = refused(c, primary, "add", "m5", "127.0.0.205:7000")
            assert "another change is pending" in reason and "m4" in reason
            c.start(new.name)
            wait_for(
                lambda: voters_caught_up(c, primary, {primary, survivor, new.name}),
                CHANGE,
                "m4 a voter, caught up",
                0.5,
            )
            c.wait_streaming([survivor, new.name], CHANGE)
            progress("m4 joined")
        finally:
            writer.stop()
        assert writer.errors == 0, f"the writer saw {writer.errors} errors"
        assert set(writer.by_member) == {primary}, f"writes went to {writer.by_member}"
        assert c.primaries() == [primary]
        last = writer.acked[-1]
        for name in (survivor, new.name):
            wait_for(partial(has_row, c, name, "replace_rows", last), 30, f"last row on {name}")
        # The new host's agent started only once its store member voted, then cloned.
        log = new.log.read_text(errors="replace")
        assert "PostgreSQL waits until it votes" in log


def test_two_database_hosts_and_a_witness(pg_bindir: Path, request: pytest.FixtureRequest) -> None:
    hosts = [f"127.0.0.{205 + i}" for i in range(3)]
    with cluster_on(request, hosts, witnesses=("m3",)) as c:
        c.start_all()
        primary = c.wait_primary(BOOT)
        replica = next(n for n in ("m1", "m2") if n != primary)
        c.wait_streaming([replica], BOOT)
        wait_for(lambda: voters_caught_up(c, primary, {"m1", "m2", "m3"}), CHANGE, "3 voters", 0.5)
        sql(c, primary, "CREATE TABLE witness_rows (x int PRIMARY KEY)")

        # The witness dies: the two database hosts are still a majority; nothing changes.
        c.kill9_agent("m3")
        seq = iter(range(1, 10_000))

        def still_primary() -> None:
            assert c.primaries() == [primary]
            sql(c, primary, "INSERT INTO witness_rows VALUES (%s)", (next(seq),))

        assert during(3 * 2.0, still_primary) > 0  # three ttl of the fast profile
        assert c.wait_primary(FAILOVER) == primary

        # Back, caught up; then the primary's host dies: the replica and the witness elect.
        c.start("m3")
        wait_for(lambda: voters_caught_up(c, replica, {"m1", "m2", "m3"}), CHANGE, "m3 back", 0.5)
        c.kill9_agent(primary)
        c.kill9_postgres(primary)
        assert c.wait_primary(FAILOVER, exclude=(primary,)) == replica
        sql(c, replica, "INSERT INTO witness_rows VALUES (100000)")


def test_five_member_store_replaces_a_witness(
    pg_bindir: Path, request: pytest.FixtureRequest
) -> None:
    hosts = [f"127.0.0.{201 + i}" for i in range(5)]
    with cluster_on(request, hosts, witnesses=("m4", "m5")) as c:
        c.start_all()
        primary = c.wait_primary(BOOT)
        replicas = [n for n in ("m1", "m2", "m3") if n != primary]
        c.wait_streaming(replicas, BOOT)
        wait_for(lambda: voters_caught_up(c, primary, set(c.members)), CHANGE, "5 voters", 0.5)

        c.destroy("m5")
        c.kill9_agent("m4")  # down for now, not gone: two of five do not answer
        wait_for(
            lambda: all(
                members(c, primary).get(n, {}).get("Applied") == "unreachable" for n in ("m4", "m5")
            ),
            CHANGE,
            "m4 and m5 shown unreachable",
            0.5,
        )
        # Removing a live member would leave four voters of which two answer.
        assert "no majority" in refused(c, primary, "remove", replicas[0], "--force")
        done(c, primary, "remove", "m5", "--force")
        c.start("m4")
        wait_for(
            lambda: voters_caught_up(c, primary, {"m1", "m2", "m3", "m4"}), CHANGE, "4 voters", 0.5
        )
        new = c.add_host("m6", "127.0.0.208", node_id=6, witness=True)
        assert "store member 6" in done(c, primary, "add", "m6", f"{new.host}:7000", "--id", "6")
        c.start("m6")
        wait_for(
            lambda: voters_caught_up(c, primary, set(c.members)), CHANGE, "5 voters again", 0.5
        )
        assert c.primaries() == [primary]
