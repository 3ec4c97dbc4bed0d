"""A restart of one member's PostgreSQL, as the operator asked for it (POST /restart).

A scheduled one is published in the member's key, as Patroni publishes ``scheduled_restart``
in its member data: ``{"schedule": "<ISO 8601>", "restart_pending": ..., "role": ...,
"postgres_version": ..., "timeout": ...}``, so ``GET /cluster`` and ``hactl list`` show it on
every agent. The conditions are checked when the restart runs (hamgr/ha/restartplan.py), not
when it is asked for: whether a restart is pending may change until then.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, get_args

from hamgr.dcs.jsonfields import JsonObject, ModelError, check_choice, check_seconds

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


@dataclass(frozen=True)
class RestartRequest:
    """Restart PostgreSQL (at ``at``, wall-clock seconds; None: now) if every filter holds.

    ``restart_pending``: only when PostgreSQL waits for a restart to take a parameter.
    ``role``: only while this member runs PostgreSQL in that role. ``postgres_version``: only
    while the running server's version is lower (``server_version_num``, e.g. 150004 for 15.4;
    ``version_text`` is what the operator wrote). ``timeout``: seconds PostgreSQL may take to
    come up again (None: ``primary_start_timeout``).
    """

    at: float | None = None
    restart_pending: bool = False
    role: RestartRole | None = None
    postgres_version: int | None = None
    version_text: str | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.at is not None:
            check_seconds("schedule", self.at)
        if self.role is not None:
            check_choice("role", self.role, get_args(RestartRole))
        if self.timeout is not None:
            check_seconds("timeout", self.timeout)
        if (self.postgres_version is None) != (self.version_text is None):
            raise ModelError("postgres_version", "needs both the number and the text")

    @property
    def schedule(self) -> str | None:
        """``at`` as ISO 8601 with the UTC offset (what Patroni publishes)."""
        if self.at is None:
            return None
        return dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "restart_pending": self.restart_pending,
            "role": self.role,
            "postgres_version": self.version_text,
            "timeout": self.timeout,
        }

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> RestartRequest:
        """The published form back; ``postgres_version`` is re-read from its text."""
        o = JsonObject(data, path)
        when = o.text("schedule", None)
        at = None
        if when is not None:
            try:
                at = dt.datetime.fromisoformat(when).timestamp()
            except ValueError:
                raise ModelError(o.name("schedule"), f"expected ISO 8601, got {when!r}") from None
        text = o.text("postgres_version", None)
        return o.build(
            cls,
            at=at,
            restart_pending=o.flag("restart_pending", False),
            role=o.text("role", None),
            postgres_version=parse_version(text) if text is not None else None,
            version_text=text,
            timeout=o.number("timeout", None),
        )
