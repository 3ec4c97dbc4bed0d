"""The primary's replication slots: one per other member, and a departed member's kept until
``member_slots_ttl`` has passed since a member last needed it (as Patroni's option of that name).

A slot holds back WAL for its standby; the slot of a member that is gone for good would fill
the primary's disk. A member that is only down for a while (a reboot, maintenance) comes back
within the ttl and resumes from its slot. `departed_slots` is the rule, pure; `SlotKeeper` runs
it against PostgreSQL from the HA loop. Only slots this agent saw a member need are ever
dropped: a slot an operator created, or one of a member that left before this agent last
started, is never touched; nor is a slot still in use (its standby streams although its agent
is gone).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from hamgr import postgres
from hamgr.dcs.model import ClusterView
from hamgr.ha.execute import slot_name
from hamgr.ha.inputs import LocalPostgres
from hamgr.postgres import PgSettings

__all__ = ["SlotKeeper", "departed_slots"]

log = logging.getLogger(__name__)


def departed_slots(
    last_needed: Mapping[str, float], wanted: Collection[str], now: float, ttl: float
) -> list[str]:
    """The slots (sorted) that no present member wants and that no member needed for `ttl`
    seconds; `last_needed` maps a slot to the last instant a member needed it."""
    return sorted(
        name for name, last in last_needed.items() if name not in wanted and now - last >= ttl
    )


class SlotKeeper:
    """Creates the slots of present members and drops those of departed ones, as primary."""

    def __init__(self, pg: PgSettings, me: str) -> None:
        self.pg = pg
        self.me = me
        self._existing: set[str] = set()
        self._last_needed: dict[str, float] = {}

    async def maintain(
        self, view: ClusterView, pg: LocalPostgres, holder: bool, now: float
    ) -> None:
        """One pass: `holder` says this agent holds the leader key (and `view` is current)."""
        if not (holder and pg.is_primary and view.settings.use_slots):
            self._existing = set()  # a later term as primary lists them afresh
            return
        wanted = {slot_name(m.name) for m in view.members if m.name != self.me}
        for name in wanted:
            self._last_needed[name] = now
        expired = departed_slots(self._last_needed, wanted, now, view.settings.member_slots_ttl)
        if wanted <= self._existing and not expired:
            return
        try:
            slots = {s.name: s for s in await postgres.list_slots(self.pg)}
            self._existing = set(slots)
            for name in sorted(wanted - self._existing):
                await postgres.create_slot(self.pg, name)
                self._existing.add(name)
                log.info("created replication slot %s", name)
            for name in expired:
                slot = slots.get(name)
                if slot is not None and slot.active:
                    continue  # its standby still streams: kept until it stops
                if slot is not None:
                    await postgres.drop_slot(self.pg, name)
                    self._existing.discard(name)
                    log.info(
                        "dropped replication slot %s: no member needed it for "
                        "member_slots_ttl (%g s)",
                        name,
                        view.settings.member_slots_ttl,
                    )
                del self._last_needed[name]
        except postgres.PostgresError as exc:
            log.warning("could not maintain replication slots: %s", exc)
