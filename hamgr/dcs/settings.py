"""The cluster's dynamic settings: the store's ``config`` key, ``PATCH /config``, ``bootstrap.dcs``.

:class:`DynamicSettings` is what every agent reads from the store each loop; a bootstrapping
agent writes it from its configuration file's ``bootstrap.dcs`` section. ``from_dict`` raises
:class:`~hamgr.dcs.jsonfields.ModelError` naming the key; operators submit these, so unknown keys
are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import msgspec

from hamgr.config.schema import DcsConfig, ParameterValue
from hamgr.config.standby import (
    SettingError,
    StandbyCluster,
    parse_slots,
    parse_standby_cluster,
    slots_to_dict,
)
from hamgr.config.timing import timing_problems
from hamgr.config.values import field_types, meta_problem, shape
from hamgr.dcs.jsonfields import JsonObject, ModelError, check_choice, fail

SyncMode = Literal["off", "on", "quorum"]
SYNC_MODES: tuple[SyncMode, ...] = ("off", "on", "quorum")

_DCS_DEFAULTS = DcsConfig()


def _dcs_bounds() -> dict[str, msgspec.Meta]:
    """The bounds (msgspec Meta) of each bootstrap.dcs key, as its type in DcsConfig declares
    them: the same keys here obey the same bounds, stated once."""
    bounds: dict[str, msgspec.Meta] = {}
    for key, tp in field_types(DcsConfig).items():
        for mark in shape(tp)[2]:
            if (
                isinstance(mark, msgspec.Meta)
                and (mark.gt, mark.ge, mark.lt, mark.le) != (None,) * 4
            ):
                bounds[key] = mark
    return bounds


_BOUNDS = _dcs_bounds()


def sync_mode(value: object, name: str = "synchronous_mode") -> SyncMode:
    """``synchronous_mode`` as stored or submitted: ``"off"``, ``"on"``, ``"quorum"``, or a
    boolean (Patroni's spelling, and what YAML makes of an unquoted on/off)."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    check_choice(name, value, SYNC_MODES)
    return value  # type: ignore[return-value]


_DEFAULT_SYNC_MODE = sync_mode(_DCS_DEFAULTS.synchronous_mode)


@dataclass(frozen=True)
class DynamicSettings:
    """Cluster-wide HA settings at ``config`` (seconds and bytes); defaults and bounds as
    bootstrap.dcs (:class:`~hamgr.config.schema.DcsConfig` states them once).

    Checked like the config file: durations > 0, ``loop_wait + 2 * retry_timeout <= ttl`` and
    ``loop_wait <= safety_margin < ttl``. ``member_slots_ttl`` is how long the primary keeps the
    replication slot of a member that left (0: drop it at once). ``parameters`` are PostgreSQL
    settings for every member (treat the dict as read-only).

    Synchronous replication (Patroni's keys): ``synchronous_mode`` ``off``, ``on`` (PostgreSQL
    waits for every one of ``synchronous_node_count`` named standbys, ``FIRST n``) or ``quorum``
    (for any ``synchronous_node_count`` of all eligible standbys, ``ANY n``);
    ``synchronous_mode_strict`` keeps commits waiting when no synchronous standby is left instead
    of going asynchronous; ``maximum_lag_on_syncnode`` (bytes, -1: no limit) drops a standby
    that lags more from the synchronous set.

    ``standby_cluster`` (None: a normal cluster) makes the key holder a standby leader of a
    remote primary; ``slots`` names the permanent physical slots the primary keeps
    (hamgr/config/standby.py).
    """

    ttl: float = _DCS_DEFAULTS.ttl
    loop_wait: float = _DCS_DEFAULTS.loop_wait
    retry_timeout: float = _DCS_DEFAULTS.retry_timeout
    maximum_lag_on_failover: int = _DCS_DEFAULTS.maximum_lag_on_failover
    primary_start_timeout: float = _DCS_DEFAULTS.primary_start_timeout
    safety_margin: float = _DCS_DEFAULTS.safety_margin
    pause: bool = False
    use_slots: bool = _DCS_DEFAULTS.postgresql.use_slots
    member_slots_ttl: float = _DCS_DEFAULTS.member_slots_ttl
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)
    synchronous_mode: SyncMode = _DEFAULT_SYNC_MODE
    synchronous_mode_strict: bool = _DCS_DEFAULTS.synchronous_mode_strict
    synchronous_node_count: int = _DCS_DEFAULTS.synchronous_node_count
    maximum_lag_on_syncnode: int = _DCS_DEFAULTS.maximum_lag_on_syncnode
    standby_cluster: StandbyCluster | None = None
    slots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_choice("synchronous_mode", self.synchronous_mode, SYNC_MODES)
        for key, bounds in _BOUNDS.items():
            value = getattr(self, key)
            problem = (
                f"must be a finite number, got {value}"
                if isinstance(value, float) and not math.isfinite(value)
                else meta_problem(bounds, value)
            )
            if problem:
                raise ModelError(key, problem)
        for key, message in timing_problems(
            self.ttl, self.loop_wait, self.retry_timeout, self.safety_margin
        ):
            raise ModelError(key, message)
        for key, value in self.parameters.items():
            ok_value = isinstance(value, str | int | float) and not (
                isinstance(value, float) and not math.isfinite(value)
            )
            if not isinstance(key, str) or not key or not ok_value:
                fail(f"parameters.{key}", "a string, number or boolean", value)

    @classmethod
    def from_config(cls, dcs: DcsConfig) -> DynamicSettings:
        """The settings a bootstrapping agent writes from its ``bootstrap.dcs`` section."""
        return cls(
            ttl=dcs.ttl,
            loop_wait=dcs.loop_wait,
            retry_timeout=dcs.retry_timeout,
            maximum_lag_on_failover=dcs.maximum_lag_on_failover,
            primary_start_timeout=dcs.primary_start_timeout,
            safety_margin=dcs.safety_margin,
            use_slots=dcs.postgresql.use_slots,
            member_slots_ttl=dcs.member_slots_ttl,
            parameters=dict(dcs.postgresql.parameters),
            synchronous_mode=sync_mode(dcs.synchronous_mode),
            synchronous_mode_strict=dcs.synchronous_mode_strict,
            synchronous_node_count=dcs.synchronous_node_count,
            maximum_lag_on_syncnode=dcs.maximum_lag_on_syncnode,
            standby_cluster=(
                dcs.standby_cluster if isinstance(dcs.standby_cluster, StandbyCluster) else None
            ),
            slots=parse_slots(dcs.slots),
        )

    @property
    def synchronous(self) -> bool:
        """Whether synchronous replication is on (``on`` or ``quorum``)."""
        return self.synchronous_mode != "off"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["parameters"] = dict(self.parameters)
        out["standby_cluster"] = self.standby_cluster.to_dict() if self.standby_cluster else None
        out["slots"] = slots_to_dict(self.slots)
        return out

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> DynamicSettings:
        o = JsonObject(data, path, known=[f.name for f in fields(cls)])
        params = o.get("parameters", {})
        if not isinstance(params, Mapping):
            fail(o.name("parameters"), "an object", params)
        d = cls()
        return o.build(
            cls,
            ttl=o.number("ttl", d.ttl),
            loop_wait=o.number("loop_wait", d.loop_wait),
            retry_timeout=o.number("retry_timeout", d.retry_timeout),
            maximum_lag_on_failover=o.integer("maximum_lag_on_failover", d.maximum_lag_on_failover),
            primary_start_timeout=o.number("primary_start_timeout", d.primary_start_timeout),
            safety_margin=o.number("safety_margin", d.safety_margin),
            pause=o.flag("pause", d.pause),
            use_slots=o.flag("use_slots", d.use_slots),
            member_slots_ttl=o.number("member_slots_ttl", d.member_slots_ttl),
            parameters=dict(params),
            synchronous_mode=sync_mode(
                o.get("synchronous_mode", d.synchronous_mode), o.name("synchronous_mode")
            ),
            synchronous_mode_strict=o.flag("synchronous_mode_strict", d.synchronous_mode_strict),
            synchronous_node_count=o.integer("synchronous_node_count", d.synchronous_node_count),
            maximum_lag_on_syncnode=o.integer("maximum_lag_on_syncnode", d.maximum_lag_on_syncnode),
            **_standby_and_slots(o),
        )


def _standby_and_slots(o: JsonObject) -> dict[str, Any]:
    """``standby_cluster`` and ``slots`` (hamgr/config/standby.py), errors named by key."""
    try:
        return {
            "standby_cluster": parse_standby_cluster(o.data.get("standby_cluster")),
            "slots": parse_slots(o.data.get("slots")),
        }
    except SettingError as exc:
        raise ModelError(o.name(exc.key), exc.problem) from None
