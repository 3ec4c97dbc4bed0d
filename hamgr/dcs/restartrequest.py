"""A restart of one member's PostgreSQL, as the operator asked for it (POST /restart).

A scheduled one is published in the member's key, as Patroni publishes ``scheduled_restart``
in its member data: ``{"schedule": "<ISO 8601>", "restart_pending": ..., "role": ...,
"postgres_version": ..., "timeout": ...}``, so ``GET /cluster`` and ``hactl list`` show it on
every agent. :class:`RestartRequest` is that document, field for field. The conditions are
checked when the restart runs (hamgr/ha/restartplan.py), not when it is asked for: whether a
restart is pending may change until then.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from hamgr.dcs.strict import ModelError

RestartRole = Literal["primary", "replica"]


def parse_version(text: str) -> int:
    """``server_version_num`` of a PostgreSQL version as Patroni reads it: ``15.4`` (10 and
    later: major.minor) is 150004, ``9.6.3`` is 90603. Raises ModelError naming the field."""
    parts = text.split(".")
    numbers = [int(p) for p in parts if p.isascii() and p.isdigit()]
    major = numbers[0] if numbers else 0
    ok = len(numbers) == len(parts) and (
        (len(parts) == 2 and major >= 10) or (len(parts) == 3 and 0 < major < 10)
    )
    if not ok or any(n > 99 for n in numbers[1:]):
        raise ModelError(
            "postgres_version",
            f"expected a PostgreSQL version like 15.4 (10 and later) or 9.6.3, got {text!r}",
        )
    if len(numbers) == 2:
        numbers.insert(1, 0)
    return numbers[0] * 10000 + numbers[1] * 100 + numbers[2]


def iso_time(at: float) -> str:
    """Wall-clock seconds as ISO 8601 with the UTC offset (what Patroni publishes)."""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


class RestartRequest(msgspec.Struct, frozen=True):
    """Restart PostgreSQL (at ``schedule``, ISO 8601 with a timezone; None: now) if every
    filter holds.

    ``restart_pending``: only when PostgreSQL waits for a restart to take a parameter.
    ``role``: only while this member runs PostgreSQL in that role. ``postgres_version``: only
    while the running server's version is lower (as the operator wrote it, ``15.4``;
    :attr:`version_num` is its ``server_version_num``). ``timeout``: seconds PostgreSQL may
    take to come up again (None: ``primary_start_timeout``).
    """

    schedule: str | None = None
    restart_pending: bool = False
    role: RestartRole | None = None
    postgres_version: str | None = None
    timeout: Annotated[float, Meta(gt=0)] | None = None

    def __post_init__(self) -> None:
        if self.schedule is not None:
            try:
                when = dt.datetime.fromisoformat(self.schedule)
            except ValueError:
                raise ModelError("schedule", f"expected ISO 8601, got {self.schedule!r}") from None
            if when.tzinfo is None:
                raise ModelError("schedule", f"needs a timezone, got {self.schedule!r}")
        if self.postgres_version is not None:
            parse_version(self.postgres_version)

    @property
    def at(self) -> float | None:
        """``schedule`` as wall-clock seconds since the epoch."""
        if self.schedule is None:
            return None
        return dt.datetime.fromisoformat(self.schedule).timestamp()

    @property
    def version_num(self) -> int | None:
        """``postgres_version`` as ``server_version_num`` (150004 for 15.4)."""
        return parse_version(self.postgres_version) if self.postgres_version is not None else None
