"""The agent's configuration: one YAML file per agent, HAMGR_* environment overrides, strict checks.

Every mistake is reported with the path of its key (``store.raft.peers[1].address: expected
"host:port", got "abc"``), all of them at once, and the agent does not start. Types are strict: a
file that says ``use_pg_rewind: "yes"`` is an error, not a silent ``True``. Unknown keys are errors
too, with a suggestion when one is close (``unknown key postgresql.paramters (did you mean
parameters?)``). ``config.example.yaml`` at the top of the repository shows every key.

Parsing and checking are pure (:func:`parse_config` takes a mapping and returns a :class:`Config`
or raises :class:`ConfigError`); reading the file (:func:`load_config`) and what only this machine
can tell (:func:`resolve_local`: where PostgreSQL is installed, whether named files exist) live at
the edge.

Environment overrides
---------------------
``HAMGR_<KEY>`` sets a top-level key and ``__`` (two underscores) separates the parts of a deeper
path; names are case-insensitive and a single underscore stays part of the key name::

    HAMGR_SCOPE=demo                          scope: demo
    HAMGR_RESTAPI__LISTEN=0.0.0.0:8008        restapi: {listen: 0.0.0.0:8008}
    HAMGR_STORE__RAFT__NODE_ID=2              store: {raft: {node_id: 2}}
    HAMGR_POSTGRESQL__PARAMETERS__MAX_CONNECTIONS=200
    HAMGR_STORE__RAFT__PEERS='[{node_id: 2, address: "10.0.0.2:7001"}]'

A variable replaces the whole value at its key. Its text is taken as it is where the key holds a
string (a password of digits stays a string) and is parsed as YAML everywhere else, so ``2`` is an
integer, ``true`` a boolean and ``[a, b]`` a list; this is the one place where YAML's loose scalars
(``yes``, ``on``) are accepted. A list item cannot be addressed on its own: set the whole list. A
variable that names no key is an error like an unknown key in the file, except these, which mean
something else: ``HAMGR_CONFIG`` (the path of the file), ``HAMGR_PG_BINDIR`` (set by
deploy/dev.sh) and any name that starts with ``HAMGR_TEST_`` (test harnesses).

Timing profiles
---------------
``timing_profile: default`` (Raft heartbeat 0.1 s, election timeout 1 s; ttl 6 s, loop_wait 1 s,
retry_timeout 2 s, safety_margin 2 s) or ``timing_profile: fast`` for low-latency networks (see
:data:`TIMING_PROFILES`). A profile only changes defaults: a key set in the file or environment
wins. Whatever the source, the timing rules are checked: every duration > 0;
``loop_wait + 2 * retry_timeout <= ttl``; ``ttl >= 1.5 * store.raft.election_timeout`` (the
minimum lease TTL); ``store.raft.heartbeat_interval < store.raft.election_timeout / 2``;
``bootstrap.dcs.safety_margin < ttl``; with a watchdog, ``watchdog.safety_margin < ttl -
loop_wait`` (a loop on time always feeds it before it fires).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import ipaddress
import json
import math
import os
import re
import subprocess
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin, get_type_hints

import yaml

__all__ = [
    "ENV_ALLOWED",
    "ENV_PREFIX",
    "TIMING_PROFILES",
    "ApiAuthentication",
    "BootstrapConfig",
    "Config",
    "ConfigError",
    "DcsConfig",
    "DcsPostgresConfig",
    "EtcdConfig",
    "LogConfig",
    "PostgresAuthentication",
    "PostgresConfig",
    "RaftConfig",
    "RaftPeer",
    "RaftTls",
    "ReplicationUser",
    "RestApiConfig",
    "RewindUser",
    "StoreConfig",
    "SuperUser",
    "Tags",
    "WatchdogConfig",
    "dump_effective",
    "find_bin_dir",
    "load_config",
    "parse_config",
    "resolve_local",
    "schema_paths",
    "split_address",
    "validate_config_file",
]

ENV_PREFIX = "HAMGR_"
#: HAMGR_* variables that are not configuration keys (see the module docstring).
ENV_ALLOWED = frozenset({"HAMGR_CONFIG", "HAMGR_PG_BINDIR"})
_ENV_ALLOWED_PREFIX = "HAMGR_TEST_"

#: Defaults each timing profile changes, by key path. Every profile satisfies every timing rule.
TIMING_PROFILES: Mapping[str, Mapping[str, float]] = {
    "default": {},
    "fast": {
        "store.raft.heartbeat_interval": 0.05,
        "store.raft.election_timeout": 0.5,
        "bootstrap.dcs.ttl": 2.0,
        "bootstrap.dcs.loop_wait": 0.5,
        "bootstrap.dcs.retry_timeout": 0.5,
        "bootstrap.dcs.safety_margin": 0.5,
        "watchdog.safety_margin": 1.0,
    },
}

REDACTED = "<redacted>"
_MIN_SECRET_LEN = 16


class ConfigError(Exception):
    """The configuration is not usable; ``problems`` lists every mistake, one message each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


# --- Rules on single values ------------------------------------------------------------------

_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
_YAML_BOOL_WORDS = frozenset({"on", "off", "yes", "no", "y", "n", "true", "false"})


