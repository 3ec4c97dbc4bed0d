"""The leader's side of an operator's switchover (or failover while a leader runs).

Steps, one per cycle: probe the members; check the target (the named candidate, or the best
eligible standby); stop PostgreSQL with a shutdown checkpoint (Demote fast); keep the key until
a target has RECEIVED that checkpoint record, so no acknowledged write is lost; release the key.
The candidate then takes the key (see race.py) and clears the request once it runs as primary.
A target that does not receive the checkpoint within ``ttl`` seconds aborts the switchover: the
request is cleared and PostgreSQL starts again as primary, still holding the key. The wait and
release (``release_when_reached``) is shared with a standby leader's handover (standbyswitch.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from hamgr.dcs.model import ClusterView, LeaderKey, SwitchoverRequest
from hamgr.ha.actions import (
    Action,
    ClearSwitchover,
    Demote,
    ProbePeers,
    ReleaseLeader,
    StartPostgres,
)
from hamgr.ha.inputs import LocalState, PeerProbe
from hamgr.ha.race import describe_request, fmt_bytes, fmt_wall
from hamgr.ha.syncrep import outside_sync_set
from hamgr.lsn import show_lsn

Step = tuple[tuple[Action, ...], str]


def _target_problem(p: PeerProbe | None, local: LocalState, max_lag: int, view: ClusterView) -> str:
    """Why member ``p`` cannot take over from me now ("" if it can)."""
    pg = local.pg
    if p is None or not p.reachable:
        return "not reachable"
    if p.nofailover:
        return "tagged nofailover"
    if not p.running or p.role != "replica":
        return f"not a running standby (state {p.state}, role {p.role})"
    if pg.timeline is not None and p.timeline != pg.timeline:
        return f"on timeline {p.timeline}, not on mine ({pg.timeline})"
    mine = pg.position  # a primary's write position, a standby leader's received/replayed one
    if p.position is None or mine is None:
        return "of unknown WAL position"
    lag = mine - p.position
    if lag > max_lag:
        return f"{fmt_bytes(lag)} behind me (maximum_lag_on_failover {fmt_bytes(max_lag)})"
    return outside_sync_set(view, p.name)


def pick_target(
    req: SwitchoverRequest, view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe]
) -> tuple[str | None, str]:
    """The member to hand over to, or None and why there is none (also used by a standby
    cluster's standby leader, standbyswitch.py)."""
    max_lag = view.settings.maximum_lag_on_failover
    if req.candidate is not None:
        why = _target_problem(peers.get(req.candidate), local, max_lag, view)
        return (None, f"{req.candidate} is {why}") if why else (req.candidate, "")
    names = sorted(n for n in peers if n != local.name)
    problems = {n: _target_problem(peers[n], local, max_lag, view) for n in names}
    fit = [n for n in names if not problems[n]]
    if not fit:
        listed = "; ".join(f"{n} is {problems[n]}" for n in names) or "no other members"
        return None, f"no standby is eligible ({listed})"
    return min(fit, key=lambda n: (-(peers[n].position or 0), n)), ""


def leader_switchover(
    view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe] | None, key: LeaderKey
) -> Step | None:
    """What the key holder does about ``view.switchover`` (None: carry on as usual).

    Acts while PostgreSQL runs as primary (checks, then Demote fast) and while it is stopped
    for the switchover (wait for the checkpoint, then release); otherwise the usual path runs.
    """
    req = view.switchover
    if req is None:
        return None
    what, me, pg = describe_request(req), local.name, local.pg
    mine = req.candidate != me and req.leader in (None, me)
    if not pg.is_primary:
        stopped_for_it = not pg.running and local.switchover_stopped_at is not None
        return _await_checkpoint(req, view, local, peers, key) if mine and stopped_for_it else None
    if not mine:
        return (ClearSwitchover(req),), f"the {what} is over (I am the leader): clearing it"
    if not req.due(local.wall_now):
        return (), f"{what} scheduled at {fmt_wall(req.scheduled_at or 0.0)}"
    if req.candidate is not None and view.member(req.candidate) is None:
        return (ClearSwitchover(req),), f"{what} refused: {req.candidate} is not a member"
    if peers is None:
        return (ProbePeers(),), f"{what} requested: asking the members for their state"
    target, why = pick_target(req, view, local, peers)
    if target is None:
        return (ClearSwitchover(req),), f"{what} refused: {why}"
    return (
        (Demote("fast", for_switchover=True),),
        f"{what}: stopping PostgreSQL with a shutdown checkpoint, handing over to {target}",
    )


