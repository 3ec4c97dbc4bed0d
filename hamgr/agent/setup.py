"""What the agent builds from its configuration before it starts anything, checked in one place.

`agent_setup` turns a checked :class:`~hamgr.config.Config` into the parts the agent runs with:
the store member's settings, the local PostgreSQL's settings, how this member presents itself,
and the cluster-wide settings it writes at bootstrap. Each part checks its own values when it
is built (PostgreSQL's reserved parameters, role names, the unix socket's path length, the
timing rules of the dynamic settings), and `agent_setup` reports every such problem at once,
naming the configuration key. `hamgr validate-config`, `hamgr agent` and the agent's reload
all go through `load_agent_setup`, so a file that passes validate-config is one the agent
starts with, and a reload refuses what a start would refuse.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hamgr.agent.hooksetup import member_parameters, method_problems
from hamgr.agent.storemember import StoreSettings, settings_from_config
from hamgr.config import Config, ConfigError, load_config, split_address
from hamgr.config.schema import PostgresConfig, RestApiConfig, Tags
from hamgr.dcs.model import MemberTags
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError
from hamgr.ha.loop import Identity
from hamgr.postgres import PgSettings
from hamgr.postgres.errors import ConfigError as PgConfigError
from hamgr.postgres.initdbopts import initdb_option_problems, initdb_options
from hamgr.postgres.params import effective_parameters, local_only_problems
from hamgr.postgres.settings import validate_hba_lines, validate_parameters, validate_role_name
from hamgr.tls import TlsFiles, client_context, rest_client_context, rest_server_context

__all__ = [
    "AgentSetup",
    "WitnessSetup",
    "agent_setup",
    "identity",
    "load_agent_setup",
    "load_setup",
    "pg_settings",
    "setup_problems",
    "witness_setup",
]

WITNESS_MEANING = "a witness: a store member only, no PostgreSQL (no postgresql section)"


@dataclass(frozen=True)
class AgentSetup:
    """The parts an agent runs with, all built and checked from one configuration."""

    config: Config
    store: StoreSettings | None
    """The embedded store member's settings; None with ``store.backend: etcd``."""
    pg: PgSettings
    me: Identity
    settings: DynamicSettings
    """The cluster-wide settings this member writes if it bootstraps the cluster."""


@dataclass(frozen=True)
class WitnessSetup:
    """A witness host: a configuration without a ``postgresql`` section. It runs its store
    member only, so that two database hosts plus this one keep a store majority when either
    database host is lost; it never runs PostgreSQL or an HA loop."""

    config: Config
    store: StoreSettings


def database(config: Config) -> PostgresConfig:
    """The ``postgresql`` section; ConfigError when it is absent (the file is a witness's)."""
    if config.postgresql is None:
        raise ConfigError(
            [
                f"postgresql: required for a database host (without it this file describes "
                f"{WITNESS_MEANING})"
            ]
        )
    return config.postgresql


def witness_setup(config: Config) -> WitnessSetup:
    """The setup of a witness (`config` has no ``postgresql`` section). Raises ConfigError:
    a witness is a member of the embedded store, so it needs ``store.backend: raft``."""
    if config.store.backend != "raft":
        raise ConfigError(
            [
                f"postgresql: required with store.backend {config.store.backend}: a file "
                f"without it describes a witness, a member of the embedded raft store, and "
                f"an {config.store.backend} cluster has its own members"
            ]
        )
    ignored = [
        name
        for name, used in (
            ("restapi", config.restapi != RestApiConfig()),
            ("tags", config.tags != Tags()),
            # Its safety_margin default follows timing_profile; the mode says it is used.
            ("watchdog", config.watchdog.mode != "off"),
        )
        if used
    ]
    if ignored:
        raise ConfigError(
            [
                f"{name}: a witness (no postgresql section) runs its store member only, no REST "
                f"API, HA loop or watchdog: remove the section"
                for name in ignored
            ]
        )
    return WitnessSetup(config, settings_from_config(config))


def pg_settings(config: Config) -> PgSettings:
    """The local PostgreSQL's settings from the agent's configuration.

    Its parameters are ``bootstrap.dcs.postgresql.parameters`` with the member's own
    ``postgresql.parameters`` on top (hamgr/postgres/params.py: the cluster-wide-only ones
    come from the former alone); the HA loop replaces them with the cluster's stored
    settings once it reads them. ``bootstrap.initdb`` says how initdb creates the cluster if
    this member bootstraps it.
    Raises :class:`hamgr.postgres.ConfigError` on a value PostgreSQL's side refuses.
    """
    pg = database(config)
    auth = pg.authentication
    host, port = split_address(pg.listen)
    params = effective_parameters(config.bootstrap.dcs.postgresql.parameters, member_parameters(pg))
    assert pg.bin_dir is not None, "load_config resolves bin_dir"
    return PgSettings(
        bin_dir=Path(pg.bin_dir),
        data_dir=Path(pg.data_dir),
        os_user=pg.os_user,
        name=config.name,
        host=host,
        port=port,
        superuser=auth.superuser.username,
        superuser_password=auth.superuser.password,
        replication_user=auth.replication.username,
        replication_password=auth.replication.password,
        rewind_user=auth.rewind.username if auth.rewind else None,
        rewind_password=auth.rewind.password if auth.rewind else None,
        parameters=params,
        hba=pg.pg_hba,
        initdb=initdb_options(config.bootstrap.initdb, "bootstrap.initdb"),
    )


