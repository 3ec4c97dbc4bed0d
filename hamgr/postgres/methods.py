"""Operators' ways to make a data directory: replica methods, bootstrap methods, post_bootstrap.

As Patroni runs them. A replica is made by the first of ``create_replica_methods`` that
succeeds: ``basebackup`` is hamgr's pg_basebackup (:func:`hamgr.postgres.replication.clone_from`),
any other is an operator's command (a pgBackRest or WAL-G restore...) called with
``--scope= --role=replica --datadir= --connstring=``. A bootstrap method's command replaces
initdb and is called with ``--scope= --datadir=``. ``post_bootstrap`` runs once the new
cluster is up, with a connection string. Every command runs as the OS user PostgreSQL runs as
(:func:`hamgr.postgres.process.run_argv`), bounded in time. The argument lists and the order
of the methods are pure functions (:func:`replica_method_argv`, :func:`methods_to_try`...).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hamgr.postgres import conf, render
from hamgr.postgres.control import checkpoint, is_initialized, is_running
from hamgr.postgres.errors import (
    CommandError,
    ConfigError,
    PgTimeoutError,
    PostgresError,
    StateError,
)
from hamgr.postgres.files import ensure_dir, remove_contents, remove_file, write_file
from hamgr.postgres.process import resolve_run_as, run_argv
from hamgr.postgres.replication import clone_from
from hamgr.postgres.settings import ParamValue, PgSettings
from hamgr.postgres.sql import connect_retrying, fetch_one

log = logging.getLogger(__name__)

BASEBACKUP = "basebackup"
METHOD_TIMEOUT = 3600.0
"""Seconds a replica or bootstrap method may run before it is killed (a restore of a large
backup takes long; a hung one must not hold the member forever)."""
POST_BOOTSTRAP_TIMEOUT = 600.0
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MethodError(CommandError):
    """An operator's replica, bootstrap or post_bootstrap command failed."""


@dataclass(frozen=True)
class ReplicaMethodSpec:
    """One replica method as configured (``postgresql.create_replica_methods`` + its section).

    ``command`` None is the built-in ``basebackup``."""

    name: str
    command: str | None = None
    keep_data: bool = False
    without_leader: bool = False
    no_params: bool = False


BUILTIN_BASEBACKUP = ReplicaMethodSpec(BASEBACKUP)


@dataclass(frozen=True)
class BootstrapSpec:
    """A custom bootstrap method (``bootstrap.method`` + its section)."""

    name: str
    command: str
    keep_existing_recovery_conf: bool = False
    no_params: bool = False
    recovery_conf: Mapping[str, ParamValue] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberMethods:
    """How this member makes its data: replica methods in order, the bootstrap method (None:
    initdb) and post_bootstrap (None: nothing)."""

    scope: str = ""
    replica: tuple[ReplicaMethodSpec, ...] = (BUILTIN_BASEBACKUP,)
    bootstrap: BootstrapSpec | None = None
    post_bootstrap: str | None = None

    @property
    def clone_without_leader(self) -> bool:
        """Some replica method needs no leader."""
        return bool(methods_to_try(self.replica, have_leader=False))


def methods_to_try(
    methods: Sequence[ReplicaMethodSpec], have_leader: bool
) -> list[ReplicaMethodSpec]:
    """The methods to try, in order: all of them with a leader to copy from; without one only
    those that need none (``no_leader``: a restore from a backup). ``basebackup`` always needs
    one."""
    if have_leader:
        return list(methods)
    return [m for m in methods if m.command is not None and m.without_leader]


def replica_method_argv(
    method: ReplicaMethodSpec, *, scope: str, data_dir: str, connstring: str
) -> list[str]:
    """The command line of an operator's replica method, as Patroni builds it."""
    assert method.command is not None, "basebackup has no command line"
    argv = shlex.split(method.command)
    if not method.no_params:
        argv += [
            f"--scope={scope}",
            "--role=replica",
            f"--datadir={data_dir}",
            f"--connstring={connstring}",
        ]
    return argv


def bootstrap_argv(method: BootstrapSpec, *, scope: str, data_dir: str) -> list[str]:
    """The command line of a custom bootstrap method, as Patroni builds it."""
    argv = shlex.split(method.command)
    if not method.no_params:
        argv += [f"--scope={scope}", f"--datadir={data_dir}"]
    return argv


