"""decide(): the HA agent's pure core, from what it observed to what it does, and why.

Order of precedence, first match wins:

0. What a bootstrap of mine that did not finish left (failed, or the agent killed halfway):
   stop it, give the key and my claim back, empty the data directory (AbandonBootstrap), unless
   the store already names its system as the cluster's. Not while paused.
1. Fencing: a PostgreSQL running as primary whose lease deadline (``fence_at``) has passed is
   demoted at once (immediate): its key may already be someone else's. Not while paused.
2. A data directory of another system than the cluster's: refuse to join, stay stopped.
3. Pause: hands off PostgreSQL, as in Patroni: no automatic PostgreSQL actions, no demotion
   (not even past the lease deadline, nor with the store unreachable), and the fencer and the
   watchdog are disarmed (ActionRunner.set_paused), so a store hiccup during maintenance does
   not kill the primary. The key follows a primary that runs (renewed, taken when free,
   released when its PostgreSQL is no longer primary).

   What then keeps two primaries apart is no longer the lease but the pause itself: it is an
   operator's explicit choice, and while paused no member promotes on its own (no failover
   race; a switchover waits until resume). The one promotion is a manual failover to a named
   candidate, which the REST API accepts only once the old primary's agent reports its
   PostgreSQL stopped, or when the operator forces it, told that two primaries may then
   accept writes (hamgr/agent/apiactions.py check_paused_failover). The one gap, which Patroni
   shares: a primary cut off from the store while paused cannot learn of the resume, so after a
   resume the others may elect a new leader while it still runs, until it reaches the store again
   and demotes. Resume only with the primary reachable.
4. I hold the leader key: renew it, keep PostgreSQL primary (start, promote; give the key back
   when it has not come up as primary within ``primary_start_timeout``), repair the
   initialize key, record new timelines and my WAL position, manage the synchronous standbys
   (syncrep.py), handle a switchover, keep the store's leadership away. In a standby cluster
   (``standby_cluster`` set) be the standby leader instead: standby.py (a switchover there
   hands the role over without promoting anyone: standbyswitch.py).
5. Another member holds it: be its standby (clone, start, re-point, rewind or re-clone), and
   demote at once if my PostgreSQL still runs as primary (my lease is lost).
6. Nobody holds it: bootstrap race for a new cluster, or the failover race (race.py); in
   synchronous mode a standby first stops receiving from the old primary.

Whichever step decided, a change of the effective PostgreSQL parameters is applied at the end
of its actions (pgparams.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from hamgr.dcs.model import ClusterView, LeaderKey, PrimaryPosition, TimelineEntry
from hamgr.ha.actions import (
    AbandonBootstrap,
    AcquireLeader,
    Action,
    AppendHistory,
    Bootstrap,
    ClearSwitchover,
    CloneFrom,
    Decision,
    Demote,
    Detach,
    DropBootstrapClaim,
    Follow,
    ProbePeers,
    Promote,
    Reclone,
    RecordPosition,
    Reinitialize,
    ReleaseLeader,
    RenewLease,
    Rewind,
    SetInitialize,
    StartPostgres,
    StartReplica,
    StopPostgres,
    TakeInitialize,
    TransferStoreLeadership,
)
from hamgr.ha.inputs import LocalState, PeerProbe
from hamgr.ha.pgparams import with_parameters
from hamgr.ha.race import describe_request, failover_race
from hamgr.ha.standby import as_standby_leader, bootstrap_standby
from hamgr.ha.switchover import leader_switchover
from hamgr.ha.syncrep import new_leader_record, plan_primary
from hamgr.lsn import show_lsn


def decide(
    view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe] | None = None
) -> Decision:
    """The actions this agent takes now, and the reason an operator reads.

    ``peers`` are the other members' probes, given only when a previous decision asked for
    them (ProbePeers); entries for ``local.name`` are ignored. Whatever the step, changed
    PostgreSQL parameters are applied last (pgparams.py).
    """
    return with_parameters(_decide(view, local, peers), view, local)


def _decide(
    view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe] | None
) -> Decision:
    """decide() before the parameters: the steps of the module's docstring, in order."""
    key = view.leader
    holder = key is not None and key.name == local.name and key.revision == local.leader_revision
    for step in (_unfinished_bootstrap, _fence, _foreign_system):
        found = step(view, local, holder)
        if found is not None:
            return found
    if view.settings.pause:
        return _paused(view, local, holder)
    if key is not None and holder:
        return _as_holder(view, local, peers, key)
    if key is not None:
        return _as_follower(view, local, key)
    return _no_leader(view, local, peers)