def _await_checkpoint(
    req: SwitchoverRequest,
    view: ClusterView,
    local: LocalState,
    peers: Mapping[str, PeerProbe] | None,
    key: LeaderKey,
) -> Step:
    checkpoint = local.pg.checkpoint_lsn
    where = show_lsn(checkpoint)
    # The checkpoint location is where the record STARTS: the standby must be past it.
    return release_when_reached(
        req, view, local, peers, key,
        needed=None if checkpoint is None else checkpoint + 1,
        goal=f"receive my shutdown checkpoint {where}",
        reached=f"received my shutdown checkpoint {where}",
        abort=(StartPostgres(),),
        abort_tail="starting again as primary",
    )  # fmt: skip


def release_when_reached(
    req: SwitchoverRequest,
    view: ClusterView,
    local: LocalState,
    peers: Mapping[str, PeerProbe] | None,
    key: LeaderKey,
    *,
    needed: int | None,
    goal: str,
    reached: str,
    abort: tuple[Action, ...],
    abort_tail: str,
) -> Step:
    """The key holder's last step of a handover, its PostgreSQL stopped (a primary) or
    detached (a standby leader): release the key once a target holds WAL up to ``needed``.

    Targets are the named candidate, or else every other member; each must still be an
    eligible standby (running, a replica, not tagged nofailover since the first check). After
    ``ttl`` seconds without one, the request is cleared and ``abort`` runs. ``goal`` and
    ``reached`` word the wait ("receive my shutdown checkpoint 0/3000000" / "received ...").
    """
    what = describe_request(req)
    waited = local.now - (local.switchover_stopped_at or local.now)
    ttl = view.settings.ttl
    names = [] if peers is None else _targets(req, local, peers)
    got = {} if peers is None else _eligible_positions(names, peers)
    at = "positions unknown" if peers is None else _positions(names, peers, got)
    if waited > ttl:
        return (
            (ClearSwitchover(req), *abort),
            f"{what} aborted: no standby {reached} within {ttl:g} s ({at}); {abort_tail}",
        )
    if peers is None or needed is None:
        return (ProbePeers(),), f"{what}: waiting for the standbys' positions"
    done = sorted(n for n, lsn in got.items() if lsn is not None and lsn >= needed)
    if done:
        return (ReleaseLeader(key),), f"{what}: {done[0]} {reached}: releasing the leader key"
    return (ProbePeers(),), f"{what}: waiting for a standby to {goal} ({at})"


def _targets(
    req: SwitchoverRequest, local: LocalState, peers: Mapping[str, PeerProbe]
) -> list[str]:
    """The members a handover may go to: the candidate, or every other member probed."""
    return [req.candidate] if req.candidate else sorted(n for n in peers if n != local.name)


def _eligible_positions(names: list[str], peers: Mapping[str, PeerProbe]) -> dict[str, int | None]:
    """The WAL position of each of `names` that is still an eligible standby."""
    return {
        n: p.position
        for n in names
        if (p := peers.get(n)) is not None and p.running and p.role == "replica"
        if p.priority > 0
    }


def _positions(
    names: list[str], peers: Mapping[str, PeerProbe], got: Mapping[str, int | None]
) -> str:
    """Where each target stands, for the wait's and the abort's words (why no one qualified:
    behind, no answer, or no longer an eligible standby)."""
    parts = []
    for n in names:
        probe = peers.get(n)
        if n in got:
            parts.append(f"{n} at {show_lsn(got[n])}")
        elif probe is None or not probe.reachable:
            parts.append(f"{n} did not answer")
        else:
            parts.append(f"{n} not eligible")
    return ", ".join(parts) or "none eligible"
