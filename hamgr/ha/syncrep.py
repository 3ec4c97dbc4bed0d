"""Synchronous replication: which standbys the primary's commits wait for, the store's record of
them, and who may take over without losing an acknowledged commit. Pure: no I/O.

**The promise.** The store's record (:class:`~hamgr.dcs.model.SyncState`: leader, members R,
acks k) says: every commit the leader acknowledged is on at least k members of R. Then any
``|R| - k + 1`` members of R include one holding every acknowledged commit (pigeonhole).

**Keeping it true: the order of writes.** PostgreSQL's rule (``FIRST n (...)`` or ``ANY n
(...)`` in synchronous_standby_names) guarantees each commit acknowledged under it is on n of
its listed standbys S. A record (R, k) is true while (a) S is within R and n >= k for the
commits acknowledged under the current rule, and (b) the commits acknowledged before that rule
took effect are on k members of R: proven once k members of R reported a flush position past
the primary's flush position read right after the change (the barrier, :class:`SyncBarrier`).
So :func:`plan_primary` moves from the current rule to a new one in this order:

1. Store first: widen the record to the union of the old and the new set, with the smaller k
   (a claim both rules make true: adding names to R never breaks it, and a smaller k is
   weaker). With nothing changing in PostgreSQL yet, this only promises less.
2. PostgreSQL second: the new synchronous_standby_names; the barrier is read once it is in force.
3. Store last: the new record (new set, new k), once k of the new set passed the barrier.

A crash between any two steps leaves a record that is true, only weaker than it could be; the
next primary cycle (or, after a failover, the new primary) goes on from there. So the store
never names fewer members than PostgreSQL waits for, and the record never promises more than
PostgreSQL delivered.

**Failover.** :func:`sync_gate` admits a candidate only when it sees ``|R| - k + 1`` members
of R (itself included) that have stopped receiving WAL (detached: primary_conninfo emptied,
no WAL receiver) and holds at least as much WAL as each. Detached members matter for the window
a frozen old primary leaves open: its PostgreSQL still runs and collects acknowledgements from
any standby still streaming from it. A commit needs k acknowledgements from R, and at most
``k - 1`` members of R lie outside the detached group counted, so once that group stopped
receiving, the old primary can acknowledge no further commit. In mode ``on`` only a member of R
may take over (Patroni's rule); k == |R| there, so one detached member of R suffices.

A new primary first records (itself, nobody, 0): its commits are on nobody else yet, so until
a standby is confirmed nobody may take over from it automatically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hamgr.dcs.model import ClusterView, MemberState, SyncState
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha.actions import Action, SetStandbyNames, SetSyncState
from hamgr.ha.inputs import LocalState, PeerProbe, Standby
from hamgr.postgres.syncrep import render_standby_names

ANY_STANDBY = "*"


@dataclass(frozen=True)
class SyncPlan:
    """What the primary does about synchronous replication now, and a note for the reason."""

    actions: tuple[Action, ...]
    note: str


@dataclass(frozen=True)
class Target:
    """The rule PostgreSQL should follow (``names``) and the record that goes with it."""

    names: str
    members: tuple[str, ...]
    acks: int


def _eligible(
    settings: DynamicSettings,
    standbys: Sequence[Standby],
    members: Mapping[str, MemberState],
    primary_lsn: int | None,
) -> dict[str, int]:
    """Standbys that may be synchronous, with their flush positions."""
    out: dict[str, int] = {}
    max_lag = settings.maximum_lag_on_syncnode
    for s in standbys:
        m = members.get(s.name)
        if m is None or m.tags.nosync or s.state != "streaming" or s.flush_lsn is None:
            continue
        if settings.synchronous_mode == "on" and m.tags.priority == 0:
            continue  # only a member of the set may take over: one that never may is no use
        if max_lag >= 0 and primary_lsn is not None and primary_lsn - s.flush_lsn > max_lag:
            continue
        out[s.name] = s.flush_lsn
    return out


def _target(
    settings: DynamicSettings, eligible: Mapping[str, int], current: SyncState
) -> Target | None:
    """The desired rule and record; None: no standby is eligible (strict mode keeps waiting)."""
    if not eligible:
        return None
    n = settings.synchronous_node_count
    if settings.synchronous_mode == "quorum":
        chosen = tuple(sorted(eligible))
        k = min(n, len(chosen))
        return Target(render_standby_names("ANY", k, chosen), chosen, k)
    # mode "on": keep the current synchronous standbys while they qualify, to avoid flapping;
    # fill up with the most advanced others.
    keep = [m for m in current.members if m in eligible][:n]
    others = sorted((m for m in eligible if m not in keep), key=lambda m: (-eligible[m], m))
    chosen = tuple(sorted([*keep, *others][:n]))
    return Target(render_standby_names("FIRST", len(chosen), chosen), chosen, len(chosen))


def current_record(view: ClusterView, me: str) -> SyncState:
    """The record as it stands for primary ``me``: absent, or another leader's, is nothing."""
    rec = view.sync
    return rec if rec is not None and rec.leader == me else SyncState(me)


