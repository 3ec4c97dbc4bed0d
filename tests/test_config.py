"""Tests of hamgr.config: every rule names its key, all problems come at once, env overrides."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamgr.agent.setup import setup_problems
from hamgr.config import (
    REDACTED,
    TIMING_PROFILES,
    Config,
    ConfigError,
    MemberName,
    dump_effective,
    find_bin_dir,
    load_config,
    parse_config,
    resolve_local,
    schema_paths,
    split_address,
)
from hamgr.config.msgspecwords import problem
from hamgr.config.problems import fmt_path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"
SECRET = "0123456789abcdef-raft"


def minimal() -> dict[str, Any]:
    """The smallest valid configuration (a fresh copy each time)."""
    return {
        "scope": "demo",
        "name": "member1",
        "postgresql": {"data_dir": "/var/lib/hamgr/pg"},
        "store": {"raft": {"data_dir": "/var/lib/hamgr/raft", "node_id": 1, "secret": SECRET}},
    }


def put(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set a dotted path in data (creating sections); value DELETE removes the key."""
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


def problems_of(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    assert info.value.problems, "a ConfigError must list its problems"
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# --- one mistake -> exactly this problem ----------------------------------------------------

HOST_PORT = 'expected "host:port"'
BRACKETS = 'expected "host:port" with an IPv6 host in brackets like "[::1]:5432"'

ONE_MISTAKE: list[tuple[str, Any, str]] = [
    ("scope", 5, "scope: expected a string, got 5"),
    ("scope", "", "scope: must not be empty"),
    ("scope", DELETE, "scope: required"),
    (
        "name",
        "bad name",
        'name: expected 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or '
        'digit, got "bad name"',
    ),
    (  # msgspec matches a pattern with re.search, whose $ also matches before a final newline
        "name",
        "pg1\n",
        'name: expected 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or '
        "digit, got \"pg1\\n\"",
    ),
    ("timing_profile", "turbo", 'timing_profile: expected one of "default", "fast", got "turbo"'),
    (
        "log.level",
        "info",
        'log.level: expected one of "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", got "info" '
        "(did you mean INFO?)",
    ),
    ("log.format", "xml", 'log.format: expected one of "text", "json", got "xml"'),
    (
        "log.level",
        None,
        'log.level: expected one of "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", got null',
    ),
    ("log", "INFO", 'log: expected a section (a mapping of keys), got "INFO"'),
    ("restapi.listen", "abc", f'restapi.listen: {HOST_PORT}, got "abc"'),
    ("restapi.listen", ":8008", f'restapi.listen: {HOST_PORT}, got ":8008"'),
    ("restapi.listen", "h:0", f'restapi.listen: {HOST_PORT} with a port in 1..65535, got "h:0"'),
    (
        "restapi.listen",
        "h:65536",
        f'restapi.listen: {HOST_PORT} with a port in 1..65535, got "h:65536"',
    ),
    (
        "restapi.listen",
        "h:80x",
        f'restapi.listen: {HOST_PORT} with a port in 1..65535, got "h:80x"',
    ),
    ("restapi.listen", "::1:8008", f'restapi.listen: {BRACKETS}, got "::1:8008"'),
    ("restapi.listen", "[zz]:8008", f'restapi.listen: {BRACKETS}, got "[zz]:8008"'),
    ("restapi.listen", "300.1.1.1:80", f'restapi.listen: {HOST_PORT}, got "300.1.1.1:80"'),
    ("restapi.listen", 8008, "restapi.listen: expected a string, got 8008"),
    (
        "restapi.connect_address",
        "0.0.0.0:8008",
        "restapi.connect_address: 0.0.0.0 is a listen-on-all address, not one other members can "
        "connect to; set it to this host's reachable address (it defaults to listen)",
    ),
    (
        "restapi.authentication",
        {"username": "admin"},
        "restapi.authentication.password: required (or restapi.authentication.password_file)",
    ),
    (
        "restapi.authentication",
        {"username": "admin", "password": "pw", "realm": "x"},
        "unknown key restapi.authentication.realm",
    ),
    ("restapi.certfile", "/etc/rest.crt", "restapi.keyfile: required when restapi.certfile is set"),
    ("restapi.keyfile", "/etc/rest.key", "restapi.certfile: required when restapi.keyfile is set"),
    ("restapi.certfile", "rest.crt", 'restapi.certfile: expected an absolute path, got "rest.crt"'),
    (
        "store.backend",
        "zookeeper",
        'store.backend: expected one of "raft", "etcd", got "zookeeper"',
    ),
    (
        "store.raft",
        DELETE,
        "store.raft: required when store.backend is raft (with at least data_dir, node_id and "
        "secret)",
    ),
    ("store.raft.data_dir", DELETE, "store.raft.data_dir: required"),
    ("store.raft.node_id", 0, "store.raft.node_id: must be >= 1, got 0"),
    ("store.raft.node_id", True, "store.raft.node_id: expected an integer, got true"),
    ("store.raft.node_id", "2", 'store.raft.node_id: expected an integer, got "2"'),
    ("store.raft.node_id", 1.0, "store.raft.node_id: expected an integer, got 1.0"),
    (
        "store.raft.secret",
        "short",
        "store.raft.secret: must be at least 16 characters long (it has 5)",
    ),
    (
        "store.raft.secret",
        1234567,
        "store.raft.secret: expected a string or null, got an integer",
    ),
    ("store.raft.secret", DELETE, "store.raft.secret: required (or store.raft.secret_file)"),
    (
        "store.raft.secret_file",
        "/etc/hamgr/secret",
        "store.raft.secret_file: set either store.raft.secret or store.raft.secret_file, not both",
    ),
    (
        "store.raft.peers",
        "127.0.0.1:7002",
        'store.raft.peers: expected a list, got "127.0.0.1:7002"',
    ),
    (
        "store.raft.peers",
        [{"node_id": 2, "address": "127.0.0.1:7002"}, {"node_id": 3, "address": "abc"}],
        f'store.raft.peers[1].address: {HOST_PORT}, got "abc"',
    ),
    (
        "store.raft.peers",
        [{"node_id": 1, "address": "127.0.0.1:7002"}],
        "store.raft.peers[0].node_id: 1 is already this member's own store.raft.node_id",
    ),
    (
        "store.raft.peers",
        [{"node_id": 2, "address": "127.0.0.1:7002"}, {"node_id": 2, "address": "127.0.0.1:7003"}],
        "store.raft.peers[1].node_id: 2 is already the node_id of store.raft.peers[0]",
    ),
    (
        "store.raft.peers",
        [{"node_id": 2, "address": "127.0.0.1:7001"}],
        "store.raft.peers[0].address: 127.0.0.1:7001 is already this member's own "
        "store.raft.advertise",
    ),
    (
        "store.raft.peers",
        [{"node_id": 2, "address": "127.0.0.1:7002"}, {"node_id": 3, "address": "127.0.0.1:7002"}],
        "store.raft.peers[1].address: 127.0.0.1:7002 is already the address of store.raft.peers[0]",
    ),
    ("store.raft.peers", [{"node_id": 2}], "store.raft.peers[0].address: required"),
    (
        "store.raft.peers",
        ["127.0.0.1:7002"],
        'store.raft.peers[0]: expected a section (a mapping of keys), got "127.0.0.1:7002"',
    ),
    (
        "store.raft.heartbeat_interval",
        0.6,
        "store.raft.heartbeat_interval: must be < store.raft.election_timeout / 2 = 0.5, got 0.6",
    ),
    ("store.raft.heartbeat_interval", 0, "store.raft.heartbeat_interval: must be > 0, got 0"),
    (
        "store.raft.election_timeout",
        "1s",
        'store.raft.election_timeout: expected a number, got "1s"',
    ),
    (
        "store.raft.snapshot_entries",
        1.5,
        "store.raft.snapshot_entries: expected an integer, got 1.5",
    ),
    (
        "store.raft.advertise",
        "[::]:7001",
        "store.raft.advertise: :: is a listen-on-all address, not one other members can connect "
        "to; set it to this host's reachable address (it defaults to listen)",
    ),
    ("store.raft.tls", {"certfile": "/c", "keyfile": "/k"}, "store.raft.tls.cafile: required"),
    ("store.raft.client_listen", "abc", f'store.raft.client_listen: {HOST_PORT}, got "abc"'),
    ("store.raft.client_listen", "", "store.raft.client_listen: must not be empty"),
    (
        "store.raft.listen",
        "127.0.0.1:65500",
        "store.raft.client_listen: required: its default, the port of store.raft.listen + 100, "
        "is above 65535 (127.0.0.1:65500)",
    ),
    (
        "store.raft.client_listen",
        "127.0.0.1:7001",
        "store.raft.client_listen: same address as store.raft.listen (127.0.0.1:7001)",
    ),
    (
        "store.raft.client_listen",
        "127.0.0.1:8008",
        "store.raft.client_listen: same address as restapi.listen (127.0.0.1:8008)",
    ),
    (
        "store.raft.peers",
        [{"node_id": 2, "address": "127.0.0.1:65436"}],
        "store.raft.peers[0].client_address: required: its default, the port of "
        "store.raft.peers[0].address + 100, is above 65535 (127.0.0.1:65436)",
    ),
    (
        "store.raft.peers",
        [{"node_id": 2, "address": "127.0.0.1:7002", "client_address": "x:y"}],
        'store.raft.peers[0].client_address: expected "host:port" with a port in 1..65535, '
        'got "x:y"',
    ),
    (
        "store.etcd",
        {"hosts": ["127.0.0.1:2379"], "cacert": "/ca.crt"},
        "store.etcd.cacert: only used with store.etcd.protocol https",
    ),
    (
        "store.etcd",
        {"hosts": ["127.0.0.1:2379"], "username": "u"},
        "store.etcd.password: required when store.etcd.username is set",
    ),
    ("store.etcd", {"hosts": []}, "store.etcd.hosts: must not be empty"),
    ("store.etcd", {"hosts": ["h:1", "bad"]}, f'store.etcd.hosts[1]: {HOST_PORT}, got "bad"'),
    ("store.etcd", {"protocol": "https"}, "store.etcd.hosts: required"),
    ("postgresql.data_dir", DELETE, "postgresql.data_dir: required"),
    (
        "postgresql.data_dir",
        "pgdata",
        'postgresql.data_dir: expected an absolute path, got "pgdata"',
    ),
    ("postgresql.bin_dir", "", "postgresql.bin_dir: must not be empty"),
    (
        "postgresql.listen",
        "127.0.0.1:8008",
        "postgresql.listen: same address as restapi.listen (127.0.0.1:8008)",
    ),
    (
        "postgresql.parameters",
        {"port": 5433},
        "postgresql.parameters.port: set by hamgr from postgresql.listen; remove it here",
    ),
    (
        "postgresql.parameters",
        {"shared_buffers": [1]},
        "postgresql.parameters.shared_buffers: expected a string, number or boolean, got a list",
    ),
    (
        "postgresql.parameters",
        ["max_connections=100"],
        "postgresql.parameters: expected a mapping of names to values, got a list",
    ),
    (
        "postgresql.pg_hba",
        ["local all all peer", 5],
        "postgresql.pg_hba[1]: expected a string, got 5",
    ),
    (
        "postgresql.use_pg_rewind",
        "yes",
        'postgresql.use_pg_rewind: expected true or false, got "yes"',
    ),
    (
        "postgresql.create_replica_methods",
        ["wal.e"],
        "postgresql.create_replica_methods[0]: expected a method name (letters, digits, '_' "
        "and '-', at most 63), got \"wal.e\"",
    ),
    (
        "postgresql.create_replica_methods",
        [],
        "postgresql.create_replica_methods: must not be empty",
    ),
    (
        "postgresql.authentication",
        {"rewind": {}},
        "postgresql.authentication.rewind.username: required",
    ),
    (
        "postgresql.authentication",
        {"superuser": {"password": 42}},
        "postgresql.authentication.superuser.password: expected a string or null, got an integer",
    ),
    (
        "postgresql.paramters",
        {},
        "unknown key postgresql.paramters (did you mean parameters?)",
    ),
    (
        "bootstrap.initdb",
        [{"encoding": "UTF8", "locale": "C"}],
        'bootstrap.initdb[0]: expected an option name or one "name: value" pair (e.g. '
        "data-checksums or {encoding: UTF8}), got a mapping",
    ),
    (
        "bootstrap.initdb",
        "data-checksums",
        'bootstrap.initdb: expected a list, got "data-checksums"',
    ),
    (
        "bootstrap.dcs.ttl",
        4,
        "bootstrap.dcs.ttl: must be >= loop_wait + 2 * retry_timeout = 5, got 4",
    ),
    ("bootstrap.dcs.ttl", float("inf"), "bootstrap.dcs.ttl: expected a number, got inf"),
    ("bootstrap.dcs.loop_wait", -1, "bootstrap.dcs.loop_wait: must be > 0, got -1"),
    (
        "bootstrap.dcs.safety_margin",
        6,
        "bootstrap.dcs.safety_margin: must be < bootstrap.dcs.ttl = 6, got 6",
    ),
    (
        "bootstrap.dcs.safety_margin",
        0.5,
        "bootstrap.dcs.safety_margin: must be >= bootstrap.dcs.loop_wait = 1: the primary must "
        "stop its PostgreSQL at least one HA loop before its lease can end and another member "
        "take over, got 0.5",
    ),
    (
        "bootstrap.dcs.maximum_lag_on_failover",
        -1,
        "bootstrap.dcs.maximum_lag_on_failover: must be >= 0, got -1",
    ),
    (
        "bootstrap.dcs.postgresql.parameters",
        {"listen_addresses": "*"},
        "bootstrap.dcs.postgresql.parameters.listen_addresses: set by hamgr from "
        "postgresql.listen; remove it here",
    ),
    (
        "bootstrap.dcs.postgresql.use_slots",
        1,
        "bootstrap.dcs.postgresql.use_slots: expected true or false, got 1",
    ),
    ("tags.nofailover", "true", 'tags.nofailover: expected true or false, got "true"'),
    ("tags.failover_priority", -1, "tags.failover_priority: must be >= 0, got -1"),
    (
        "bootstrap.dcs.synchronous_mode",
        "yes",
        'bootstrap.dcs.synchronous_mode: expected "off", "on" or "quorum", got "yes"',
    ),
    (
        "watchdog.mode",
        False,
        'watchdog.mode: expected one of "off", "automatic", "required", got false (YAML reads a '
        "bare on/off/yes/no as a boolean: put it in quotes)",
    ),
    (
        "watchdog.device",
        "dev/watchdog",
        'watchdog.device: expected an absolute path, got "dev/watchdog"',
    ),
    ("scpoe", "x", "unknown key scpoe (did you mean scope?)"),
    (
        "bootstrap.dcs.slots",
        None,
        "bootstrap.dcs.slots: expected a mapping of slot names to {type: physical}, got null",
    ),
    (  # too large for a float: it was an OverflowError
        "bootstrap.dcs.ttl",
        10**400,
        f"bootstrap.dcs.ttl: number out of range, got {'1' + '0' * 76}...",
    ),
]


@pytest.mark.parametrize(("path", "value", "expected"), ONE_MISTAKE)
def test_one_mistake_gives_exactly_its_problem(path: str, value: Any, expected: str) -> None:
    assert problems_of(put(minimal(), path, value)) == [expected]


def test_the_timing_rules_each_name_their_key() -> None:
    data = minimal()
    put(data, "bootstrap.dcs", {"ttl": 1.2, "loop_wait": 0.2, "retry_timeout": 0.2})
    put(data, "bootstrap.dcs.safety_margin", 0.5)
    assert problems_of(data) == [
        "bootstrap.dcs.ttl: must be >= 1.5 * store.raft.election_timeout = 1.5 (the minimum "
        "lease TTL), got 1.2"
    ]
    put(data, "watchdog", {"mode": "automatic", "safety_margin": 1.0})
    assert problems_of(data)[-1] == (
        "watchdog.safety_margin: must be < bootstrap.dcs.ttl - bootstrap.dcs.loop_wait = 1 so "
        "that a loop on time feeds the watchdog before it fires, got 1"
    )


def test_watchdog_margin_is_only_checked_with_a_watchdog() -> None:
    data = put(minimal(), "watchdog", {"mode": "off", "safety_margin": 5})
    assert parse_config(data).watchdog.safety_margin == 5.0
    put(data, "watchdog.mode", "required")
    assert problems_of(data) == [
        "watchdog.safety_margin: must be < bootstrap.dcs.ttl - bootstrap.dcs.loop_wait = 5 so "
        "that a loop on time feeds the watchdog before it fires, got 5"
    ]


VALID: list[tuple[str, Any, str, Any]] = [
    # (path set, value, attribute path read back, expected value)
    ("restapi.listen", "[::1]:8008", "restapi.connect_address", "[::1]:8008"),
    ("restapi.listen", "db-1.example.com:8008", "restapi.listen", "db-1.example.com:8008"),
    (
        "restapi",
        {"listen": "0.0.0.0:8008", "connect_address": "127.0.0.2:8008"},
        "restapi.listen",
        "0.0.0.0:8008",
    ),
    ("store.raft.listen", "127.0.0.2:7001", "store.raft.advertise", "127.0.0.2:7001"),
    ("store.raft.cluster_id", "other", "store.raft.cluster_id", "other"),
    ("store.raft.listen", "127.0.0.2:7001", "store.raft.client_listen", "127.0.0.2:7101"),
    ("store.raft.listen", "[::1]:7001", "store.raft.client_listen", "[::1]:7101"),
    ("store.raft.listen", "127.0.0.1:65435", "store.raft.client_listen", "127.0.0.1:65535"),
    (
        "store.raft",
        {
            "data_dir": "/r",
            "node_id": 1,
            "secret": SECRET,
            "listen": "0.0.0.0:7001",
            "advertise": "10.0.0.1:7001",
        },
        "store.raft.client_listen",
        "0.0.0.0:7101",
    ),
    ("store.raft.client_listen", "127.0.0.1:9000", "store.raft.listen", "127.0.0.1:7001"),
    ("store.raft.client_listen", "127.0.0.1:9000", "store.raft.client_listen", "127.0.0.1:9000"),
    ("bootstrap.dcs.ttl", 10, "bootstrap.dcs.ttl", 10.0),
    ("bootstrap.dcs.primary_start_timeout", 0, "bootstrap.dcs.primary_start_timeout", 0.0),
    (
        "bootstrap.initdb",
        ["data-checksums", {"wal-segsize": 32}],
        "bootstrap.initdb",
        ("data-checksums", {"wal-segsize": "32"}),
    ),
    (
        "postgresql.parameters",
        {"work_mem": "8MB", "jit": False, "random_page_cost": 1.1},
        "postgresql.parameters",
        {"work_mem": "8MB", "jit": False, "random_page_cost": 1.1},
    ),
    (
        "postgresql.parameters",
        {"shared_preload_libraries": ""},
        "postgresql.parameters",
        {"shared_preload_libraries": ""},
    ),
    ("tags", None, "tags.nofailover", False),
    (
        "restapi.authentication",
        {"username": "a", "password": "b"},
        "restapi.authentication.password",
        "b",
    ),
    (
        "postgresql.authentication",
        {"rewind": {"username": "rw"}},
        "postgresql.authentication.rewind.username",
        "rw",
    ),
    (
        "postgresql.authentication",
        {"rewind": {"username": "rw"}},
        "postgresql.authentication.superuser.username",
        "postgres",
    ),
    (
        "postgresql.authentication",
        {"superuser": {"password": "pw"}},
        "postgresql.authentication.replication.username",
        "replicator",
    ),
    ("watchdog.mode", "automatic", "watchdog.safety_margin", 2.0),
    # YAML reads an unquoted on/off as a boolean: both spellings mean the mode.
    ("bootstrap.dcs.synchronous_mode", True, "bootstrap.dcs.synchronous_mode", "on"),
    ("bootstrap.dcs.synchronous_mode", False, "bootstrap.dcs.synchronous_mode", "off"),
    ("bootstrap.dcs.synchronous_mode", "quorum", "bootstrap.dcs.synchronous_mode", "quorum"),
    ("bootstrap.dcs.maximum_lag_on_syncnode", -1, "bootstrap.dcs.maximum_lag_on_syncnode", -1),
    ("tags.failover_priority", 0, "tags.failover_priority", 0),
]


@pytest.mark.parametrize(("path", "value", "attr", "expected"), VALID)
def test_valid_values_are_read_as_expected(path: str, value: Any, attr: str, expected: Any) -> None:
    got: Any = parse_config(put(minimal(), path, value))
    for part in attr.split("."):
        got = getattr(got, part)
    assert got == expected


def test_defaults_and_derived_values() -> None:
    c = parse_config(minimal())
    assert c.restapi.listen == c.restapi.connect_address == "127.0.0.1:8008"
    assert c.postgresql.listen == c.postgresql.connect_address == "127.0.0.1:5432"
    raft = c.store.raft
    assert raft is not None
    assert raft.listen == raft.advertise == "127.0.0.1:7001"
    assert raft.client_listen == "127.0.0.1:7101"
    assert raft.cluster_id == "demo"
    assert (raft.heartbeat_interval, raft.election_timeout, raft.snapshot_entries) == (
        0.3,
        1.0,
        10000,
    )
    dcs = c.bootstrap.dcs
    assert (dcs.ttl, dcs.loop_wait, dcs.retry_timeout, dcs.safety_margin) == (6, 1, 2, 2)
    assert (dcs.maximum_lag_on_failover, dcs.primary_start_timeout) == (1048576, 300)
    assert c.postgresql.bin_dir is None  # found at the edge, by load_config
    assert c.postgresql.create_replica_methods == ("basebackup",)
    assert c.watchdog.mode == "off" and c.log.format == "text"


def test_peer_client_addresses_default_to_the_raft_port_plus_100() -> None:
    data = put(
        minimal(),
        "store.raft.peers",
        [
            {"node_id": 2, "address": "db-2.example.com:7001"},
            {"node_id": 3, "address": "[fd00::3]:7001", "client_address": "10.0.0.3:9000"},
        ],
    )
    raft = parse_config(data).store.raft
    assert raft is not None
    assert [(p.node_id, p.client_address) for p in raft.peers] == [
        (2, "db-2.example.com:7101"),
        (3, "10.0.0.3:9000"),
    ]
    env = {"HAMGR_STORE__RAFT__CLIENT_LISTEN": "127.0.0.1:7200"}
    raft = parse_config(minimal(), env).store.raft
    assert raft is not None and raft.client_listen == "127.0.0.1:7200"


def test_fast_profile_changes_defaults_and_satisfies_every_rule() -> None:
    c = parse_config(put(minimal(), "timing_profile", "fast"))
    raft = c.store.raft
    assert raft is not None
    assert (raft.heartbeat_interval, raft.election_timeout) == (0.05, 0.5)
    dcs = c.bootstrap.dcs
    assert (dcs.ttl, dcs.loop_wait, dcs.retry_timeout, dcs.safety_margin) == (2, 0.5, 0.5, 0.5)
    # With the watchdog on every profile still passes every rule.
    for profile in TIMING_PROFILES:
        data = put(minimal(), "timing_profile", profile)
        parse_config(put(data, "watchdog.mode", "required"))
    # A key that is set wins over the profile.
    c = parse_config(put(put(minimal(), "timing_profile", "fast"), "bootstrap.dcs.ttl", 3))
    assert c.bootstrap.dcs.ttl == 3.0 and c.bootstrap.dcs.loop_wait == 0.5


def test_etcd_backend_needs_no_raft_section() -> None:
    data = put(minimal(), "store", {"backend": "etcd", "etcd": {"hosts": ["127.0.0.1:2379"]}})
    c = parse_config(data)
    assert c.store.raft is None and c.store.etcd is not None
    assert c.store.etcd.hosts == ("127.0.0.1:2379",) and c.store.etcd.protocol == "http"
    put(data, "store.etcd", DELETE)
    assert problems_of(data) == [
        "store.etcd: required when store.backend is etcd (with at least hosts)"
    ]


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:5432", ("127.0.0.1", 5432)), ("[::1]:80", ("::1", 80)), ("a-b.c:1", ("a-b.c", 1))],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


# --- many mistakes at once ------------------------------------------------------------------


def test_every_problem_is_reported_together() -> None:
    data = minimal()
    put(data, "scope", 7)
    put(data, "restapi.listen", "nope")
    put(data, "store.raft.node_id", -3)
    put(
        data,
        "store.raft.peers",
        [{"node_id": 2, "address": "a:1"}, {"node_id": 2, "address": "abc"}],
    )
    put(data, "postgresql.paramters", {"x": 1})
    put(data, "bootstrap.dcs.ttl", 3)
    put(data, "tags.nofailover", "no")
    put(data, "extra", True)
    found = problems_of(data)
    expected = [
        "unknown key extra",
        "scope: expected a string, got 7",
        f'restapi.listen: {HOST_PORT}, got "nope"',
        "store.raft.node_id: must be >= 1, got -3",
        f'store.raft.peers[1].address: {HOST_PORT}, got "abc"',
        "unknown key postgresql.paramters (did you mean parameters?)",
        'tags.nofailover: expected true or false, got "no"',
        "store.raft.peers[1].node_id: 2 is already the node_id of store.raft.peers[0]",
        "bootstrap.dcs.ttl: must be >= loop_wait + 2 * retry_timeout = 5, got 3",
    ]
    assert sorted(found) == sorted(expected)


@pytest.mark.parametrize("data", [None, [], "scope: x", 5, {1: 2}])
def test_a_document_that_is_not_a_mapping_of_keys(data: Any) -> None:
    found = problems_of(data)
    assert found[0].startswith("(top level): ")


def test_parse_does_not_change_its_input() -> None:
    data = minimal()
    before = copy.deepcopy(data)
    parse_config(data, {"HAMGR_STORE__RAFT__NODE_ID": "4", "HAMGR_POSTGRESQL__PARAMETERS__X": "1"})
    assert data == before


# --- environment overrides ----------------------------------------------------------------


def test_env_overrides_are_typed_by_the_key_they_set() -> None:
    data = put(minimal(), "postgresql.parameters", {"work_mem": "8MB"})
    env = {
        "HAMGR_SCOPE": "prod",
        "HAMGR_STORE__RAFT__NODE_ID": "2",
        "HAMGR_RESTAPI__LISTEN": "0.0.0.0:8008",
        "HAMGR_RESTAPI__CONNECT_ADDRESS": "127.0.0.5:8008",
        "HAMGR_TAGS__NOFAILOVER": "yes",  # YAML's loose booleans are fine from the environment
        "HAMGR_BOOTSTRAP__DCS__TTL": "10",
        "HAMGR_POSTGRESQL__AUTHENTICATION__SUPERUSER__PASSWORD": "123456",  # stays a string
        "HAMGR_POSTGRESQL__PARAMETERS__MAX_CONNECTIONS": "200",
        "HAMGR_STORE__RAFT__PEERS": '[{node_id: 3, address: "127.0.0.1:7003"}]',
        "HAMGR_WATCHDOG__MODE": "off",  # text for a text key, not YAML's false
        "HAMGR_LOG__FORMAT": "json",
        "HAMGR_CONFIG": "/etc/hamgr.yaml",  # allowed: not a key
        "HAMGR_PG_BINDIR": "/usr/lib/postgresql/15/bin",
        "HAMGR_TEST_ANYTHING": "x",
        "PATH": "/usr/bin",
    }
    c = parse_config(data, env)
    raft = c.store.raft
    assert raft is not None
    assert c.scope == "prod" and raft.cluster_id == "prod"
    assert raft.node_id == 2
    assert raft.peers[0].node_id == 3 and raft.peers[0].address == "127.0.0.1:7003"
    assert (c.restapi.listen, c.restapi.connect_address) == ("0.0.0.0:8008", "127.0.0.5:8008")
    assert c.tags.nofailover is True
    assert c.bootstrap.dcs.ttl == 10.0
    assert c.postgresql.authentication.superuser.password == "123456"
    assert c.postgresql.parameters == {"work_mem": "8MB", "max_connections": 200}
    assert c.watchdog.mode == "off" and c.log.format == "json"


def test_env_can_create_a_section_and_choose_the_profile() -> None:
    data = minimal()
    del data["store"]
    env = {
        "HAMGR_STORE__RAFT__DATA_DIR": "/srv/raft",
        "HAMGR_STORE__RAFT__NODE_ID": "5",
        "HAMGR_STORE__RAFT__SECRET": "a-secret-from-the-env",
        "HAMGR_TIMING_PROFILE": "fast",
    }
    c = parse_config(data, env)
    assert c.store.raft is not None and c.store.raft.node_id == 5
    assert c.bootstrap.dcs.ttl == 2.0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HAMGR_RESTAPI__LISTN": "x:1"},
            "unknown key restapi.listn (from HAMGR_RESTAPI__LISTN) (did you mean listen?)",
        ),
        ({"HAMGR_ZZZ": "1"}, "unknown key zzz (from HAMGR_ZZZ)"),
        ({"HAMGR_ZZZ__DEEPER": "1"}, "unknown key zzz (from HAMGR_ZZZ__DEEPER)"),
        ({"HAMGR_NAMES": "1"}, "unknown key names (from HAMGR_NAMES) (did you mean name?)"),
        (
            {"HAMGR_STORE__RAFT__NODE_ID": "abc"},
            'store.raft.node_id (from HAMGR_STORE__RAFT__NODE_ID): expected an integer, got "abc"',
        ),
        (
            {"HAMGR_BOOTSTRAP__DCS__TTL": "4"},
            "bootstrap.dcs.ttl: must be >= loop_wait + 2 * retry_timeout = 5, got 4",
        ),
        (
            {"HAMGR_SCOPE__X": "1"},
            'HAMGR_SCOPE__X: scope holds "demo" in the file, not a section',
        ),
        (
            {"HAMGR_": "1"},
            'HAMGR_: expected HAMGR_KEY or HAMGR_SECTION__KEY (parts joined by "__")',
        ),
        (
            {"HAMGR_STORE____RAFT": "1"},
            'HAMGR_STORE____RAFT: expected HAMGR_KEY or HAMGR_SECTION__KEY (parts joined by "__")',
        ),
        (
            {"HAMGR_TAGS": "{nofailover: true}", "HAMGR_TAGS__NOSYNC": "true"},
            "HAMGR_TAGS__NOSYNC: conflicts with HAMGR_TAGS",
        ),
        (
            {"HAMGR_LOG__LEVEL": "DEBUG", "hamgr_log__level": "INFO"},
            "hamgr_log__level: conflicts with HAMGR_LOG__LEVEL",
        ),
        (
            {"HAMGR_POSTGRESQL__PARAMETERS__WORK_MEM": "[1, 2]"},
            "postgresql.parameters.work_mem (from HAMGR_POSTGRESQL__PARAMETERS__WORK_MEM): "
            "expected a string, number or boolean, got a list",
        ),
    ],
)
def test_env_mistakes_name_the_variable(env: dict[str, str], expected: str) -> None:
    assert problems_of(minimal(), env) == [expected]