def split_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (IPv6 as ``"[::1]:5432"``) into host and port.

    Raises ValueError with a message that says what is wrong, fit for a config problem.
    """
    got = f", got {_show(address)}"
    plain = 'expected "host:port"'
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f'{plain} with an IPv6 host in brackets like "[::1]:5432"{got}')
    else:
        host, sep, port = address.rpartition(":")
        if ":" in host:
            raise ValueError(f'{plain} with an IPv6 host in brackets like "[::1]:5432"{got}')
        if not sep or not _is_host(host):
            raise ValueError(plain + got)
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{plain} with a port in 1..65535{got}")
    return host, int(port)


def _is_host(host: str) -> bool:
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    labels = host.split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _address_problem(value: str) -> str | None:
    try:
        split_address(value)
    except ValueError as e:
        return str(e)
    return None


def _abs_path_problem(value: str) -> str | None:
    if "\0" in value or not os.path.isabs(value):
        return f"expected an absolute path, got {_show(value)}"
    return None


def _member_name_problem(value: str) -> str | None:
    if not _MEMBER_NAME.fullmatch(value):
        return (
            'expected 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit, '
            f"got {_show(value)}"
        )
    return None


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {_num(value)}"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {_num(value)}"


def _non_empty(value: Sequence[object]) -> str | None:
    return None if len(value) else "must not be empty"


def _long_secret(value: str) -> str | None:
    if len(value) < _MIN_SECRET_LEN:
        return f"must be at least {_MIN_SECRET_LEN} characters long (it has {len(value)})"
    return None


# --- Markers read by the loader from Annotated types -------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """A check on a value whose type is already right: returns a problem or None."""

    check: Callable[[Any], str | None]


class _SecretMark:
    """The value is never shown in messages and is redacted by dump_effective."""


_SECRET = _SecretMark()


@dataclass(frozen=True)
class _Custom:
    """A value with its own loader: (loader, raw value, path, env name) -> value or _BAD."""

    load: Callable[[_Loader, Any, tuple[str | int, ...], str | None], Any]


def _load_initdb_option(
    loader: _Loader, raw: Any, path: tuple[str | int, ...], env: str | None
) -> Any:
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((key, value),) = raw.items()
        ok_value = isinstance(value, str | int) and not isinstance(value, bool) and value != ""
        if isinstance(key, str) and key and ok_value:
            return {key: str(value)}
    loader.report(
        path,
        'expected an option name or one "name: value" pair (e.g. data-checksums or '
        f"{{encoding: UTF8}}), got {_show(raw)}",
        env,
    )
    return _BAD


Address = Annotated[str, _Rule(_address_problem)]
AbsPath = Annotated[str, _Rule(_abs_path_problem)]
MemberName = Annotated[str, _Rule(_member_name_problem)]
Seconds = Annotated[float, _Rule(_positive)]
SecondsOrZero = Annotated[float, _Rule(_non_negative)]
PositiveInt = Annotated[int, _Rule(_positive)]
NonNegativeInt = Annotated[int, _Rule(_non_negative)]
Secret = Annotated[str, _SECRET]
ParameterValue = str | int | float | bool
InitdbOption = Annotated[str | dict[str, str], _Custom(_load_initdb_option)]


# --- The configuration ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    """``log``: how the agent logs."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, kw_only=True)
class ApiAuthentication:
    """``restapi.authentication``: basic auth required for the unsafe (changing) methods."""

    username: str
    password: Secret


@dataclass(frozen=True, kw_only=True)
class RestApiConfig:
    """``restapi``: the agent's HTTP API. Without ``authentication`` unsafe methods are refused.

    ``connect_address`` left empty means the same as ``listen``.
    """

    listen: Address = "127.0.0.1:8008"
    connect_address: Address = ""
    authentication: ApiAuthentication | None = None
    certfile: AbsPath | None = None
    keyfile: AbsPath | None = None

    def __post_init__(self) -> None:
        if not self.connect_address:
            object.__setattr__(self, "connect_address", self.listen)


@dataclass(frozen=True, kw_only=True)
class RaftPeer:
    """One of the OTHER members of the Raft group."""

    node_id: PositiveInt
    address: Address


@dataclass(frozen=True, kw_only=True)
class RaftTls:
    """``store.raft.tls``: mutual TLS between members (all three files)."""

    certfile: AbsPath
    keyfile: AbsPath
    cafile: AbsPath


@dataclass(frozen=True, kw_only=True)
class RaftConfig:
    """``store.raft``: this member of the embedded Raft group.

    ``advertise`` left empty means ``listen``; ``cluster_id`` left empty means ``scope``. Exactly
    one of ``secret`` and ``secret_file`` is set in the file; after :func:`load_config`,
    ``secret`` always holds the secret (read from ``secret_file`` when that is used).
    """

    data_dir: AbsPath
    node_id: PositiveInt
    listen: Address = "127.0.0.1:7001"
    advertise: Address = ""
    cluster_id: str = ""
    secret: Annotated[str, _SECRET, _Rule(_long_secret)] | None = None
    secret_file: AbsPath | None = None
    peers: tuple[RaftPeer, ...] = ()
    heartbeat_interval: Seconds = 0.1
    election_timeout: Seconds = 1.0
    snapshot_entries: PositiveInt = 10000
    tls: RaftTls | None = None

    def __post_init__(self) -> None:
        if not self.advertise:
            object.__setattr__(self, "advertise", self.listen)