def _unfinished_bootstrap(view: ClusterView, local: LocalState, holder: bool) -> Decision | None:
    if not local.bootstrap_unfinished:
        return None
    mine = local.pg.system_identifier
    if mine is not None and view.initialize == str(mine):
        return None  # it finished after all: the store names its system as the cluster's
    what = "my data directory holds what a bootstrap of mine that did not finish left"
    if view.settings.pause:
        return Decision((), f"paused: {what}; not touching it")
    claim = view.initialize_revision if holder and view.initialize == "" else None
    return Decision(
        (AbandonBootstrap(claim_revision=claim or None),),
        f"{what}: stopping it, giving the bootstrap race back and emptying the data directory",
    )


def _fence(view: ClusterView, local: LocalState, holder: bool) -> Decision | None:
    if view.settings.pause:
        return None  # hands off PostgreSQL: see the module's docstring, step 3
    pg = local.pg
    maybe_primary = pg.role == "primary" or (
        pg.role == "unknown" and local.leader_revision is not None
    )
    if not (pg.running and maybe_primary):
        return None
    if local.fence_at is not None and local.now >= local.fence_at:
        late = local.now - local.fence_at
        return Decision(
            (Demote("immediate"),),
            f"fencing: no keepalive succeeded before my lease deadline ({late:.1f} s ago); "
            "stopping PostgreSQL at once, the leader key may already be another member's",
        )
    if holder and local.fence_at is None:
        return Decision(
            (Demote("immediate"),),
            "fencing: I hold the leader key but know no lease deadline; stopping PostgreSQL",
        )
    return None


def _foreign_system(view: ClusterView, local: LocalState, holder: bool) -> Decision | None:
    mine = local.pg.system_identifier
    if not view.initialize or mine is None or str(mine) == view.initialize:
        return None
    reason = (
        f"refusing to join: my data directory belongs to system {mine}, "
        f"the cluster is system {view.initialize}"
    )
    if view.settings.pause:
        return Decision((), f"paused: {reason}")
    actions: list[Action] = [StopPostgres("fast")] if local.pg.running else []
    if holder and view.leader is not None:
        actions.append(ReleaseLeader(view.leader))
    return Decision(tuple(actions), f"{reason}; staying stopped")


def _paused(view: ClusterView, local: LocalState, holder: bool) -> Decision:
    """Hands off PostgreSQL; the one promotion is a manual failover the REST API accepted
    (hamgr/agent/apiactions.py check_paused_failover: the old primary's agent reported its
    PostgreSQL stopped, or the operator forced it, taking the risk of two primaries)."""
    pg, key, req = local.pg, view.leader, view.switchover
    manual = req if req is not None and req.kind == "failover" and req.due(local.wall_now) else None
    note = ""
    if req is not None and manual is None:
        note = f"; the {describe_request(req)} waits until resume"
    if key is not None and holder:
        if pg.is_primary and manual is not None and manual.candidate == local.name:
            return Decision(
                (RenewLease(), ClearSwitchover(manual)),
                "paused: I am the leader after the manual failover to me",
            )
        if pg.is_primary and manual is not None:
            return Decision(
                (ReleaseLeader(key),),
                f"paused: a forced failover to {manual.candidate}: giving the leader key up; my "
                "PostgreSQL is left running as primary (stop it: two primaries may accept writes)",
            )
        standby_leader = view.settings.standby_cluster is not None and pg.role == "replica"
        if pg.is_primary or (standby_leader and pg.running):
            return Decision((RenewLease(),), f"paused: I am the leader, no automatic actions{note}")
        return Decision(
            (ReleaseLeader(key),),
            "paused: my PostgreSQL is not running as primary; releasing the leader key "
            f"instead of promoting it back{note}",
        )
    if key is None:
        if pg.is_primary:
            return Decision(
                (AcquireLeader(),),
                f"paused: nobody holds the leader key and my PostgreSQL runs as primary: "
                f"taking the key{note}",
            )
        if (
            manual is not None
            and manual.candidate == local.name
            and pg.running
            and pg.role == "replica"
        ):
            return Decision(
                (AcquireLeader(), *_promotion(view, local)),
                "paused: manual failover to me: taking the leader key and promoting",
            )
        return Decision((), f"paused: no leader, and no automatic failover while paused{note}")
    if pg.is_primary:
        return Decision(
            (),
            f"paused: my PostgreSQL runs as primary but {key.name} holds the leader key; "
            f"not demoting while paused{note}",
        )
    return Decision((), f"paused: no automatic actions (leader {key.name}){note}")