def test_env_that_is_not_yaml_gives_line_and_column() -> None:
    found = problems_of(minimal(), {"HAMGR_STORE__RAFT__PEERS": "[{node_id: 2"})
    assert len(found) == 1
    assert found[0].startswith(
        "store.raft.peers (from HAMGR_STORE__RAFT__PEERS): not valid YAML: "
        "HAMGR_STORE__RAFT__PEERS, line 1, column 13:"
    )


# --- files, YAML and the edge ------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "hamgr.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "scope: demo\nname: m1\npostgresql:\n  data_dir: /x\n   bad: [1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, resolve=False)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}, line 5, column 7: "), problem
    assert setup_problems(path, env={}) == [problem]


def test_unclosed_flow_list_points_at_the_end(tmp_path: Path) -> None:
    path = write(tmp_path, "scope: demo\npg_hba: [a, b\nname: x\n")
    (problem,) = setup_problems(path, env={})
    assert re.match(rf"{re.escape(str(path))}, line \d+, column \d+: ", problem), problem


def test_duplicate_keys_are_reported_not_silently_merged(tmp_path: Path) -> None:
    text = yaml.safe_dump(minimal(), sort_keys=False) + "scope: other\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, resolve=False)
    assert info.value.problems == [
        f"{path}, line {text.count(chr(10))}: duplicate key 'scope' (first at line 1); remove one "
        "of them"
    ]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        yaml.safe_dump(minimal(), sort_keys=False)
        + "tags:\n  <<: {nofailover: true, nosync: true}\n  nosync: false\n"
    )
    c = load_config(write(tmp_path, text), env={}, resolve=False)
    assert c.tags.nofailover is True and c.tags.nosync is False