@dataclass(frozen=True, kw_only=True)
class EtcdConfig:
    """``store.etcd``: an existing etcd v3 cluster."""

    hosts: Annotated[tuple[Address, ...], _Rule(_non_empty)]
    protocol: Literal["http", "https"] = "http"
    username: str | None = None
    password: Secret | None = None
    cacert: AbsPath | None = None


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """``store``: which coordination store; the section named by ``backend`` is required."""

    backend: Literal["raft", "etcd"] = "raft"
    raft: RaftConfig | None = None
    etcd: EtcdConfig | None = None


@dataclass(frozen=True, kw_only=True)
class SuperUser:
    """``postgresql.authentication.superuser``; no password means pg_hba/.pgpass decide."""

    username: str = "postgres"
    password: Secret | None = None


@dataclass(frozen=True, kw_only=True)
class ReplicationUser:
    """``postgresql.authentication.replication``: the role replicas stream with."""

    username: str = "replicator"
    password: Secret | None = None


@dataclass(frozen=True, kw_only=True)
class RewindUser:
    """``postgresql.authentication.rewind``: the role pg_rewind uses (else the superuser)."""

    username: str
    password: Secret | None = None


@dataclass(frozen=True, kw_only=True)
class PostgresAuthentication:
    """``postgresql.authentication``."""

    superuser: SuperUser = field(default_factory=SuperUser)
    replication: ReplicationUser = field(default_factory=ReplicationUser)
    rewind: RewindUser | None = None


@dataclass(frozen=True, kw_only=True)
class PostgresConfig:
    """``postgresql``: the local PostgreSQL this agent manages.

    ``bin_dir`` None means "find it" (:func:`find_bin_dir`); :func:`load_config` fills it in.
    ``connect_address`` left empty means the same as ``listen``.
    """

    data_dir: AbsPath
    bin_dir: AbsPath | None = None
    os_user: str = "postgres"
    listen: Address = "127.0.0.1:5432"
    connect_address: Address = ""
    authentication: PostgresAuthentication = field(default_factory=PostgresAuthentication)
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    pg_hba: tuple[str, ...] = ()
    use_pg_rewind: bool = True
    remove_data_directory_on_rewind_failure: bool = False
    create_replica_methods: Annotated[tuple[Literal["basebackup"], ...], _Rule(_non_empty)] = (
        "basebackup",
    )

    def __post_init__(self) -> None:
        if not self.connect_address:
            object.__setattr__(self, "connect_address", self.listen)


@dataclass(frozen=True, kw_only=True)
class DcsPostgresConfig:
    """``bootstrap.dcs.postgresql``: PostgreSQL settings shared by the whole cluster."""

    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    use_slots: bool = True


@dataclass(frozen=True, kw_only=True)
class DcsConfig:
    """``bootstrap.dcs``: cluster-wide HA settings (seconds, bytes)."""

    ttl: Seconds = 6.0
    loop_wait: Seconds = 1.0
    retry_timeout: Seconds = 2.0
    maximum_lag_on_failover: NonNegativeInt = 1048576
    primary_start_timeout: SecondsOrZero = 300.0
    safety_margin: Seconds = 2.0
    postgresql: DcsPostgresConfig = field(default_factory=DcsPostgresConfig)


@dataclass(frozen=True, kw_only=True)
class BootstrapConfig:
    """``bootstrap``: how a new cluster is created."""

    initdb: tuple[InitdbOption, ...] = ()
    dcs: DcsConfig = field(default_factory=DcsConfig)


@dataclass(frozen=True, kw_only=True)
class Tags:
    """``tags``: this member's role in failover and load balancing."""

    nofailover: bool = False
    noloadbalance: bool = False
    clonefrom: bool = False
    nosync: bool = False


@dataclass(frozen=True, kw_only=True)
class WatchdogConfig:
    """``watchdog``: the Linux watchdog, a second line of fencing behind the fencer process."""

    mode: Literal["off", "automatic", "required"] = "off"
    device: AbsPath = "/dev/watchdog"
    safety_margin: SecondsOrZero = 2.0


@dataclass(frozen=True, kw_only=True)
class Config:
    """One agent's whole configuration. ``store.raft.cluster_id`` left empty means ``scope``."""

    scope: MemberName
    name: MemberName
    timing_profile: Literal["default", "fast"] = "default"
    log: LogConfig = field(default_factory=LogConfig)
    restapi: RestApiConfig = field(default_factory=RestApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    postgresql: PostgresConfig
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    tags: Tags = field(default_factory=Tags)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)

    def __post_init__(self) -> None:
        store = self.store
        if isinstance(store, StoreConfig) and store.raft is not None and not store.raft.cluster_id:
            raft = dataclasses.replace(store.raft, cluster_id=self.scope)
            object.__setattr__(self, "store", dataclasses.replace(store, raft=raft))


# --- Loading: raw mapping -> typed value, collecting problems ----------------------------------

_Path = tuple[str | int, ...]


class _BadValue:
    """Returned by a loader step that has already reported why the value is unusable."""


_BAD: Any = _BadValue()


@dataclass(frozen=True)
class _Env:
    """A value that came from an environment variable: its name and its raw text."""

    name: str
    text: str