def post_bootstrap_argv(command: str, connstring: str) -> list[str]:
    """post_bootstrap's command line: the command, then the superuser's connection string."""
    return [*shlex.split(command), connstring]


def superuser_conninfo(settings: PgSettings, passfile: str | None) -> str:
    """The superuser's connection over the local socket (what post_bootstrap is given)."""
    return render.conninfo(
        host=str(settings.socket_dir),
        port=settings.port,
        user=settings.superuser,
        dbname="postgres",
        passfile=passfile,
    )


async def create_replica(
    settings: PgSettings,
    methods: Sequence[ReplicaMethodSpec],
    *,
    scope: str,
    source: tuple[str, int] | None,
    slot_name: str | None = None,
) -> str:
    """Make this member's replica data with the first method that succeeds; its name.

    ``source`` is the member to copy from (None: no leader runs, only ``no_leader`` methods
    are tried). A failed method's leftovers are removed before the next one. After an
    operator's method the managed config is written and the data directory marked as a
    standby (the HA loop points it at the leader when it starts it). Raises the last
    method's error when none succeeded.
    """
    todo = methods_to_try(methods, source is not None)
    if not todo:
        raise StateError(
            "no replica method can run without a leader (none has no_leader); waiting for one"
        )
    last: PostgresError | None = None
    for method in todo:
        if is_running(settings):
            raise StateError(f"cannot create a replica in {settings.data_dir}: a server runs on it")
        try:
            if method.command is None:
                assert source is not None
                await clone_from(settings, source[0], source[1], slot_name=slot_name)
            else:
                await _run_replica_method(settings, method, scope, source)
        except PostgresError as exc:
            log.error("replica method %s failed: %s", method.name, exc)
            last = exc
            if not method.keep_data or method.command is None:
                await _clear(settings)
            continue
        log.info("replica created with method %s", method.name)
        return method.name
    assert last is not None
    raise last


async def _run_replica_method(
    settings: PgSettings,
    method: ReplicaMethodSpec,
    scope: str,
    source: tuple[str, int] | None,
) -> None:
    run_as = resolve_run_as(settings.os_user)
    if not method.keep_data:
        await _clear(settings)
    ensure_dir(settings.data_dir, run_as)
    conf.write_passfile(settings, run_as)
    connstring = (
        render.primary_conninfo(settings, source[0], source[1], settings.name) if source else ""
    )
    argv = replica_method_argv(
        method, scope=scope, data_dir=str(settings.data_dir), connstring=connstring
    )
    log.info("creating the replica with method %s: %s", method.name, shlex.join(argv))
    await run_argv(
        settings,
        argv,
        timeout=METHOD_TIMEOUT,
        what=f"replica method {method.name}",
        error=MethodError,
        env={"PGPASSFILE": str(settings.passfile)},
    )
    if not is_initialized(settings):
        raise StateError(
            f"replica method {method.name} succeeded but left no cluster in {settings.data_dir}"
        )
    conf.write_config(settings)
    write_file(settings.data_dir / conf.STANDBY_SIGNAL, "", run_as)
    conf.clear_sync_conf(settings)


async def _clear(settings: PgSettings) -> None:
    """Empty the data directory (the directory itself stays: it may be a mount point)."""
    await asyncio.to_thread(remove_contents, settings.data_dir)


def validate_recovery_settings(params: Mapping[str, ParamValue], where: str) -> None:
    """Recovery settings (a bootstrap method's ``recovery_conf``): parameter names, one-line
    values. Raises ConfigError naming ``where``."""
    for key, value in params.items():
        if not _PARAM_NAME.fullmatch(key):
            raise ConfigError(f"{where}: {key!r} is not a valid PostgreSQL parameter name")
        if isinstance(value, str) and any(c in value for c in "\n\r\0"):
            raise ConfigError(f"{where}: the value of {key!r} must fit on one line")


def render_recovery_settings(params: Mapping[str, ParamValue], what: str) -> str:
    """hamgr-recovery.conf holding ``params`` (``what`` says whose, in a comment)."""
    lines = [f"{render.HEADER}# The {what}."]
    lines += [f"{key} = {render.render_value(value)}" for key, value in params.items()]
    return "\n".join(lines) + "\n"