def test_file_problems_and_value_problems_come_together(tmp_path: Path) -> None:
    data = put(minimal(), "log.level", "LOUD")
    path = write(tmp_path, yaml.safe_dump(data) + "name: again\n")
    found = setup_problems(path, env={})
    assert len(found) == 2
    assert "duplicate key 'name'" in found[0] and found[1].startswith("log.level: ")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "(top level): expected a mapping of keys, got a list"),
        (b"scope: \xff\n", "not UTF-8 text (byte 7)"),
    ],
)
def test_unusable_files(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "hamgr.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    (problem,) = setup_problems(path, env={})
    assert problem.endswith(expected)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert setup_problems(path, env={}) == [f"{path}: cannot read: No such file or directory"]


def test_load_config_reads_os_environ_when_env_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, yaml.safe_dump(minimal()))
    monkeypatch.setenv("HAMGR_STORE__RAFT__NODE_ID", "9")
    raft = load_config(path, resolve=False).store.raft
    assert raft is not None and raft.node_id == 9
    assert load_config(path, env={}, resolve=False).store.raft == msgspec.structs.replace(
        raft, node_id=1
    )


def fake_bin_dir(root: Path) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pg_ctl").write_text("#!/bin/sh\n")
    return bin_dir


def test_resolve_local_reads_the_secret_file_and_checks_bin_dir(tmp_path: Path) -> None:
    secret_file = tmp_path / "raft.secret"
    secret_file.write_text("a-secret-in-a-file-0123\n")
    secret_file.chmod(0o600)
    data = minimal()
    del data["store"]["raft"]["secret"]
    put(data, "store.raft.secret_file", str(secret_file))
    put(data, "postgresql.bin_dir", str(fake_bin_dir(tmp_path)))
    c = load_config(write(tmp_path, yaml.safe_dump(data)), env={})
    assert c.store.raft is not None and c.store.raft.secret == "a-secret-in-a-file-0123"
    assert c.postgresql.bin_dir == str(tmp_path / "bin")


