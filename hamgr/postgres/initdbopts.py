"""How a new cluster is created: initdb's options, from hamgr's defaults and ``bootstrap.initdb``.

hamgr runs initdb with ``--encoding=UTF8 --locale=C --data-checksums`` unless the configured
options say otherwise, and always sets what follows from its own settings (the data directory,
the superuser and its password, the authentication methods, which pg_hba.conf replaces
anyway). The configured options are initdb's long options without the dashes, as Patroni's
``bootstrap.initdb``: a bare name for a flag (``data-checksums``), ``{name: value}`` for one
that takes a value (``{encoding: UTF8}``). Only the options that shape the new cluster are
accepted; the rest are refused with the reason. Pure: nothing here runs initdb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hamgr.postgres.errors import ConfigError

__all__ = ["INITDB_OPTIONS", "InitdbOptions", "initdb_option_problems", "initdb_options"]

#: initdb's options a configuration may give, and whether each takes a value.
INITDB_OPTIONS: Mapping[str, bool] = {
    "encoding": True,
    "locale": True,
    "no-locale": False,
    "lc-collate": True,
    "lc-ctype": True,
    "lc-messages": True,
    "lc-monetary": True,
    "lc-numeric": True,
    "lc-time": True,
    "locale-provider": True,
    "icu-locale": True,
    "data-checksums": False,
    "allow-group-access": False,
    "text-search-config": True,
    "waldir": True,
    "wal-segsize": True,
}

# initdb's options hamgr sets itself, and the setting each follows from.
_MANAGED = {
    "pgdata": "postgresql.data_dir",
    "username": "postgresql.authentication.superuser.username",
    "pwfile": "postgresql.authentication.superuser.password",
    "pwprompt": "postgresql.authentication.superuser.password",
    "auth": "postgresql.pg_hba (hamgr writes pg_hba.conf)",
    "auth-host": "postgresql.pg_hba (hamgr writes pg_hba.conf)",
    "auth-local": "postgresql.pg_hba (hamgr writes pg_hba.conf)",
}


@dataclass(frozen=True)
class InitdbOptions:
    """How a new cluster is created: hamgr's defaults, and initdb options on top of them.

    ``extra_args`` are further initdb arguments, passed as they are (after hamgr's, so that a
    category such as ``--lc-collate`` wins over ``--locale``).
    """

    locale: str = "C"
    encoding: str = "UTF8"
    data_checksums: bool = True
    # Skips initdb's fsync of the new cluster: only for tests and throwaway clusters.
    no_sync: bool = False
    extra_args: Sequence[str] = ()

    def args(self) -> list[str]:
        """initdb's arguments for these options (without the data dir and the superuser)."""
        args = ["-E", self.encoding, f"--locale={self.locale}"]
        if self.data_checksums:
            args.append("--data-checksums")
        if self.no_sync:
            args.append("--no-sync")
        return args + list(self.extra_args)


def _parse(option: object) -> tuple[str, str | None]:
    """(name, value or None) of one configured option; raises ValueError saying what is wrong."""
    if isinstance(option, str):
        name, value = option, None
    elif isinstance(option, Mapping) and len(option) == 1:
        ((name, raw),) = option.items()
        value = str(raw)
    else:
        raise ValueError(f"expected a name or one name: value pair, got {option!r}")
    if name in _MANAGED:
        raise ValueError(f"{name} is set by hamgr from {_MANAGED[name]}")
    if name not in INITDB_OPTIONS:
        raise ValueError(
            f"{name!r} is not an initdb option hamgr passes on; use one of "
            f"{', '.join(INITDB_OPTIONS)}"
        )
    if INITDB_OPTIONS[name] and not value:
        raise ValueError(f"{name} needs a value, e.g. {{{name}: ...}}")
    if not INITDB_OPTIONS[name] and value is not None:
        raise ValueError(f"{name} takes no value; give it as a bare name")
    if value is not None and any(c in value for c in "\n\r\0"):
        raise ValueError(f"the value of {name} must fit on one line")
    return name, value


def initdb_option_problems(options: Sequence[object], where: str = "initdb") -> list[str]:
    """Every configured option initdb_options refuses, each as ``{where}[i]: problem``: an
    unknown one, one hamgr sets itself, a value given to a flag or missing for an option."""
    problems = []
    for i, option in enumerate(options):
        try:
            _parse(option)
        except ValueError as exc:
            problems.append(f"{where}[{i}]: {exc}")
    return problems


def initdb_options(options: Sequence[object], where: str = "initdb") -> InitdbOptions:
    """hamgr's defaults with `options` (``bootstrap.initdb``) applied, in order.

    Raises ConfigError with the first of :func:`initdb_option_problems`.
    """
    problems = initdb_option_problems(options, where)
    if problems:
        raise ConfigError(problems[0])
    encoding, locale, checksums = InitdbOptions.encoding, InitdbOptions.locale, True
    extra: list[str] = []
    for name, value in map(_parse, options):
        if name == "encoding" and value:
            encoding = value
        elif name == "locale" and value:
            locale = value
        elif name == "no-locale":
            locale = "C"
        elif name == "data-checksums":
            checksums = True
        else:
            extra.append(f"--{name}" if value is None else f"--{name}={value}")
    return InitdbOptions(
        locale=locale, encoding=encoding, data_checksums=checksums, extra_args=tuple(extra)
    )
