"""The standby-cluster and permanent-slot settings, as Patroni spells them in its dynamic config.

``standby_cluster`` makes the whole cluster a standby of a remote primary: the member that
holds the leader key (the *standby leader*) replicates from ``host``/``port`` (or only replays
archived WAL with ``restore_command``) and never promotes; the other members follow it.
Removing the section promotes the standby leader. ``slots`` declares permanent physical
replication slots that the primary creates and keeps (never dropped as a departed member's).

Parsed from the config file's ``bootstrap.dcs`` and from the store's dynamic settings alike:
:func:`parse_standby_cluster` and :func:`parse_slots` raise :class:`SettingError` naming the key
(``standby_cluster.port: ...``). Pure: imports only the config problems' formatting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hamgr.config.problems import BAD, show

__all__ = [
    "SettingError",
    "StandbyCluster",
    "parse_slots",
    "parse_standby_cluster",
    "slots_to_dict",
]

_SLOT = re.compile(r"[a-z0-9_]{1,63}")
_DELAY = re.compile(r"\d+\s*(ms|s|min|h|d)?")
_KEYS = (
    "host",
    "port",
    "primary_slot_name",
    "restore_command",
    "create_replica_methods",
    "recovery_min_apply_delay",
)


class SettingError(ValueError):
    """A bad standby_cluster or slots value; ``key`` is its dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class StandbyCluster:
    """Where the standby leader gets its WAL: streaming from ``host``:``port`` (through the
    remote primary's slot ``primary_slot_name``, when given) and/or replaying archived WAL
    with ``restore_command``; ``recovery_min_apply_delay`` delays the replay (PostgreSQL's
    setting of that name: milliseconds, or a number with a unit). ``create_replica_methods``
    is how a fresh standby cluster's first member is made: only ``basebackup`` (pg_basebackup
    from ``host``), so it needs ``host``."""

    host: str | None = None
    port: int = 5432
    primary_slot_name: str | None = None
    restore_command: str | None = None
    create_replica_methods: tuple[str, ...] = ("basebackup",)
    recovery_min_apply_delay: str | None = None

    def __post_init__(self) -> None:
        p = "standby_cluster"
        if self.host is None and self.restore_command is None:
            raise SettingError(p, "needs host (to stream from) or restore_command (or both)")
        if self.host is not None and (not self.host or any(c in self.host for c in " \n\r\0")):
            raise SettingError(f"{p}.host", f"expected a host name or address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise SettingError(f"{p}.port", f"expected an integer, got {show(self.port)}")
        if not 1 <= self.port <= 65535:
            raise SettingError(f"{p}.port", f"expected 1..65535, got {self.port}")
        if self.primary_slot_name is not None and not _SLOT.fullmatch(self.primary_slot_name):
            raise SettingError(
                f"{p}.primary_slot_name",
                f"expected 1-63 lower-case letters, digits or '_', got {self.primary_slot_name!r}",
            )
        if self.restore_command is not None and (
            not self.restore_command.strip() or "\n" in self.restore_command
        ):
            raise SettingError(f"{p}.restore_command", "expected a one-line, non-empty command")
        methods = self.create_replica_methods
        if methods != ("basebackup",):
            raise SettingError(
                f"{p}.create_replica_methods",
                f"only [basebackup] is supported (the standby leader is cloned from the remote "
                f"primary with pg_basebackup), got {list(methods)}",
            )
        delay = self.recovery_min_apply_delay
        if delay is not None and not _DELAY.fullmatch(delay):
            raise SettingError(
                f"{p}.recovery_min_apply_delay",
                f"expected milliseconds or a number with ms, s, min, h or d, got {delay!r}",
            )

    @property
    def upstream(self) -> str | None:
        """``host:port`` the standby leader streams from (None: archive recovery only)."""
        return None if self.host is None else f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """Patroni's shape; absent optional keys left out."""
        out: dict[str, Any] = {"port": self.port}
        for key in ("host", "primary_slot_name", "restore_command", "recovery_min_apply_delay"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["create_replica_methods"] = list(self.create_replica_methods)
        return out


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise SettingError(f"standby_cluster.{key}", f"expected a string, got {show(value)}")
    return value


def parse_standby_cluster(data: object) -> StandbyCluster | None:
    """``standby_cluster`` as stored or submitted (None or ``{}``: not a standby cluster)."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise SettingError("standby_cluster", f"expected a section, got {show(data)}")
    if not data:
        return None
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise SettingError(
            f"standby_cluster.{unknown[0]}",
            f"unknown or unsupported key (supported: {', '.join(_KEYS)})",
        )
    methods = data.get("create_replica_methods", ["basebackup"])
    if not isinstance(methods, list | tuple) or not all(isinstance(m, str) for m in methods):
        raise SettingError(
            "standby_cluster.create_replica_methods",
            f"expected a list of names, got {show(methods)}",
        )
    delay = data.get("recovery_min_apply_delay")
    if isinstance(delay, int) and not isinstance(delay, bool):
        delay = str(delay)
    elif delay is not None and not isinstance(delay, str):
        raise SettingError(
            "standby_cluster.recovery_min_apply_delay", f"expected a string, got {show(delay)}"
        )
    return StandbyCluster(
        host=_text(data, "host"),
        port=data.get("port", 5432),
        primary_slot_name=_text(data, "primary_slot_name"),
        restore_command=_text(data, "restore_command"),
        create_replica_methods=tuple(methods),
        recovery_min_apply_delay=delay,
    )


def parse_slots(data: object) -> tuple[str, ...]:
    """``slots``: ``{name: {type: physical}}`` -> the permanent slots' names, sorted.

    Logical slots are refused (not supported yet), as is anything but ``type``.
    """
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise SettingError(
            "slots", f"expected a mapping of slot names to {{type: physical}}, got {show(data)}"
        )
    names = []
    for name, spec in data.items():
        where = f"slots.{name}"
        if not isinstance(name, str) or not _SLOT.fullmatch(name):
            raise SettingError(where, "a slot name must be 1-63 lower-case letters, digits or '_'")
        if not isinstance(spec, Mapping):
            raise SettingError(where, f"expected {{type: physical}}, got {show(spec)}")
        unknown = sorted(str(k) for k in spec if k != "type")
        if unknown:
            raise SettingError(
                f"{where}.{unknown[0]}", "unknown or unsupported key (only type: physical)"
            )
        kind = spec.get("type")
        if kind == "logical":
            raise SettingError(
                f"{where}.type", "logical slots are not supported; declare physical slots only"
            )
        if kind != "physical":
            raise SettingError(f"{where}.type", f'expected "physical", got {show(kind)}')
        names.append(name)
    return tuple(sorted(names))


def slots_to_dict(names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Permanent slots in Patroni's shape."""
    return {name: {"type": "physical"} for name in names}


def load_standby_cluster(
    loader: Any, raw: Any, path: tuple[str | int, ...], env: str | None
) -> Any:
    """The config file's ``bootstrap.dcs.standby_cluster`` (a Custom loader of the schema)."""
    return _load(loader, parse_standby_cluster, raw, path, env)


def load_slots(loader: Any, raw: Any, path: tuple[str | int, ...], env: str | None) -> Any:
    """The config file's ``bootstrap.dcs.slots`` (a Custom loader of the schema), in
    Patroni's shape."""
    names = _load(loader, parse_slots, raw, path, env)
    return names if names is BAD else slots_to_dict(names)


def _load(loader: Any, parse: Any, raw: Any, path: tuple[str | int, ...], env: str | None) -> Any:
    try:
        return parse(raw)
    except SettingError as exc:
        _, _, rest = exc.key.partition(".")
        loader.report((*path, *rest.split(".")) if rest else path, exc.problem, env)
        return BAD
