"""``hactl dsn`` and ``hactl query``: a member's PostgreSQL address, and SQL run on it.

As patronictl: ``dsn [MEMBER] [-r ROLE]`` prints ``host=H port=P`` of the member (default:
the primary) as it publishes it in ``GET /cluster``. ``query`` connects there with psycopg
(``-U/--username``, ``--password`` to be asked for one, ``-d/--dbname``; otherwise libpq's
defaults: ``$PGUSER``, ``$PGPASSWORD``, ``~/.pgpass``...) in autocommit, runs the SQL of
``-c/--command`` or ``-f/--file`` (``-`` for stdin) and prints each result as ``--format``
says (``tsv`` by default, with ``--delimiter``; ``pretty``, ``json``, ``yaml``). A command
without rows prints its status (``CREATE TABLE``). ``--role primary`` / ``replica`` also
checks ``pg_is_in_recovery()`` on the server, as patronictl does, and moves on to the next
member of that role when the server disagrees with the store. A connection or SQL error is
one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import getpass
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import yaml

from hamgr.cli.ctl_client import Client, CtlError
from hamgr.cli.ctl_output import table
from hamgr.cli.ctl_pick import ROLES, candidates, dsn, pick_member

FORMATS = ("tsv", "pretty", "json", "yaml")


@dataclass(frozen=True)
class Result:
    """One statement's result: its columns and rows (no columns: it returned none)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    status: str = ""


def _plain(value: Any) -> Any:
    """A value JSON and YAML can carry: numbers, text, booleans, null, lists, objects."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, dt.date | dt.time | dt.timedelta | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def _cell(value: Any) -> str:
    """A value as text in a tsv or pretty table (NULL as empty, as psql shows it)."""
    plain = _plain(value)
    if plain is None:
        return ""
    if isinstance(plain, list | dict):
        return json.dumps(plain)
    if isinstance(plain, bool):
        return "t" if plain else "f"
    return str(plain)


def format_results(results: Sequence[Result], fmt: str, delimiter: str = "\t") -> str:
    """The results as ``fmt`` says, one block per statement (blank line between blocks).

    ``json``/``yaml``: a list of objects keyed by column name (one list per statement that
    returned rows; a list of lists when there were several). ``tsv``: the header, then a line
    per row, ``delimiter``-separated. ``pretty``: hactl's table.
    """
    if fmt not in FORMATS:
        raise CtlError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in ("json", "yaml"):
        docs: list[Any] = [
            [dict(zip(r.columns, map(_plain, row), strict=True)) for row in r.rows]
            if r.columns
            else {"status": r.status}
            for r in results
        ]
        doc = docs[0] if len(docs) == 1 else docs
        if fmt == "json":
            return json.dumps(doc, indent=2)
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).rstrip()
    blocks = []
    for r in results:
        if not r.columns:
            blocks.append(r.status)
        elif fmt == "tsv":
            lines = [delimiter.join(r.columns)]
            lines += [delimiter.join(_cell(v) for v in row) for row in r.rows]
            blocks.append("\n".join(lines))
        else:
            cells = [[_cell(v) for v in row] for row in r.rows]
            blocks.append(table(r.columns, cells).lstrip("\n"))
    return "\n\n".join(blocks)


def read_sql(command: str | None, path: str | None) -> str:
    """The SQL to run: ``-c`` text or the ``-f`` file (``-``: stdin); exactly one of them."""
    if command is not None and path is not None:
        raise CtlError("--command and --file are mutually exclusive: give one")
    if command is None and path is None:
        raise CtlError("query: give the SQL with -c/--command or -f/--file (- for stdin)")
    if path is None:
        text = command or ""
    elif path == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise CtlError(f"--file: cannot read {path}: {e}") from None
    if not text.strip():
        raise CtlError("query: the SQL is empty")
    return text


def ask_password(reading_stdin: bool) -> str:
    """``--password``: asked on the terminal (without one: the first line of stdin)."""
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    if reading_stdin:
        raise CtlError("--password reads stdin, which -f - reads too: use $PGPASSWORD instead")
    line = sys.stdin.readline()
    if not line:
        raise CtlError("--password: no password on stdin")
    return line.rstrip("\n")


def _problem(e: psycopg.Error) -> str:
    diag = e.diag
    if diag.sqlstate and diag.message_primary:
        return f"{diag.severity or 'ERROR'}: {diag.message_primary} (SQLSTATE {diag.sqlstate})"
    return " ".join(str(e).split())


async def _connect(member: dict[str, Any], params: dict[str, Any]) -> psycopg.AsyncConnection:
    where = f"{member['name']} ({dsn(member)})"
    try:
        return await psycopg.AsyncConnection.connect(
            host=member["host"],
            port=member["port"],
            autocommit=True,
            connect_timeout=5,
            application_name="hactl",
            **params,
        )
    except psycopg.Error as e:
        raise CtlError(f"cannot connect to PostgreSQL on {where}: {_problem(e)}") from None


async def _serves(conn: psycopg.AsyncConnection, role: str) -> bool:
    """Does the server agree with the store about ``role``? (``any``: yes.)"""
    if role == "any":
        return True
    cur = await conn.execute("SELECT pg_catalog.pg_is_in_recovery()")
    row = await cur.fetchone()
    in_recovery = bool(row and row[0])
    return in_recovery if role == "replica" else not in_recovery


async def open_connection(
    cluster: dict[str, Any], name: str | None, role: str | None, params: dict[str, Any]
) -> tuple[dict[str, Any], psycopg.AsyncConnection]:
    """A connection to the member ``name``, else to one with ``role`` (default: primary)."""
    if name is not None or role is None:
        member = pick_member(cluster, name, role)
        return member, await _connect(member, params)
    pick_member(cluster, None, role)  # the clear errors: no such role in the cluster
    refused = []
    for member in candidates(cluster, role):
        conn = await _connect(member, params)
        if await _serves(conn, role):
            return member, conn
        await conn.close()
        refused.append(member["name"])
    raise CtlError(
        f"no member serves as {role}: PostgreSQL on {', '.join(refused)} disagrees with the store"
    )


async def run_sql(conn: psycopg.AsyncConnection, sql: str) -> list[Result]:
    """Every statement's result (``sql`` may hold several, separated by ``;``)."""
    results = []
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql.encode())
            while True:
                if cur.description is None:
                    results.append(Result((), (), cur.statusmessage or ""))
                else:
                    columns = tuple(d.name for d in cur.description)
                    results.append(Result(columns, tuple(await cur.fetchall())))
                if not cur.nextset():
                    break
    except psycopg.Error as e:
        raise CtlError(_problem(e)) from None
    return results


