"""The primary's replication slots: one per other member, and a departed member's kept until
``member_slots_ttl`` has passed since a member last needed it (as Patroni's option of that name).

A slot holds back WAL for its standby; the slot of a member that is gone for good would fill
the primary's disk. A member that is only down for a while (a reboot, maintenance) comes back
within the ttl and resumes from its slot. `slot_name` maps a member to its slot, one slot per
member name; `departed_slots` is the rule, pure; `SlotKeeper` runs it against PostgreSQL from
the HA loop. Only slots this agent saw a member need are ever dropped: a slot an operator
created, or one of a member that left before this agent last started, is never touched; nor is
a slot still in use (its standby streams although its agent is gone).

Permanent slots (the dynamic setting ``slots``, as Patroni's) are created and kept on whichever
member is primary, or standby leader, like the members' (also with ``use_slots`` off); one
removed from ``slots`` counts as departed from then on. A standby cluster's standby leader
keeps its members' slots too: they stream from it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection, Mapping

from hamgr import postgres
from hamgr.dcs.model import ClusterView
from hamgr.ha.inputs import LocalPostgres
from hamgr.postgres import PgSettings

__all__ = ["SlotKeeper", "departed_slots", "legacy_slot_name", "slot_name"]

log = logging.getLogger(__name__)

_SLOT = re.compile(r"[a-z0-9_]{1,63}")
_HASH_DIGITS = 10
_HASHED = re.compile(rf".*_[0-9a-f]{{{_HASH_DIGITS}}}")


def slot_name(member: str) -> str:
    """The replication slot `member` streams through: one per member name.

    A name that already is a valid slot name (1-63 of ``[a-z0-9_]``) is kept as it is, unless
    it ends like a hashed one (``_`` and 10 hex digits); any other name becomes its lower-cased
    form with every other character as ``_``, cut to 52 characters, then ``_`` and the first 10
    hex digits of the SHA-256 of the name (``db-1`` -> ``db_1_<hash>``). So ``db-1`` and
    ``db_1`` get different slots: kept names are distinct, never end like a hashed one, and
    hashed names differ in their hash (equal only on a 40-bit collision of SHA-256).
    """
    if _SLOT.fullmatch(member) and not _HASHED.fullmatch(member):
        return member
    digest = hashlib.sha256(member.encode()).hexdigest()[:_HASH_DIGITS]
    return f"{legacy_slot_name(member)[: 62 - _HASH_DIGITS]}_{digest}"


def legacy_slot_name(member: str) -> str:
    """The slot name earlier versions gave `member` (sanitised only, so not one per name).

    The primary treats such a slot of a present member as departed once its member uses
    `slot_name`: dropped after ``member_slots_ttl`` unless in use or still wanted.
    """
    return re.sub(r"[^a-z0-9_]", "_", member.lower())[:63]


def departed_slots(
    last_needed: Mapping[str, float], wanted: Collection[str], now: float, ttl: float
) -> list[str]:
    """The slots (sorted) that no present member wants and that no member needed for `ttl`
    seconds; `last_needed` maps a slot to the last instant a member needed it."""
    return sorted(
        name for name, last in last_needed.items() if name not in wanted and now - last >= ttl
    )


class SlotKeeper:
    """Creates the slots of present members and the permanent ones, and drops those of
    departed members, as primary (or standby leader)."""

    def __init__(self, pg: PgSettings, me: str) -> None:
        self.pg = pg
        self.me = me
        self._existing: set[str] = set()
        self._last_needed: dict[str, float] = {}
        self._legacy_seen: set[str] = set()

    @property
    def kept(self) -> tuple[str, ...]:
        """The slots this agent knows exist while it leads (members' and permanent), sorted;
        empty otherwise (GET /patroni ``replication_slots``)."""
        return tuple(sorted(self._existing))

    async def maintain(
        self, view: ClusterView, pg: LocalPostgres, holder: bool, now: float
    ) -> None:
        """One pass: `holder` says this agent holds the leader key (and `view` is current)."""
        leading = pg.is_primary or (
            view.settings.standby_cluster is not None and pg.running and pg.role == "replica"
        )
        if not (holder and leading and (view.settings.use_slots or view.settings.slots)):
            self._existing = set()  # a later term as primary lists them afresh
            return
        others = [m.name for m in view.members if m.name != self.me]
        wanted = {slot_name(name) for name in others} if view.settings.use_slots else set()
        wanted |= set(view.settings.slots)  # permanent: kept while declared
        for name in wanted:
            self._last_needed[name] = now
        for name in others:  # its slot from before slot_name was one per name: departed
            old = legacy_slot_name(name)
            if old != slot_name(name) and old not in self._legacy_seen:
                self._legacy_seen.add(old)
                self._last_needed.setdefault(old, now)
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
