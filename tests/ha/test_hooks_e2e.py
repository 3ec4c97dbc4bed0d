"""Operators' commands on a live cluster, as Patroni runs them: a custom bootstrap method with
recovery settings and post_bootstrap, replica methods tried in order, callbacks (on_start,
on_reload, on_stop, on_role_change; a newer one kills a running one; the timeout kills a long
one) and a replica catching up from a WAL archive with restore_command.

One two-member cluster for the module (real agents, real PostgreSQL). Every command is a small
shell script under the cluster's directory that appends its arguments to a file, so the test
reads what ran, in which order, with which arguments.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.ha.agentcluster import PASSWORD, AgentCluster, cluster_of_test
from tests.ha.clusterops import hactl
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTS = ["127.0.13.1", "127.0.13.2"]
SCOPE = "hooks"

RECORD = """#!/bin/sh
# Appends "NAME ARGS..." to calls.log; NAME is the first argument.
echo "$*" >> "{rec}/calls.log"
"""

CALLBACK = """#!/bin/sh
# MEMBER ACTION ROLE SCOPE: recorded; a flag file slow-MEMBER-ACTION makes it hang.
echo "$*" >> "{rec}/callbacks.log"
if [ -e "{rec}/slow-$1-$2" ]; then
    echo "$1 slow $2" >> "{rec}/callbacks.log"
    sleep 60
    echo "$1 not killed $2" >> "{rec}/callbacks.log"
fi
"""

BOOT = """#!/bin/sh
echo "boot $*" >> "{rec}/calls.log"
for a in "$@"; do case "$a" in --datadir=*) D="${{a#--datadir=}}";; esac; done
exec initdb -D "$D" -U postgres --pwfile="{rec}/pw" -E UTF8 --locale=C -A scram-sha-256
"""

POST = """#!/bin/sh
echo "post $*" >> "{rec}/calls.log"
exec psql "$1" -v ON_ERROR_STOP=1 -c "CREATE TABLE boot_marker (made_by text)" \
    -c "INSERT INTO boot_marker VALUES ('post_bootstrap')"
"""

FAIL = """#!/bin/sh
echo "fail $*" >> "{rec}/calls.log"
exit 3
"""

COPY = """#!/bin/sh
echo "copy $*" >> "{rec}/calls.log"
for a in "$@"; do case "$a" in
    --datadir=*) D="${{a#--datadir=}}";;
    --connstring=*) C="${{a#--connstring=}}";;
esac; done
exec pg_basebackup -D "$D" -d "$C" -X stream -c fast
"""


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return str(path)


def _configure(c: AgentCluster) -> Path:
    """Write the scripts and put them into both members' configurations; the record dir."""
    rec = c.root / "rec"
    rec.mkdir()
    rec.chmod(0o777)
    (rec / "pw").write_text(PASSWORD + "\n")
    (rec / "pw").chmod(0o644)
    archive = c.root / "archive"
    archive.mkdir()
    archive.chmod(0o777)
    s = {
        name: _script(c.root / f"{name}.sh", text.format(rec=rec))
        for name, text in {
            "record": RECORD,
            "cb": CALLBACK,
            "boot": BOOT,
            "post": POST,
            "fail": FAIL,
            "copy": COPY,
        }.items()
    }
    for name, m in c.members.items():
        config: dict[str, Any] = yaml.safe_load(m.config.read_text())
        pg = config["postgresql"]
        pg["callbacks"] = {
            action: f"{s['cb']} {name}"
            for action in ("on_start", "on_stop", "on_restart", "on_reload", "on_role_change")
        }
        pg["callback_timeout"] = 60
        pg["create_replica_methods"] = ["broken", "copy", "basebackup"]
        pg["broken"] = {"command": s["fail"]}  # Patroni's layout: postgresql.NAME
        pg["replica_methods"] = {"copy": {"command": s["copy"]}}  # hamgr's
        pg["recovery_conf"] = {"restore_command": f"cp {archive}/%f %p"}
        boot = config["bootstrap"]
        boot["method"] = "own"
        boot["own"] = {"command": s["boot"], "recovery_conf": {"restore_command": "false"}}
        boot["post_bootstrap"] = s["post"]
        dcs = boot["dcs"]
        dcs["postgresql"]["use_slots"] = False
        dcs["postgresql"]["parameters"].update(
            {
                "wal_keep_size": 0,
                # the bootstrap's recovery runs as a hot standby of what initdb made: at least
                # initdb's max_connections and max_wal_senders, as any standby of a server needs
                "max_connections": 100,
                "max_wal_senders": 10,
                "archive_mode": "on",
                "archive_command": f"test ! -f {archive}/%f && cp %p {archive}/%f",
            }
        )
        m.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return rec


