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
``loop_wait <= bootstrap.dcs.safety_margin < ttl`` (the primary fences itself at least
one loop before its lease can end); with a watchdog, ``watchdog.safety_margin < ttl -
loop_wait`` (a loop on time always feeds it before it fires).

The package
-----------
``problems`` (ConfigError and how a problem names its key), ``msgspecwords`` (msgspec's errors
in hamgr's words, for the file and the store's values alike), ``values`` (rules on single values:
msgspec ``Meta`` bounds and patterns, and the markers that attach the rest to fields),
``schema`` (one frozen msgspec Struct per section: types, defaults and bounds), ``jsonschema``
(the JSON Schema msgspec makes from them, shipped as ``config.schema.json`` for editors),
``env`` (HAMGR_* overrides), ``strict_yaml`` (YAML with line, column and duplicate-key errors),
``validate`` (the walk over the sections that collects every problem, :func:`parse_config`),
``checks`` (rules across keys), ``load`` (the file and the machine: :func:`load_config`,
:func:`resolve_local`) and ``dump`` (:func:`dump_effective`, :func:`schema_paths`). Import from
``hamgr.config`` itself.
"""

from __future__ import annotations

from hamgr.config.dump import REDACTED as REDACTED
from hamgr.config.dump import dump_effective, schema_paths
from hamgr.config.env import ENV_ALLOWED, ENV_PREFIX
from hamgr.config.load import find_bin_dir, load_config, resolve_local
from hamgr.config.problems import ConfigError
from hamgr.config.schema import (
    TIMING_PROFILES,
    ApiAuthentication,
    BootstrapConfig,
    Config,
    DcsConfig,
    DcsPostgresConfig,
    EtcdConfig,
    LogConfig,
    PostgresAuthentication,
    PostgresConfig,
    RaftConfig,
    RaftPeer,
    RaftTls,
    ReplicationUser,
    RestApiConfig,
    RewindUser,
    StoreConfig,
    SuperUser,
    Tags,
    WatchdogConfig,
)
from hamgr.config.schema import AbsPath as AbsPath
from hamgr.config.schema import Address as Address
from hamgr.config.schema import InitdbOption as InitdbOption
from hamgr.config.schema import MemberName as MemberName
from hamgr.config.schema import NonNegativeInt as NonNegativeInt
from hamgr.config.schema import ParameterValue as ParameterValue
from hamgr.config.schema import PositiveInt as PositiveInt
from hamgr.config.schema import Seconds as Seconds
from hamgr.config.schema import SecondsOrZero as SecondsOrZero
from hamgr.config.schema import Secret as Secret
from hamgr.config.validate import parse_config
from hamgr.config.values import split_address

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
]
