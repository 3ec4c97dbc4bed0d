"""One exception hierarchy for everything that goes wrong with the local PostgreSQL.

The HA loop catches `PostgresError` and logs its message, so every message names what was
being done, and for a failed program its command line, exit code and the tail of its output.
"""

from __future__ import annotations

from collections.abc import Sequence

STDERR_TAIL_LINES = 15


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """Return the last `lines` non-empty lines of `text` (what usually explains a failure)."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


class PostgresError(Exception):
    """Base of every error raised by hamgr.postgres."""


class ConfigError(PostgresError):
    """The settings or arguments are invalid; nothing was changed."""


class RootUserError(ConfigError):
    """PostgreSQL refuses to run as root, so hamgr refuses to run it so."""


class BinaryNotFoundError(ConfigError):
    """A PostgreSQL program is missing from the configured bin dir or cannot be executed."""


class StateError(PostgresError):
    """The operation does not fit the server's state (e.g. running when it must be stopped)."""


class NotRunningError(StateError):
    """The operation needs a running server and there is none."""


class PgTimeoutError(PostgresError, TimeoutError):
    """A bounded wait ran out before the condition it waited for came true."""


class SqlError(PostgresError):
    """A SQL connection or statement failed."""


class SlotError(SqlError):
    """A replication slot operation failed (bad name, slot in use, ...)."""


class CommandError(PostgresError):
    """A PostgreSQL program exited non-zero or ran past its deadline.

    Carries the argv, the exit code (None when it was killed at the deadline) and its stderr
    (or stdout when stderr was empty), so the message says what ran and why it failed.
    """

    def __init__(
        self,
        what: str,
        argv: Sequence[str],
        returncode: int | None,
        output: str,
        *,
        timed_out: bool = False,
        extra: str = "",
    ) -> None:
        self.what = what
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        self.timed_out = timed_out
        if timed_out:
            how = "ran past its deadline and was killed"
        else:
            how = f"exited with code {returncode}"
        message = f"{what} failed: `{' '.join(self.argv)}` {how}"
        out_tail = tail(output)
        if out_tail:
            message += f"; output tail:\n{out_tail}"
        if extra:
            message += f"\n{extra}"
        super().__init__(message)


class InitdbError(CommandError):
    """initdb failed."""


class StartError(CommandError):
    """The server did not start (or not within the deadline)."""


class StopError(CommandError):
    """The server did not stop (or not within the deadline)."""


class ReloadError(CommandError):
    """pg_ctl reload failed."""


class PromoteError(CommandError):
    """pg_ctl promote failed."""


class BaseBackupError(CommandError):
    """pg_basebackup failed."""


class RewindError(CommandError):
    """pg_rewind failed."""


class ControlDataError(CommandError):
    """pg_controldata failed."""
