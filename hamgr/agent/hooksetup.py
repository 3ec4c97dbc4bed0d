"""The operator's commands from the configuration, as the agent runs them.

Turns ``postgresql.create_replica_methods`` (with each method's section), ``bootstrap.method``,
``bootstrap.post_bootstrap`` and ``postgresql.callbacks`` into what hamgr.postgres.methods and
hamgr.ha.callbacks run, and ``postgresql.recovery_conf.restore_command`` into the member's
parameters (PostgreSQL 12+ reads restore_command from its configuration, as Patroni writes it).
"""

from __future__ import annotations

from collections.abc import Mapping

from hamgr.config import Config
from hamgr.config.methods import BASEBACKUP, INITDB
from hamgr.config.schema import ParameterValue, PostgresConfig
from hamgr.ha.callbacks import ACTIONS, CallbackRunner
from hamgr.postgres.errors import ConfigError as PgConfigError
from hamgr.postgres.methods import (
    BUILTIN_BASEBACKUP,
    BootstrapSpec,
    MemberMethods,
    ReplicaMethodSpec,
    validate_recovery_settings,
)
from hamgr.postgres.settings import PgSettings


def member_parameters(pg: PostgresConfig) -> dict[str, ParameterValue]:
    """The member's own parameters: ``postgresql.parameters`` with ``recovery_conf``'s
    restore_command (the config check refuses it in both places)."""
    params = dict(pg.parameters)
    if pg.recovery_conf.restore_command is not None:
        params["restore_command"] = pg.recovery_conf.restore_command
    return params


def member_methods(config: Config) -> MemberMethods:
    """How this member makes its data, from its configuration."""
    pg = config.postgresql
    replica: list[ReplicaMethodSpec] = []
    for name in pg.create_replica_methods if pg is not None else (BASEBACKUP,):
        if name == BASEBACKUP or pg is None:
            replica.append(BUILTIN_BASEBACKUP)
            continue
        m = pg.replica_methods[name]
        replica.append(
            ReplicaMethodSpec(
                name,
                m.command,
                keep_data=m.keep_data,
                without_leader=m.without_leader,
                no_params=m.no_params,
            )
        )
    boot = config.bootstrap
    bootstrap = None
    if boot.method != INITDB:
        b = boot.methods[boot.method]
        bootstrap = BootstrapSpec(
            boot.method,
            b.command,
            keep_existing_recovery_conf=b.keep_existing_recovery_conf,
            no_params=b.no_params,
            recovery_conf=dict(b.recovery_conf),
        )
    return MemberMethods(
        scope=config.scope,
        replica=tuple(replica),
        bootstrap=bootstrap,
        post_bootstrap=boot.post_bootstrap or boot.post_init,
    )


def callback_commands(config: Config) -> Mapping[str, str]:
    """The configured callbacks by action."""
    if config.postgresql is None:
        return {}
    callbacks = config.postgresql.callbacks
    return {a: c for a in ACTIONS if (c := callbacks.command(a)) is not None}


def callback_runner(config: Config, pg: PgSettings) -> CallbackRunner | None:
    """The member's callback runner, or None when no callback is configured."""
    commands = callback_commands(config)
    if not commands or config.postgresql is None:
        return None
    return CallbackRunner(commands, config.scope, pg, config.postgresql.callback_timeout)


def refresh_callbacks(
    current: CallbackRunner | None, config: Config, pg: PgSettings
) -> CallbackRunner | None:
    """The callback runner after a reload: the running one with the new commands and timeout
    (it keeps the role it reported and the callback it runs), or a new one."""
    fresh = callback_runner(config, pg)
    if current is None:
        return fresh
    current.commands = dict(fresh.commands) if fresh is not None else {}
    current.timeout = fresh.timeout if fresh is not None else current.timeout
    current.pg = pg
    return current


def method_problems(config: Config) -> list[str]:
    """What PostgreSQL would refuse in a bootstrap method's recovery settings, by key."""
    boot = config.bootstrap
    problems: list[str] = []
    for name, method in boot.methods.items():
        try:
            validate_recovery_settings(method.recovery_conf, f"bootstrap.{name}.recovery_conf")
        except PgConfigError as exc:
            problems.append(str(exc))
    return problems
