"""What hamgr needs to know about the local PostgreSQL instance, validated up front.

`PgSettings` is built once from the agent's configuration; every function of hamgr.postgres
takes it. Validation happens in `__post_init__`, so a bad value fails before anything on disk
is touched, with a message that names the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hamgr.postgres.errors import ConfigError
from hamgr.postgres.initdbopts import InitdbOptions

ParamValue = str | int | float | bool

# Parameters hamgr derives from dedicated settings or from the node's role: setting them through
# `parameters` would silently fight hamgr, so it is refused.
RESERVED_PARAMETERS = frozenset(
    {
        "listen_addresses",
        "port",
        "unix_socket_directories",
        "hba_file",
        "ident_file",
        "data_directory",
        "config_file",
        "include",
        "include_if_exists",
        "include_dir",
        "hot_standby",
        "primary_conninfo",
        "primary_slot_name",
        "recovery_target_timeline",
        "synchronous_standby_names",
    }
)

# Restart-only integers PostgreSQL checks only when it starts (a reload merely marks them
# pending): a bad value would stop every member at its next restart. Their lower bounds.
_RESTART_INTEGERS = {
    "max_connections": 1,
    "max_locks_per_transaction": 10,
    "max_worker_processes": 0,
    "max_prepared_transactions": 0,
    "max_wal_senders": 0,
    "max_replication_slots": 0,
}
_RESTART_BOOLEANS = frozenset({"track_commit_timestamp", "wal_log_hints"})
_BOOLEAN_WORDS = frozenset({"on", "off", "true", "false", "yes", "no", "1", "0"})

_ROLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_HBA_TYPES = frozenset(
    {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc", "include"}
)
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def validate_role_name(field_name: str, value: str) -> None:
    """Refuse role names that would need quoting tricks or exceed PostgreSQL's 63 bytes."""
    if not _ROLE_RE.match(value):
        raise ConfigError(
            f"{field_name}={value!r} is not a valid role name "
            "(letters, digits and '_', not starting with a digit, at most 63 characters)"
        )


def validate_parameters(parameters: Mapping[str, ParamValue], where: str = "parameters") -> None:
    """Check extra postgresql.conf parameters: sane names, no reserved ones, one-line values.

    ``where`` names the setting in the messages (e.g. ``postgresql.parameters``).
    """
    for key, value in parameters.items():
        if not isinstance(key, str) or not _PARAM_RE.match(key):
            raise ConfigError(f"{where}: {key!r} is not a valid PostgreSQL parameter name")
        if key.lower() in RESERVED_PARAMETERS:
            raise ConfigError(
                f"{where}: {key!r} is managed by hamgr (set it through its own setting, "
                "or it follows from the node's role) and cannot be given here"
            )
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(
                f"{where}: {key}={value!r} must be a string, number or boolean, "
                f"not {type(value).__name__}"
            )
        if isinstance(value, str) and ("\n" in value or "\r" in value or "\0" in value):
            raise ConfigError(f"{where}: the value of {key!r} must fit on one line")
        if key.lower() == "wal_level" and str(value).lower() not in ("replica", "logical"):
            raise ConfigError(
                f"{where}: wal_level={value!r} cannot feed replicas; use 'replica' or 'logical'"
            )
        _check_restart_only(key.lower(), value, where)


def _check_restart_only(name: str, value: ParamValue, where: str) -> None:
    """Refuse a value PostgreSQL would refuse only at its next start (see _RESTART_INTEGERS)."""
    if name in _RESTART_INTEGERS:
        minimum = _RESTART_INTEGERS[name]
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        if number is None or number < minimum:
            raise ConfigError(
                f"{where}: {name}={value!r} must be an integer >= {minimum} "
                "(PostgreSQL would refuse to start with it)"
            )
    if name in _RESTART_BOOLEANS and not (
        isinstance(value, bool) or str(value).strip().lower() in _BOOLEAN_WORDS
    ):
        raise ConfigError(
            f"{where}: {name}={value!r} must be a boolean (PostgreSQL would refuse to start "
            "with it)"
        )


