"""Pure parts of hamgr.postgres: parsers, rendering and settings validation (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hamgr.lsn import format_lsn, parse_lsn
from hamgr.postgres import ConfigError, PgSettings
from hamgr.postgres.errors import CommandError, PostgresError, SlotError, tail
from hamgr.postgres.initdbopts import initdb_option_problems, initdb_options
from hamgr.postgres.parse import (
    newest_segment_timeline,
    parse_controldata,
    parse_pid_file,
    parse_timeline_history,
    walfile_timeline,
)
from hamgr.postgres.render import (
    INCLUDE_LINES,
    conninfo,
    quote_guc,
    render_hba,
    render_managed_conf,
    render_pgpass,
    render_recovery_conf,
    with_includes,
)
from hamgr.postgres.replication import validate_slot_name


def settings(**overrides: object) -> PgSettings:
    params: dict[str, object] = {
        "bin_dir": "/usr/lib/postgresql/15/bin",
        "data_dir": "/srv/pg/data",
        "superuser_password": "su",
        "replication_password": "rp",
    }
    params.update(overrides)
    return PgSettings(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "value"),
    [("0/0", 0), ("0/3000060", 0x3000060), ("1/0", 1 << 32), ("FFFFFFFF/FFFFFFFF", 2**64 - 1)],
)
def test_lsn_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text


@pytest.mark.parametrize("bad", ["", "0", "0/", "/1", "0/3000060/1", "G/1", "123456789/0"])
def test_parse_lsn_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not an LSN"):
        parse_lsn(bad)


def test_walfile_timeline() -> None:
    assert walfile_timeline("000000020000000000000003") == 2
    assert walfile_timeline("0000000A0000000100000003") == 10
    with pytest.raises(ValueError):
        walfile_timeline("0002")


def test_parse_pid_file_full_and_early() -> None:
    text = "4242\n/srv/pg/data\n1700000000\n5432\n/run/pg\n127.0.0.1\n  5432001    123\nready   \n"
    parsed = parse_pid_file(text)
    assert (parsed.pid, parsed.port, parsed.status, parsed.start_time) == (
        4242,
        5432,
        "ready",
        1700000000,
    )
    early = parse_pid_file("4242\n/srv/pg/data\n")
    assert early.pid == 4242 and early.status is None and early.port is None
    with pytest.raises(ValueError):
        parse_pid_file("\n")


CONTROLDATA = """\
pg_control version number:            1300
Database system identifier:           7712415209217219427
Database cluster state:               shut down
Latest checkpoint location:           0/3000028
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's TimeLineID:       2
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
wal_log_hints setting:                on
Data page checksum version:           1
"""


def test_parse_controldata() -> None:
    data = parse_controldata(CONTROLDATA)
    assert data.system_identifier == 7712415209217219427
    assert data.checkpoint_lsn == 0x3000028
    assert data.timeline == 2
    assert data.clean_shutdown and data.data_checksums and data.wal_log_hints
    assert data.raw["pg_control version number"] == "1300"
    with pytest.raises(PostgresError, match="Latest checkpoint location"):
        parse_controldata(CONTROLDATA.replace("Latest checkpoint location", "Other"))


def test_parse_timeline_history() -> None:
    text = "1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tat restore point\n"
    history = parse_timeline_history(text)
    assert [(h.timeline, h.switch_lsn) for h in history] == [(1, 0x3000060), (2, 0x5000000)]
    assert history[0].reason == "no recovery target specified"
    with pytest.raises(PostgresError, match="line 1"):
        parse_timeline_history("x\t0/1\n")


def test_quoting() -> None:
    assert quote_guc("it's") == "'it''s'"
    assert quote_guc("a\\b") == "'a\\\\b'"
    assert conninfo(host="h", port=5432, user=None, password="a b'c\\") == (
        "host=h port=5432 password='a b\\'c\\\\'"
    )
    assert conninfo(application_name="") == "application_name=''"


def test_managed_conf_has_replication_settings_and_extras() -> None:
    text = render_managed_conf(
        settings(port=6000, parameters={"max_wal_senders": 3, "work_mem": "8MB", "fsync": False})
    )
    lines = text.splitlines()
    assert "port = 6000" in lines
    assert "hot_standby = on" in lines
    assert "wal_log_hints = on" in lines
    assert "wal_level = 'replica'" in lines
    assert "unix_socket_directories = '/srv/pg/data.run'" in lines
    assert "work_mem = '8MB'" in lines and "fsync = off" in lines
    # An extra parameter overrides the default instead of appearing twice.
    assert "max_wal_senders = 3" in lines and "max_wal_senders = 10" not in lines


def test_recovery_conf_and_pgpass_keep_odd_passwords_working() -> None:
    s = settings(replication_password="p:w\\d'x")
    text = render_recovery_conf(s, "10.0.0.1", 5433, "node_b", "b")
    assert "primary_slot_name = 'node_b'" in text
    assert "recovery_target_timeline = 'latest'" in text
    assert "host=10.0.0.1 port=5433 user=replicator passfile=/srv/pg/data.run/pgpass" in text
    # The password never goes into the config, only into the 0600 password file.
    assert "p:w" not in text
    assert render_pgpass(s) == "*:*:*:replicator:p\\:w\\\\d'x\n*:*:*:postgres:su\n"


def test_hba_is_hamgr_access_only_when_not_configured() -> None:
    rules = [line.split() for line in render_hba(settings()).splitlines()[1:]]
    assert rules == [
        ["local", "all", "postgres", "scram-sha-256"],
        ["host", "replication", "replicator", "all", "scram-sha-256"],
        ["host", "postgres", "postgres", "all", "scram-sha-256"],
    ]
    no_password = render_hba(settings(superuser_password=None)).splitlines()
    assert "local   all           postgres         trust" in no_password


def test_configured_hba_lines_are_written_as_given() -> None:
    given = ["local all postgres peer", "host all postgres 10.0.0.0/8 reject", "# a comment"]
    lines = render_hba(settings(hba=given)).splitlines()
    assert lines[0].startswith("# Managed by hamgr") and lines[1:] == given


def test_with_includes_is_idempotent() -> None:
    once = with_includes("max_connections = 100")
    assert once.splitlines()[-len(INCLUDE_LINES) :] == list(INCLUDE_LINES)
    assert with_includes(once) == once


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data_dir": "relative/data"}, "data_dir='relative/data' must be an absolute path"),
        ({"port": 0}, "port=0 is outside"),
        ({"port": "5432"}, "must be an integer"),
        ({"superuser": "bad-name"}, "superuser='bad-name' is not a valid role name"),
        ({"replication_user": "postgres"}, "must differ"),
        ({"parameters": {"port": 1}}, "'port' is managed by hamgr"),
        ({"parameters": {"wal_level": "minimal"}}, "wal_level='minimal'"),
        ({"parameters": {"work_mem": "1\n2"}}, "must fit on one line"),
        ({"parameters": {"max_connections": "lots"}}, "max_connections='lots' must be an integer"),
        ({"parameters": {"max_locks_per_transaction": 5}}, "must be an integer >= 10"),
        ({"parameters": {"Track_Commit_Timestamp": "maybe"}}, "must be a boolean"),
        ({"parameters": {"bad name": 1}}, "not a valid PostgreSQL parameter name"),
        ({"hba": ["hots all all all trust"]}, "starts with 'hots'"),
        ({"hba": ["host all all trust"]}, "needs at least 5"),
        ({"name": "a b"}, "name='a b'"),
        ({"connect_timeout": 0}, "connect_timeout must be positive"),
        ({"run_dir": "/" + "x" * 120}, "longer than 107 bytes"),
    ],
)
def test_settings_validation_names_the_problem(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        settings(**overrides)


def test_settings_paths_and_rewind_role() -> None:
    s = settings()
    assert s.data_dir == Path("/srv/pg/data")
    assert s.log_file == Path("/srv/pg/data.run/postgresql.log")
    assert (s.rewind_role, s.rewind_secret) == ("postgres", "su")
    r = settings(rewind_user="rewinder", rewind_password="rw")
    assert (r.rewind_role, r.rewind_secret) == ("rewinder", "rw")


def test_slot_names() -> None:
    validate_slot_name("node_1")
    for bad in ("Node", "a-b", "", "x" * 64):
        with pytest.raises(SlotError, match="invalid replication slot name"):
            validate_slot_name(bad)


def test_command_error_message_names_command_code_and_tail() -> None:
    output = "\n".join(f"line {i}" for i in range(40))
    err = CommandError("starting PostgreSQL", ["/bin/pg_ctl", "start"], 1, output)
    text = str(err)
    assert "starting PostgreSQL failed" in text and "`/bin/pg_ctl start`" in text
    assert "exited with code 1" in text and "line 39" in text and "line 10\n" not in text
    assert tail("a\n\n b \n") == "a\n b "
    killed = CommandError("x", ["y"], None, "", timed_out=True)
    assert "ran past its deadline" in str(killed)


@pytest.mark.parametrize(
    ("options", "args"),
    [
        ([], ["-E", "UTF8", "--locale=C", "--data-checksums"]),
        (["data-checksums"], ["-E", "UTF8", "--locale=C", "--data-checksums"]),
        (
            [{"encoding": "LATIN1"}, {"locale": "C.UTF-8"}, {"wal-segsize": "32"}],
            ["-E", "LATIN1", "--locale=C.UTF-8", "--data-checksums", "--wal-segsize=32"],
        ),
        (
            [{"locale": "de_DE"}, "no-locale", {"lc-collate": "POSIX"}, "allow-group-access"],
            [
                *("-E", "UTF8", "--locale=C", "--data-checksums"),
                *("--lc-collate=POSIX", "--allow-group-access"),
            ],
        ),
    ],
)
def test_initdb_options_apply_over_hamgr_defaults(options: list[object], args: list[str]) -> None:
    assert initdb_options(options).args() == args


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("pwprompt", "pwprompt is set by hamgr from postgresql.authentication.superuser.password"),
        ({"auth-host": "md5"}, "auth-host is set by hamgr from postgresql.pg_hba"),
        ({"pgdata": "/x"}, "pgdata is set by hamgr from postgresql.data_dir"),
        ("sync-only", "'sync-only' is not an initdb option hamgr passes on; use one of encoding,"),
        ("encoding", "encoding needs a value, e.g. {encoding: ...}"),
        ({"data-checksums": "on"}, "data-checksums takes no value; give it as a bare name"),
        ({"locale": "C\nx"}, "the value of locale must fit on one line"),
        ({"a": "1", "b": "2"}, "expected a name or one name: value pair"),
    ],
)
def test_initdb_options_refused_name_the_option(option: object, problem: str) -> None:
    where = "bootstrap.initdb"
    assert initdb_option_problems(["data-checksums", option], where)[0].startswith(
        f"{where}[1]: {problem}"
    )
    with pytest.raises(ConfigError, match=r"^bootstrap\.initdb\[1\]: "):
        initdb_options(["data-checksums", option], where)


def test_newest_segment_timeline_reads_segment_names_only() -> None:
    names = [
        "000000010000000000000004",
        "000000020000000000000005",
        "00000003.history",
        "000000030000000000000004.partial",
        "archive_status",
        "000000010000000000000006",
    ]
    assert newest_segment_timeline(names) == 2
    assert newest_segment_timeline(["00000002.history", "archive_status"]) is None
    assert newest_segment_timeline(["0000000A0000000000000001"]) == 10
