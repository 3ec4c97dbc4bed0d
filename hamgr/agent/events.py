"""Recent cluster events, kept by each agent in a bounded ring in memory (``GET /events``).

The status page (``GET /ui``) shows them as a live strip, so an operator watching an incident
sees what happened, in order, without reading JSON or logs. After every HA loop cycle the
agent feeds :meth:`EventLog.observe` with the cluster view it read and the decision it took;
two pure functions turn those into events:

- :func:`view_changes`: what changed between two successive views, seen alike by every
  agent: a new timeline in the history (``switchover`` or ``failover``, with its recorded
  reason), the leader key taken or gone (``leader``), a switchover or failover request stored
  or cleared (``request``), pause and resume (``pause``), members that appear or vanish
  (``member``) or change role (``role``), a primary's fencer armed or disarmed (``fencing``).
- :func:`decision_change`: this agent's own decisions that act on PostgreSQL or the leader
  key (``action``); a demotion at once, or any decision whose reason starts with
  ``fencing``, is ``fencing``. The same decision taken cycle after cycle counts once.
- :meth:`EventLog.store_unreachable`, fed when a cycle cannot read the store: one ``store``
  event when the store stops answering and one when it answers again; a primary that
  stopped PostgreSQL because its lease deadline passed meanwhile, ``fencing``.

The first view is the baseline (one ``agent`` event says what it found). Nothing is stored: a
restarted agent starts with an empty ring; the store's timeline history keeps the promotions.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hamgr.dcs.model import ClusterView, MemberState
from hamgr.ha.actions import (
    Decision,
    Demote,
    Promote,
    Reclone,
    Reinitialize,
    ReleaseLeader,
    Rewind,
    StopPostgres,
)
from hamgr.ha.race import describe_request

KINDS = (
    "agent",
    "switchover",
    "failover",
    "leader",
    "request",
    "pause",
    "member",
    "role",
    "fencing",
    "action",
    "store",
)
"""Every event kind, in the order the module docstring explains them."""

CAPACITY = 200
"""Events an agent keeps by default; older ones drop out of the ring."""

_NOTABLE = (Promote, Demote, StopPostgres, Rewind, Reclone, Reinitialize, ReleaseLeader)
_LSN = re.compile(r"\b[0-9A-F]+/[0-9A-F]+\b")

#: (kind, member it is about or None, text): an event before it gets its number and time.
Change = tuple[str, str | None, str]


@dataclass(frozen=True)
class Event:
    """One event: ``seq`` counts from 1 in this agent's run, ``at`` is wall-clock seconds,
    ``member`` the member it is about (None: the cluster), ``source`` the agent that saw it."""

    seq: int
    at: float
    kind: str
    member: str | None
    text: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "member": self.member,
            "text": self.text,
            "source": self.source,
        }


def view_changes(prev: ClusterView, cur: ClusterView) -> list[Change]:
    """What changed from ``prev`` to ``cur`` (two successive views of one cluster)."""
    out: list[Change] = []
    newest = prev.history[-1].timeline if prev.history else 0
    for e in cur.history:
        if e.timeline > newest:
            kind = "switchover" if e.reason.startswith("switchover") else "failover"
            text = f"timeline {e.timeline + 1}: {e.new_leader} promoted ({e.reason})"
            out.append((kind, e.new_leader, text))
    out += _leader_change(prev, cur)
    if prev.switchover != cur.switchover:
        if cur.switchover is not None:
            req = cur.switchover
            when = " (scheduled)" if req.scheduled_at is not None else ""
            who = req.candidate or req.leader
            text = f"{describe_request(req)} requested by {req.requested_by}{when}"
            out.append(("request", who, text))
        elif prev.switchover is not None:
            out.append(("request", None, f"{describe_request(prev.switchover)}: request cleared"))
    if prev.settings.pause != cur.settings.pause:
        text = (
            "cluster paused: no automatic failover, PostgreSQL left alone"
            if cur.settings.pause
            else "cluster resumed: automatic failover is back on"
        )
        out.append(("pause", None, text))
    out += _member_changes(prev, cur)
    return out


def _leader_change(prev: ClusterView, cur: ClusterView) -> list[Change]:
    old, new = prev.leader, cur.leader
    if old == new:
        return []
    if new is None:
        assert old is not None
        return [("leader", old.name, f"the leader key of {old.name} is gone (expired or released)")]
    token = f"fencing token {new.revision}"
    if old is None:
        return [("leader", new.name, f"{new.name} took the leader key ({token})")]
    if old.name == new.name:
        return [("leader", new.name, f"{new.name} took the leader key again ({token})")]
    return [("leader", new.name, f"{new.name} took the leader key from {old.name} ({token})")]


def _member_changes(prev: ClusterView, cur: ClusterView) -> list[Change]:
    before = {m.name: m for m in prev.members}
    after = {m.name: m for m in cur.members}
    out: list[Change] = []
    for name in sorted(before.keys() - after.keys()):
        out.append(("member", name, f"{name} left (its agent stopped publishing)"))
    for name in sorted(after.keys() - before.keys()):
        out.append(("member", name, f"{name} joined as {after[name].role}"))
    for name in sorted(before.keys() & after.keys()):
        out += _one_member(before[name], after[name])
    return out


def _one_member(old: MemberState, new: MemberState) -> list[Change]:
    out: list[Change] = []
    if old.role != new.role:
        out.append(("role", new.name, f"{new.name}: {old.role} -> {new.role} ({new.reason})"))
    if new.fencer != old.fencer and new.fencer:
        what = {
            "armed": "armed: it stops PostgreSQL if the lease is not renewed in time",
            "disarmed": "disarmed: nothing stops PostgreSQL at the lease deadline",
        }[new.fencer]
        out.append(("fencing", new.name, f"{new.name}'s fencer {what}"))
    return out


def decision_change(me: str, decision: Decision) -> Change | None:
    """The event for this agent's ``decision``, or None when it does nothing worth telling."""
    acting = [a for a in decision.actions if isinstance(a, _NOTABLE)]
    if not acting:
        return None
    fencing = decision.reason.startswith("fencing") or any(
        isinstance(a, Demote) and a.mode == "immediate" for a in acting
    )
    names = ", ".join(type(a).__name__ for a in acting)
    return ("fencing" if fencing else "action", me, f"{me}: {names}: {decision.reason}")


