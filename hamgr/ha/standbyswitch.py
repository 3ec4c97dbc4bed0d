"""The standby leader's side of an operator's switchover (or failover while it runs): pure.

As in Patroni, a switchover inside a standby cluster moves the leader key to another member,
which becomes the standby leader and replicates from the remote primary; nobody is promoted.
A standby has no shutdown checkpoint to hand over, so the guarantee is positional instead:

1. Probe the members and check the target as for a primary's switchover (switchover.py's
   pick_target: reachable, a running standby, not nofailover, on my timeline, within
   ``maximum_lag_on_failover`` of my position).
2. Stop receiving WAL from the remote primary (Detach ``for_switchover``): my position
   (received or replayed, whichever is further) is now final, and the remote's slot
   ``primary_slot_name`` is free for the new standby leader.
3. Keep the key until the target (the named candidate, or any eligible standby) holds at
   least that position, streamed from me; then release the key. The new standby leader thus
   needs no WAL the remote primary may already have dropped: the slot kept what I lacked.
4. The candidate takes the key through the failover race (race.py; as the race's winner in a
   standby cluster, it does not promote), re-points at the remote primary and clears the
   request (``request_aside``); I follow it as an ordinary member.

A target that does not reach my position within ``ttl`` seconds aborts the switchover: the
request is cleared and I replicate from the remote primary again, still holding the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from hamgr.dcs.model import ClusterView, LeaderKey, SwitchoverRequest
from hamgr.ha.actions import (
    Action,
    ClearSwitchover,
    Detach,
    FollowRemote,
    ProbePeers,
)
from hamgr.ha.inputs import LocalState, PeerProbe
from hamgr.ha.race import describe_request, fmt_wall
from hamgr.ha.switchover import pick_target, release_when_reached
from hamgr.lsn import show_lsn

__all__ = ["handover", "request_aside"]

Step = tuple[tuple[Action, ...], str]


def _mine(req: SwitchoverRequest, me: str) -> bool:
    """Whether the request asks me, the key holder, to hand the key over."""
    return req.candidate != me and req.leader in (None, me)


def handover(
    view: ClusterView,
    local: LocalState,
    peers: Mapping[str, PeerProbe] | None,
    key: LeaderKey,
    source: str,
) -> Step | None:
    """What the running standby leader does about a due request to hand its key over (None:
    no such request, carry on as the standby leader). ``source`` names the remote primary,
    for reasons."""
    req, pg = view.switchover, local.pg
    if req is None or not _mine(req, local.name) or not req.due(local.wall_now):
        return None
    what = describe_request(req)
    if pg.detached and local.switchover_stopped_at is not None:
        return _await_target(req, view, local, peers, key)
    if req.candidate is not None and view.member(req.candidate) is None:
        return (ClearSwitchover(req),), f"{what} refused: {req.candidate} is not a member"
    if peers is None:
        return (ProbePeers(),), f"{what} requested: asking the members for their state"
    target, why = pick_target(req, view, local, peers)
    if target is None:
        return (ClearSwitchover(req),), f"{what} refused: {why}"
    return (
        (Detach(for_switchover=True),),
        f"{what}: I stop receiving WAL from {source} so that my position is final, handing "
        f"the standby leader's role over to {target}",
    )


def _await_target(
    req: SwitchoverRequest,
    view: ClusterView,
    local: LocalState,
    peers: Mapping[str, PeerProbe] | None,
    key: LeaderKey,
) -> Step:
    mine = local.pg.position
    where = show_lsn(mine)
    return release_when_reached(
        req, view, local, peers, key,
        needed=mine,
        goal=f"reach my final position {where}",
        reached=f"reached my final position {where}",
        abort=(FollowRemote(),),
        abort_tail="replicating from the remote primary again",
    )  # fmt: skip


def request_aside(view: ClusterView, local: LocalState) -> Step:
    """What rides along the standby leader's usual step: a request that is over (it named me,
    or another leader) is cleared; a scheduled one of mine is noted."""
    req = view.switchover
    if req is None:
        return (), ""
    what = describe_request(req)
    if not _mine(req, local.name):
        return (ClearSwitchover(req),), f"the {what} is over (I am the standby leader): clearing it"
    if not req.due(local.wall_now):
        return (), f"{what} scheduled at {fmt_wall(req.scheduled_at or 0.0)}"
    return (), ""
