"""The pure parts of hactl's topology, dsn, query, version, edit-config and remove (no I/O).

Tables of inputs and expected outputs; the commands against real agents and PostgreSQL are
in tests/ha/test_ctl_e2e.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from hamgr.cli.ctl_client import CtlError
from hamgr.cli.ctl_editconfig import diff_patch, parse_config, settings_patch, show_diff
from hamgr.cli.ctl_pick import candidates, dsn, pick_member
from hamgr.cli.ctl_query import Result, format_results, read_sql
from hamgr.cli.ctl_remove import AWARE, describe, typed_confirmations
from hamgr.cli.ctl_topology import indent, topology_order, topology_rows
from hamgr.cli.ctl_version import pg_version, version_line
from hamgr.cli.hactl import main
from hamgr.dcs.common import RangeSnapshot, StoredKey


def member(name: str, role: str = "replica", lag: int | None = 0, **kw: Any) -> dict[str, Any]:
    """One member as GET /cluster shows it."""
    return {
        "name": name,
        "host": f"10.0.0.{name[-1]}",
        "port": 5432,
        "api_url": f"http://10.0.0.{name[-1]}:8008",
        "role": role,
        "state": kw.pop("state", "streaming" if role != "leader" else "running"),
        "timeline": 3,
        "lag": None if role == "leader" else lag,
        "tags": kw.pop("tags", {}),
        "reason": "",
        **kw,
    }


def cluster(*members: dict[str, Any], leader: str | None = "m1") -> dict[str, Any]:
    return {"scope": "demo", "leader": leader, "members": list(members)}


def upstream(name: str) -> dict[str, Any]:
    return {"replicatefrom": name}


# --- topology ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "leader", "expected"),
    [
        # flat: every replica below the primary, in the order given
        (
            [member("m2"), member("m1", "leader"), member("m3")],
            "m1",
            [(0, "m1"), (1, "m2"), (1, "m3")],
        ),
        # cascading: m3 streams from m2, m4 from m3
        (
            [
                member("m1", "leader"),
                member("m4", tags=upstream("m3")),
                member("m3", tags=upstream("m2")),
                member("m2"),
            ],
            "m1",
            [(0, "m1"), (1, "m2"), (2, "m3"), (3, "m4")],
        ),
        # replicatefrom naming the leader, itself, or nobody in the cluster: below the leader
        (
            [
                member("m1", "leader"),
                member("m2", tags=upstream("m1")),
                member("m3", tags=upstream("m3")),
                member("m4", tags=upstream("gone")),
            ],
            "m1",
            [(0, "m1"), (1, "m2"), (1, "m3"), (1, "m4")],
        ),
        # a replicatefrom loop never reaching the leader: still listed, below the leader
        (
            [
                member("m1", "leader"),
                member("m2", tags=upstream("m3")),
                member("m3", tags=upstream("m2")),
            ],
            "m1",
            [(0, "m1"), (1, "m2"), (2, "m3")],
        ),
        # no leader: the replicas are the roots, cascades below them
        (
            [member("m2"), member("m3", tags=upstream("m2"))],
            None,
            [(0, "m2"), (1, "m3")],
        ),
        # a leader named but absent from the members (its key outlived its member key)
        ([member("m2"), member("m3")], "m1", [(0, "m2"), (0, "m3")]),
    ],
)
def test_topology_order(
    members: list[dict[str, Any]], leader: str | None, expected: list[tuple[int, str]]
) -> None:
    assert topology_order(members, leader) == expected


@pytest.mark.parametrize(
    ("name", "depth", "shown"), [("m1", 0, "m1"), ("m2", 1, "+ m2"), ("m3", 2, "  + m3")]
)
def test_indent_as_patronictl(name: str, depth: int, shown: str) -> None:
    assert indent(name, depth) == shown


def test_topology_rows_keep_the_list_columns() -> None:
    c = cluster(
        member("m3", tags=upstream("m2"), lag=3 << 20),
        member("m1", "leader"),
        member("m2"),
    )
    rows = topology_rows(c)
    assert [r["Member"] for r in rows] == ["m1", "+ m2", "  + m3"]
    assert list(rows[0]) == ["Member", "Host", "Role", "State", "TL", "Lag in MB"]
    assert rows[2]["Lag in MB"] == 3 and rows[2]["Host"] == "10.0.0.3:5432"


# --- dsn: which member -------------------------------------------------------------------------

THREE = cluster(
    member("m1", "leader"),
    member("m2", lag=500),
    member("m3", "sync_standby", lag=10),
)


@pytest.mark.parametrize(
    ("name", "role", "chosen"),
    [
        (None, None, "m1"),  # the primary by default
        (None, "primary", "m1"),
        (None, "leader", "m1"),
        (None, "replica", "m3"),  # the least lag first
        (None, "any", "m1"),
        ("m2", None, "m2"),
    ],
)
def test_pick_member(name: str | None, role: str | None, chosen: str) -> None:
    assert pick_member(THREE, name, role)["name"] == chosen


@pytest.mark.parametrize(
    ("c", "name", "role", "error"),
    [
        (THREE, "m2", "replica", "--role and a member name are mutually exclusive"),
        (THREE, "m9", None, "no member named m9 in cluster demo (members: m1, m2, m3)"),
        (cluster(member("m2"), leader=None), None, None, "cluster demo has no primary"),
        (cluster(member("m1", "leader")), None, "replica", "has no member with role replica"),
        (THREE, None, "witness", "--role: expected one of primary, leader, replica, any"),
    ],
)
def test_pick_member_refuses(
    c: dict[str, Any], name: str | None, role: str | None, error: str
) -> None:
    with pytest.raises(CtlError, match=re.escape(error)):
        pick_member(c, name, role)


def test_replicas_not_running_come_last() -> None:
    c = cluster(
        member("m1", "leader"),
        member("m2", lag=0, state="stopped"),
        member("m3", lag=None),
        member("m4", lag=7),
    )
    assert [m["name"] for m in candidates(c, "replica")] == ["m4", "m3", "m2"]
    assert [m["name"] for m in candidates(c, "any")] == ["m1", "m4", "m3", "m2"]


def test_dsn_as_patronictl() -> None:
    assert dsn(THREE["members"][1]) == "host=10.0.0.2 port=5432"


# --- query output ------------------------------------------------------------------------------

ROWS = Result(("id", "name", "note"), ((1, "a", None), (2, "b\tc", True)))


@pytest.mark.parametrize(
    ("fmt", "delimiter", "expected"),
    [
        ("tsv", "\t", "id\tname\tnote\n1\ta\t\n2\tb\tc\tt"),
        ("tsv", ";", "id;name;note\n1;a;\n2;b\tc;t"),
        (
            "pretty",
            "\t",
            "+----+------+------+\n| id | name | note |\n+----+------+------+\n"
            "| 1  | a    |      |\n| 2  | b\tc  | t    |\n+----+------+------+",
        ),
    ],
)
def test_format_results_tables(fmt: str, delimiter: str, expected: str) -> None:
    assert format_results([ROWS], fmt, delimiter) == expected


def test_format_results_documents() -> None:
    rows = [{"id": 1, "name": "a", "note": None}, {"id": 2, "name": "b\tc", "note": True}]
    assert json.loads(format_results([ROWS], "json")) == rows
    assert yaml.safe_load(format_results([ROWS], "yaml")) == rows
    two = [Result((), (), "CREATE TABLE"), ROWS]
    assert json.loads(format_results(two, "json")) == [{"status": "CREATE TABLE"}, rows]
    assert format_results(two, "tsv").split("\n\n") == [
        "CREATE TABLE",
        format_results([ROWS], "tsv"),
    ]


def test_format_results_refuses_an_unknown_format() -> None:
    with pytest.raises(CtlError, match="--format: expected one of tsv, pretty, json, yaml"):
        format_results([ROWS], "csv")


@pytest.mark.parametrize(
    ("command", "path", "error"),
    [
        ("SELECT 1", "x.sql", "--command and --file are mutually exclusive"),
        (None, None, "give the SQL with -c/--command or -f/--file"),
        ("  ", None, "the SQL is empty"),
        (None, "/nonexistent/q.sql", "--file: cannot read /nonexistent/q.sql"),
    ],
)
def test_read_sql_refuses(command: str | None, path: str | None, error: str) -> None:
    with pytest.raises(CtlError, match=re.escape(error)):
        read_sql(command, path)


# --- version -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"), [(150010, "15.10"), (170000, "17.0"), (90624, "9.6.24"), (100001, "10.1")]
)
def test_pg_version(number: int, text: str) -> None:
    assert pg_version(number) == text


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (
            {"patroni": {"version": "0.1.0"}, "server_version": 150010},
            "m1: hamgr 0.1.0 PostgreSQL 15.10",
        ),
        ({"patroni": {"version": "0.1.0"}, "server_version": None}, "m1: hamgr 0.1.0"),
        ({}, "m1: hamgr unknown"),
    ],
)
def test_version_line(status: dict[str, Any], line: str) -> None:
    assert version_line("m1", status) == line


# --- edit-config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "patch"),
    [
        ({"ttl": 6, "loop_wait": 1}, {"ttl": 8, "loop_wait": 1}, {"ttl": 8}),
        ({"ttl": 6, "loop_wait": 1}, {"ttl": 6}, {"loop_wait": None}),
        ({"ttl": 6}, {"ttl": 6, "pause": True}, {"pause": True}),
        (
            {"parameters": {"work_mem": "4MB", "max_connections": 30}},
            {"parameters": {"max_connections": 40}},
            {"parameters": {"work_mem": None, "max_connections": 40}},
        ),
        ({"parameters": {"a": 1}}, {"parameters": {"a": 1}}, {}),
        ({"x": [1, 2]}, {"x": [1]}, {"x": [1]}),
    ],
)
def test_diff_patch(before: dict[str, Any], after: dict[str, Any], patch: dict[str, Any]) -> None:
    assert diff_patch(before, after) == patch


@pytest.mark.parametrize(
    ("sets", "pgs", "patch"),
    [
        (["ttl=10"], [], {"ttl": 10}),
        (["pause=true", "ttl=8.5"], [], {"pause": True, "ttl": 8.5}),
        (["parameters.work_mem=64MB"], [], {"parameters": {"work_mem": "64MB"}}),
        ([], ["work_mem=64MB"], {"parameters": {"work_mem": "64MB"}}),
        ([], ["max_connections=200"], {"parameters": {"max_connections": 200}}),
        # a parameter's name keeps its dots, whichever option names it (as patronictl)
        (
            ["parameters.pg_stat_statements.track=all"],
            ["auto_explain.log_min_duration=1s"],
            {
                "parameters": {
                    "pg_stat_statements.track": "all",
                    "auto_explain.log_min_duration": "1s",
                }
            },
        ),
        (["ttl=10"], ["work_mem=1MB"], {"ttl": 10, "parameters": {"work_mem": "1MB"}}),
        (["standby_cluster.host=10.0.0.1"], [], {"standby_cluster": {"host": "10.0.0.1"}}),
        ([], ["work_mem="], {"parameters": {"work_mem": ""}}),
    ],
)
def test_settings_patch(sets: list[str], pgs: list[str], patch: dict[str, Any]) -> None:
    assert settings_patch(sets, pgs) == patch


@pytest.mark.parametrize(
    ("sets", "pgs", "error"),
    [
        (["ttl"], [], "--set: expected key=value (e.g. ttl=10), got 'ttl'"),
        (["a..b=1"], [], "--set: expected key=value (e.g. ttl=10), got 'a..b=1'"),
        ([], ["work_mem"], "--pg: expected key=value (e.g. work_mem=64MB), got 'work_mem'"),
        ([], ["=64MB"], "--pg: expected key=value (e.g. work_mem=64MB), got '=64MB'"),
        (["parameters=x"], ["work_mem=1MB"], "--pg: parameters.work_mem conflicts with"),
    ],
)
def test_settings_patch_refuses(sets: list[str], pgs: list[str], error: str) -> None:
    with pytest.raises(CtlError, match=re.escape(error)):
        settings_patch(sets, pgs)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("ttl: [1", "the edited configuration: not valid YAML"),
        ("", "the edited configuration: empty: nothing changed"),
        ("- ttl\n", "expected a mapping of settings, got list"),
    ],
)
def test_parse_config_refuses(text: str, error: str) -> None:
    with pytest.raises(CtlError, match=re.escape(error)):
        parse_config(text, "the edited configuration")


def test_show_diff_is_unified() -> None:
    out = show_diff("loop_wait: 1\nttl: 6\n", "loop_wait: 1\nttl: 8\n", "demo")
    assert "--- demo (in the store)" in out and "+++ demo (new)" in out
    assert "-ttl: 6" in out and "+ttl: 8" in out and " loop_wait: 1" in out


# --- remove ------------------------------------------------------------------------------------


def answers(*lines: str) -> Any:
    """An ``ask`` that answers each prompt with the next line."""
    it = iter(lines)
    return lambda prompt: next(it)


def test_typed_confirmations() -> None:
    typed_confirmations("demo", answers(*["demo", AWARE]))
    with pytest.raises(CtlError, match="the cluster names do not match"):
        typed_confirmations("demo", answers(*["dmeo", AWARE]))
    with pytest.raises(CtlError, match='you did not type "Yes I am aware" exactly'):
        typed_confirmations("demo", answers(*["demo", "yes"]))


def test_describe_the_keys() -> None:
    def kv(key: str, value: str, lease: int = 0) -> StoredKey:
        return StoredKey(f"/hamgr/demo/{key}", value.encode(), 5, 5, lease)

    snap = RangeSnapshot(9, (kv("config", "{}"), kv("leader", "m1", 7), kv("members/m1", "{}", 7)))
    assert describe("demo", snap) == (
        "m1",
        ["m1"],
        ["/hamgr/demo/config", "/hamgr/demo/leader", "/hamgr/demo/members/m1"],
    )
    assert describe("demo", RangeSnapshot(9, ()))[0] is None


# --- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dsn", "--role", "witness"], "argument -r/--role: invalid choice: 'witness'"),
        (["query", "--format", "csv", "-c", "SELECT 1"], "argument --format: invalid choice"),
        (["remove"], "the following arguments are required: CLUSTER"),
        (["list", "-w", "0"], "argument -w/--watch: must be more than 0 seconds, got '0'"),
        (["list", "--watch", "soon"], "argument -w/--watch: expected seconds, got 'soon'"),
        (["list", "-w", "nan"], "argument -w/--watch: must be more than 0 seconds, got 'nan'"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_remove_needs_a_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAMGR_CONFIG", raising=False)
    assert main(["remove", "demo"]) == 1
    assert (
        "remove talks to the store: give the configuration with -c FILE" in capsys.readouterr().err
    )


def test_version_without_an_agent_prints_hactl_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAMGR_CONFIG", raising=False)
    assert main(["version"]) == 0
    assert capsys.readouterr().out.splitlines() == ["hactl version 0.1.0"]