def plan_primary(view: ClusterView, local: LocalState) -> SyncPlan:
    """The next step towards the synchronous rule the settings ask for (see module doc)."""
    settings, pg, me = view.settings, local.pg, local.name
    names = pg.sync_standby_names
    if names is None:
        return SyncPlan((), "")
    rec, rev = current_record(view, me), view.sync_revision
    if not settings.synchronous:
        # Off: the record goes first (it must not outlive the rule it describes: turned on
        # again, a stale record would promise commits acknowledged asynchronously meanwhile),
        # then PostgreSQL stops waiting.
        if view.sync is not None:
            return SyncPlan((SetSyncState(None, rev), *_clear(names)), "")
        return SyncPlan(_clear(names), "")
    members = {m.name: m for m in view.members}
    eligible = _eligible(settings, pg.standbys, members, pg.current_lsn)
    target = _target(settings, eligible, rec)
    if target is None:
        if settings.synchronous_mode_strict:
            if rec.members or names:
                listed = ", ".join(rec.members) or names
                return SyncPlan(
                    (),
                    f"synchronous_mode_strict: commits wait, no eligible synchronous standby "
                    f"streams ({listed})",
                )
            target = Target(ANY_STANDBY, (), 0)
        else:
            target = Target("", (), 0)
    barrier = local.sync_barrier
    if names != target.names or barrier is None or barrier.names != names:
        widened = SyncState(
            me, tuple(sorted({*rec.members, *target.members})), min(rec.acks, target.acks)
        )
        first: tuple[Action, ...] = (SetSyncState(widened, rev),) if widened != view.sync else ()
        return SyncPlan((*first, SetStandbyNames(target.names)), _describe(target))
    want = SyncState(me, target.members, target.acks)
    if want == view.sync:
        return SyncPlan((), _describe(target))
    passed = [m for m in target.members if _flushed(pg.standbys, m) >= barrier.lsn]
    if len(passed) >= target.acks:
        return SyncPlan((SetSyncState(want, rev),), _describe(target))
    behind = ", ".join(m for m in target.members if m not in passed)
    return SyncPlan((), f"{_describe(target)}; waiting for {behind} to confirm it caught up")


def _clear(names: str) -> tuple[Action, ...]:
    return (SetStandbyNames(""),) if names else ()


def _flushed(standbys: Sequence[Standby], name: str) -> int:
    return max((s.flush_lsn or 0 for s in standbys if s.name == name), default=-1)


def _describe(target: Target) -> str:
    if target.names == ANY_STANDBY:
        return "synchronous_mode_strict: commits wait until a standby streams"
    if not target.names:
        return "no eligible synchronous standby: replicating asynchronously"
    return f"commits wait for {target.names}"


def new_leader_record(view: ClusterView, me: str) -> tuple[Action, ...]:
    """Before a new leader promotes in synchronous mode: record that its commits are on nobody
    else yet (store first, since this promises less than the old record)."""
    fresh = SyncState(me)
    if not view.settings.synchronous or view.sync == fresh:
        return ()
    return (SetSyncState(fresh, view.sync_revision),)


def sync_gate(
    view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe], candidate: str
) -> str:
    """Why ``candidate`` may not take over in synchronous mode ("" if it may), as seen by
    ``local`` from its own state and the peers' probes."""
    settings = view.settings
    if not settings.synchronous:
        return ""
    rec = view.sync
    needed = rec.needed if rec is not None else None
    if rec is None or needed is None:
        whose = f" of {rec.leader}" if rec is not None else ""
        return (
            f"synchronous mode: the store records no synchronous standby{whose}, so commits "
            "it acknowledged may be on no other member: no automatic failover"
        )
    if settings.synchronous_mode == "on" and candidate not in rec.members:
        return f"not a synchronous standby of {rec.leader} (recorded: {', '.join(rec.members)})"
    seen: dict[str, int | None] = {}
    for name in rec.members:
        if name == local.name:
            if local.pg.detached:
                seen[name] = local.pg.position
        elif (p := peers.get(name)) is not None and p.reachable and p.detached:
            seen[name] = p.position
    if len(seen) < needed:
        got = ", ".join(sorted(seen)) or "none"
        return (
            f"sees {len(seen)} of the synchronous set ({', '.join(rec.members)}) stopped "
            f"receiving from {rec.leader} ({got}); needs {needed}"
        )
    mine = local.pg.position if candidate == local.name else peers[candidate].position
    ahead = sorted(n for n, pos in seen.items() if pos is None or mine is None or pos > mine)
    if ahead:
        return f"behind synchronous member {ahead[0]}, which may hold commits it lacks"
    return ""


def sync_role(view: ClusterView | None, name: str) -> str | None:
    """``"sync"`` or ``"quorum"`` when the current leader's record counts member ``name`` in
    its synchronous set (with a promise behind it), else None."""
    if view is None or view.leader is None or not view.settings.synchronous:
        return None
    rec = view.sync
    if rec is None or rec.leader != view.leader.name or not rec.acks or name not in rec.members:
        return None
    return "sync" if view.settings.synchronous_mode == "on" else "quorum"


def outside_sync_set(cluster: ClusterView, candidate: str) -> str:
    """Why ``candidate`` may lack acknowledged commits in synchronous mode ("" if it cannot)."""
    if not cluster.settings.synchronous:
        return ""
    rec = cluster.sync
    if rec is not None and rec.acks and candidate in rec.members:
        return ""
    listed = ", ".join(rec.members) if rec is not None and rec.acks else "none"
    return (
        f"{candidate} is not a synchronous standby (synchronous_mode "
        f"{cluster.settings.synchronous_mode}; recorded: {listed}): it may lack acknowledged "
        "commits"
    )
