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
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from hamgr.config.msgspecwords import problem
from hamgr.config.problems import BAD, show
from hamgr.config.values import Section

__all__ = [
    "SettingError",
    "StandbyCluster",
    "parse_slots",
    "parse_standby_cluster",
    "slots_to_dict",
]

_SLOT = re.compile(r"[a-z0-9_]{1,63}")
_SLOT_NAME = "1-63 lower-case letters, digits or '_'"


class SettingError(ValueError):
    """A bad standby_cluster or slots value; ``key`` is its dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class StandbyCluster(Section, frozen=True, kw_only=True):
    """Where the standby leader gets its WAL: streaming from ``host``:``port`` (through the
    remote primary's slot ``primary_slot_name``, when given) and/or replaying archived WAL
    with ``restore_command``; ``recovery_min_apply_delay`` delays the replay (PostgreSQL's
    setting of that name: milliseconds, or a number with a unit). ``create_replica_methods``
    is how a fresh standby cluster's first member is made: only ``basebackup`` (pg_basebackup
    from ``host``), so it needs ``host``.

    The bounds on single values are msgspec's (checked by :func:`parse_standby_cluster`, which
    reads stored and submitted values); the rules across keys are checked on construction too.
    """

    host: (
        Annotated[str, Meta(pattern=r"^[^ \n\r\x00]+$(?!\n)", description="a host name or address")]
        | None
    ) = None
    port: Annotated[int, Meta(ge=1, le=65535)] = 5432
    primary_slot_name: (
        Annotated[str, Meta(pattern=f"^{_SLOT.pattern}$(?!\\n)", description=_SLOT_NAME)] | None
    ) = None
    restore_command: (
        Annotated[
            str,
            Meta(pattern=r"^[^\n]*\S[^\n]*$(?!\n)", description="a one-line, non-empty command"),
        ]
        | None
    ) = None
    create_replica_methods: tuple[str, ...] = ("basebackup",)
    recovery_min_apply_delay: (
        Annotated[
            str,
            Meta(
                pattern=r"^\d+\s*(ms|s|min|h|d)?$(?!\n)",
                description="milliseconds, or a number with ms, s, min, h or d",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        p = "standby_cluster"
        if self.host is None and self.restore_command is None:
            raise SettingError(p, "needs host (to stream from) or restore_command (or both)")
        if self.create_replica_methods != ("basebackup",):
            raise SettingError(
                f"{p}.create_replica_methods",
                f"only [basebackup] is supported (the standby leader is cloned from the remote "
                f"primary with pg_basebackup), got {list(self.create_replica_methods)}",
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


def parse_standby_cluster(data: object) -> StandbyCluster | None:
    """``standby_cluster`` as stored or submitted (None or ``{}``: not a standby cluster).

    Decoded by msgspec; raises :class:`SettingError` naming the key.
    """
    if data is None or (isinstance(data, Mapping) and not data):
        return None
    if isinstance(data, Mapping):
        delay = data.get("recovery_min_apply_delay")
        if isinstance(delay, int) and not isinstance(delay, bool):  # milliseconds, as Patroni
            data = {**data, "recovery_min_apply_delay": str(delay)}
    try:
        return msgspec.convert(data, StandbyCluster)
    except msgspec.ValidationError as exc:
        if isinstance(exc.__cause__, SettingError):
            raise exc.__cause__ from None
        path, message = problem(exc, StandbyCluster, data)
        raise SettingError(".".join(("standby_cluster", *map(str, path))), message) from None


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
    if raw is None:  # the store's settings may leave slots out; in the file null is no mapping
        loader.report(path, "expected a mapping of slot names to {type: physical}, got null", env)
        return BAD
    names = _load(loader, parse_slots, raw, path, env)
    return names if names is BAD else slots_to_dict(names)


def _load(loader: Any, parse: Any, raw: Any, path: tuple[str | int, ...], env: str | None) -> Any:
    try:
        return parse(raw)
    except SettingError as exc:
        _, _, rest = exc.key.partition(".")
        loader.report((*path, *rest.split(".")) if rest else path, exc.problem, env)
        return BAD