def _as_holder(
    view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe] | None, key: LeaderKey
) -> Decision:
    pg = local.pg
    if local.fence_at is None or local.now >= local.fence_at:
        return Decision(
            (RenewLease(),),
            "I hold the leader key but my lease deadline has passed; not running PostgreSQL as "
            "primary until a keepalive succeeds",
        )
    renew: tuple[Action, ...] = (RenewLease(),)
    if view.settings.standby_cluster is not None:
        return as_standby_leader(view, local, peers, key, renew, _upkeep(view, local))
    if not pg.initialized:
        if view.initialize == "" and pg.data_dir_empty:
            return Decision(
                (*renew, Bootstrap()), "I won the initialize race: bootstrapping a new cluster"
            )
        return Decision(
            (ReleaseLeader(key),),
            "I hold the leader key but my data directory holds no cluster: releasing it",
        )
    handover = leader_switchover(view, local, peers, key)
    if pg.is_primary:
        extra, why = handover or ((), "")
        sync = plan_primary(view, local)
        # No volatile numbers here: the reason is logged whenever it changes.
        status = f"I am the leader (fencing token {key.revision})"
        notes = "; ".join(n for n in (sync.note, why) if n)
        return Decision(
            (*renew, *_upkeep(view, local), *sync.actions, *extra, *_position(view, local)),
            f"{status}; {notes}" if notes else status,
        )
    if handover is not None:
        return Decision((*renew, *handover[0]), handover[1])
    if pg.running and pg.role == "replica":
        return Decision(
            (*renew, *_promotion(view, local)), "I hold the leader key: promoting my standby"
        )
    timed_out = _start_timed_out(view, local, key)
    if timed_out is not None:
        return timed_out
    if pg.running:
        return Decision(renew, "I hold the leader key; PostgreSQL is starting, role not known yet")
    return Decision(
        (*renew, StartPostgres()), "I hold the leader key: starting PostgreSQL as primary"
    )


def _start_timed_out(view: ClusterView, local: LocalState, key: LeaderKey) -> Decision | None:
    """primary_start_timeout, as Patroni: the key holder whose PostgreSQL has not been up as
    primary for that long (counted from ``local.primary_down_since``; 0 = at once) gives the
    key back, so that a replica takes over instead of the holder retrying forever."""
    timeout = view.settings.primary_start_timeout
    since = local.primary_down_since
    waited = 0.0 if since is None else local.now - since
    if waited < timeout:
        return None
    stop: tuple[Action, ...] = (StopPostgres("immediate"),) if local.pg.running else ()
    return Decision(
        (*stop, ReleaseLeader(key)),
        f"my PostgreSQL has not come up as primary within primary_start_timeout "
        f"({timeout:g} s; down for {waited:.1f} s): releasing the leader key for a replica to "
        "take over",
    )


def _promotion(view: ClusterView, local: LocalState) -> tuple[Action, ...]:
    """Promote, after recording in synchronous mode that no other member holds my commits."""
    if view.settings.standby_cluster is not None:
        return ()  # a standby cluster's new leader follows the remote primary (standby.py)
    strict = view.settings.synchronous and view.settings.synchronous_mode_strict
    return (*new_leader_record(view, local.name), Promote(strict=strict))


def _position(view: ClusterView, local: LocalState) -> tuple[Action, ...]:
    """Record how far this primary got, when that moved (last: a failed write of it must not
    hold up anything else)."""
    pg = local.pg
    if pg.current_lsn is None or pg.timeline is None:
        return ()
    here = PrimaryPosition(local.name, pg.timeline, pg.current_lsn)
    return () if view.position == here else (RecordPosition(here),)


def _upkeep(view: ClusterView, local: LocalState) -> tuple[Action, ...]:
    """A running primary's housekeeping: initialize key, history, store leadership."""
    pg, me = local.pg, local.name
    out: list[Action] = []
    if pg.system_identifier is not None and view.initialize != str(pg.system_identifier):
        sysid = str(pg.system_identifier)
        out.append(TakeInitialize(sysid) if view.initialize is None else SetInitialize(sysid))
    tl, parent = pg.timeline, pg.timeline_parent
    if tl is not None and parent is None:
        parent = tl - 1
    recorded = view.history[-1].timeline if view.history else 0
    if (
        tl is not None
        and parent is not None
        and tl > view.timeline
        and parent > recorded
        and pg.timeline_switch_lsn is not None
    ):
        why = promotion_reason(view, me, local.wall_now)
        entry = TimelineEntry(parent, pg.timeline_switch_lsn, why, local.wall_now, me)
        out.append(AppendHistory(entry))
    if local.store_leader_here:
        standbys = [
            m.name
            for m in view.members
            if m.name != me and m.role == "replica" and m.state == "running"
        ]
        if standbys:
            out.append(TransferStoreLeadership(standbys[0]))
    return tuple(out)


