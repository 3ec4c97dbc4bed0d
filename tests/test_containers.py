"""The container deployment: docker-compose.yml, deploy/docker/Dockerfile and its baked config.

The consistency tests always run: every agent service's HAMGR_* variables, laid over the baked
configuration by hamgr.config's own override rules, give a valid configuration of exactly that
member; the Dockerfile, the compose file, the baked configuration and HAProxy's configuration
agree on paths, ports, users and names.

The container tests bring the cluster up with pytest-docker (three agents and HAProxy), kill the
primary's container and check, through HAProxy, that another member became primary with the
data written before. They skip, saying why, where no Docker engine (or no `docker compose`)
answers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import psycopg
import pytest
import yaml

from hamgr.agent.setup import agent_setup
from hamgr.cli.healthcheck import local_url
from hamgr.config import Config, ConfigError, dump_effective, parse_config, schema_paths
from hamgr.config.values import split_address
from tests.tools.poll import wait_for

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IGNOREFILE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
BAKED = ROOT / "deploy" / "docker" / "hamgr.yaml"
BAKED_IN_IMAGE = "/etc/hamgr/hamgr.yaml"
AGENTS = ("hamgr1", "hamgr2", "hamgr3")
PRIMARY_PORT = 5000  # HAProxy's port for the primary, inside its container

T = TypeVar("T")


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # resolves the <<: merge keys as compose does
    assert isinstance(data, dict)
    return data


def baked() -> dict[str, Any]:
    data = yaml.safe_load(BAKED.read_text())
    assert isinstance(data, dict)
    return data


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    for key, value in env.items():
        assert isinstance(value, str), f"{key}: quote it, compose passes text ({value!r})"
    return dict(env)


def agent_config(name: str) -> Config:
    return parse_config(baked(), service_env(compose()["services"][name]))


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def instr(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # a JSON array is YAML too
    assert isinstance(value, list), f"use the exec (JSON array) form, got {args}"
    return [str(v) for v in value]


def port(address: str) -> int:
    return split_address(address)[1]


# --- the compose file ---------------------------------------------------------------------------


def test_services_network_and_volumes() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {*AGENTS, "haproxy"}
    networks = set(data["networks"])
    assert len(networks) == 1
    (net,) = networks
    for name, svc in services.items():
        assert svc["networks"] == [net], f"{name} is not (only) on the private network"
    volumes = set()
    for name in AGENTS:
        svc = services[name]
        assert svc["hostname"] == name
        assert svc["build"] == {"context": ".", "dockerfile": "deploy/docker/Dockerfile"}
        (volume,) = svc["volumes"]
        source, target = volume.split(":")
        assert target == "/var/lib/hamgr" and source in data["volumes"]
        volumes.add(source)
        assert "ports" not in svc  # only HAProxy is reachable from the host
        assert (
            float(svc["stop_grace_period"].rstrip("s")) >= 2 * agent_config(name).bootstrap.dcs.ttl
        )
    assert len(volumes) == len(AGENTS)
    assert services["haproxy"]["ports"] == [f"127.0.0.1::{PRIMARY_PORT}"]
    assert set(services["haproxy"]["depends_on"]) == set(AGENTS)


def test_every_agent_env_gives_a_valid_config_of_that_member() -> None:
    configs = {name: agent_config(name) for name in AGENTS}  # raises ConfigError if invalid
    ids = {name: c.store.raft.node_id for name, c in configs.items() if c.store.raft}
    assert sorted(ids.values()) == [1, 2, 3]
    for name, c in configs.items():
        raft = c.store.raft
        assert raft is not None
        assert c.name == name
        assert c.restapi.connect_address == f"{name}:{port(c.restapi.listen)}"
        assert c.postgresql.connect_address == f"{name}:{port(c.postgresql.listen)}"
        assert raft.advertise == f"{name}:{port(raft.listen)}"
        others = {
            (
                o.store.raft.node_id,
                o.store.raft.advertise,
                o.store.raft.client_listen.replace("0.0.0.0", n),
            )
            for n, o in configs.items()
            if n != name and o.store.raft is not None
        }
        assert {(p.node_id, p.address, p.client_address) for p in raft.peers} == others
        assert c.postgresql.os_user == "postgres"
        assert c.postgresql.authentication.superuser.password
        assert c.postgresql.authentication.replication.password
    secrets = {c.store.raft.secret for c in configs.values() if c.store.raft}
    assert len(secrets) == 1
    scopes = {c.scope for c in configs.values()}
    assert len(scopes) == 1


def test_every_hamgr_variable_names_a_key_and_sets_it() -> None:
    """Each HAMGR_* variable maps to a key of the schema (by the override rules: "__" between
    parts, case-insensitive) and that key holds the variable's value in the parsed config."""
    paths = set(schema_paths())
    for name in AGENTS:
        env = service_env(compose()["services"][name])
        dumped = dump_effective(agent_config(name), redact=False)
        for var, text in env.items():
            assert var.startswith("HAMGR_"), f"{name}: {var} is not a hamgr variable"
            parts = [p.lower() for p in var[len("HAMGR_") :].split("__")]
            assert ".".join(parts) in paths, f"{name}: {var} names no configuration key"
            got: Any = dumped
            for p in parts:
                got = got[p]
            want = yaml.safe_load(text) if not isinstance(got, str) else text
            if isinstance(got, list):  # peers: defaults filled in after parsing
                want = [{**g, **w} for g, w in zip(got, want, strict=True)]
            assert got == want, f"{name}: {var}={text!r} gives {got!r}"


