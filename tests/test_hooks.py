"""The pure parts of operators' commands: argument lists as Patroni builds them, the order and
fallthrough of replica methods, which callback a start is, the decision to make a replica
without a leader, and every key's validation. Then the replica methods and callbacks run as
real processes (shell scripts, no PostgreSQL): fallthrough, keep_data, the timeout, a newer
callback killing a running one. The live cluster is tests/ha/test_hooks_e2e.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hamgr.agent.hooksetup import callback_commands, member_methods, member_parameters
from hamgr.config import ConfigError
from hamgr.config.validate import parse_config
from hamgr.ha import CloneFrom
from hamgr.ha.callbacks import CallbackRunner, callback_argv, start_action
from hamgr.postgres.methods import (
    BUILTIN_BASEBACKUP,
    BootstrapSpec,
    ReplicaMethodSpec,
    bootstrap_argv,
    create_replica,
    methods_to_try,
    post_bootstrap_argv,
    replica_method_argv,
    run_bootstrap_method,
)
from hamgr.postgres.settings import PgSettings
from tests.ha.builders import NO_LEADER, check, local, view
from tests.tools.poll import wait_for_async

# -- argument lists ----------------------------------------------------------------------------


def test_replica_method_argv_as_patroni() -> None:
    m = ReplicaMethodSpec("wal_g", "/usr/bin/wal-g-restore --config '/etc/a b.json'")
    assert replica_method_argv(m, scope="demo", data_dir="/d", connstring="host=h port=1") == [
        "/usr/bin/wal-g-restore",
        "--config",
        "/etc/a b.json",
        "--scope=demo",
        "--role=replica",
        "--datadir=/d",
        "--connstring=host=h port=1",
    ]
    bare = ReplicaMethodSpec("wal_g", "/usr/bin/restore x", no_params=True)
    assert replica_method_argv(bare, scope="s", data_dir="/d", connstring="c") == [
        "/usr/bin/restore",
        "x",
    ]


def test_bootstrap_and_post_bootstrap_argv() -> None:
    m = BootstrapSpec("pitr", "/bin/restore --from 'a b'")
    assert bootstrap_argv(m, scope="s", data_dir="/d") == [
        "/bin/restore",
        "--from",
        "a b",
        "--scope=s",
        "--datadir=/d",
    ]
    assert bootstrap_argv(
        BootstrapSpec("p", "/bin/r", no_params=True), scope="s", data_dir="/d"
    ) == ["/bin/r"]
    assert post_bootstrap_argv("/bin/post -v", "host=/run port=5432") == [
        "/bin/post",
        "-v",
        "host=/run port=5432",
    ]


def test_callback_argv_as_patroni() -> None:
    assert callback_argv("/bin/cb 'x y'", "on_role_change", "primary", "demo") == [
        "/bin/cb",
        "x y",
        "on_role_change",
        "primary",
        "demo",
    ]


@pytest.mark.parametrize(
    ("previous", "role", "action"),
    [
        (None, "primary", "on_start"),
        (None, "replica", "on_start"),
        ("replica", "replica", "on_start"),
        ("primary", "primary", "on_start"),
        ("demoted", "replica", "on_role_change"),
        ("primary", "replica", "on_role_change"),
        ("replica", "standby_leader", "on_role_change"),
    ],
)
def test_which_callback_a_start_is(previous: str | None, role: str, action: str) -> None:
    assert start_action(previous, role) == action


# -- order and fallthrough ---------------------------------------------------------------------

RESTORE = ReplicaMethodSpec("restore", "/bin/restore", without_leader=True)
FETCH = ReplicaMethodSpec("fetch", "/bin/fetch")


def test_methods_are_tried_in_order_and_without_a_leader_only_those_that_need_none() -> None:
    methods = (FETCH, RESTORE, BUILTIN_BASEBACKUP)
    assert methods_to_try(methods, have_leader=True) == [FETCH, RESTORE, BUILTIN_BASEBACKUP]
    assert methods_to_try(methods, have_leader=False) == [RESTORE]
    assert methods_to_try((BUILTIN_BASEBACKUP,), have_leader=False) == []


def test_without_a_leader_a_member_with_a_no_leader_method_makes_its_replica() -> None:
    check(NO_LEADER, local("b", clone_without_leader=True), None, (CloneFrom(None),), "no_leader")
    check(NO_LEADER, local("b"), None, (), "no leader to clone from")
    # nor from a leader that is still bootstrapping (the initialize key holds no sysid yet)
    check(view(initialize=""), local("b"), None, (), "leader a is still bootstrapping")
    # before the cluster exists, there is nothing to restore: the bootstrap race goes first
    not_yet = view(leader=None, initialize=None)
    assert CloneFrom(None) not in _actions(not_yet, local("b", clone_without_leader=True))


def _actions(v: Any, loc: Any) -> tuple[Any, ...]:
    from hamgr.ha import decide

    return decide(v, loc, None).actions


# -- configuration -----------------------------------------------------------------------------


def _config(pg: dict[str, Any] | None = None, boot: dict[str, Any] | None = None) -> Any:
    data: dict[str, Any] = {
        "scope": "demo",
        "name": "m1",
        "store": {"raft": {"data_dir": "/r", "node_id": 1, "secret": "s" * 20}},
        "postgresql": {"data_dir": "/d", "bin_dir": "/usr/lib/postgresql/15/bin", **(pg or {})},
    }
    if boot is not None:
        data["bootstrap"] = boot
    return parse_config(data)


def _problems(pg: dict[str, Any] | None = None, boot: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _config(pg, boot)
    return list(info.value.problems)


def test_methods_and_callbacks_reach_what_the_agent_runs() -> None:
    config = _config(
        {
            "create_replica_methods": ["wal_g", "mine", "basebackup"],
            "wal_g": {"command": "/bin/wal-g x", "no_master": True, "keep_data": True},
            "replica_methods": {"mine": {"command": "/bin/mine", "no_params": True}},
            "callbacks": {"on_start": "/bin/cb a", "on_role_change": "/bin/cb b"},
            "recovery_conf": {"restore_command": "cp /a/%f %p"},
            "parameters": {"work_mem": "8MB"},
        },
        {
            "method": "pitr",
            "pitr": {
                "command": "/bin/pitr",
                "recovery_conf": {"recovery_target_action": "promote"},
            },
            "post_init": "/bin/post",
        },
    )
    methods = member_methods(config)
    assert methods.scope == "demo"
    assert methods.replica == (
        ReplicaMethodSpec("wal_g", "/bin/wal-g x", keep_data=True, without_leader=True),
        ReplicaMethodSpec("mine", "/bin/mine", no_params=True),
        BUILTIN_BASEBACKUP,
    )
    assert methods.clone_without_leader
    assert methods.bootstrap == BootstrapSpec(
        "pitr", "/bin/pitr", recovery_conf={"recovery_target_action": "promote"}
    )
    assert methods.post_bootstrap == "/bin/post"
    assert callback_commands(config) == {"on_start": "/bin/cb a", "on_role_change": "/bin/cb b"}
    assert member_parameters(config.postgresql) == {
        "work_mem": "8MB",
        "restore_command": "cp /a/%f %p",
    }
    plain = _config()
    assert member_methods(plain).replica == (BUILTIN_BASEBACKUP,)
    assert member_methods(plain).bootstrap is None
    assert not member_methods(plain).clone_without_leader


@pytest.mark.parametrize(
    ("pg", "boot", "expected"),
    [
        (
            {"create_replica_methods": ["wal_g"]},
            None,
            "postgresql.create_replica_methods: method 'wal_g' has no section with its command: "
            "add postgresql.wal_g (or postgresql.replica_methods.wal_g) with a command",
        ),
        (
            {"create_replica_methods": ["a", "a"], "a": {"command": "/x"}},
            None,
            "postgresql.create_replica_methods: lists 'a' twice",
        ),
        (
            {"replica_methods": {"x": {"command": "/x"}}},
            None,
            "postgresql.replica_methods.x: is not listed in postgresql.create_replica_methods, "
            "so it would never run",
        ),
        (
            {
                "create_replica_methods": ["x"],
                "x": {"command": "/x"},
                "replica_methods": {"x": {"command": "/y"}},
            },
            None,
            "postgresql.x: given twice: here and as postgresql.replica_methods.x",
        ),
        (
            {"create_replica_methods": ["x"], "x": {"command": "/x", "no_leeder": True}},
            None,
            "unknown key postgresql.replica_methods.x.no_leeder (did you mean no_leader?)",
        ),
        (
            {"create_replica_methods": ["x"], "x": {"keep_data": True}},
            None,
            "postgresql.replica_methods.x.command: required",
        ),
        (
            {"callbacks": {"on_start": "/bin/cb 'x"}},
            None,
            'postgresql.callbacks.on_start: cannot split "/bin/cb \'x" into words: '
            "No closing quotation",
        ),
        (
            {"callbacks": {"on_promote": "/bin/cb"}},
            None,
            "unknown key postgresql.callbacks.on_promote",
        ),
        ({"callback_timeout": 0}, None, "postgresql.callback_timeout: must be > 0, got 0"),
        (
            {
                "recovery_conf": {"restore_command": "cp a b"},
                "parameters": {"restore_command": "x"},
            },
            None,
            "postgresql.parameters.restore_command: also set as "
            "postgresql.recovery_conf.restore_command ('cp a b'): set one",
        ),
        (
            {"recovery_conf": {"primary_conninfo": "x"}},
            None,
            "unknown key postgresql.recovery_conf.primary_conninfo",
        ),
        (
            None,
            {"method": "pitr"},
            "bootstrap.method: method 'pitr' has no section with its command: add "
            "bootstrap.pitr with a command (or use initdb)",
        ),
        (
            None,
            {"methods": {"other": {"command": "/x"}}},
            "bootstrap.methods.other: is not bootstrap.method ('initdb'): it would never run",
        ),
        (
            None,
            {"post_bootstrap": "/a", "post_init": "/b"},
            "bootstrap.post_init: the same as bootstrap.post_bootstrap: set one",
        ),
        (
            None,
            {"method": "p", "p": {"command": "/x", "no_param": True}},
            "unknown key bootstrap.methods.p.no_param (did you mean no_params?)",
        ),
    ],
)
def test_every_key_is_checked(pg: Any, boot: Any, expected: str) -> None:
    problems = _problems(pg, boot)
    assert expected in problems, problems


def test_bootstrap_recovery_settings_are_checked_by_the_agent_setup() -> None:
    from hamgr.agent.setup import agent_setup

    config = _config(
        {"authentication": {"replication": {"password": "p"}}},
        {"method": "p", "p": {"command": "/x", "recovery_conf": {"bad name": "1"}}},
    )
    with pytest.raises(ConfigError) as info:
        agent_setup(config)
    assert "bootstrap.p.recovery_conf: 'bad name' is not a valid PostgreSQL parameter name" in (
        info.value.problems
    )


# -- real processes, no PostgreSQL -------------------------------------------------------------


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory the postgres OS user can reach (pytest's work is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hamgr-hooks-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _settings(tmp: Path) -> PgSettings:
    return PgSettings(
        bin_dir=Path("/usr/lib/postgresql/15/bin"),
        data_dir=tmp / "data",
        name="m1",
        host="127.0.0.1",
        port=5432,
        replication_password="p",
    )


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_replica_methods_fall_through_and_keep_data_keeps_the_directory(work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the commands as the postgres OS user: run as root")
    pg = _settings(work)
    rec = work / "rec"
    rec.mkdir()
    rec.chmod(0o777)
    data = pg.data_dir
    first = _script(work / "first.sh", 'touch "$1/left"\nexit 1\n')
    ok = _script(
        work / "ok.sh",
        f'ls "$1" > {rec}/seen; echo 15 > "$1/PG_VERSION"; echo "# conf" > "$1/postgresql.conf"\n',
    )
    # the first method leaves a file and fails; with keep_data the next one finds it
    methods = (
        ReplicaMethodSpec("first", f"{first} {data}", keep_data=True, no_params=True),
        ReplicaMethodSpec("ok", f"{ok} {data}", keep_data=True, no_params=True),
    )
    name = asyncio.run(create_replica(pg, methods, scope="s", source=("127.0.0.1", 5432)))
    assert name == "ok"
    assert (rec / "seen").read_text().split() == ["left"]
    assert (data / "standby.signal").exists()

    # without keep_data the directory is emptied before the method runs
    (data / "stale").write_text("x")
    fresh = (ReplicaMethodSpec("ok", f"{ok} {data}", no_params=True),)
    asyncio.run(create_replica(pg, fresh, scope="s", source=("127.0.0.1", 5432)))
    assert (rec / "seen").read_text().split() == []


def test_without_a_leader_only_no_leader_methods_run(work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the commands as the postgres OS user: run as root")
    pg = _settings(work)
    rec = work / "rec"
    rec.mkdir()
    rec.chmod(0o777)
    record = _script(work / "r.sh", f'echo "$*" >> {rec}/log\nexit 1\n')
    methods = (
        ReplicaMethodSpec("needs", f"{record} needs"),
        ReplicaMethodSpec("restore", f"{record} restore", without_leader=True),
        BUILTIN_BASEBACKUP,
    )
    from hamgr.postgres.errors import CommandError

    with pytest.raises(CommandError):
        asyncio.run(create_replica(pg, methods, scope="s", source=None))
    assert (rec / "log").read_text().splitlines() == [
        f"restore --scope=s --role=replica --datadir={pg.data_dir} --connstring="
    ]


def test_callbacks_one_at_a_time_and_killed_after_the_timeout(work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the commands as the postgres OS user: run as root")
    pg = _settings(work)
    rec = work / "rec"
    rec.mkdir()
    rec.chmod(0o777)
    cb = _script(
        work / "cb.sh",
        f'echo "start $*" >> {rec}/log\n[ "$1" = on_reload ] && sleep 30\n'
        f'echo "end $*" >> {rec}/log\n',
    )
    done: list[tuple[list[str], int | None]] = []

    async def scenario() -> None:
        runner = CallbackRunner(
            {"on_reload": cb, "on_start": cb},
            "demo",
            pg,
            0.5,
            on_done=lambda a, c: done.append((a, c)),
        )
        runner.fire("on_reload", "replica")
        await wait_for_async(lambda: (rec / "log").exists())
        runner.started("primary")  # kills the running on_reload
        await wait_for_async(lambda: len(done) == 2)
        runner.fire("on_reload", "primary")  # runs past the timeout: killed
        await wait_for_async(lambda: len(done) == 3)
        await runner.close()

    asyncio.run(scenario())
    assert [(a[-3:], c) for a, c in done] == [
        (["on_reload", "replica", "demo"], None),
        (["on_start", "primary", "demo"], 0),
        (["on_reload", "primary", "demo"], None),
    ]
    log = (rec / "log").read_text().splitlines()
    assert "end on_reload replica demo" not in log and "end on_start primary demo" in log


def test_on_restart_after_a_restart_request(work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the commands as the postgres OS user: run as root")
    pg = _settings(work)
    rec = work / "rec"
    rec.mkdir()
    rec.chmod(0o777)
    cb = _script(work / "cb.sh", f'echo "$*" >> {rec}/log\n')
    done: list[int | None] = []

    async def scenario() -> None:
        runner = CallbackRunner(
            {"on_restart": cb}, "demo", pg, 5, on_done=lambda a, c: done.append(c)
        )
        runner.restarted("replica")  # nothing reported yet: the observed role
        await wait_for_async(lambda: len(done) == 1)
        runner.started("primary")  # no on_start configured: nothing runs
        runner.restarted("unknown")  # the role last reported wins
        await wait_for_async(lambda: len(done) == 2)
        await runner.close()

    asyncio.run(scenario())
    assert (rec / "log").read_text().splitlines() == [
        "on_restart replica demo",
        "on_restart primary demo",
    ]


@pytest.mark.parametrize(
    ("keep", "recovery_conf", "signals"),
    [
        (False, {}, set()),
        (True, {}, {"standby.signal", "recovery.signal"}),
        (True, {"restore_command": "cp /a/%f %p"}, {"recovery.signal"}),
    ],
)
def test_bootstrap_method_leaves_the_recovery_files_it_is_told_to(
    work: Path, keep: bool, recovery_conf: dict[str, Any], signals: set[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the commands as the postgres OS user: run as root")
    pg = _settings(work)
    made = _script(
        work / "boot.sh",
        'for a in "$@"; do case "$a" in --datadir=*) D="${a#--datadir=}";; esac; done\n'
        'echo 15 > "$D/PG_VERSION"; echo "# conf" > "$D/postgresql.conf"\n'
        'touch "$D/standby.signal" "$D/recovery.signal"\n',
    )
    method = BootstrapSpec(
        "restore", made, keep_existing_recovery_conf=keep, recovery_conf=recovery_conf
    )
    asyncio.run(run_bootstrap_method(pg, method, "demo"))
    found = {p.name for p in pg.data_dir.iterdir() if p.name.endswith(".signal")}
    assert found == signals
    recovery = (pg.data_dir / "hamgr-recovery.conf").read_text()
    assert ("restore_command = 'cp /a/%f %p'" in recovery) == bool(recovery_conf)