def _gist(change: Change) -> Change:
    kind, member, text = change
    return kind, member, _LSN.sub("LSN", text)


class EventLog:
    """The ring of this agent's recent events; ``clock`` gives wall-clock seconds."""

    def __init__(
        self, source: str, capacity: int = CAPACITY, clock: Callable[[], float] = time.time
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self.source = source
        self.capacity = capacity
        self._clock = clock
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._view: ClusterView | None = None
        self._last_action: Change | None = None
        self._store_down = False

    @property
    def last_seq(self) -> int:
        """The newest event's number (0: none yet)."""
        return self._seq

    def add(self, kind: str, member: str | None, text: str) -> Event:
        """Record one event now."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self._seq += 1
        event = Event(self._seq, self._clock(), kind, member, text, self.source)
        self._ring.append(event)
        return event

    def observe(self, view: ClusterView, decision: Decision | None) -> None:
        """After an HA loop cycle: the events between the last view and ``view``, then the
        event of this agent's ``decision`` unless it repeats the last one."""
        prev, self._view = self._view, view
        if self._store_down:
            self._store_down = False
            self.add("store", self.source, f"{self.source} reads the cluster from the store again")
        if prev is None:
            leader = view.leader.name if view.leader else "none"
            text = f"{self.source} started watching: leader {leader}, timeline {view.timeline}"
            self.add("agent", self.source, text)
        else:
            for kind, member, text in view_changes(prev, view):
                self.add(kind, member, text)
        change = decision_change(self.source, decision) if decision is not None else None
        if change is None:
            self._last_action = None
            return
        if self._last_action is None or _gist(change) != _gist(self._last_action):
            self.add(*change)
        self._last_action = change

    def store_unreachable(self, error: str, stopped: bool) -> None:
        """A cycle could not read the store (``error``); ``stopped``: this primary stopped
        PostgreSQL at once, its lease deadline having passed."""
        if not self._store_down:
            self._store_down = True
            self.add("store", self.source, f"{self.source} cannot read the store: {error}")
        if stopped:
            text = (
                f"{self.source}: lease deadline passed and the store is unreachable: "
                "PostgreSQL stopped"
            )
            self.add("fencing", self.source, text)

    def since(self, seq: int) -> list[Event]:
        """The events after number ``seq`` still in the ring, oldest first."""
        return [e for e in self._ring if e.seq > seq]