def test_the_baked_config_alone_names_what_each_member_must_set() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(baked(), {})
    text = str(caught.value)
    for key in (
        "name",
        "store.raft.node_id",
        "store.raft.secret",
        "restapi.connect_address",
        "postgresql.connect_address",
        "store.raft.advertise",
    ):
        assert key in text, f"{key} not named in:\n{text}"


def test_every_agent_passes_the_checks_the_agent_runs_at_start() -> None:
    """What validate-config and the agent check beyond the file (hamgr.agent.setup)."""
    for name in AGENTS:
        config = agent_config(name)
        pg = dataclasses.replace(config.postgresql, bin_dir="/usr/lib/postgresql/15/bin")
        setup = agent_setup(dataclasses.replace(config, postgresql=pg))
        assert setup.me.name == name


def test_an_agent_with_a_typo_in_its_env_is_refused() -> None:
    env = service_env(compose()["services"]["hamgr1"])
    env["HAMGR_STORE__RAFT__NODEID"] = "1"
    with pytest.raises(ConfigError, match="NODEID"):
        parse_config(baked(), env)


# --- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_base_packages_and_user() -> None:
    (base,) = instr("FROM")
    assert re.fullmatch(r"debian:bookworm(-slim)?", base), base
    args = dict(a.split("=", 1) for a in instr("ARG"))
    assert args["PG_MAJOR"] == "15"
    run = " ".join(instr("RUN"))
    for package in ('"postgresql-${PG_MAJOR}"', "python3-venv", "tini"):
        assert package in run
    assert "create_main_cluster" in run  # no Debian default cluster beside hamgr's
    assert instr("USER") == ["postgres"]