def connect_params(a: argparse.Namespace) -> dict[str, Any]:
    """libpq parameters from -U, --password and -d (the rest: libpq's defaults)."""
    params: dict[str, Any] = {}
    if a.db_user:
        params["user"] = a.db_user
    if a.password:
        params["password"] = ask_password(a.file == "-")
    if a.dbname:
        params["dbname"] = a.dbname
    return params


async def cmd_query(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    """Run the SQL on the chosen member and print the results."""
    sql = read_sql(a.sql, a.file)
    format_results([], a.format)  # a bad --format before connecting
    params = connect_params(a)
    _, conn = await open_connection(cluster, a.member, a.role, params)
    try:
        results = await run_sql(conn, sql)
    finally:
        await conn.close()
    print(format_results(results, a.format, a.delimiter))


async def cmd_dsn(client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace) -> None:
    """Print the member's connection string."""
    if a.name is not None and a.member is not None and a.name != a.member:
        raise CtlError(f"two member names given: {a.name} and --member {a.member}")
    print(dsn(pick_member(cluster, a.name or a.member, a.role)))


def _agent_options() -> argparse.ArgumentParser:
    """hactl's common options without ``-c`` and ``--username``, which query uses as
    patronictl does (the SQL, the database user): give those before the command name."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--config", help="the agent's configuration file ($HAMGR_CONFIG)")
    p.add_argument("--url", action="append", help="an agent's REST API URL (repeatable)")
    p.add_argument("--timeout", type=float, help="seconds to wait for an answer (default 10)")
    p.add_argument("--cacert", help="CA file to check https agents with")
    p.add_argument("--cert", help="client certificate for agents that ask for one")
    p.add_argument("--key", help="the client certificate's key")
    return p


def register(command: Any) -> None:
    """Add ``dsn`` and ``query`` to hactl's parser (``command`` is build_parser's helper)."""
    p = command("dsn", cmd_dsn, "print the connection string of a member (default: the primary)")
    p.add_argument("name", nargs="?", metavar="MEMBER", help="the member (default: the primary)")
    p.add_argument("-m", "--member", help="the member (the same as MEMBER)")
    p.add_argument("-r", "--role", choices=ROLES, help="the first member with this role")
    p = command(
        "query",
        cmd_query,
        "run SQL on a member's PostgreSQL (default: the primary)",
        parents=[_agent_options()],
    )
    p.add_argument("-m", "--member", help="the member to query")
    p.add_argument("-r", "--role", choices=ROLES, help="query a member with this role")
    p.add_argument("-c", "--command", dest="sql", metavar="SQL", help="the SQL to run")
    p.add_argument("-f", "--file", metavar="FILE", help="read the SQL from FILE (- for stdin)")
    p.add_argument("-U", "--username", dest="db_user", help="database user (default: libpq's)")
    p.add_argument("--password", action="store_true", help="ask for the database password")
    p.add_argument("-d", "--dbname", help="database to connect to (default: libpq's)")
    p.add_argument("--format", choices=FORMATS, default="tsv", help="output format (tsv)")
    p.add_argument("--delimiter", default="\t", help="the tsv column delimiter (a tab)")