class _EnvSection(dict[Any, Any]):
    """A section that exists only because environment variables named keys inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []


class _Skip(Exception):
    """A cross-key check needs a value that is already reported as wrong."""


def _fmt(path: _Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _show(value: object) -> str:
    """A short rendering of a YAML value for messages."""
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 80 else value[:77] + "...")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _kind(value: object) -> str:
    """What a value is, without showing it (for secrets)."""
    for types_, word in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (Mapping, "a mapping"),
    ):
        if isinstance(value, types_):
            return word
    return "null" if value is None else f"a {type(value).__name__}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def _shape(tp: Any) -> tuple[Any, bool, tuple[Any, ...]]:
    """Split a field type into (base type, optional?, Annotated markers)."""
    marks: tuple[Any, ...] = ()
    optional = False
    while True:
        if get_origin(tp) is Annotated:
            marks += tuple(tp.__metadata__)
            tp = tp.__origin__
        elif get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp):
            rest = [a for a in get_args(tp) if a is not type(None)]
            optional = True
            tp = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return tp, optional, marks


def _describe(base: Any) -> str:
    if get_origin(base) is Literal:
        return "one of " + ", ".join(_show(c) for c in get_args(base))
    if dataclasses.is_dataclass(base):
        return "a section (a mapping of keys)"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        tuple: "a list",
        dict: "a mapping",
    }.get(get_origin(base) or base, "a value")


class _Loader:
    """Turns raw YAML data into the dataclasses above, reporting every problem it meets."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.bad: set[_Path] = set()
        self.profile: Mapping[_Path, float] = {}
        self.checking = False

    def report(self, path: _Path, message: str, env: str | None = None) -> None:
        where = _fmt(path) + (f" (from {env})" if env else "")
        problem = f"{where}: {message}"
        if problem not in self.problems:
            self.problems.append(problem)
        if not self.checking:  # a cross-key problem leaves each value usable for other checks
            self.bad.add(path)

    def ok(self, path: _Path, *, below: bool = True) -> bool:
        """No problem was reported at ``path`` or above it (nor below it, unless below=False)."""
        n = len(path)
        return not any(bad == path[: len(bad)] or (below and bad[:n] == path) for bad in self.bad)

    def need(
        self, root: object, *path: str | int, below: bool = True, none_ok: bool = False
    ) -> Any:
        """The value at ``path`` under ``root`` for a cross-key check; raises _Skip when it is
        already reported as wrong, sits in an absent section, or is None (unless none_ok)."""
        if not self.ok(path, below=below):
            raise _Skip
        value: Any = root
        for part in path:
            if value is None:
                raise _Skip
            value = value[part] if isinstance(part, int) else getattr(value, part)
        if value is None and not none_ok:
            raise _Skip
        return value

    # -- the top level

    def load(self, data: object, env: Mapping[str, str]) -> Config | None:
        if not isinstance(data, Mapping):
            self.report((), f"expected a mapping of keys, got {_show(data)}")
            return None
        data = self.merge_env(data, env)
        profile = data.get("timing_profile")
        if isinstance(profile, _Env):
            profile = profile.text
        table = TIMING_PROFILES.get(profile) if isinstance(profile, str) else None
        self.profile = {tuple(k.split(".")): v for k, v in (table or {}).items()}
        config = self.section(Config, data, (), None)
        if not isinstance(config, Config):
            return None
        self.checking = True
        for check in _CHECKS:
            with contextlib.suppress(_Skip):
                check(config, self)
        return config

    def merge_env(self, data: Mapping[Any, Any], env: Mapping[str, str]) -> dict[Any, Any]:
        """Copy ``data`` with HAMGR_* variables laid over it (copying only what they touch)."""
        out = dict(data)
        mine = {id(out)}
        for name in sorted(env):
            upper = name.upper()
            if (
                not upper.startswith(ENV_PREFIX)
                or upper in ENV_ALLOWED
                or upper.startswith(_ENV_ALLOWED_PREFIX)
            ):
                continue
            parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
            if not all(parts):
                self.problems.append(
                    f'{name}: expected HAMGR_KEY or HAMGR_SECTION__KEY (parts joined by "__")'
                )
                continue
            node = out
            for depth, part in enumerate(parts[:-1]):
                child = node.get(part)
                if child is None:
                    child = _EnvSection()
                elif isinstance(child, _Env):
                    self.problems.append(f"{name}: conflicts with {child.name}")
                    break
                elif not isinstance(child, Mapping):
                    where = _fmt(tuple(parts[: depth + 1]))
                    self.problems.append(
                        f"{name}: {where} holds {_show(child)} in the file, not a section"
                    )
                    break
                elif id(child) not in mine:
                    child = dict(child)
                    mine.add(id(child))
                if isinstance(child, _EnvSection):
                    child.names.append(name)
                node[part] = child
                node = cast(dict[Any, Any], child)  # ours: created or copied above
            else:
                old = node.get(parts[-1])
                if isinstance(old, _Env | _EnvSection):
                    first = old.name if isinstance(old, _Env) else ", ".join(old.names)
                    self.problems.append(f"{name}: conflicts with {first}")
                else:
                    node[parts[-1]] = _Env(name, env[name])
        return out

    # -- sections and values

    def section(self, cls: type, raw: Any, path: _Path, env: str | None) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.report(path, f"expected a section (a mapping of keys), got {_show(raw)}", env)
            return _BAD
        names = [f.name for f in dataclasses.fields(cls)]
        for key, value in raw.items():
            if not isinstance(key, str):
                self.report(path, f"keys must be strings, got {_show(key)}", env)
            elif key not in names:
                self.unknown((*path, key), value, names, env)
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            sub = (*path, f.name)
            if f.name in raw:
                value = self.value(hints[f.name], raw[f.name], sub, env)
            else:
                value = self.absent(f, hints[f.name], sub)
            values[f.name] = None if value is _BAD else value
        try:
            return cls(**values)
        except (TypeError, ValueError, AttributeError):  # only with values already reported bad
            self.bad.add(path)
            return _BAD

    def unknown(self, path: _Path, value: Any, names: list[str], env: str | None) -> None:
        if isinstance(value, _Env):
            env = value.name
        elif isinstance(value, _EnvSection):
            env = ", ".join(value.names)
        message = f"unknown key {_fmt(path)}"
        if env:
            message += f" (from {env})"
        close = difflib.get_close_matches(str(path[-1]), names, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
        self.problems.append(message)
        self.bad.add(path)

    def absent(self, f: dataclasses.Field[Any], tp: Any, path: _Path) -> Any:
        base, optional, _ = _shape(tp)
        if path in self.profile:
            return self.profile[path]
        if dataclasses.is_dataclass(base) and not optional:
            # an absent section: its own defaults, the profile's, and its required keys
            return self.section(cast(type, base), {}, path, None)
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        self.report(path, "required")
        return _BAD

    def value(self, tp: Any, raw: Any, path: _Path, env: str | None) -> Any:
        base, optional, marks = _shape(tp)
        secret = _SECRET in marks
        if isinstance(raw, _Env):
            env = raw.name
            raw = raw.text if _wants_text(base) else self.parse_env(raw, path)
            if raw is _BAD:
                return _BAD
        if raw is None:
            if optional:
                return None
            if not dataclasses.is_dataclass(base):
                self.report(path, f"expected {_describe(base)}, got null", env)
                return _BAD
        custom = next((m for m in marks if isinstance(m, _Custom)), None)
        if custom is not None:
            value = custom.load(self, raw, path, env)
        elif dataclasses.is_dataclass(base):
            value = self.section(cast(type, base), raw, path, env)
        else:
            value = self.scalar_or_list(base, raw, path, env, secret)
        if value is _BAD:
            return _BAD
        for mark in marks:
            if isinstance(mark, _Rule):
                problem = mark.check(value)
                if problem:
                    self.report(path, problem, env)
                    return _BAD
        return value

    def scalar_or_list(
        self, base: Any, raw: Any, path: _Path, env: str | None, secret: bool
    ) -> Any:
        got = f"got {_kind(raw) if secret else _show(raw)}"
        origin = get_origin(base)
        if base is str:
            if not isinstance(raw, str):
                self.report(path, f"expected a string, {got}", env)
                return _BAD
            if not raw:
                self.report(path, "must not be empty", env)
                return _BAD
            return raw
        if base is bool:
            if not isinstance(raw, bool):
                self.report(path, f"expected true or false, {got}", env)
                return _BAD
            return raw
        if base is int:
            if not isinstance(raw, int) or isinstance(raw, bool):
                self.report(path, f"expected an integer, {got}", env)
                return _BAD
            return raw
        if base is float:
            if not isinstance(raw, int | float) or isinstance(raw, bool) or not _finite(raw):
                self.report(path, f"expected a number, {got}", env)
                return _BAD
            return float(raw)
        if origin is Literal:
            choices = get_args(base)
            if isinstance(raw, str) and raw in choices:
                return raw
            message = f"expected {_describe(base)}, {got}"
            if isinstance(raw, str):
                folded = {c.casefold(): c for c in choices}
                close = difflib.get_close_matches(raw.casefold(), list(folded), n=1)
                if close:
                    message += f" (did you mean {folded[close[0]]}?)"
            elif isinstance(raw, bool) and any(c in _YAML_BOOL_WORDS for c in choices):
                message += " (YAML reads a bare on/off/yes/no as a boolean: put it in quotes)"
            self.report(path, message, env)
            return _BAD
        if origin is tuple:
            if not isinstance(raw, list | tuple):
                self.report(path, f"expected a list, {got}", env)
                return _BAD
            item_tp = get_args(base)[0]
            items = [self.value(item_tp, item, (*path, i), env) for i, item in enumerate(raw)]
            return _BAD if any(item is _BAD for item in items) else tuple(items)
        if origin is dict:
            return self.parameters(raw, path, env)
        raise TypeError(f"config schema: no loader for {base!r}")  # a bug in this module

    def parameters(self, raw: Any, path: _Path, env: str | None) -> Any:
        """A {name: scalar} mapping of PostgreSQL parameters."""
        if not isinstance(raw, Mapping):
            self.report(path, f"expected a mapping of names to values, got {_show(raw)}", env)
            return _BAD
        out: dict[str, ParameterValue] = {}
        for key, value in raw.items():
            sub = (*path, str(key))
            where = env
            if isinstance(value, _Env):
                where = value.name
                value = self.parse_env(value, sub)
                if value is _BAD:
                    continue
            if not isinstance(key, str) or not key:
                self.report(path, f"parameter names must be non-empty strings, got {_show(key)}")
            elif not isinstance(value, str | int | float) or not _finite(value):
                self.report(sub, f"expected a string, number or boolean, got {_show(value)}", where)
            else:
                out[key] = value
        return out if len(out) == len(raw) else _BAD

    def parse_env(self, raw: _Env, path: _Path) -> Any:
        data, problems = _parse_yaml(raw.text, raw.name)
        for problem in problems:
            self.report(path, f"not valid YAML: {problem}", raw.name)
        return _BAD if problems else data


def _finite(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _wants_text(base: Any) -> bool:
    """Does a key of this type take an environment variable's text as it is?"""
    return base is str or (
        get_origin(base) is Literal and all(isinstance(c, str) for c in get_args(base))
    )


# --- Rules across keys -------------------------------------------------------------------------

_Check = Callable[[Config, _Loader], None]
_CHECKS: list[_Check] = []


def _check(fn: _Check) -> _Check:
    _CHECKS.append(fn)
    return fn


def _reachable(c: Config, L: _Loader, *path: str) -> None:
    address = L.need(c, *path)
    host, _ = split_address(address)
    if host in _WILDCARD_HOSTS:
        L.report(
            tuple(path),
            f"{host} is a listen-on-all address, not one other members can connect to; set it "
            "to this host's reachable address (it defaults to listen)",
        )


@_check
def _restapi_reachable(c: Config, L: _Loader) -> None:
    _reachable(c, L, "restapi", "connect_address")


@_check
def _postgres_reachable(c: Config, L: _Loader) -> None:
    _reachable(c, L, "postgresql", "connect_address")


@_check
def _raft_reachable(c: Config, L: _Loader) -> None:
    _reachable(c, L, "store", "raft", "advertise")


@_check
def _restapi_tls_pair(c: Config, L: _Loader) -> None:
    cert = L.need(c, "restapi", "certfile", none_ok=True)
    key = L.need(c, "restapi", "keyfile", none_ok=True)
    if cert is not None and key is None:
        L.report(("restapi", "keyfile"), "required when restapi.certfile is set")
    if key is not None and cert is None:
        L.report(("restapi", "certfile"), "required when restapi.keyfile is set")


@_check
def _distinct_listen_addresses(c: Config, L: _Loader) -> None:
    keys = [("restapi", "listen"), ("postgresql", "listen"), ("store", "raft", "listen")]
    seen: dict[tuple[str, int], tuple[str, ...]] = {}
    for path in keys:
        try:
            address = L.need(c, *path)
        except _Skip:
            continue
        where = split_address(address)
        if where in seen:
            L.report(path, f"same address as {_fmt(seen[where])} ({address})")
        seen.setdefault(where, path)


@_check
def _backend_section(c: Config, L: _Loader) -> None:
    backend = L.need(c, "store", "backend")
    section = L.need(c, "store", backend, below=False, none_ok=True)
    if section is None:
        needs = "data_dir, node_id and secret" if backend == "raft" else "hosts"
        L.report(
            ("store", backend),
            f"required when store.backend is {backend} (with at least {needs})",
        )


@_check
def _raft_secret(c: Config, L: _Loader) -> None:
    secret = L.need(c, "store", "raft", "secret", none_ok=True)
    secret_file = L.need(c, "store", "raft", "secret_file", none_ok=True)
    if secret is None and secret_file is None:
        L.report(("store", "raft", "secret"), "required (or store.raft.secret_file)")
    elif secret is not None and secret_file is not None:
        L.report(
            ("store", "raft", "secret_file"),
            "set either store.raft.secret or store.raft.secret_file, not both",
        )


@_check
def _raft_peers(c: Config, L: _Loader) -> None:
    peers = L.need(c, "store", "raft", "peers", below=False)
    own_ids: dict[int, str] = {}
    own_addresses: dict[tuple[str, int], str] = {}
    with contextlib.suppress(_Skip):
        own_ids[L.need(c, "store", "raft", "node_id")] = "this member's own store.raft.node_id"
    try:
        advertise = split_address(L.need(c, "store", "raft", "advertise"))
        own_addresses[advertise] = "this member's own store.raft.advertise"
    except _Skip:
        pass
    for i, _ in enumerate(peers):
        base = ("store", "raft", "peers", i)
        try:
            node_id = L.need(c, *base, "node_id")
            if node_id in own_ids:
                L.report((*base, "node_id"), f"{node_id} is already {own_ids[node_id]}")
            own_ids.setdefault(node_id, f"the node_id of {_fmt(base)}")
        except _Skip:
            pass
        try:
            address = L.need(c, *base, "address")
            where = split_address(address)
            if where in own_addresses:
                L.report((*base, "address"), f"{address} is already {own_addresses[where]}")
            own_addresses.setdefault(where, f"the address of {_fmt(base)}")
        except _Skip:
            pass


@_check
def _raft_heartbeat(c: Config, L: _Loader) -> None:
    heartbeat = L.need(c, "store", "raft", "heartbeat_interval")
    election = L.need(c, "store", "raft", "election_timeout")
    if not heartbeat < election / 2:
        L.report(
            ("store", "raft", "heartbeat_interval"),
            f"must be < store.raft.election_timeout / 2 = {election / 2:g}, got {heartbeat:g}",
        )


@_check
def _etcd_credentials(c: Config, L: _Loader) -> None:
    username = L.need(c, "store", "etcd", "username", none_ok=True)
    password = L.need(c, "store", "etcd", "password", none_ok=True)
    if (username is None) != (password is None):
        missing = "password" if password is None else "username"
        other = "username" if password is None else "password"
        L.report(("store", "etcd", missing), f"required when store.etcd.{other} is set")


@_check
def _etcd_cacert(c: Config, L: _Loader) -> None:
    cacert = L.need(c, "store", "etcd", "cacert", none_ok=True)
    if cacert is not None and L.need(c, "store", "etcd", "protocol") != "https":
        L.report(("store", "etcd", "cacert"), "only used with store.etcd.protocol https")


_MANAGED_PARAMETERS = {
    "port": "postgresql.listen",
    "listen_addresses": "postgresql.listen",
    "data_directory": "postgresql.data_dir",
}


@_check
def _managed_parameters(c: Config, L: _Loader) -> None:
    for path in (("postgresql", "parameters"), ("bootstrap", "dcs", "postgresql", "parameters")):
        try:
            parameters = L.need(c, *path)
        except _Skip:
            continue
        for name in parameters:
            if name in _MANAGED_PARAMETERS:
                L.report(
                    (*path, name),
                    f"set by hamgr from {_MANAGED_PARAMETERS[name]}; remove it here",
                )


@_check
def _ha_loop_fits_ttl(c: Config, L: _Loader) -> None:
    ttl = L.need(c, "bootstrap", "dcs", "ttl")
    loop_wait = L.need(c, "bootstrap", "dcs", "loop_wait")
    retry = L.need(c, "bootstrap", "dcs", "retry_timeout")
    if loop_wait + 2 * retry > ttl:
        L.report(
            ("bootstrap", "dcs", "ttl"),
            f"must be >= loop_wait + 2 * retry_timeout = {loop_wait + 2 * retry:g}, got {ttl:g}",
        )


@_check
def _safety_margin(c: Config, L: _Loader) -> None:
    ttl = L.need(c, "bootstrap", "dcs", "ttl")
    margin = L.need(c, "bootstrap", "dcs", "safety_margin")
    if not margin < ttl:
        L.report(
            ("bootstrap", "dcs", "safety_margin"),
            f"must be < bootstrap.dcs.ttl = {ttl:g}, got {margin:g}",
        )


@_check
def _minimum_lease_ttl(c: Config, L: _Loader) -> None:
    if L.need(c, "store", "backend") != "raft":
        return
    ttl = L.need(c, "bootstrap", "dcs", "ttl")
    election = L.need(c, "store", "raft", "election_timeout")
    if ttl < 1.5 * election:
        L.report(
            ("bootstrap", "dcs", "ttl"),
            f"must be >= 1.5 * store.raft.election_timeout = {1.5 * election:g} (the minimum "
            f"lease TTL), got {ttl:g}",
        )


@_check
def _watchdog_margin(c: Config, L: _Loader) -> None:
    if L.need(c, "watchdog", "mode") == "off":
        return
    margin = L.need(c, "watchdog", "safety_margin")
    ttl = L.need(c, "bootstrap", "dcs", "ttl")
    loop_wait = L.need(c, "bootstrap", "dcs", "loop_wait")
    if not margin < ttl - loop_wait:
        L.report(
            ("watchdog", "safety_margin"),
            f"must be < bootstrap.dcs.ttl - bootstrap.dcs.loop_wait = {ttl - loop_wait:g} so "
            f"that a loop on time feeds the watchdog before it fires, got {margin:g}",
        )


# --- YAML -------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that notes duplicate keys instead of silently keeping the last one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []
        self._checked: set[int] = set()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if id(node) not in self._checked:
            self._checked.add(id(node))
            first: dict[tuple[str, str], int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                line = key_node.start_mark.line + 1
                key = (key_node.tag, key_node.value)
                if key in first:
                    self.duplicates.append(
                        f"line {line}: duplicate key {key_node.value!r} (first at line "
                        f"{first[key]}); remove one of them"
                    )
                first.setdefault(key, line)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, source: str) -> tuple[Any, list[str]]:
    """Parse YAML text; problems name ``source`` and the line and column of each mistake."""
    try:
        loader = _StrictLoader(text)  # checks the characters already
    except yaml.YAMLError as e:
        return None, [f"{source}: {e}"]
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = ", ".join(str(p) for p in (e.context, e.problem) if p)
        if mark is None:
            return None, [f"{source}: {what}"]
        return None, [f"{source}, line {mark.line + 1}, column {mark.column + 1}: {what}"]
    except yaml.YAMLError as e:  # reader errors (bad characters) and the like
        return None, [f"{source}: {e}"]
    finally:
        loader.dispose()
    return data, [f"{source}, {d}" for d in loader.duplicates]


# --- Public API -------------------------------------------------------------------------------

_NO_ENV: Mapping[str, str] = types.MappingProxyType({})


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] = _NO_ENV) -> Config:
    """Check ``data`` (a parsed YAML document) with the HAMGR_* variables of ``env`` laid over it.

    Pure: touches no file. Raises ConfigError listing every problem. Variables that do not start
    with HAMGR_ are ignored, so ``os.environ`` can be passed as it is.
    """
    loader = _Loader()
    try:
        config = loader.load(data, env)
    except RecursionError:  # a YAML alias loop nested past Python's stack
        loader.problems.append("(top level): nested too deeply")
        config = None
    if loader.problems or config is None:
        raise ConfigError(loader.problems or ["(top level): not a valid configuration"])
    return config


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, resolve: bool = True
) -> Config:
    """Read, parse and check the YAML file at ``path`` (with ``env``, else ``os.environ``).

    With ``resolve`` (the default) also does :func:`resolve_local`. Raises ConfigError.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{source}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{source}: not UTF-8 text (byte {e.start})"]) from None
    data, problems = _parse_yaml(text, source)
    if data is None and not problems:
        problems = [f"{source}: the file is empty"]
    if problems and data is None:
        raise ConfigError(problems)
    try:
        config = parse_config(data, os.environ if env is None else env)
    except ConfigError as e:
        raise ConfigError(problems + e.problems) from None
    if problems:
        raise ConfigError(problems)
    return resolve_local(config) if resolve else config


def validate_config_file(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem :func:`load_config` would raise for ``path``; ``[]`` means it is fine."""
    try:
        load_config(path, env)
    except ConfigError as e:
        return e.problems
    return []


