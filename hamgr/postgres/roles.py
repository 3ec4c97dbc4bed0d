"""Database roles hamgr needs: the replication role, the superuser's and rewind role's passwords.

Passwords are hashed to SCRAM verifiers on our side (libpq's PQencryptPasswordConn), so a
plain-text password never appears in a statement that the server could log.
"""

from __future__ import annotations

from psycopg import sql as pgsql

from hamgr.postgres.errors import ConfigError, StateError
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.sql import Connection, connect, fetch, fetch_one

# The functions pg_rewind calls on its source, per the pg_rewind documentation.
REWIND_FUNCTIONS = (
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
)


def _verifier(conn: Connection, user: str, password: str) -> str:
    raw = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
    return raw.decode()


async def _upsert_role(conn: Connection, name: str, attributes: str, password: str) -> None:
    """CREATE the role, or ALTER it when it exists, with `attributes` and the password."""
    exists = await fetch(
        conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", [name], what=f"looking up role {name}"
    )
    verb = "ALTER" if exists else "CREATE"
    statement = pgsql.SQL("{} ROLE {} WITH " + attributes + " PASSWORD {}").format(
        pgsql.SQL(verb), pgsql.Identifier(name), pgsql.Literal(_verifier(conn, name, password))
    )
    await fetch(conn, statement, what=f"{verb} ROLE {name}")


async def bootstrap_users(settings: PgSettings) -> None:
    """On a running primary: create or update the replication role (LOGIN REPLICATION), set
    the superuser's password, and set up a separate rewind role with the grants pg_rewind
    needs. Idempotent: safe to run after every promotion or password change."""
    if not settings.replication_password:
        raise ConfigError("replication_password is required to create the replication role")
    if settings.rewind_user not in (None, settings.superuser) and not settings.rewind_password:
        raise ConfigError(f"rewind_password is required for rewind_user {settings.rewind_user!r}")
    conn = await connect(settings)
    try:
        row = await fetch_one(conn, "SELECT pg_is_in_recovery() AS r", what="pg_is_in_recovery")
        if row["r"]:
            raise StateError("bootstrap_users needs a primary; this server is in recovery")
        await _upsert_role(
            conn, settings.replication_user, "LOGIN REPLICATION", settings.replication_password
        )
        if settings.superuser_password:
            await _upsert_role(conn, settings.superuser, "LOGIN", settings.superuser_password)
        if settings.rewind_user not in (None, settings.superuser):
            assert settings.rewind_user is not None and settings.rewind_password is not None
            await _upsert_role(conn, settings.rewind_user, "LOGIN", settings.rewind_password)
            for function in REWIND_FUNCTIONS:
                grant = pgsql.SQL("GRANT EXECUTE ON FUNCTION " + function + " TO {}").format(
                    pgsql.Identifier(settings.rewind_user)
                )
                await fetch(conn, grant, what=f"granting {function} to {settings.rewind_user}")
    finally:
        await conn.close()