def test_resolve_local_lists_what_is_missing(tmp_path: Path) -> None:
    data = minimal()
    del data["store"]["raft"]["secret"]
    put(data, "store.raft.secret_file", str(tmp_path / "no.secret"))
    put(
        data,
        "store.raft.tls",
        {"certfile": "/nonexistent/c", "keyfile": "/nonexistent/k", "cafile": "/nonexistent/ca"},
    )
    put(data, "postgresql.bin_dir", str(tmp_path))
    short = tmp_path / "short.secret"
    short.write_text("tiny\n")
    short.chmod(0o600)
    found = setup_problems(write(tmp_path, yaml.safe_dump(data)), env={})
    assert found[0] == f"postgresql.bin_dir: {tmp_path} has no pg_ctl"
    assert found[1:4] == [
        f"store.raft.tls.{name}: /nonexistent/{short_name} is not a readable file"
        for name, short_name in (("certfile", "c"), ("keyfile", "k"), ("cafile", "ca"))
    ]
    assert found[4].startswith(f"store.raft.secret_file: cannot read {tmp_path / 'no.secret'}")
    assert len(found) == 5
    put(data, "store.raft.secret_file", str(short))
    del data["store"]["raft"]["tls"]
    found = setup_problems(write(tmp_path, yaml.safe_dump(data)), env={})
    assert found[1:] == [
        "store.raft.secret_file: the secret in it must be at least 16 characters long (it has 4)"
    ]