def promotion_reason(view: ClusterView, me: str, wall_now: float) -> str:
    """Why ``me`` became primary, for the cluster history: a switchover or a failover, and
    whether an operator (or a stopping agent) asked for it or it was automatic.

    Read in the new primary's first cycles, while the request that led to the promotion is
    still stored (the new primary clears it in the same cycle, after recording the history).
    A reason that starts with ``switchover`` is a planned handover; any other is a failover.
    """
    req = view.switchover
    if req is not None and req.due(wall_now) and req.candidate in (None, me) and req.leader != me:
        by = REQUESTERS[req.requested_by]
        if req.kind == "switchover":
            return f"switchover from {req.leader} to {me}, requested by {by}"
        return f"failover to {me}, requested by {by}"
    return f"failover to {me}, automatic: the leader key had expired or was released"


REQUESTERS = {"operator": "the operator", "shutdown": "the leader's agent on its shutdown"}
"""How a history reason names who asked (SwitchoverRequest.requested_by)."""


def _as_follower(view: ClusterView, local: LocalState, key: LeaderKey) -> Decision:
    pg, leader = local.pg, key.name
    if pg.is_primary:
        if leader == local.name and local.leader_revision is None:
            # A restarted agent whose previous run's lease could not be taken back (see
            # ActionRunner.resume): the key is not renewable, and expires.
            return Decision(
                (Demote("immediate"),),
                f"the leader key (revision {key.revision}) names me from a previous run whose "
                "lease I could not take back, while my PostgreSQL runs as primary: demoting at "
                "once",
            )
        lost = "my lease is lost: " if local.leader_revision is not None else ""
        return Decision(
            (Demote("immediate"),),
            f"{lost}{leader} holds the leader key (revision {key.revision}) while my PostgreSQL "
            "runs as primary: demoting at once",
        )
    if leader == local.name:
        return Decision(
            (),
            f"the leader key names me from an earlier session (revision {key.revision}) that I "
            "cannot renew; waiting for it to expire",
        )
    member = view.member(leader)
    if member is None:
        return Decision((), f"leader {leader} has not published its address yet; waiting")
    if local.reinit_requested and pg.initialized:
        stop: tuple[Action, ...] = (StopPostgres("fast"),) if pg.running else ()
        return Decision(
            (*stop, Reinitialize()),
            f"reinitializing on request: emptying my data directory to clone it again from "
            f"leader {leader}",
        )
    if not pg.initialized:
        if not pg.data_dir_empty:
            return Decision(
                (),
                "my data directory is not empty but holds no PostgreSQL cluster; not touching "
                "it (empty it to let me clone)",
            )
        if view.initialize == "":
            # As Patroni: no replica is made before the bootstrap has finished (its methods
            # would only fail against a leader that is still making the cluster).
            return Decision((), f"leader {leader} is still bootstrapping; waiting to clone it")
        source = next(
            (
                m.name
                for m in view.members
                if m.tags.clonefrom and m.name != local.name and m.state == "running"
                if m.role in ("replica", "primary")
            ),
            leader,
        )
        via = "" if source == leader else f" (tagged clonefrom; leader is {leader})"
        return Decision((CloneFrom(source),), f"cloning from {source}{via}")
    if local.timeline_diverged:
        if member.state != "running":
            return Decision(
                (),
                f"my timeline diverged from leader {leader}'s, whose PostgreSQL is not "
                "running yet; waiting before pg_rewind",
            )
        return _diverged(local, leader)
    if not pg.running:
        return Decision((StartReplica(leader),), f"starting as a standby of leader {leader}")
    if pg.role != "replica":
        return Decision((), f"PostgreSQL is starting, role not known yet (leader {leader})")
    if pg.upstream != member.conn_url:
        return Decision(
            (Follow(leader),),
            f"re-pointing replication from {pg.upstream or 'nowhere'} to leader {leader} "
            f"at {member.conn_url}",
        )
    return Decision((), f"following leader {leader} (received {show_lsn(pg.received_lsn)})")


