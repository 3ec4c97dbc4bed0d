"""Secrets read from files: the ``password_file`` keys, and the file checks every secret file gets.

A secret file must be a file only its owner can read or write: a group- or world-accessible one
is refused (the message names the key and the mode), as ssh does with private keys, so that a
secret is never left readable by accident. The text is stripped of surrounding whitespace (a
trailing newline is the rule in files). :func:`read_password_files` fills each ``password``
whose ``password_file`` is set, so the rest of hamgr sees only ``password``.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from msgspec.structs import replace

from hamgr.config.problems import ConfigError
from hamgr.config.schema import Config

__all__ = ["read_password_files", "read_secret_file", "try_secret_file"]

_PRIVATE = stat.S_IRWXG | stat.S_IRWXO


def try_secret_file(path: str, key: str) -> tuple[str | None, str | None]:
    """(secret, None) or (None, problem naming `key`) for the secret file at `path`."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            return None, f"{key}: {path} is not a regular file"
        if mode & _PRIVATE:
            return None, (
                f"{key}: {path} is accessible by group or others (mode "
                f"{stat.S_IMODE(mode):04o}); a secret file must be private: chmod 600 {path}"
            )
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as exc:
        return None, f"{key}: cannot read {path}: {exc.strerror or exc}"
    except UnicodeDecodeError as exc:
        return None, f"{key}: {path} is not UTF-8 text (byte {exc.start})"
    if not text:
        return None, f"{key}: {path} is empty"
    return text, None


def read_secret_file(path: str, key: str) -> str:
    """The secret in the file at `path`; ConfigError naming `key` when it is unusable."""
    secret, problem = try_secret_file(path, key)
    if secret is None:
        raise ConfigError([problem or f"{key}: unusable"])
    return secret


def _filled(section: Any, key: str, problems: list[str]) -> Any:
    if section is None or section.password_file is None:
        return section
    password, problem = try_secret_file(section.password_file, f"{key}.password_file")
    if problem is not None:
        problems.append(problem)
        return section
    return replace(section, password=password)


_PG_AUTH = "postgresql.authentication"


def read_password_files(config: Config) -> Config:
    """`config` with every ``password_file`` read into its ``password``; ConfigError listing
    every file that cannot be used."""
    problems: list[str] = []
    rest = config.restapi
    auth = _filled(rest.authentication, "restapi.authentication", problems)
    pg = config.postgresql  # None on a witness: no PostgreSQL, no passwords of its own
    if pg is not None:
        roles = {
            role: _filled(getattr(pg.authentication, role), f"{_PG_AUTH}.{role}", problems)
            for role in ("superuser", "replication", "rewind")
        }
        pg = replace(pg, authentication=replace(pg.authentication, **roles))
    if problems:
        raise ConfigError(problems)
    return replace(config, restapi=replace(rest, authentication=auth), postgresql=pg)
