"""hamgr.agent.setup: validate-config and the agent run one check, and its problems name keys.

Pure: the files are written to a temporary directory, nothing is started (the agent's run on
the example file is tests/test_agent_example.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hamgr.agent.setup import WitnessSetup, agent_setup, load_setup, setup_problems, witness_setup
from hamgr.config import ConfigError, parse_config
from hamgr.postgres import InitdbOptions
from tests.test_config import DELETE, REPO, fake_bin_dir, minimal, put

MANAGED = "is managed by hamgr (set it through its own setting, or it follows from the node's role)"


def problems_with(tmp_path: Path, *changes: tuple[str, Any]) -> list[str]:
    data = put(minimal(), "postgresql.bin_dir", str(fake_bin_dir(tmp_path)))
    for path, value in changes:
        put(data, path, value)
    path = tmp_path / "hamgr.yaml"
    path.write_text(yaml.safe_dump(data))
    return setup_problems(path, env={})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            [("bootstrap.dcs.postgresql.parameters", {"hot_standby": True})],
            [
                f"bootstrap.dcs.postgresql.parameters: 'hot_standby' {MANAGED} and cannot be given "
                "here"
            ],
        ),
        (
            [("postgresql.parameters", {"primary_conninfo": "x", "max_connections": 50})],
            [
                f"postgresql.parameters: 'primary_conninfo' {MANAGED} and cannot be given here",
                "postgresql.parameters: 'max_connections' must be the same on every member: set "
                "it cluster-wide (bootstrap.dcs.postgresql.parameters, or hactl edit-config "
                "--set parameters.max_connections=...)",
            ],
        ),
        (
            [("bootstrap.dcs.postgresql.parameters", {"wal_level": "minimal"})],
            [
                "bootstrap.dcs.postgresql.parameters: wal_level='minimal' cannot feed replicas; "
                "use 'replica' or 'logical'",
            ],
        ),
        (
            [("postgresql.pg_hba", ["hots all all all trust"])],
            [
                "postgresql.pg_hba line 1: 'hots all all all trust' starts with 'hots'; expected "
                "one of host, hostgssenc, hostnogssenc, hostnossl, hostssl, include, local"
            ],
        ),
        (
            [("bootstrap.initdb", ["data-checksums", "pwprompt", {"waldir": "/w"}, "debug"])],
            [
                "bootstrap.initdb[1]: pwprompt is set by hamgr from "
                "postgresql.authentication.superuser.password",
                "bootstrap.initdb[3]: 'debug' is not an initdb option hamgr passes on; use one "
                "of encoding, locale, no-locale, lc-collate, lc-ctype, lc-messages, lc-monetary, "
                "lc-numeric, lc-time, locale-provider, icu-locale, data-checksums, "
                "allow-group-access, text-search-config, waldir, wal-segsize",
            ],
        ),
        (
            [("postgresql.authentication.replication.username", "re-pl")],
            [
                "postgresql.authentication.replication.username='re-pl' is not a valid role name "
                "(letters, digits and '_', not starting with a digit, at most 63 characters)"
            ],
        ),
        (
            [("postgresql.authentication.replication.username", "postgres")],
            ["postgresql: replication_user must differ from superuser"],
        ),
    ],
)
def test_what_the_agent_refuses_is_reported_by_key(
    tmp_path: Path, changes: list[tuple[str, Any]], expected: list[str]
) -> None:
    assert problems_with(tmp_path, *changes) == expected


def test_bootstrap_initdb_options_reach_the_postgres_settings() -> None:
    data = put(minimal(), "postgresql.bin_dir", "/b")
    put(data, "bootstrap.initdb", [{"encoding": "LATIN1"}, "data-checksums", {"wal-segsize": 64}])
    options = agent_setup(parse_config(data)).pg.initdb
    assert options == InitdbOptions(encoding="LATIN1", extra_args=("--wal-segsize=64",))


def test_a_file_without_postgresql_is_a_witness(tmp_path: Path) -> None:
    """No postgresql section: a witness, a store member only; validate-config says so. On
    etcd there is nothing for such a host to be (refused, saying why); and a database host's
    setup is refused for it, naming the key."""
    data = put(minimal(), "postgresql", DELETE)
    path = tmp_path / "witness.yaml"
    path.write_text(yaml.safe_dump(data))
    setup = load_setup(path, env={})
    assert isinstance(setup, WitnessSetup) and setup.store.node_id == 1
    checked = subprocess.run(
        [sys.executable, "-m", "hamgr", "validate-config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout) == (
        0,
        "ok: a witness: a store member only, no PostgreSQL (no postgresql section), "
        "store member 1\n",
    )
    with pytest.raises(ConfigError, match="postgresql: required for a database host"):
        agent_setup(parse_config(data))
    put(data, "store.backend", "etcd")
    put(data, "store.etcd", {"hosts": ["127.0.0.1:2379"]})
    path.write_text(yaml.safe_dump(data))
    (problem,) = setup_problems(path, env={})
    assert problem.startswith("postgresql: required with store.backend etcd: a file without it")


def test_the_etcd_backend_runs_no_store_member() -> None:
    data = put(minimal(), "postgresql.bin_dir", "/b")
    put(data, "store.backend", "etcd")
    put(data, "store.etcd", {"hosts": ["127.0.0.1:2379"]})
    setup = agent_setup(parse_config(data))
    assert setup.store is None and setup.me.store_id == 0


def test_a_file_without_problems_gives_every_part(tmp_path: Path) -> None:
    assert problems_with(tmp_path) == []
    config = parse_config(put(minimal(), "postgresql.bin_dir", str(tmp_path / "bin")))
    setup = agent_setup(config)
    assert (setup.pg.name, setup.me.name, setup.store.node_id) == ("member1", "member1", 1)
    assert setup.settings.ttl == config.bootstrap.dcs.ttl


def test_a_long_socket_path_is_refused_up_front(tmp_path: Path) -> None:
    data_dir = "/" + "d" * 110 + "/pgdata"
    config = parse_config(
        put(put(minimal(), "postgresql.data_dir", data_dir), "postgresql.bin_dir", "/b")
    )
    with pytest.raises(ConfigError) as info:
        agent_setup(config)
    (problem,) = info.value.problems
    assert problem.startswith("postgresql: unix socket path ") and "longer than 107" in problem


def test_validate_config_and_the_agent_refuse_alike(tmp_path: Path) -> None:
    """The command line: what validate-config prints is what the agent refuses to start with."""
    bin_dir = fake_bin_dir(tmp_path)
    data = put(minimal(), "postgresql.bin_dir", str(bin_dir))
    put(data, "bootstrap.dcs.postgresql.parameters", {"hot_standby": "on"})
    path = tmp_path / "hamgr.yaml"
    path.write_text(yaml.safe_dump(data))
    run = [sys.executable, "-m", "hamgr"]
    env = {"PATH": "/usr/bin:/bin"}
    checked = subprocess.run(
        [*run, "validate-config", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    started = subprocess.run(
        [*run, "agent", "--config", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problem = (
        f"bootstrap.dcs.postgresql.parameters: 'hot_standby' {MANAGED} and cannot be given here"
    )
    assert (checked.returncode, checked.stderr) == (1, problem + "\n")
    assert (started.returncode, started.stderr) == (2, f"hamgr agent: {path}:\n{problem}\n")


def test_every_key_reaches_the_part_that_uses_it() -> None:
    """Each key the agent reads lands where its effect starts: PostgreSQL's settings, this
    member's published identity, or the cluster-wide settings it bootstraps with (the effects
    themselves are shown by the tests tests/test_setting_effects.py names)."""
    data = put(minimal(), "postgresql.bin_dir", "/b")
    put(data, "restapi", {"listen": "10.0.0.1:8008", "connect_address": "db1.example:8008"})
    put(data, "store.raft.node_id", 4)
    put(
        data,
        "postgresql",
        {
            "data_dir": "/srv/pg",
            "bin_dir": "/b",
            "os_user": "pgowner",
            "listen": "10.0.0.1:6432",
            "connect_address": "db1.example:6432",
            "authentication": {
                "superuser": {"username": "su", "password": "su-pw"},
                "replication": {"username": "repl", "password": "repl-pw"},
                "rewind": {"username": "rw", "password": "rw-pw"},
            },
            "parameters": {"work_mem": "8MB", "shared_buffers": "64MB"},
            "pg_hba": ["local all su scram-sha-256"],
            "use_pg_rewind": False,
            "remove_data_directory_on_rewind_failure": True,
        },
    )
    put(data, "bootstrap.dcs.postgresql.parameters", {"max_connections": 80, "work_mem": "1MB"})
    put(data, "bootstrap.dcs.postgresql.use_slots", False)
    for key, value in {
        "ttl": 9,
        "loop_wait": 1.5,
        "retry_timeout": 3,
        "safety_margin": 2.5,
    }.items():
        put(data, f"bootstrap.dcs.{key}", value)
    put(data, "bootstrap.dcs.maximum_lag_on_failover", 5)
    put(data, "bootstrap.dcs.primary_start_timeout", 7)
    put(data, "bootstrap.dcs.member_slots_ttl", 60)
    tags = {
        "nofailover": True,
        "noloadbalance": True,
        "clonefrom": True,
        "nosync": True,
        "failover_priority": 3,
    }
    put(data, "tags", tags)
    setup = agent_setup(parse_config(data))

    pg = setup.pg
    assert (str(pg.data_dir), str(pg.bin_dir), pg.os_user) == ("/srv/pg", "/b", "pgowner")
    assert (pg.host, pg.port, pg.name) == ("10.0.0.1", 6432, "member1")
    assert (pg.superuser, pg.superuser_password) == ("su", "su-pw")
    assert (pg.replication_user, pg.replication_password) == ("repl", "repl-pw")
    assert (pg.rewind_role, pg.rewind_secret) == ("rw", "rw-pw")
    # The member's own values win, except for the cluster-wide-only ones (max_connections).
    assert dict(pg.parameters) == {
        "max_connections": 80,
        "work_mem": "8MB",
        "shared_buffers": "64MB",
    }
    assert list(pg.hba) == ["local all su scram-sha-256"]

    me = setup.me
    assert (me.name, me.api_url, me.conn_url) == (
        "member1",
        "http://db1.example:8008",
        "db1.example:6432",
    )
    assert me.tags.to_dict() == tags
    assert (me.use_pg_rewind, me.reclone_on_rewind_failure, me.store_id) == (False, True, 4)

    s = setup.settings
    assert (s.ttl, s.loop_wait, s.retry_timeout, s.safety_margin) == (9, 1.5, 3, 2.5)
    assert (s.maximum_lag_on_failover, s.primary_start_timeout, s.member_slots_ttl) == (5, 7, 60)
    assert (s.use_slots, dict(s.parameters)) == (False, {"max_connections": 80, "work_mem": "1MB"})


def test_tls_on_one_side_only_or_unloadable_files_are_refused(tmp_path: Path) -> None:
    from hamgr.cli.certs import init, parse_members

    certs = tmp_path / "tls"
    init(certs, "demo", parse_members("n1=127.0.0.1"))
    rest = [
        ("restapi.certfile", str(certs / "n1.crt")),
        ("restapi.keyfile", str(certs / "n1.key")),
        ("restapi.cafile", str(certs / "ca.crt")),
    ]
    store = {
        "certfile": str(certs / "n1.crt"),
        "keyfile": str(certs / "n1.key"),
        "cafile": str(certs / "ca.crt"),
    }
    runs = iter(range(100))

    def problems(*changes: tuple[str, Any]) -> list[str]:
        run = tmp_path / f"run{next(runs)}"
        run.mkdir()
        return problems_with(run, *changes)

    both = "(TLS on the REST API and the store, or on neither)"
    assert problems(*rest) == [f"store.raft.tls: required when restapi.certfile is set {both}"]
    assert problems(("store.raft.tls", store)) == [
        f"restapi.certfile: required when store.raft.tls is set {both}"
    ]
    assert problems(*rest, ("store.raft.tls", store)) == []
    # A key that is not the certificate's: named at start (and by validate-config).
    (certs / "other.key").write_bytes((certs / "ca.key").read_bytes())
    (certs / "other.key").chmod(0o600)
    found = problems(
        *rest, ("restapi.keyfile", str(certs / "other.key")), ("store.raft.tls", store)
    )
    assert len(found) == 1 and found[0].startswith("restapi.certfile: cannot load the TLS files")
    assert problems(("restapi.verify_client", "required")) == [
        "restapi.verify_client: required needs TLS: set restapi.certfile"
    ]
    assert problems(
        *rest[:2], ("restapi.verify_client", "optional"), ("store.raft.tls", store)
    ) == [
        "restapi.cafile: required when restapi.verify_client is optional (the CA of client "
        "certificates)"
    ]
    assert problems(("restapi.allowlist", ["10.0.0.0/33"])) == [
        "restapi.allowlist[0]: expected an IP address or a CIDR network such as 10.0.0.0/8, "
        "got '10.0.0.0/33'"
    ]


def test_a_witness_refuses_the_sections_it_would_ignore() -> None:
    """A witness runs its store member only: a restapi, tags or watchdog section would be
    accepted and ignored, so each is refused, naming it."""
    data = put(minimal(), "postgresql", DELETE)
    assert isinstance(witness_setup(parse_config(data)), WitnessSetup)
    put(data, "restapi.listen", "127.0.0.1:8111")
    put(data, "tags.nofailover", True)
    put(data, "watchdog.mode", "automatic")
    with pytest.raises(ConfigError) as refused:
        witness_setup(parse_config(data))
    assert [p.split(":")[0] for p in refused.value.problems] == ["restapi", "tags", "watchdog"]
    assert "a witness (no postgresql section) runs its store member only" in str(refused.value)
