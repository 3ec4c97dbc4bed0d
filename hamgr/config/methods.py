"""Operators' commands in the configuration: callbacks, replica and bootstrap methods.

The sections Patroni users know: ``postgresql.callbacks``, ``postgresql.create_replica_methods``
with one section per method, ``bootstrap.method`` with its section, ``bootstrap.post_bootstrap``
and ``postgresql.recovery_conf``. Patroni puts a method's section beside the list that names it
(``postgresql.wal_g: {command: ...}``); :func:`move_named_sections` accepts that layout and files
such a section under ``replica_methods`` (``bootstrap.methods``), where hamgr's own layout and
its dump keep them. The cross-key rules (every listed method configured, every configured one
listed) are :func:`method_problems`. Nothing here reads a file or runs a command.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from hamgr.config.problems import show
from hamgr.config.values import NON_EMPTY, Rule, Section

BASEBACKUP = "basebackup"
"""The built-in replica method: pg_basebackup from the leader (or a clonefrom member)."""
INITDB = "initdb"
"""The built-in bootstrap method."""


def command_problem(value: str) -> str | None:
    """A command line split as a shell would (quotes), with at least a program."""
    try:
        words = shlex.split(value)
    except ValueError as exc:
        return f"cannot split {show(value)} into words: {exc}"
    return None if words else "must name a program"


Command = Annotated[str, NON_EMPTY, Rule(command_problem)]
MethodName = Annotated[
    str,
    NON_EMPTY,
    Meta(
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$(?!\n)",
        description="a method name (letters, digits, '_' and '-', at most 63)",
    ),
]


class Callbacks(Section, frozen=True, kw_only=True):
    """``postgresql.callbacks``: commands run on PostgreSQL's events, as Patroni runs them:
    ``COMMAND ACTION ROLE SCOPE`` (e.g. ``/bin/notify on_role_change primary demo``), as the
    OS user PostgreSQL runs as, without waiting for them; a newer callback kills one still
    running, and ``postgresql.callback_timeout`` kills one that runs too long."""

    on_start: Command | None = None
    on_stop: Command | None = None
    on_restart: Command | None = None
    on_reload: Command | None = None
    on_role_change: Command | None = None

    def command(self, action: str) -> str | None:
        """The command configured for ``action`` (``on_start``...), or None."""
        value = getattr(self, action, None)
        return value if isinstance(value, str) else None


class ReplicaMethod(Section, frozen=True, kw_only=True):
    """One entry of ``postgresql.create_replica_methods`` (its section, as Patroni's).

    ``command`` runs with ``--scope= --role=replica --datadir= --connstring=`` appended
    (unless ``no_params``); exit 0 means the data directory holds the new replica's data.
    The data directory is emptied first unless ``keep_data``. ``no_leader`` (Patroni's older
    spelling ``no_master`` too) lets it run while no leader runs (``--connstring=`` is then
    empty): a restore from a backup needs none."""

    command: Command
    keep_data: bool = False
    no_leader: bool = False
    no_master: bool = False
    no_params: bool = False

    @property
    def without_leader(self) -> bool:
        """May run while no leader runs."""
        return self.no_leader or self.no_master


class BootstrapMethod(Section, frozen=True, kw_only=True):
    """``bootstrap.<method>``: a command that makes the new cluster's data directory instead
    of initdb, called with ``--scope= --datadir=`` (unless ``no_params``).

    ``recovery_conf``: recovery settings (``restore_command``, ``recovery_target_*``...)
    PostgreSQL starts with (recovery.signal); the bootstrap waits until recovery ends (give
    ``recovery_target_action: promote`` with a target). Without it, recovery and standby
    signal files the command left are removed unless ``keep_existing_recovery_conf``."""

    command: Command
    keep_existing_recovery_conf: bool = False
    no_params: bool = False
    recovery_conf: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)


class RecoveryConf(Section, frozen=True, kw_only=True):
    """``postgresql.recovery_conf``: recovery settings of this member as a replica.

    ``restore_command`` fetches WAL from an archive: a replica whose WAL the primary already
    recycled catches up from there instead of needing a new clone."""

    restore_command: Command | None = None


def move_named_sections(
    raw: Any, names: Iterable[object], into: str, known: Iterable[str]
) -> tuple[Any, list[str]]:
    """``raw`` with the sections named by ``names`` moved under ``raw[into]`` (Patroni's layout
    to hamgr's), and the names given in both places. Anything unexpected is left as it is, for
    the loader to report."""
    if not isinstance(raw, Mapping):
        return raw, []
    out = dict(raw)
    target = out.get(into, {})
    if not isinstance(target, Mapping):
        return raw, []
    target = dict(target)
    twice: list[str] = []
    skip = set(known)
    for name in names:
        if isinstance(name, str) and name in out and name not in skip:
            if name in target:
                twice.append(name)
            else:
                target[name] = out.pop(name)
    if target:
        out[into] = target
    return out, twice


def replica_method_names(raw: Any) -> list[object]:
    """The names ``postgresql.create_replica_methods`` lists in raw data (none if not a list)."""
    if not isinstance(raw, Mapping):
        return []
    names = raw.get("create_replica_methods")
    return list(names) if isinstance(names, list | tuple) else []


def bootstrap_method_names(raw: Any) -> list[object]:
    """The name ``bootstrap.method`` gives in raw data, as a list (none if absent)."""
    if not isinstance(raw, Mapping):
        return []
    name = raw.get("method")
    return [name] if isinstance(name, str) else []


def replica_method_problems(
    methods: tuple[str, ...], configured: Mapping[str, ReplicaMethod]
) -> Iterator[tuple[tuple[str, ...], str]]:
    """(key path under ``postgresql``, problem) for methods listed without a section, listed
    twice, or configured without being listed."""
    seen: set[str] = set()
    for name in methods:
        if name in seen:
            yield ("create_replica_methods",), f"lists {name!r} twice"
        seen.add(name)
        if name != BASEBACKUP and name not in configured:
            yield (
                ("create_replica_methods",),
                f"method {name!r} has no section with its command: add postgresql.{name} "
                f"(or postgresql.replica_methods.{name}) with a command",
            )
    for name in configured:
        if name == BASEBACKUP:
            yield ("replica_methods", name), f"{BASEBACKUP} is built in and takes no section"
        elif name not in seen:
            yield (
                ("replica_methods", name),
                "is not listed in postgresql.create_replica_methods, so it would never run",
            )


def bootstrap_method_problems(
    method: str, configured: Mapping[str, BootstrapMethod]
) -> Iterator[tuple[tuple[str, ...], str]]:
    """(key path under ``bootstrap``, problem) for a method without its section, or sections
    of methods that are not ``bootstrap.method``."""
    if method != INITDB and method not in configured:
        yield (
            ("method",),
            f"method {method!r} has no section with its command: add bootstrap.{method} "
            "with a command (or use initdb)",
        )
    for name in configured:
        if name == INITDB:
            yield ("methods", name), "initdb is built in and takes no section (bootstrap.initdb)"
        elif name != method:
            yield ("methods", name), f"is not bootstrap.method ({method!r}): it would never run"
