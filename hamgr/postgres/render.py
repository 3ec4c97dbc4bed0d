"""Pure rendering of the files hamgr manages inside a data directory.

postgresql.conf keeps what initdb wrote and ends with three include lines (`INCLUDE_LINES`):
`hamgr.conf` holds the settings derived from `PgSettings`, `hamgr-recovery.conf` holds the
standby settings (empty on a primary), `hamgr-sync.conf` the primary's
synchronous_standby_names. pg_hba.conf is rewritten whole: the configured lines as given, else
hamgr's own. Nothing here touches
the disk; conf.py writes what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping

from hamgr.postgres.settings import ParamValue, PgSettings

MANAGED_CONF = "hamgr.conf"
RECOVERY_CONF = "hamgr-recovery.conf"
SYNC_CONF = "hamgr-sync.conf"
INCLUDE_LINES = (
    f"include '{MANAGED_CONF}'",
    f"include_if_exists '{RECOVERY_CONF}'",
    f"include_if_exists '{SYNC_CONF}'",
)
HEADER = "# Managed by hamgr: rewritten from its settings, edits here are lost.\n"

# Defaults a site may override through PgSettings.parameters.
DEFAULT_PARAMETERS: Mapping[str, ParamValue] = {
    "wal_level": "replica",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "256MB",
    "wal_log_hints": True,
    "password_encryption": "scram-sha-256",
}


def quote_guc(value: str) -> str:
    """Quote a string for postgresql.conf: single quotes, embedded quotes doubled."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def render_value(value: ParamValue) -> str:
    """One postgresql.conf value: booleans as on/off, numbers bare, strings quoted."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return quote_guc(value)


def quote_conninfo_value(value: str) -> str:
    """Quote one libpq conninfo value when it needs it (empty, blanks, quotes, backslashes)."""
    if value and not any(c.isspace() or c in "'\\" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(**params: str | int | float | None) -> str:
    """A libpq key=value connection string; None values are left out."""
    return " ".join(
        f"{key}={quote_conninfo_value(str(value))}"
        for key, value in params.items()
        if value is not None
    )


def render_managed_conf(settings: PgSettings) -> str:
    """Content of hamgr.conf: listen address, socket, replication settings, extra parameters."""
    params: dict[str, ParamValue] = {
        "listen_addresses": settings.host,
        "port": settings.port,
        "unix_socket_directories": str(settings.socket_dir),
        "cluster_name": settings.name,
        "hot_standby": True,
    }
    params.update(DEFAULT_PARAMETERS)
    params.update(settings.parameters)
    lines = [HEADER.rstrip("\n")]
    lines += [f"{key} = {render_value(value)}" for key, value in params.items()]
    return "\n".join(lines) + "\n"


def primary_conninfo(
    settings: PgSettings, primary_host: str, primary_port: int, application_name: str
) -> str:
    """How this node's walreceiver (and pg_basebackup) reaches the primary."""
    return conninfo(
        host=primary_host,
        port=primary_port,
        user=settings.replication_user,
        passfile=str(settings.passfile),
        application_name=application_name,
        connect_timeout=max(2, round(settings.connect_timeout)),
    )


def render_recovery_conf(
    settings: PgSettings,
    primary_host: str,
    primary_port: int,
    slot_name: str | None,
    application_name: str,
) -> str:
    """Content of hamgr-recovery.conf for a standby that streams from primary_host:primary_port."""
    info = primary_conninfo(settings, primary_host, primary_port, application_name)
    return (
        f"{HEADER}# This node is a standby of {primary_host}:{primary_port}.\n"
        f"primary_conninfo = {quote_guc(info)}\n"
        f"primary_slot_name = {quote_guc(slot_name or '')}\n"
        "recovery_target_timeline = 'latest'\n"
    )


def render_sync_conf(standby_names: str) -> str:
    """Content of hamgr-sync.conf: the standbys a primary's commits wait for ("": none)."""
    return (
        f"{HEADER}# Set by the primary's agent from the synchronous mode and the store's record.\n"
        f"synchronous_standby_names = {quote_guc(standby_names)}\n"
    )


def render_detached_recovery_conf() -> str:
    """Content of hamgr-recovery.conf on a standby that stopped receiving WAL on purpose: it
    stays in recovery (standby.signal stays) but streams from nobody."""
    return (
        f"{HEADER}# This node is a standby detached from its upstream (no leader to follow).\n"
        "primary_conninfo = ''\n"
        "recovery_target_timeline = 'latest'\n"
    )


def render_no_recovery_conf() -> str:
    """Content of hamgr-recovery.conf on a node that follows nobody."""
    return f"{HEADER}# This node is not a standby.\n"


def render_hba(settings: PgSettings) -> str:
    """pg_hba.conf: the configured lines exactly as given (as Patroni writes its ``pg_hba``),
    else, when none are configured, lines that let in hamgr's own connections only.

    Configured lines replace hamgr's, so an operator's line always wins (``reject`` included),
    and they must let in what hamgr needs: the superuser over the local socket (the agent),
    the replication role (replicas) and the rewind role to database postgres (pg_rewind).
    Without configured lines the superuser may use the unix socket without a password only
    when it has none; the socket's directory is mode 0700, so that reaches only the OS user
    and root.
    """
    if settings.hba:
        return "\n".join([HEADER.rstrip("\n"), *settings.hba]) + "\n"
    local_method = "scram-sha-256" if settings.superuser_password else "trust"
    lines = [
        HEADER.rstrip("\n"),
        f"local   all           {settings.superuser:<16} {local_method}",
        f"host    replication   {settings.replication_user:<16} all   scram-sha-256",
        f"host    postgres      {settings.rewind_role:<16} all   scram-sha-256",
    ]
    return "\n".join(lines) + "\n"


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def render_pgpass(settings: PgSettings) -> str:
    """The libpq password file: the replication and rewind roles' passwords, any host."""
    entries = {settings.replication_user: settings.replication_password}
    entries.setdefault(settings.rewind_role, settings.rewind_secret)
    lines = [
        f"*:*:*:{_pgpass_field(user)}:{_pgpass_field(secret)}"
        for user, secret in entries.items()
        if secret
    ]
    return "".join(line + "\n" for line in lines)


def with_includes(postgresql_conf: str) -> str:
    """postgresql.conf with hamgr's include lines appended once (idempotent)."""
    present = {line.strip() for line in postgresql_conf.splitlines()}
    missing = [line for line in INCLUDE_LINES if line not in present]
    if not missing:
        return postgresql_conf
    text = (
        postgresql_conf
        if postgresql_conf.endswith("\n") or not postgresql_conf
        else (postgresql_conf + "\n")
    )
    return text + "\n# Added by hamgr: its managed settings.\n" + "\n".join(missing) + "\n"