@dataclass
class Hooked:
    """The cluster, the directory the scripts record into, who bootstrapped, who cloned."""

    c: AgentCluster
    rec: Path
    primary: str
    replica: str


@pytest.fixture(scope="module")
def hooked(request: pytest.FixtureRequest) -> Iterator[Hooked]:
    with cluster_of_test(request, "hooks", HOSTS, scope=SCOPE) as c:
        rec = _configure(c)
        c.start_all()
        primary = c.wait_primary(90)
        replica = next(n for n in c.members if n != primary)
        c.wait_streaming([replica], 90)
        yield Hooked(c, rec, primary, replica)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _sql(c: AgentCluster, name: str, query: str) -> Any:
    with c.connect(name) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row else None


def test_custom_bootstrap_method_with_recovery_conf_and_post_bootstrap(hooked: Hooked) -> None:
    c, rec, p = hooked.c, hooked.rec, hooked.primary
    calls = _lines(rec / "calls.log")
    data = c.members[p].data_dir
    assert [line for line in calls if line.startswith("boot ")] == [
        f"boot --scope={SCOPE} --datadir={data}"
    ]
    post = [line for line in calls if line.startswith("post ")]
    assert len(post) == 1 and "user=postgres dbname=postgres passfile=" in post[0], post
    # post_bootstrap's table, made through the connection string it was given
    assert _sql(c, p, "SELECT made_by FROM boot_marker") == "post_bootstrap"
    # recovery_conf took effect: recovery ran and ended on a new timeline
    assert _sql(c, p, "SELECT timeline_id FROM pg_control_checkpoint()") == 2
    assert not (data / "recovery.signal").exists()