def identity(config: Config) -> Identity:
    """How this member presents itself in the store."""
    rest = config.restapi
    scheme = "https" if rest.certfile else "http"
    raft = config.store.raft
    pg = database(config)
    return Identity(
        name=config.name,
        api_url=f"{scheme}://{rest.connect_address}",
        conn_url=pg.connect_address,
        tags=MemberTags(
            nofailover=config.tags.nofailover,
            noloadbalance=config.tags.noloadbalance,
            nosync=config.tags.nosync,
            failover_priority=config.tags.failover_priority,
            clonefrom=config.tags.clonefrom,
        ),
        use_pg_rewind=pg.use_pg_rewind,
        reclone_on_rewind_failure=pg.remove_data_directory_on_rewind_failure,
        store_id=raft.node_id if raft is not None and config.store.backend == "raft" else 0,
    )


def _refused(check: Callable[..., None], *args: object) -> list[str]:
    """The problem `check(*args)` raises as a hamgr.postgres.ConfigError, if any."""
    try:
        check(*args)
    except PgConfigError as exc:
        return [str(exc)]
    return []


def _postgres_problems(config: Config) -> list[str]:
    """PostgreSQL's own rules on the keys that feed PgSettings, each named by its key."""
    pg = database(config)
    auth = pg.authentication
    problems: list[str] = []
    sections: Mapping[str, Mapping[str, object]] = {
        "postgresql.parameters": pg.parameters,
        "bootstrap.dcs.postgresql.parameters": config.bootstrap.dcs.postgresql.parameters,
    }
    for where, params in sections.items():
        for key, value in params.items():
            problems += _refused(validate_parameters, {key: value}, where)
    problems += local_only_problems(pg.parameters, "postgresql.parameters")
    problems += _refused(validate_hba_lines, pg.pg_hba, "postgresql.pg_hba")
    problems += initdb_option_problems(config.bootstrap.initdb, "bootstrap.initdb")
    problems += method_problems(config)
    roles = {
        "postgresql.authentication.superuser.username": auth.superuser.username,
        "postgresql.authentication.replication.username": auth.replication.username,
    }
    if auth.rewind is not None:
        roles["postgresql.authentication.rewind.username"] = auth.rewind.username
    for where, role in roles.items():
        problems += _refused(validate_role_name, where, role)
    return problems


def _tls_problems(config: Config) -> list[str]:
    """The TLS files must load (certificate and key that match, a CA that parses), and with the
    embedded store TLS is on for both the REST API and the store or for neither: one side in
    clear text would carry the other's secrets (REST passwords, peer state) unprotected, and a
    half-TLS cluster is what a mistyped file makes, not what anyone means."""
    problems: list[str] = []
    rest = config.restapi
    try:
        rest_server_context(rest)
        rest_client_context(rest)
    except (OSError, ssl.SSLError) as exc:
        problems.append(f"restapi.certfile: cannot load the TLS files: {exc}")
    raft = config.store.raft
    if config.store.backend != "raft" or raft is None:
        return problems
    if raft.tls is not None:
        files = TlsFiles(raft.tls.certfile, raft.tls.keyfile, raft.tls.cafile)
        try:
            client_context(files, check_hostname=False)
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"store.raft.tls: cannot load the TLS files: {exc}")
    if raft.tls is not None and rest.certfile is None:
        problems.append(
            "restapi.certfile: required when store.raft.tls is set (TLS on the REST API and "
            "the store, or on neither)"
        )
    if raft.tls is None and rest.certfile is not None:
        problems.append(
            "store.raft.tls: required when restapi.certfile is set (TLS on the REST API and "
            "the store, or on neither)"
        )
    return problems


def _dynamic_settings(config: Config) -> DynamicSettings:
    """The bootstrap dynamic settings; a refused value raises ConfigError naming its key."""
    try:
        return DynamicSettings.from_config(config.bootstrap.dcs)
    except ModelError as exc:
        field = exc.field
        if field.startswith("parameters") or field == "use_slots":
            field = f"postgresql.{field}"
        raise ConfigError([f"bootstrap.dcs.{field}: {exc.problem}"]) from None


def agent_setup(config: Config) -> AgentSetup:
    """Build every part the agent runs with from `config` (already loaded and resolved).

    Raises :class:`hamgr.config.ConfigError` listing every problem, each naming its key.
    """
    database(config)
    problems: list[str] = []
    store = pg = settings = None
    if config.store.backend == "raft":
        try:
            store = settings_from_config(config)
        except ConfigError as exc:
            problems += exc.problems
    elif config.store.etcd is None:
        problems.append("store.etcd: required when store.backend is etcd")
    pg_problems = _postgres_problems(config)
    problems += pg_problems
    problems += _tls_problems(config)
    try:
        pg = pg_settings(config)
    except PgConfigError as exc:
        if not pg_problems:  # else it is one of those, reported once, by key
            problems.append(f"postgresql: {exc}")
    try:
        settings = _dynamic_settings(config)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    assert pg is not None and settings is not None
    return AgentSetup(config, store, pg, identity(config), settings)


def load_agent_setup(path: str | Path, env: Mapping[str, str] | None = None) -> AgentSetup:
    """Read and check the file at `path` (with `env`, else os.environ) as the agent does at
    start: :func:`hamgr.config.load_config`, then :func:`agent_setup`. Raises ConfigError."""
    return agent_setup(load_config(path, env))


def load_setup(path: str | Path, env: Mapping[str, str] | None = None) -> AgentSetup | WitnessSetup:
    """What ``hamgr agent`` runs with for the file at `path`: a database host's
    :class:`AgentSetup`, or a :class:`WitnessSetup` when the file has no ``postgresql``
    section. Raises ConfigError listing every problem."""
    config = load_config(path, env)
    if config.postgresql is None:
        return witness_setup(config)
    return agent_setup(config)


def setup_problems(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem :func:`load_setup` would raise for `path`; ``[]`` means the agent
    starts with it (``hamgr validate-config``)."""
    try:
        load_setup(path, env)
    except ConfigError as exc:
        return exc.problems
    return []
