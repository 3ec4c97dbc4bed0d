"""The cluster's dynamic settings: the store's ``config`` key, ``PATCH /config``, ``bootstrap.dcs``.

:class:`DynamicSettings` is what every agent reads from the store each loop; a bootstrapping
agent writes it from its configuration file's ``bootstrap.dcs`` section. ``from_dict`` raises
:class:`~hamgr.dcs.strict.ModelError` naming the key; operators submit these, so unknown keys
are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from hamgr.config.problems import show
from hamgr.config.schema import (
    BytesOrNoLimit,
    DcsConfig,
    NonNegativeInt,
    ParameterValue,
    PositiveInt,
    Seconds,
    SecondsOrZero,
)
from hamgr.config.standby import (
    SettingError,
    StandbyCluster,
    parse_slots,
    parse_standby_cluster,
    slots_to_dict,
)
from hamgr.config.timing import timing_problems
from hamgr.dcs.strict import ModelError, model_error

SyncMode = Literal["off", "on", "quorum"]

_DCS_DEFAULTS = DcsConfig()


def sync_mode(value: SyncMode | bool) -> SyncMode:
    """``synchronous_mode`` with Patroni's boolean spelling (what YAML makes of an unquoted
    on/off) as its word: True is ``"on"``, False ``"off"``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


_DEFAULT_SYNC_MODE = sync_mode(_DCS_DEFAULTS.synchronous_mode)


class DynamicSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Cluster-wide HA settings at ``config`` (seconds and bytes); defaults and bounds as
    bootstrap.dcs: the defaults are DcsConfig's, the types (with their msgspec bounds) the same
    aliases, so each is stated once. :meth:`from_dict` decodes with msgspec, which checks them;
    a value built in code is checked when it is written (hamgr/dcs/common.py
    ``encode_settings``).

    Checked like the config file: durations > 0 and finite, ``loop_wait + 2 * retry_timeout <=
    ttl`` and ``loop_wait <= safety_margin < ttl`` (the rules across keys, in
    ``__post_init__``). ``member_slots_ttl`` is how long the primary keeps the replication slot
    of a member that left (0: drop it at once). ``parameters`` are PostgreSQL settings for every
    member (treat the dict as read-only).

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

    ttl: Seconds = _DCS_DEFAULTS.ttl
    loop_wait: Seconds = _DCS_DEFAULTS.loop_wait
    retry_timeout: Seconds = _DCS_DEFAULTS.retry_timeout
    maximum_lag_on_failover: NonNegativeInt = _DCS_DEFAULTS.maximum_lag_on_failover
    primary_start_timeout: SecondsOrZero = _DCS_DEFAULTS.primary_start_timeout
    safety_margin: Seconds = _DCS_DEFAULTS.safety_margin
    pause: bool = False
    use_slots: bool = _DCS_DEFAULTS.postgresql.use_slots
    member_slots_ttl: SecondsOrZero = _DCS_DEFAULTS.member_slots_ttl
    parameters: Mapping[str, ParameterValue] = msgspec.field(default_factory=dict)
    synchronous_mode: SyncMode = _DEFAULT_SYNC_MODE
    synchronous_mode_strict: bool = _DCS_DEFAULTS.synchronous_mode_strict
    synchronous_node_count: PositiveInt = _DCS_DEFAULTS.synchronous_node_count
    maximum_lag_on_syncnode: BytesOrNoLimit = _DCS_DEFAULTS.maximum_lag_on_syncnode
    standby_cluster: StandbyCluster | None = None
    slots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in self.__struct_fields__:  # no msgspec bound says "finite" (JSON has no inf)
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ModelError(key, f"must be a finite number, got {value}")
        for key, message in timing_problems(
            self.ttl, self.loop_wait, self.retry_timeout, self.safety_margin
        ):
            raise ModelError(key, message)

    @classmethod
    def from_config(cls, dcs: DcsConfig) -> DynamicSettings:
        """The settings a bootstrapping agent writes from its ``bootstrap.dcs`` section: the
        same keys, read as the stored ones are, except ``use_slots`` and ``parameters``, which
        the file nests under ``postgresql`` (Patroni's layout). A key bootstrap.dcs gains and
        the settings lack is refused as unknown, not dropped. ModelError naming the key."""
        data = msgspec.to_builtins(dcs)
        postgresql = data.pop("postgresql")
        return cls.from_dict(
            {**data, "use_slots": postgresql["use_slots"], "parameters": postgresql["parameters"]}
        )

    @property
    def synchronous(self) -> bool:
        """Whether synchronous replication is on (``on`` or ``quorum``)."""
        return self.synchronous_mode != "off"

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__struct_fields__}
        out["parameters"] = dict(self.parameters)
        out["standby_cluster"] = self.standby_cluster.to_dict() if self.standby_cluster else None
        out["slots"] = slots_to_dict(self.slots)
        return out

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> DynamicSettings:
        """The settings as stored or submitted; ModelError naming the key (under ``path``)."""
        try:
            return _decode(data)
        except ModelError as exc:
            raise exc.under(path) from None


def _decode(data: object) -> DynamicSettings:
    if not isinstance(data, Mapping):
        raise ModelError("value", f"expected an object, got {show(data)}")
    raw = dict(data)
    params = raw.get("parameters", {})
    for key, value in params.items() if isinstance(params, Mapping) else ():
        # msgspec names a bad dict value ``parameters[...]``; this names its key
        if not key:
            raise ModelError("parameters", "a parameter name must not be empty")
        if not isinstance(value, str | int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise ModelError(
                f"parameters.{key}", f"expected a string, number or boolean, got {show(value)}"
            )
    if isinstance(raw.get("synchronous_mode"), bool):
        raw["synchronous_mode"] = sync_mode(raw["synchronous_mode"])
    try:  # Patroni's shapes (hamgr/config/standby.py), errors named by key
        raw["standby_cluster"] = parse_standby_cluster(raw.get("standby_cluster"))
        raw["slots"] = parse_slots(raw.get("slots"))
    except SettingError as exc:
        raise ModelError(exc.key, exc.problem) from None
    try:
        return msgspec.convert(raw, DynamicSettings)
    except msgspec.ValidationError as exc:  # a rule across keys keeps its own field
        raise model_error(exc, DynamicSettings, raw) from None