def test_find_bin_dir_picks_the_newest_version_by_number(tmp_path: Path) -> None:
    for version in ("9.6", "10", "15", "notaversion"):
        fake_bin_dir(tmp_path / version)
    (tmp_path / "16" / "bin").mkdir(parents=True)  # no pg_ctl: not a server install
    assert find_bin_dir("/nonexistent/pg_config", tmp_path) == str(tmp_path / "15" / "bin")
    assert find_bin_dir("/nonexistent/pg_config", tmp_path / "none") is None


@pytest.mark.skipif(find_bin_dir() is None, reason="no PostgreSQL installed on this machine")
def test_bin_dir_is_found_on_this_machine(tmp_path: Path) -> None:
    c = resolve_local(parse_config(minimal()))
    assert c.postgresql.bin_dir is not None
    assert os.path.isfile(os.path.join(c.postgresql.bin_dir, "pg_ctl"))


# --- the example file -----------------------------------------------------------------------


def test_example_file_validates() -> None:
    c = load_config(EXAMPLE, env={}, resolve=False)
    raft = c.store.raft
    assert c.scope == "demo" and raft is not None and raft.node_id == 1
    assert [(p.node_id, p.address, p.client_address) for p in raft.peers] == [
        (2, "127.0.0.1:7002", "127.0.0.1:7102"),
        (3, "127.0.0.1:7003", "127.0.0.1:7103"),
    ]
    assert raft.client_listen == "127.0.0.1:7101"
    assert (c.restapi.listen, raft.listen, c.postgresql.listen) == (
        "127.0.0.1:8008",
        "127.0.0.1:7001",
        "127.0.0.1:5432",
    )