def find_bin_dir(
    pg_config: str = "pg_config", search_root: str | Path = "/usr/lib/postgresql"
) -> str | None:
    """Where PostgreSQL's programs are: ``pg_config --bindir``, else the newest
    ``<search_root>/<version>/bin`` that has ``pg_ctl``; None when neither is found."""
    try:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
        bindir = result.stdout.strip()
        if result.returncode == 0 and bindir and os.path.isfile(os.path.join(bindir, "pg_ctl")):
            return bindir
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[tuple[tuple[int, ...], str]] = []
    root = Path(search_root)
    for candidate in root.glob("*/bin") if root.is_dir() else []:
        version = candidate.parent.name
        if re.fullmatch(r"[0-9]+(\.[0-9]+)*", version) and (candidate / "pg_ctl").is_file():
            found.append((tuple(int(p) for p in version.split(".")), str(candidate)))
    return max(found)[1] if found else None


def resolve_local(config: Config) -> Config:
    """Fill in and check what only this machine can tell; raises ConfigError listing problems.

    Finds ``postgresql.bin_dir`` when it is not set (or checks it has pg_ctl), reads
    ``store.raft.secret_file`` into ``store.raft.secret``, and checks that the TLS and CA files
    the config names are readable files.
    """
    problems: list[str] = []

    def readable(path: str | None, key: str) -> None:
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            problems.append(f"{key}: {path} is not a readable file")

    pg = config.postgresql
    bin_dir = pg.bin_dir
    if bin_dir is None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            problems.append(
                "postgresql.bin_dir: not set, and PostgreSQL was not found (no pg_config on "
                "PATH, no /usr/lib/postgresql/*/bin with pg_ctl); set it"
            )
    elif not os.path.isfile(os.path.join(bin_dir, "pg_ctl")):
        problems.append(f"postgresql.bin_dir: {bin_dir} has no pg_ctl")
    readable(config.restapi.certfile, "restapi.certfile")
    readable(config.restapi.keyfile, "restapi.keyfile")
    store = config.store
    raft = store.raft
    if raft is not None:
        if raft.tls is not None:
            for name in ("certfile", "keyfile", "cafile"):
                readable(getattr(raft.tls, name), f"store.raft.tls.{name}")
        if raft.secret_file is not None:
            try:
                secret = Path(raft.secret_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                problems.append(f"store.raft.secret_file: cannot read {raft.secret_file}: {e}")
            else:
                problem = _long_secret(secret)
                if problem:
                    problems.append(f"store.raft.secret_file: the secret in it {problem}")
                raft = dataclasses.replace(raft, secret=secret)
    if store.etcd is not None:
        readable(store.etcd.cacert, "store.etcd.cacert")
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(
        config,
        postgresql=dataclasses.replace(pg, bin_dir=bin_dir),
        store=dataclasses.replace(store, raft=raft),
    )


def dump_effective(config: Config, *, redact: bool = True) -> dict[str, Any]:
    """The configuration in force as plain YAML/JSON-able data, every key with its value.

    Secrets (passwords, the Raft secret) read ``<redacted>`` unless ``redact`` is False;
    ``parse_config(dump_effective(c, redact=False)) == c``.
    """
    out = _dump(config, redact)
    assert isinstance(out, dict)
    return out


def _dump(value: Any, redact: bool) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if redact and item is not None and _SECRET in _shape(hints[f.name])[2]:
                out[f.name] = REDACTED
            else:
                out[f.name] = _dump(item, redact)
        return out
    if isinstance(value, list | tuple):
        return [_dump(v, redact) for v in value]
    if isinstance(value, Mapping):
        return {k: _dump(v, redact) for k, v in value.items()}
    return value


def schema_paths() -> Iterator[str]:
    """Every key path the file can hold (``peers[]`` for list items), for docs and tests."""
    yield from _paths(Config, "")


def _paths(cls: type, prefix: str) -> Iterator[str]:
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        yield path
        base, _, _ = _shape(_hints(cls)[f.name])
        if get_origin(base) is tuple:
            item, _, _ = _shape(get_args(base)[0])
            if dataclasses.is_dataclass(item):
                yield from _paths(item, f"{path}[].")  # type: ignore[arg-type]
        elif dataclasses.is_dataclass(base):
            yield from _paths(base, f"{path}.")  # type: ignore[arg-type]
