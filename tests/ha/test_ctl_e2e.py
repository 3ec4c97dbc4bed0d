"""hactl topology, dsn, query, version, edit-config (editor, --apply, --replace) and remove,
run as real subprocesses against one cluster of three real agents with real PostgreSQL.

One cluster serves the whole module (the commands read, or change harmless settings and
put them back). ``remove`` wipes a second scope, ``other``, that this test writes into the
same store, so the running cluster keeps its keys; the running cluster itself is refused
because its primary holds the leader key.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hamgr import __version__
from hamgr.agent.storemember import settings_from_config
from hamgr.config import load_config
from hamgr.raft.client.storeclient import StoreClient
from tests.ha.agentcluster import API_AUTH, PASSWORD, AgentCluster, cluster_of_test
from tests.ha.clusterops import call
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTS = ["127.0.0.231", "127.0.0.232", "127.0.0.233"]
BOOT = 120.0


@pytest.fixture(scope="module")
def booted(pg_bindir: Path, request: pytest.FixtureRequest) -> Iterator[tuple[AgentCluster, str]]:
    """The cluster and its primary, every replica streaming."""
    with cluster_of_test(request, "ctl", HOSTS, scope="ctl") as c:
        c.start_all()
        primary = c.wait_primary(BOOT)
        c.wait_streaming([n for n in c.members if n != primary], BOOT)
        yield c, primary


def hactl(
    c: AgentCluster, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hactl --url <m1's API> --username admin ARGS`` (the options before the command, as
    query needs: its own -c and --username are the SQL and the database user)."""
    argv = [sys.executable, "-m", "hamgr.cli.hactl", "--url", c.members["m1"].api]
    environ = {**os.environ, "HACTL_PASSWORD": API_AUTH[1]}
    environ.pop("PGPASSWORD", None)
    environ.update(env or {})
    return subprocess.run(
        [*argv, "--username", API_AUTH[0], *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}{done.stdout}"
    return done.stdout


def failed(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 1, f"exit {done.returncode}: {done.stderr}{done.stdout}"
    assert message in done.stderr, done.stderr


DB = {"PGPASSWORD": PASSWORD}


def test_topology_puts_the_primary_first_and_its_replicas_below(
    booted: tuple[AgentCluster, str],
) -> None:
    c, primary = booted
    out = ok(hactl(c, "topology"))
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[1].strip() == "Member"
    members = [r.split("|")[1].strip() for r in rows[1:]]
    replicas = sorted(n for n in c.members if n != primary)
    assert members == [primary, *(f"+ {n}" for n in replicas)], out
    assert "Leader" in rows[1] and all("Replica" in r for r in rows[2:]), out
    assert out.splitlines()[0].startswith("+ Cluster: ctl ")


def test_dsn_of_the_primary_a_member_and_a_role(booted: tuple[AgentCluster, str]) -> None:
    c, primary = booted
    m = c.members[primary]
    assert ok(hactl(c, "dsn")).strip() == f"host={m.host} port={m.pg_port}"
    other = next(n for n in c.members if n != primary)
    o = c.members[other]
    assert ok(hactl(c, "dsn", other)).strip() == f"host={o.host} port={o.pg_port}"
    assert ok(hactl(c, "dsn", "-m", other)).strip() == f"host={o.host} port={o.pg_port}"
    replica = ok(hactl(c, "dsn", "-r", "replica")).strip()
    assert replica != f"host={m.host} port={m.pg_port}" and replica.startswith("host=127.0.0.23")
    failed(hactl(c, "dsn", "m9"), "no member named m9 in cluster ctl (members: m1, m2, m3)")
    failed(hactl(c, "dsn", other, "-r", "replica"), "--role and a member name are mutually")


def test_query_runs_sql_where_asked_and_prints_every_format(
    booted: tuple[AgentCluster, str], tmp_path: Path
) -> None:
    c, primary = booted
    out = ok(
        hactl(
            c,
            "query",
            "-U",
            "postgres",
            "-c",
            "CREATE TABLE ctl13 (id int, name text); INSERT INTO ctl13 VALUES (1, 'a'), (2, NULL)",
            env=DB,
        )
    )
    assert out.split() == ["CREATE", "TABLE", "INSERT", "0", "2"], out
    # The default is the primary; -r primary checks it too (pg_is_in_recovery false).
    sql = "SELECT pg_is_in_recovery() AS standby, inet_server_addr() AS addr"
    assert ok(hactl(c, "query", "-U", "postgres", "-c", sql, env=DB)).splitlines() == [
        "standby\taddr",
        f"f\t{c.members[primary].host}",
    ]
    out = ok(hactl(c, "query", "-r", "primary", "-U", "postgres", "-c", sql, env=DB))
    assert out.splitlines()[1] == f"f\t{c.members[primary].host}"
    # A replica: it has the rows once replayed; json keyed by column.
    count = "SELECT count(*) AS n, pg_is_in_recovery() AS standby FROM ctl13"

    def on_replica() -> list[Any] | None:
        done = hactl(
            c, "query", "-r", "replica", "-U", "postgres", "-c", count, "--format", "json", env=DB
        )
        return json.loads(done.stdout) if done.returncode == 0 and '"n": 2' in done.stdout else None

    assert wait_for(on_replica, 30, "the rows on a replica") == [{"n": 2, "standby": True}]
    # A named member, yaml; tsv with another delimiter; pretty.
    other = next(n for n in c.members if n != primary)
    select = "SELECT id, name FROM ctl13 ORDER BY id"
    out = ok(
        hactl(
            c,
            "query",
            "-m",
            other,
            "-U",
            "postgres",
            "-c",
            "SELECT inet_server_addr() AS a",
            "--format",
            "yaml",
            env=DB,
        )
    )
    assert yaml.safe_load(out) == [{"a": c.members[other].host}]
    out = ok(hactl(c, "query", "-U", "postgres", "-c", select, "--delimiter", ";", env=DB))
    assert out.splitlines() == ["id;name", "1;a", "2;"]
    out = ok(hactl(c, "query", "-U", "postgres", "-c", select, "--format", "pretty", env=DB))
    assert "| id | name |" in out and "| 2  |      |" in out
    # The SQL from a file, and from stdin; another database.
    path = tmp_path / "q.sql"
    path.write_text(select)
    assert (
        ok(hactl(c, "query", "-U", "postgres", "-f", str(path), env=DB)).splitlines()[1] == "1\ta"
    )
    assert (
        ok(hactl(c, "query", "-U", "postgres", "-f", "-", stdin=select, env=DB)).splitlines()[2]
        == "2\t"
    )
    # -U names the database user, -d the database (pg_hba.conf lets the superuser reach
    # database postgres only).
    out = ok(hactl(c, "query", "-U", "postgres", "-c", "SELECT current_user AS u", env=DB))
    assert out.splitlines() == ["u", "postgres"]
    failed(hactl(c, "query", "-U", "nosuch", "-c", "SELECT 1", env=DB), 'user "nosuch"')
    failed(
        hactl(c, "query", "-U", "postgres", "-d", "template1", "-c", "SELECT 1", env=DB),
        'database "template1"',
    )
    # --password asks (here: stdin) instead of $PGPASSWORD; without a password it fails clearly.
    out = ok(
        hactl(
            c, "query", "-U", "postgres", "--password", "-c", "SELECT 7 AS x", stdin=PASSWORD + "\n"
        )
    )
    assert out.splitlines() == ["x", "7"]
    failed(
        hactl(c, "query", "-U", "postgres", "-c", "SELECT 1"), "cannot connect to PostgreSQL on "
    )
    failed(
        hactl(c, "query", "-U", "postgres", "--password", "-c", "SELECT 1", stdin="wrong\n"),
        'password authentication failed for user "postgres"',
    )
    # Errors: SQL, arguments.
    failed(hactl(c, "query", "-U", "postgres", "-c", "SELEC 1", env=DB), "(SQLSTATE 42601)")
    failed(
        hactl(c, "query", "-c", "SELECT 1", "-f", str(path)), "--command and --file are mutually"
    )
    failed(hactl(c, "query", "-m", "m9", "-c", "SELECT 1"), "no member named m9")


def test_version_of_hactl_every_agent_and_postgresql(booted: tuple[AgentCluster, str]) -> None:
    c, _ = booted
    lines = ok(hactl(c, "version")).splitlines()
    assert lines[:2] == [f"hactl version {__version__}", ""]
    assert len(lines) == 5
    for name, line in zip(sorted(c.members), lines[2:], strict=True):
        assert re.fullmatch(rf"{name}: hamgr {re.escape(__version__)} PostgreSQL 15\.\d+", line), (
            line
        )
    assert ok(hactl(c, "version", "m2")).splitlines()[2:] == [lines[3]]
    failed(hactl(c, "version", "m9"), "no member named m9 in cluster ctl")


def config_of(c: AgentCluster) -> dict[str, Any]:
    code, body = call(c, "m1", "GET", "/config")
    assert code == 200, body
    return body


def editor(script: str) -> dict[str, str]:
    """$EDITOR running ``script`` on the file it is given (as "$1")."""
    return {"EDITOR": f"sh -c {shlex.quote(script)} editor"}


def test_edit_config_in_an_editor_and_from_files(
    booted: tuple[AgentCluster, str], tmp_path: Path
) -> None:
    c, _ = booted
    before = config_of(c)
    lag = before["maximum_lag_on_failover"]
    # The editor changes one line: the diff shows it, --force applies it.
    sed = f"sed -i -e 's/^maximum_lag_on_failover: .*/maximum_lag_on_failover: {lag + 1}/' \"$1\""
    out = ok(hactl(c, "edit-config", "--force", env=editor(sed)))
    assert (
        f"-maximum_lag_on_failover: {lag}" in out and f"+maximum_lag_on_failover: {lag + 1}" in out
    )
    assert out.rstrip().endswith("Configuration changed")
    assert config_of(c)["maximum_lag_on_failover"] == lag + 1
    # An editor that fails, or leaves the file as it was, changes nothing.
    failed(
        hactl(c, "edit-config", "--force", env=editor("exit 3")),
        "exited with status 3: nothing changed",
    )
    assert ok(hactl(c, "edit-config", "--force", env=editor("true"))).strip() == "Not changed"
    # Without --force and without a terminal to confirm on: refused after the diff.
    failed(
        hactl(c, "edit-config", env=editor(sed.replace(str(lag + 1), str(lag + 2)))), "add --force"
    )
    assert config_of(c)["maximum_lag_on_failover"] == lag + 1
    # The store changed while the editor was open: nothing is applied.
    racing = (
        f"{sys.executable} -m hamgr.cli.hactl --url {c.members['m2'].api} --username {API_AUTH[0]} "
        "edit-config --force "
        "--set parameters.work_mem=5MB >/dev/null && " + sed.replace(str(lag + 1), str(lag + 3))
    )
    failed(
        hactl(c, "edit-config", "--force", env=editor(racing)),
        "changed while this edit was prepared",
    )
    after = config_of(c)
    assert after["maximum_lag_on_failover"] == lag + 1 and after["parameters"]["work_mem"] == "5MB"
    # --apply merges a file (-q: no diff), stdin needs --force, --replace replaces everything.
    patch = tmp_path / "patch.yaml"
    patch.write_text("parameters:\n  work_mem: 6MB\n")
    assert (
        ok(hactl(c, "edit-config", "--apply", str(patch), "-q", "--force")).strip()
        == "Configuration changed"
    )
    assert config_of(c)["parameters"]["work_mem"] == "6MB"
    failed(
        hactl(c, "edit-config", "--apply", "-", stdin="parameters: {work_mem: 7MB}\n"),
        "add --force",
    )
    out = ok(
        hactl(c, "edit-config", "--apply", "-", "--force", stdin="parameters: {work_mem: 7MB}\n")
    )
    assert "+  work_mem: 7MB" in out
    whole = tmp_path / "whole.yaml"
    whole.write_text(yaml.safe_dump(before))  # the configuration as it was before this test
    out = ok(hactl(c, "edit-config", "--replace", str(whole), "--force"))
    assert "-  work_mem: 7MB" in out
    assert config_of(c) == before
    failed(
        hactl(c, "edit-config", "--replace", str(tmp_path / "none.yaml"), "--force"),
        "--replace: cannot read",
    )


async def _seed(config: Path, scope: str) -> int:
    """Keys of cluster ``scope`` in the store, its leader key on a lease of 60 s; the lease."""
    settings = settings_from_config(load_config(config, resolve=False))
    async with StoreClient(
        [settings.client_advertise], settings.cluster_id, settings.secret
    ) as client:
        lease = (await client.lease_grant(60)).lease_id
        prefix = f"/hamgr/{scope}/"
        await client.put(f"{prefix}config".encode(), b"{}")
        await client.put(f"{prefix}history".encode(), b"[]")
        await client.put(f"{prefix}members/x1".encode(), b"{}")
        await client.put(f"{prefix}leader".encode(), b"x1", lease)
        return lease


async def _keys(config: Path, scope: str) -> list[str]:
    settings = settings_from_config(load_config(config, resolve=False))
    async with StoreClient(
        [settings.client_advertise], settings.cluster_id, settings.secret
    ) as client:
        got = await client.get(f"/hamgr/{scope}/".encode(), prefix=True)
        return [kv.key.decode() for kv in got.kvs]


async def _revoke(config: Path, lease: int) -> None:
    settings = settings_from_config(load_config(config, resolve=False))
    async with StoreClient(
        [settings.client_advertise], settings.cluster_id, settings.secret
    ) as client:
        await client.lease_revoke(lease)


def remove(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hamgr.cli.hactl", "-c", str(config), "remove", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_remove_wipes_a_leaderless_cluster_after_typed_confirmations(
    booted: tuple[AgentCluster, str], tmp_path: Path
) -> None:
    c, primary = booted
    # The running cluster: its primary holds the leader key, so remove refuses.
    failed(
        remove(c.members["m1"].config, "ctl"),
        f"{primary} holds the leader key of cluster ctl: refused",
    )
    failed(
        remove(c.members["m1"].config, "other"), "cluster other is not the configured scope (ctl in"
    )
    # A second scope in the same store (the cluster id stays the running cluster's).
    doc = yaml.safe_load(c.members["m1"].config.read_text())
    doc["scope"] = "other"
    doc["store"]["raft"]["cluster_id"] = "ctl"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(doc))
    lease = asyncio.run(_seed(other, "other"))
    failed(
        remove(other, "other", stdin="other\nYes I am aware\n"),
        "x1 holds the leader key of cluster other",
    )
    asyncio.run(_revoke(other, lease))  # the leader key goes with its lease
    keys = ["/hamgr/other/config", "/hamgr/other/history", "/hamgr/other/members/x1"]
    assert asyncio.run(_keys(other, "other")) == keys
    # Mistyped confirmations remove nothing.
    failed(remove(other, "other", stdin="othr\nYes I am aware\n"), "the cluster names do not match")
    failed(
        remove(other, "other", stdin="other\nyes\n"), 'you did not type "Yes I am aware" exactly'
    )
    assert asyncio.run(_keys(other, "other")) == keys
    out = ok(remove(other, "other", stdin="other\nYes I am aware\n"))
    assert (
        "Please confirm the cluster name to remove" in out
        and "Removed cluster other: 3 keys" in out
    )
    assert asyncio.run(_keys(other, "other")) == []
    failed(remove(other, "other"), "cluster other has no keys in the store: nothing to remove")
    # The running cluster kept its keys and its primary.
    assert any(k.endswith("/leader") for k in asyncio.run(_keys(c.members["m1"].config, "ctl")))
    assert c.wait_primary(10) == primary