def uncommented_example() -> Any:
    """The example with its commented-out keys switched on ("# key: value" -> "key: value")."""
    lines = [
        re.sub(r"^(\s*)# (\s*[a-z_]+:(\s.*)?)$", r"\1\2", line)
        for line in EXAMPLE.read_text().splitlines()
    ]
    return yaml.safe_load("\n".join(lines))


def test_example_file_shows_every_key() -> None:
    data = uncommented_example()
    missing = []
    for path in schema_paths():
        node = data
        for part in path.replace("[]", ".0").split("."):
            if isinstance(node, list) and part == "0" and node:
                node = node[0]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                missing.append(path)
                break
    assert missing == []


# Keys the example sets on purpose to something other than the default.
EXAMPLE_SET = {
    "scope",
    "name",
    "restapi.authentication",
    "store.raft.data_dir",
    "store.raft.secret",
    "store.raft.peers",
    "postgresql.data_dir",
    "postgresql.authentication.superuser.password",
    "postgresql.authentication.replication.password",
    "postgresql.pg_hba",
    "bootstrap.initdb",
    "bootstrap.dcs.postgresql.parameters",
}


def test_example_file_shows_the_defaults() -> None:
    """Every key the example sets (and does not list in EXAMPLE_SET) holds its default."""
    data = yaml.safe_load(EXAMPLE.read_text())
    example = dump_effective(parse_config(data), redact=False)
    defaults = dump_effective(parse_config(minimal()), redact=False)
    differ = []

    def walk(ours: Any, default: Any, path: str) -> None:
        if path in EXAMPLE_SET:
            return
        if isinstance(ours, dict) and isinstance(default, dict):
            for key in ours:
                walk(ours[key], default.get(key), f"{path}.{key}" if path else key)
        elif ours != default:
            differ.append((path, ours, default))

    walk(example, defaults, "")
    assert differ == []