def validate_hba_lines(lines: Sequence[str], where: str = "pg_hba") -> None:
    """Catch the obvious pg_hba.conf mistakes early (PostgreSQL checks the rest at load).

    ``where`` names the setting in the messages (e.g. ``postgresql.pg_hba``).
    """
    for number, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise ConfigError(f"{where} line {number}: {line!r} is not a string")
        if "\n" in line or "\r" in line or "\0" in line:
            raise ConfigError(f"{where} line {number}: must be one line, got {line!r}")
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] not in _HBA_TYPES:
            raise ConfigError(
                f"{where} line {number}: {line!r} starts with {words[0]!r}; expected one of "
                f"{', '.join(sorted(_HBA_TYPES))}"
            )
        minimum = 4 if words[0] == "local" else 5
        if words[0] != "include" and len(words) < minimum:
            raise ConfigError(
                f"{where} line {number}: {line!r} has {len(words)} fields, needs at least {minimum}"
            )


def default_run_dir(data_dir: Path) -> Path:
    """``run_dir`` when the config names none: ``<data_dir>.run`` beside the data directory."""
    return data_dir.with_name(data_dir.name + ".run")


@dataclass(frozen=True)
class PgSettings:
    """Everything hamgr needs to run one local PostgreSQL instance.

    `run_dir` (default: `<data_dir>.run` beside the data dir) holds what must not live inside
    the data dir, because pg_basebackup and pg_rewind copy the data dir between nodes: the
    unix socket, the server log of `pg_ctl start`, and the password file for replication.
    """

    bin_dir: Path
    data_dir: Path
    os_user: str = "postgres"
    # This member's name: the default application_name towards its primary, and cluster_name.
    name: str = "hamgr"
    host: str = "127.0.0.1"
    port: int = 5432
    run_dir: Path | None = None
    superuser: str = "postgres"
    superuser_password: str | None = None
    replication_user: str = "replicator"
    replication_password: str | None = None
    # None means: pg_rewind connects as the superuser.
    rewind_user: str | None = None
    rewind_password: str | None = None
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    hba: Sequence[str] = ()
    # How `initdb` creates the cluster when it is not given options of its own.
    initdb: InitdbOptions = field(default_factory=InitdbOptions)
    connect_timeout: float = 3.0
    statement_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("bin_dir", "data_dir", "run_dir"):
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value)
            if not path.is_absolute():
                raise ConfigError(f"{name}={str(value)!r} must be an absolute path")
            object.__setattr__(self, name, path)
        if not self.os_user:
            raise ConfigError("os_user must name the OS user that runs PostgreSQL")
        if not _NAME_RE.match(self.name):
            raise ConfigError(
                f"name={self.name!r}: use 1-63 letters, digits, '_', '.' or '-' "
                "(it becomes application_name and cluster_name)"
            )
        if not self.host or any(c in self.host for c in "'\"\\\n\r\0"):
            raise ConfigError(f"host={self.host!r} is not a valid listen_addresses value")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError(f"port={self.port!r} must be an integer")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port={self.port} is outside 1..65535")
        validate_role_name("superuser", self.superuser)
        validate_role_name("replication_user", self.replication_user)
        if self.rewind_user is not None:
            validate_role_name("rewind_user", self.rewind_user)
        if self.replication_user == self.superuser:
            raise ConfigError("replication_user must differ from superuser")
        for name in ("superuser_password", "replication_password", "rewind_password"):
            secret = getattr(self, name)
            if secret is not None and (secret == "" or "\n" in secret or "\0" in secret):
                raise ConfigError(f"{name} must be a non-empty single line")
        for name in ("connect_timeout", "statement_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        validate_parameters(self.parameters)
        validate_hba_lines(self.hba)
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"unix socket path {socket_path} is longer than {MAX_SOCKET_PATH} bytes; "
                "choose a shorter run_dir"
            )

    @property
    def runtime_dir(self) -> Path:
        """Directory for the socket, the server log and the password file (see class doc)."""
        return self.run_dir if self.run_dir is not None else default_run_dir(self.data_dir)

    @property
    def socket_dir(self) -> Path:
        """Where the server puts its unix socket (unix_socket_directories)."""
        return self.runtime_dir

    @property
    def log_file(self) -> Path:
        """The server's stderr log, as passed to `pg_ctl start -l`."""
        return self.runtime_dir / "postgresql.log"

    @property
    def passfile(self) -> Path:
        """libpq password file used by the walreceiver, pg_basebackup and pg_rewind."""
        return self.runtime_dir / "pgpass"

    @property
    def rewind_role(self) -> str:
        """The role pg_rewind logs in as on the source server."""
        return self.rewind_user or self.superuser

    @property
    def rewind_secret(self) -> str | None:
        """The password of `rewind_role`."""
        if self.rewind_user is None or self.rewind_user == self.superuser:
            return self.superuser_password
        return self.rewind_password
