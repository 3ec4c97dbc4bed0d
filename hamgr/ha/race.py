"""The failover race without a leader: who may take the key, and why everyone else waits.

Every member runs the same choice over the same table (its own state plus the peers' probes),
so members that see the same probes name the same winner and at most one of them promotes; the
leader key's create-if-absent transaction settles any remaining race.

Patroni's rules: a member races only while its PostgreSQL runs as a standby, it is not tagged
``nofailover``, it is on the newest timeline seen, and its WAL position is within
``maximum_lag_on_failover`` of the best position known, the last position the old primary
recorded in the store included (so the rule holds when no peer answers, and in a two-member
cluster). The most advanced such member wins; ties go to the higher ``failover_priority``
(0 never takes over), then to the first name in sort order. A candidate must have stopped
receiving from the old primary (so its position is final and no WAL past the fork reaches it)
and, in synchronous mode, pass ``syncrep.sync_gate``.
No one races while a reachable member still runs as
primary. An operator's request changes this: its named candidate wins when it runs as a healthy
standby, even if it is not the most advanced (a forced failover); the old leader of a
switchover stays out unless it is the only eligible member.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hamgr.dcs.model import ClusterView, SwitchoverRequest
from hamgr.ha.inputs import LocalState, PeerProbe
from hamgr.ha.syncrep import sync_gate
from hamgr.lsn import show_lsn


def fmt_bytes(n: int) -> str:
    """A byte count as operators read lag: ``512 bytes``, ``12 kB``, ``5 MB``, ``1.5 GB``."""
    value, unit = float(n), "bytes"
    for bigger in ("kB", "MB", "GB", "TB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, bigger
    text = f"{value:.1f}".removesuffix(".0") if unit != "bytes" else str(n)
    return f"{text} {unit}"


def fmt_wall(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_request(req: SwitchoverRequest) -> str:
    parts: list[str] = [req.kind]
    if req.leader:
        parts.append(f"from {req.leader}")
    if req.candidate:
        parts.append(f"to {req.candidate}")
    return " ".join(parts)


@dataclass(frozen=True)
class Contender:
    """One member as the race sees it (reachable ones only)."""

    name: str
    running: bool
    role: str | None
    timeline: int | None
    position: int | None
    nofailover: bool
    failover_priority: int = 1
    detached: bool = False

    @property
    def priority(self) -> int:
        return 0 if self.nofailover else self.failover_priority

    @property
    def healthy_standby(self) -> bool:
        return self.running and self.role == "replica" and self.priority > 0


def contenders(local: LocalState, peers: Mapping[str, PeerProbe]) -> dict[str, Contender]:
    """Me (from local observation) and every reachable peer (from its probe), by name."""
    pg = local.pg
    table = {
        local.name: Contender(
            local.name,
            pg.running,
            pg.role,
            pg.timeline,
            pg.position,
            local.tags.nofailover,
            local.tags.failover_priority,
            pg.detached,
        )
    }
    for name, p in sorted(peers.items()):
        if name != local.name and p.reachable:
            table[name] = Contender(
                name,
                p.running,
                p.role,
                p.timeline,
                p.position,
                p.nofailover,
                p.failover_priority,
                p.detached,
            )
    return table


def _settled_problem(c: Contender, view: ClusterView) -> str:
    """A contender must have stopped receiving from the old primary (its position is final),
    and in synchronous mode ``on`` be a recorded synchronous standby (syncrep.sync_gate checks
    the rest)."""
    settings, rec = view.settings, view.sync
    if settings.synchronous_mode == "on" and (rec is None or c.name not in rec.members):
        return "not a synchronous standby"
    if not c.detached:
        return "still receiving from the old primary (detaching first)"
    return ""


def ineligibility(
    c: Contender, timeline: int, best: int, best_name: str, max_lag: int, view: ClusterView
) -> str:
    """Why ``c`` may not become leader ("" if it may), against the best position known."""
    if c.nofailover:
        return "tagged nofailover"
    if c.priority == 0:
        return "of failover_priority 0"
    if not c.running:
        return "not running"
    if c.role != "replica":
        return f"running as {c.role or 'unknown'}, not as a standby"
    if c.timeline is None or c.position is None:
        return "of unknown timeline or WAL position"
    if c.timeline < timeline:
        return f"on timeline {c.timeline}, behind timeline {timeline}"
    lag = best - c.position
    if lag > max_lag:
        return f"{fmt_bytes(lag)} behind {best_name} (maximum_lag_on_failover {fmt_bytes(max_lag)})"
    return _settled_problem(c, view)


def _rank(c: Contender) -> tuple[int, int, str]:
    """Race order: most WAL first, then the higher failover_priority, then the name."""
    return (-(c.position or 0), -c.priority, c.name)


@dataclass(frozen=True)
class RaceOutcome:
    """The winner (None: nobody may take the key now) and the reason, from my point of view."""

    winner: str | None
    reason: str


def _list(problems: Iterable[tuple[str, str]]) -> str:
    return "; ".join(f"{name} is {why}" for name, why in problems)


def failover_race(
    view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe]
) -> RaceOutcome:
    """Decide the race for a free leader key among ``local`` and the reachable ``peers``."""
    me = local.name
    table = contenders(local, peers)
    alive = sorted(n for n, c in table.items() if n != me and c.running and c.role == "primary")
    if alive:
        return RaceOutcome(None, f"no failover: member {alive[0]} still runs as primary")

    req = view.switchover if view.switchover and view.switchover.due(local.wall_now) else None
    note, excluded = "", set[str]()
    if req is not None and req.candidate is not None:
        cand = table.get(req.candidate)
        if cand is not None and cand.healthy_standby:
            what = describe_request(req)
            if cand.name == me:
                return RaceOutcome(me, f"{what} requested by the operator: taking the leader key")
            return RaceOutcome(cand.name, f"waiting: the operator requested {what}")
        excluded.add(req.candidate)
        state = "unreachable or not a member" if cand is None else "not a healthy standby"
        note = f"requested candidate {req.candidate} is {state}, racing without it; "

    cluster_tl = view.timeline
    last = view.position
    if last is not None:
        cluster_tl = max(cluster_tl, last.timeline)
    current = [
        c
        for c in table.values()
        if c.running and c.timeline is not None and c.position is not None
        if c.timeline >= cluster_tl
    ]
    if not current:
        return RaceOutcome(
            None, f"{note}no failover: no running member has reached timeline {cluster_tl}"
        )
    top_tl = max(c.timeline or 0 for c in current)
    leaders = sorted(current, key=_rank)
    best_c = next(c for c in leaders if c.timeline == top_tl)
    best, best_name = best_c.position or 0, f"member {best_c.name}"
    if last is not None and last.timeline == top_tl and last.lsn > best:
        best, best_name = last.lsn, f"the last position {last.leader} recorded as primary"
    max_lag = view.settings.maximum_lag_on_failover
    why = {n: ineligibility(c, top_tl, best, best_name, max_lag, view) for n, c in table.items()}
    eligible = sorted((c for n, c in table.items() if not why[n]), key=_rank)
    old_leader = req.leader if req is not None else None
    pool = [c for c in eligible if c.name not in excluded and c.name != old_leader]
    if not pool and any(c.name == old_leader for c in eligible):
        pool = [c for c in eligible if c.name == old_leader]
    if not pool:
        others = sorted((n, w) for n, w in why.items() if w and n != me)
        mine = f"I am {why[me]}" if why[me] else "I am the old leader of the switchover"
        rest = f"; {_list(others)}" if others else ""
        return RaceOutcome(None, f"{note}no failover: no member is eligible ({mine}{rest})")
    winner = pool[0]
    mine_c = table[me]
    if winner.name == me:
        gate = sync_gate(view, local, peers, me)
        if gate:
            return RaceOutcome(None, f"{note}no failover: {gate}")
        tie = [c.name for c in pool[1:] if c.position == mine_c.position]
        tie_note = f" (tied with {', '.join(tie)}; first by priority, then name)" if tie else ""
        return RaceOutcome(
            me,
            f"{note}no leader: I am the most advanced eligible member at "
            f"{show_lsn(mine_c.position)} on timeline {mine_c.timeline}{tie_note}: "
            "taking the leader key",
        )
    if why[me]:
        return RaceOutcome(winner.name, f"{note}not racing: I am {why[me]}")
    if me == old_leader:
        return RaceOutcome(winner.name, f"{note}I was the leader of the switchover: not racing")
    if mine_c.position == winner.position:
        ahead = (
            f"{winner.name} is as far as me ({show_lsn(winner.position)}) and first by "
            "priority, then name"
        )
    else:
        ahead = (
            f"{winner.name} is ahead of me ({show_lsn(winner.position)} vs "
            f"{show_lsn(mine_c.position)})"
        )
    return RaceOutcome(winner.name, f"{note}waiting: {ahead}")