# --- dump_effective ------------------------------------------------------------------------


def full_config() -> Config:
    data = minimal()
    put(data, "restapi.authentication", {"username": "admin", "password": "api-password-1"})
    put(
        data,
        "postgresql.authentication",
        {
            "superuser": {"password": "su-password-2"},
            "replication": {"password": "repl-password-3"},
            "rewind": {"username": "rw", "password": "rewind-password-4"},
        },
    )
    put(
        data,
        "store.etcd",
        {"hosts": ["127.0.0.1:2379"], "username": "e", "password": "etcd-password-5"},
    )
    put(data, "bootstrap.initdb", [{"encoding": "UTF8"}, "data-checksums"])
    put(data, "postgresql.parameters", {"work_mem": "8MB"})
    return parse_config(data)


def test_dump_effective_redacts_every_secret() -> None:
    config = full_config()
    dumped = dump_effective(config)
    text = json.dumps(dumped)
    for secret in (
        SECRET,
        "api-password-1",
        "su-password-2",
        "repl-password-3",
        "rewind-password-4",
        "etcd-password-5",
    ):
        assert secret not in text
    assert dumped["store"]["raft"]["secret"] == REDACTED
    assert dumped["restapi"]["authentication"] == {
        "username": "admin",
        "password": REDACTED,
        "password_file": None,
    }
    assert dumped["postgresql"]["authentication"]["rewind"] == {
        "username": "rw",
        "password": REDACTED,
        "password_file": None,
    }
    assert dumped["store"]["etcd"]["password"] == REDACTED
    # Unset secrets stay null, so a reader can tell "none" from "hidden".
    assert (
        dump_effective(parse_config(minimal()))["postgresql"]["authentication"]["superuser"][
            "password"
        ]
        is None
    )