def test_dockerfile_entrypoint_runs_the_agent_on_the_baked_config() -> None:
    (entry,) = instr("ENTRYPOINT")
    (cmd,) = instr("CMD")
    argv = exec_form(entry) + exec_form(cmd)
    assert argv[:2] == ["/usr/bin/tini", "--"]  # PID 1 reaps the detached postmaster
    assert argv[2:] == ["/opt/hamgr/bin/hamgr", "agent", "--config", BAKED_IN_IMAGE]
    copies = [shlex.split(a) for a in instr("COPY")]
    assert ["deploy/docker/hamgr.yaml", BAKED_IN_IMAGE] in copies
    assert "/opt/hamgr/bin/pip install --no-cache-dir /src/hamgr" in " ".join(instr("RUN"))


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    patterns = [
        line.strip()
        for line in IGNOREFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    kept = {p[1:] for p in patterns if p.startswith("!")}
    for args in instr("COPY"):
        *sources, _ = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source in kept, f"COPY {source}: excluded by {IGNOREFILE.name}"


def test_dockerfile_ports_volume_and_healthcheck_match_the_config() -> None:
    c = agent_config("hamgr1")
    raft = c.store.raft
    assert raft is not None
    wanted = {
        port(c.postgresql.listen),
        port(raft.listen),
        port(raft.client_listen),
        port(c.restapi.listen),
    }
    exposed = {int(p) for a in instr("EXPOSE") for p in a.split()}
    assert exposed == wanted
    (volume,) = instr("VOLUME")
    pgdata = PurePosixPath(c.postgresql.data_dir)
    for path in (PurePosixPath(raft.data_dir), pgdata, pgdata.with_name(pgdata.name + ".run")):
        assert path.is_relative_to(volume), f"{path} is not on the volume {volume}"
    (health,) = instr("HEALTHCHECK")
    # `hamgr healthcheck` dials restapi.listen of the image's configuration (http or https
    # from the same file and HAMGR_* variables as the agent).
    command = re.search(r"CMD (\[.*\])", health)
    assert command is not None
    assert json.loads(command.group(1)) == [
        "/opt/hamgr/bin/hamgr",
        *("healthcheck", "--config", "/etc/hamgr/hamgr.yaml", "--path", "/liveness"),
    ]
    assert (
        local_url(c.restapi, "/liveness") == f"http://127.0.0.1:{port(c.restapi.listen)}/liveness"
    )
    # Compose waits (up --wait) on this check; the bootstrap of a replica must fit its grace.
    start = re.search(r"--start-period=(\d+)s", health)
    assert start is not None and int(start.group(1)) >= 60


# --- HAProxy ------------------------------------------------------------------------------------


def test_haproxy_config_and_its_variables_match_the_members() -> None:
    svc = compose()["services"]["haproxy"]
    (mount,) = svc["volumes"]
    source, target, mode = mount.split(":")
    assert target == "/usr/local/etc/haproxy/haproxy.cfg" and mode == "ro"
    cfg = "\n".join(line.split("#", 1)[0] for line in (ROOT / source).read_text().splitlines())
    env = service_env(svc)
    used = set(re.findall(r"\$\{(\w+)\}", cfg))
    assert used, "HAProxy's configuration reads no variables: it cannot know the members"
    # Variables guarded by ".if defined(VAR)" are optional (the TLS checks: HAMGR_API_CAFILE).
    optional = set(re.findall(r"^\.if defined\((\w+)\)", cfg, re.MULTILINE))
    assert optional == {"HAMGR_API_CAFILE", "HAMGR_API_CLIENT_PEM"}
    needed = used - optional
    assert needed <= env.keys(), f"unset in the haproxy service: {sorted(needed - env.keys())}"
    configs = [agent_config(n) for n in AGENTS]
    servers = {env[v] for v in re.findall(r"^\s*server\s+\S+\s+\"\$\{(\w+)\}\"", cfg, re.MULTILINE)}
    assert servers == {c.postgresql.connect_address for c in configs}
    check_ports = {env[v] for v in re.findall(r"check port \"\$\{(\w+)\}\"", cfg)}
    assert check_ports == {str(port(c.restapi.listen)) for c in configs}
    assert "GET /primary" in cfg
    binds = [env[v] for v in re.findall(r"^\s*bind\s+\"\$\{(\w+)\}\"", cfg, re.MULTILINE)]
    assert binds and all(int(b.rsplit(":", 1)[1]) == PRIMARY_PORT for b in binds), binds


# --- with a Docker engine -----------------------------------------------------------------------


def _engine_problem() -> str | None:
    """Why the container tests cannot run here, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on PATH"
    info = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if info.returncode != 0:
        why = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no Docker engine answers (docker info: {why})"
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if version.returncode != 0:
        return "the Docker Compose v2 plugin (docker compose) is not installed"
    return None


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"hamgrtest{os.getpid()}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up --build --wait --wait-timeout 600"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v --timeout 30"]


@dataclasses.dataclass
class Cluster:
    compose: Callable[..., subprocess.CompletedProcess[str]]
    primary_port: int
    password: str


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, docker_compose_project_name: str) -> Iterator[Cluster]:
    problem = _engine_problem()
    if problem is not None:
        pytest.skip(f"container tests need a Docker engine: {problem}")
    services = request.getfixturevalue("docker_services")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["docker", "compose", "-f", str(COMPOSE), "-p", docker_compose_project_name]
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=120, check=True
        )

    env = service_env(compose()["services"]["hamgr1"])
    yield Cluster(
        run,
        services.port_for("haproxy", PRIMARY_PORT),
        env["HAMGR_POSTGRESQL__AUTHENTICATION__SUPERUSER__PASSWORD"],
    )


def connect(c: Cluster) -> psycopg.Connection[Any]:
    """A session through HAProxy's primary port."""
    return psycopg.connect(
        host="127.0.0.1",
        port=c.primary_port,
        user="postgres",
        password=c.password,
        dbname="postgres",
        connect_timeout=3,
        autocommit=True,
    )


def primary_via_haproxy(c: Cluster) -> str | None:
    """The member name of the primary HAProxy routes to, or None when it routes nowhere yet."""
    with connect(c) as conn:
        row = conn.execute("SELECT current_setting('cluster_name'), pg_is_in_recovery()").fetchone()
    assert row is not None
    name, in_recovery = row
    return None if in_recovery else str(name)


@pytest.mark.integration
@pytest.mark.timeout(1500)
def test_killing_the_primary_container_moves_the_primary(cluster: Cluster) -> None:
    first = wait_for(lambda: primary_via_haproxy(cluster), 180, "a primary behind HAProxy")
    assert first in AGENTS
    with connect(cluster) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survives (v text)")
        conn.execute("INSERT INTO survives VALUES ('before the kill')")
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone() or ("",)

        def replicated() -> bool | None:
            rows = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= %s::pg_lsn",
                (lsn,),
            ).fetchone()
            return True if rows and rows[0] == len(AGENTS) - 1 else None

        # Replication is asynchronous: kill only once both replicas have the row.
        wait_for(replicated, 120, "both replicas replaying the row")
    cluster.compose("kill", first)
    second = wait_for(
        lambda: p if (p := primary_via_haproxy(cluster)) not in (None, first) else None,
        180,
        f"a new primary after killing {first}",
    )
    assert second in AGENTS and second != first
    with connect(cluster) as conn:
        rows = conn.execute("SELECT v FROM survives").fetchall()
        assert rows == [("before the kill",)]
        conn.execute("INSERT INTO survives VALUES ('after the failover')")