def _diverged(local: LocalState, leader: str) -> Decision:
    stop: tuple[Action, ...] = (StopPostgres("fast"),) if local.pg.running else ()
    what = f"my timeline diverged from leader {leader}'s"
    if local.use_pg_rewind and not local.rewind_failed:
        return Decision((*stop, Rewind(leader)), f"{what}: rewinding with pg_rewind")
    why = "pg_rewind failed" if local.rewind_failed else "pg_rewind is disabled (use_pg_rewind)"
    if local.reclone_on_rewind_failure:
        return Decision((*stop, Reclone(leader)), f"{what} and {why}: cloning it again")
    return Decision(
        stop,
        f"{what} and {why}; staying stopped: re-cloning is not allowed "
        "(postgresql.remove_data_directory_on_rewind_failure)",
    )


def _no_leader(
    view: ClusterView, local: LocalState, peers: Mapping[str, PeerProbe] | None
) -> Decision:
    pg = local.pg
    if view.initialize is None:
        sc = view.settings.standby_cluster
        fresh = not local.pg.initialized and local.pg.data_dir_empty
        if sc is not None and fresh and not local.tags.nofailover:
            return bootstrap_standby(sc)
        return _bootstrap_race(local)
    if view.initialize == "" and not pg.is_primary:
        return _claimed_without_leader(view, local)
    if not pg.initialized:
        if view.initialize and local.clone_without_leader and pg.data_dir_empty:
            return Decision(
                (CloneFrom(None),),
                "no leader runs; creating my data with a replica method that needs none "
                "(no_leader)",
            )
        return Decision((), "no leader to clone from; waiting for one")
    if pg.is_primary:
        lost = "my lease is lost: " if local.leader_revision is not None else ""
        return Decision(
            (Demote("immediate"),),
            f"{lost}nobody holds the leader key while my PostgreSQL runs as primary: "
            "demoting at once",
        )
    if not pg.running:
        return Decision(
            (StartReplica(None),),
            "no leader: starting PostgreSQL as a standby to take part in the failover race",
        )
    if pg.role != "replica":
        return Decision((), "no leader; PostgreSQL is starting, role not known yet")
    if not pg.detached:
        return Decision(
            (Detach(),),
            "no leader: stopping WAL receipt from the old primary before the failover race "
            "(it must not acknowledge commits through me, nor send me WAL past the fork)",
        )
    if peers is None:
        return Decision(
            (ProbePeers(),), "no leader: asking the other members for their state before the race"
        )
    outcome = failover_race(view, local, peers)
    if outcome.winner == local.name:
        return Decision((AcquireLeader(), *_promotion(view, local)), outcome.reason)
    return Decision((ProbePeers(),), outcome.reason)


def _claimed_without_leader(view: ClusterView, local: LocalState) -> Decision:
    """The bootstrap claim is there but no leader: its claimant takes the leader key right after
    claiming, so a claim left without one for a whole ttl belongs to a claimant that died."""
    since, ttl = local.claim_unled_since, view.settings.ttl
    if since is not None and view.initialize_revision and local.now - since >= ttl:
        return Decision(
            (DropBootstrapClaim(view.initialize_revision),),
            f"the cluster was claimed for bootstrap but no leader appeared within ttl ({ttl:g} s): "
            "its claimant died; giving the bootstrap race back",
        )
    return Decision(
        (),
        "another member is bootstrapping the cluster (initialize claimed, no leader yet); "
        f"waiting (the claim is dropped if no leader appears within ttl, {ttl:g} s)",
    )


def _bootstrap_race(local: LocalState) -> Decision:
    pg = local.pg
    if local.tags.nofailover:
        return Decision(
            (), "no cluster in the store yet; tagged nofailover, I wait for another to create it"
        )
    if pg.initialized:
        if pg.system_identifier is None:
            return Decision(
                (), "no cluster in the store yet and my data directory's system is unknown"
            )
        return Decision(
            (TakeInitialize(str(pg.system_identifier)),),
            "no cluster in the store yet: claiming it for my existing data directory "
            f"(system {pg.system_identifier})",
        )
    if not pg.data_dir_empty:
        return Decision(
            (),
            "no cluster in the store yet, and my data directory is not empty but holds no "
            "PostgreSQL cluster; not touching it",
        )
    return Decision(
        (TakeInitialize(""), AcquireLeader(), Bootstrap()),
        "no cluster yet: racing for the initialize key to bootstrap it",
    )