def test_dump_effective_round_trips_through_yaml() -> None:
    config = full_config()
    dumped = dump_effective(config, redact=False)
    assert parse_config(yaml.safe_load(yaml.safe_dump(dumped))) == config
    assert json.loads(json.dumps(dumped)) == dumped


# --- junk never breaks the parser ---------------------------------------------------------

KEY_NAMES = sorted({part for path in schema_paths() for part in path.replace("[]", "").split(".")})
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["127.0.0.1:7002", "[::1]:1", "/abs", "off", "raft", "etcd", "fast", ""])
)
junk = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(KEY_NAMES) | st.text(max_size=6) | st.integers(), children, max_size=5
        )
    ),
    max_leaves=30,
)


def check_only_config_errors(data: Any, env: dict[str, str]) -> None:
    try:
        config = parse_config(data, env)
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
    else:
        assert isinstance(config, Config)
        dump_effective(config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEY_NAMES) | st.text(max_size=8), junk, max_size=8))
def test_random_junk_only_ever_raises_config_error(data: dict[Any, Any]) -> None:
    check_only_config_errors(data, {})


SCHEMA_PATHS = [p for p in schema_paths() if "[]" not in p]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(SCHEMA_PATHS), junk), min_size=1, max_size=4),
    st.dictionaries(
        st.sampled_from(SCHEMA_PATHS).map(lambda p: "HAMGR_" + p.upper().replace(".", "__"))
        | st.text(alphabet="HAMGR_XYZ", max_size=10),
        st.text(max_size=10) | st.sampled_from(["[1, 2", "{a: 1}", "2", "true", "[a:1]"]),
        max_size=3,
    ),
)
def test_junk_in_a_valid_config_only_ever_raises_config_error(
    changes: list[tuple[str, Any]], env: dict[str, str]
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    for path, value in changes:
        node = data
        *parents, last = path.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    check_only_config_errors(data, env)


def test_self_referencing_yaml_is_an_error_not_a_crash(tmp_path: Path) -> None:
    text = yaml.safe_dump(minimal()) + "bootstrap: &b\n  dcs: *b\ntags: &t [*t]\n"
    found = setup_problems(write(tmp_path, text), env={})
    assert found and all(isinstance(p, str) for p in found)


# --- the command line --------------------------------------------------------------------


def run_hamgr(
    *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMGR_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "hamgr", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_validate_config_ok_and_problems(tmp_path: Path) -> None:
    bin_dir = fake_bin_dir(tmp_path)
    ok = run_hamgr(
        "validate-config", str(EXAMPLE), env_extra={"HAMGR_POSTGRESQL__BIN_DIR": str(bin_dir)}
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "ok\n", "")

    bad = write(tmp_path, yaml.safe_dump(put(minimal(), "store.raft.node_id", 0)))
    result = run_hamgr(
        "validate-config",
        str(bad),
        env_extra={"HAMGR_POSTGRESQL__BIN_DIR": str(bin_dir), "HAMGR_LOG__LEVL": "x"},
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "unknown key log.levl (from HAMGR_LOG__LEVL) (did you mean level?)",
        "store.raft.node_id: must be >= 1, got 0",
    ]


def test_cli_version_and_usage() -> None:
    from hamgr import __version__

    result = run_hamgr("--version")
    assert (result.returncode, result.stdout) == (0, f"hamgr {__version__}\n")
    result = run_hamgr("validate-config")
    assert result.returncode == 2 and "FILE" in result.stderr.upper()


# --- msgspec's errors in hamgr's words (the one translator) -----------------------------------


class _Shape(msgspec.Struct, forbid_unknown_fields=True):
    name: MemberName
    mode: Literal["off", "on"] = "off"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 5432
    secret: Annotated[str, msgspec.Meta(min_length=16)] | None = None
    items: tuple[int | None, ...] = ()


@pytest.mark.parametrize(
    ("data", "secret", "expected"),
    [
        ({"name": "a b"}, False, ("name", "expected 1 to 63 letters")),
        ({"name": "a", "mode": "of"}, False, ("mode", 'expected one of "off", "on", got "of"')),
        ({"name": "a", "mode": None}, False, ("mode", 'expected one of "off", "on", got null')),
        ({"name": "a", "port": 0}, False, ("port", "must be >= 1, got 0")),
        ({"name": "a", "port": 70000}, False, ("port", "must be <= 65535, got 70000")),
        ({"name": "a", "secret": "hush"}, True, ("secret", "must be at least 16 characters long")),
        (
            {"name": "a", "secret": 1234},
            True,
            ("secret", "expected a string or null, got an integer"),
        ),
        (
            {"name": "a", "items": [1, "x"]},
            False,
            ("items[1]", 'expected an integer or null, got "x"'),
        ),
        ({"name": "a", "nmae": "b"}, False, ("nmae", "unknown field (known: name, mode, port,")),
        ({}, False, ("name", "required field is missing")),
    ],
)
def test_msgspec_errors_in_hamgrs_words(data: Any, secret: bool, expected: tuple[str, str]) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(data, _Shape)
    path, message = problem(info.value, _Shape, data, secret=secret)
    assert fmt_path(path) == expected[0] and message.startswith(expected[1]), message
    assert "hush" not in message and "1234" not in message
    # Without the value (a JSON document msgspec decoded) it says what the value was.
    path, message = problem(info.value, _Shape)
    assert fmt_path(path) == expected[0]