def test_replica_methods_are_tried_in_order_until_one_succeeds(hooked: Hooked) -> None:
    c, rec, r = hooked.c, hooked.rec, hooked.replica
    calls = [line for line in _lines(rec / "calls.log") if line.split()[0] in ("fail", "copy")]
    data = c.members[r].data_dir
    host = c.members[hooked.primary].host
    args = f"--scope={SCOPE} --role=replica --datadir={data} --connstring=host={host} "
    # each attempt tries them in order (attempts while the leader was still bootstrapping
    # failed with every method); the last one succeeded with the second
    kinds = [line.split()[0] for line in calls]
    assert kinds and kinds == ["fail", "copy"] * (len(kinds) // 2), kinds
    assert all(line.split(" ", 1)[1].startswith(args) for line in calls), calls
    assert "user=replicator" in calls[-1]
    # the copy made by the second method streams and holds the bootstrap's table
    assert _sql(c, r, "SELECT made_by FROM boot_marker") == "post_bootstrap"
    assert "replica created with method copy" in c.members[r].log.read_text()


def test_callbacks_run_with_patroni_arguments_one_at_a_time_and_time_out(hooked: Hooked) -> None:
    c, rec, p, r = hooked.c, hooked.rec, hooked.primary, hooked.replica
    log = rec / "callbacks.log"
    wait_for(lambda: f"{p} on_start primary {SCOPE}" in _lines(log), 30, "the primary's on_start")
    wait_for(lambda: f"{r} on_start replica {SCOPE}" in _lines(log), 30, "the replica's on_start")

    assert hactl(c, p, "reload", p).returncode == 0
    wait_for(lambda: f"{p} on_reload primary {SCOPE}" in _lines(log), 30, "on_reload")
    restarted = hactl(c, r, "restart", r, "--force")
    assert restarted.returncode == 0, restarted.stderr
    wait_for(lambda: f"{r} on_restart replica {SCOPE}" in _lines(log), 30, "on_restart")
    c.wait_streaming([r], 60)

    # A newer callback kills the one still running (the timeout is 60 s).
    (rec / f"slow-{p}-on_reload").touch()
    assert hactl(c, p, "reload", p).returncode == 0
    wait_for(lambda: _lines(log).count(f"{p} slow on_reload") == 1, 30, "a slow on_reload")
    (rec / f"slow-{p}-on_reload").unlink()
    assert hactl(c, p, "reload", p).returncode == 0
    wait_for(lambda: "a newer one starts" in c.members[p].log.read_text(), 30, "the kill")
    wait_for(lambda: _lines(log).count(f"{p} on_reload primary {SCOPE}") == 3, 30, "3rd reload")

    # The timeout (callback_timeout, changed to 2 s by a reload) kills a callback that runs
    # too long, with its children.
    config = yaml.safe_load(c.members[r].config.read_text())
    config["postgresql"]["callback_timeout"] = 2
    c.members[r].config.write_text(yaml.safe_dump(config, sort_keys=False))
    (rec / f"slow-{r}-on_reload").touch()
    assert hactl(c, r, "reload", r).returncode == 0
    wait_for(lambda: f"{r} slow on_reload" in _lines(log), 30, "the replica's slow on_reload")
    wait_for(lambda: "ran past 2 s" in c.members[r].log.read_text(), 30, "the timeout")
    (rec / f"slow-{r}-on_reload").unlink()
    wait_for(lambda: not _running_scripts(c.root / "cb.sh"), 10, "the callback gone")
    assert not [line for line in _lines(log) if "not killed" in line]


def _running_scripts(script: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(script).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_replica_behind_the_primarys_wal_catches_up_from_the_archive(hooked: Hooked) -> None:
    c, p, r = hooked.c, hooked.primary, hooked.replica
    c.terminate(r)
    pg_wal = c.members[p].data_dir / "pg_wal"
    first = _sql(c, p, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    with c.connect(p) as conn:
        conn.execute("CREATE TABLE behind (n int)")

        def recycled() -> bool:
            conn.execute("INSERT INTO behind SELECT generate_series(1, 1000)")
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            return not (pg_wal / first).exists()

        wait_for(recycled, 60, f"the primary recycling {first}", interval=0.5)
        row = conn.execute("SELECT count(*) FROM behind").fetchone()
    assert row is not None
    c.start(r)
    wait_for(lambda: _count_or_none(c, r) == row[0], 90, "the replica catching up")
    server_log = (c.root / f"{r}-data.run" / "postgresql.log").read_text()
    assert "from archive" in server_log  # 'restored log file "..." from archive'
    c.wait_streaming([r], 60)


def _count_or_none(c: AgentCluster, name: str) -> int | None:
    try:
        return int(_sql(c, name, "SELECT count(*) FROM behind"))
    except (psycopg.Error, TypeError):  # not up yet, or the table not replayed yet
        return None


def test_switchover_runs_on_stop_and_on_role_change(hooked: Hooked) -> None:
    c, rec, p, r = hooked.c, hooked.rec, hooked.primary, hooked.replica
    log = rec / "callbacks.log"
    # An earlier test stopped it (and so the primary, which lost its store quorum): the
    # switchover needs it streaming from the primary as it runs now.
    c.wait_streaming([r], 60, upstream=p)
    done = hactl(c, p, "switchover", "--candidate", r, "--force")
    if done.returncode != 0 and "shutdown checkpoint" in done.stderr:
        # Aborted by design: the replica's WAL receiver was still reconnecting when the primary
        # stopped (the fast profile gives it ttl = 2 s). The primary starts again as primary;
        # once it streams again, one more try (the hooks are this test's subject).
        assert c.wait_primary(60) == p
        c.wait_streaming([r], 60, upstream=p)
        done = hactl(c, p, "switchover", "--candidate", r, "--force")
    assert done.returncode == 0, done.stderr
    assert c.wait_primary(60) == r
    wait_for(lambda: f"{r} on_role_change primary {SCOPE}" in _lines(log), 30, "promoted")
    wait_for(lambda: f"{p} on_role_change replica {SCOPE}" in _lines(log), 60, "demoted")
    old = [line for line in _lines(log) if line.startswith(f"{p} on_")]
    stop, change = f"{p} on_stop primary {SCOPE}", f"{p} on_role_change replica {SCOPE}"
    assert stop in old and old.index(stop) < old.index(change)
