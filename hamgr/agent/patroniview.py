"""The parts of ``GET /cluster`` and ``GET /history`` shaped as Patroni's, so that scripts and
dashboards written against Patroni's REST API keep working (hamgr/agent/api.py adds hamgr's own
fields beside them).

- ``/history``: a list of ``[timeline, lsn, reason, timestamp, new_leader]`` (the LSN as bytes,
  the timestamp ISO 8601 with the UTC offset), oldest first, as Patroni's ``history.lines``.
- ``/cluster``: every member also carries ``lsn``, ``receive_lsn``, ``replay_lsn`` (spelled
  ``0/3000060``) with ``receive_lag`` and ``replay_lag`` in bytes behind the leader (not on the
  leader), ``scheduled_restart`` when one is scheduled; the cluster ``scheduled_switchover``
  (``at``, ``from``, ``to``) while a switchover waits for its time. Members sorted by name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from hamgr.dcs.model import MemberState, SwitchoverRequest, TimelineEntry
from hamgr.lsn import format_lsn


def iso(at: float) -> str:
    """Wall-clock seconds as ISO 8601 with the UTC offset."""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


def history_lines(entries: Iterable[TimelineEntry]) -> list[list[Any]]:
    """``GET /history``: Patroni's ``[timeline, lsn, reason, timestamp, new_leader]`` lists."""
    return [[h.timeline, h.switch_lsn, h.reason, iso(h.at), h.new_leader] for h in entries]


def scheduled_switchover(req: SwitchoverRequest | None) -> dict[str, str] | None:
    """``scheduled_switchover`` of ``GET /cluster``: only while a switchover waits for its time."""
    if req is None or req.scheduled_at is None:
        return None
    out = {"at": iso(req.scheduled_at)}
    if req.leader:
        out["from"] = req.leader
    if req.candidate:
        out["to"] = req.candidate
    return out


def member_fields(m: MemberState, leader: str | None, top: int | None) -> dict[str, Any]:
    """Patroni's per-member WAL fields (``top``: the leader's position) and scheduled restart."""
    out: dict[str, Any] = {}
    if m.name != leader:
        for prefix, lsn in (
            ("receive_", m.received_lsn),
            ("replay_", m.replayed_lsn),
            ("", m.position),
        ):
            out[f"{prefix}lsn"] = format_lsn(lsn) if lsn is not None else None
            if prefix:
                out[f"{prefix}lag"] = None if lsn is None or top is None else max(0, top - lsn)
    if m.scheduled_restart is not None:
        out["scheduled_restart"] = m.scheduled_restart.to_dict()
    return out