async def run_bootstrap_method(settings: PgSettings, method: BootstrapSpec, scope: str) -> None:
    """Make the new cluster's data directory with ``method`` instead of initdb (not started).

    With ``recovery_conf`` the recovery settings are written and recovery.signal created, so
    that the next start recovers (see :func:`recovery_pending`); otherwise the signal files the
    command left are removed unless ``keep_existing_recovery_conf``."""
    run_as = resolve_run_as(settings.os_user)
    if is_initialized(settings):
        raise StateError(f"bootstrap method {method.name}: {settings.data_dir} is not empty")
    ensure_dir(settings.data_dir, run_as)
    conf.ensure_runtime_dir(settings, run_as)
    argv = bootstrap_argv(method, scope=scope, data_dir=str(settings.data_dir))
    log.info("bootstrapping with method %s: %s", method.name, shlex.join(argv))
    await run_argv(
        settings,
        argv,
        timeout=METHOD_TIMEOUT,
        what=f"bootstrap method {method.name}",
        error=MethodError,
    )
    if not is_initialized(settings):
        raise StateError(
            f"bootstrap method {method.name} succeeded but left no cluster in {settings.data_dir}"
        )
    keep = method.keep_existing_recovery_conf and not method.recovery_conf
    if keep:  # hamgr's recovery file, empty: the command's own settings and signals stay
        content = render.render_no_recovery_conf()
        write_file(settings.data_dir / render.RECOVERY_CONF, content, run_as)
    else:
        conf.clear_standby_config(settings)  # also creates an empty hamgr-recovery.conf
    conf.write_config(settings)
    conf.clear_sync_conf(settings)
    if method.recovery_conf:
        content = render_recovery_settings(
            method.recovery_conf, f"recovery settings of bootstrap method {method.name}"
        )
        write_file(settings.data_dir / render.RECOVERY_CONF, content, run_as)
        remove_file(settings.data_dir / conf.STANDBY_SIGNAL)
        write_file(settings.data_dir / conf.RECOVERY_SIGNAL, "", run_as)


async def wait_for_end_of_recovery(settings: PgSettings, timeout: float) -> None:
    """Wait until the started server left recovery (a bootstrap method's ``recovery_conf``
    reached its end or target and promoted), then forget the recovery settings and
    checkpoint (so that the control file names the new timeline). PgTimeoutError after
    ``timeout`` seconds (e.g. ``recovery_target_action: pause``)."""
    deadline = time.monotonic() + timeout
    conn = await connect_retrying(settings, timeout)
    try:
        while True:
            row = await fetch_one(conn, "SELECT pg_is_in_recovery() AS r", what="pg_is_in_recovery")
            if not row["r"]:
                break
            if time.monotonic() > deadline:
                raise PgTimeoutError(
                    f"the bootstrap's recovery did not end within {timeout:.0f} s (give "
                    "recovery_target_action: promote)"
                )
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    conf.clear_standby_config(settings)
    await checkpoint(settings)


async def run_post_bootstrap(settings: PgSettings, command: str) -> None:
    """Run post_bootstrap with the superuser's connection string (its password, if any, in
    a 0600 password file of its own named by the string, never in argv or the environment)."""
    run_as = resolve_run_as(settings.os_user)
    passfile = None
    if settings.superuser_password:
        passfile = settings.runtime_dir / ".post-bootstrap-pgpass"
        field_ = settings.superuser_password.replace("\\", "\\\\").replace(":", "\\:")
        user = settings.superuser.replace("\\", "\\\\").replace(":", "\\:")
        write_file(passfile, f"*:*:*:{user}:{field_}\n", run_as)
    where = str(passfile) if passfile is not None else None
    argv = post_bootstrap_argv(command, superuser_conninfo(settings, where))
    log.info("running post_bootstrap: %s", shlex.join(argv))
    try:
        await run_argv(
            settings, argv, timeout=POST_BOOTSTRAP_TIMEOUT, what="post_bootstrap", error=MethodError
        )
    finally:
        if passfile is not None:
            remove_file(passfile)
