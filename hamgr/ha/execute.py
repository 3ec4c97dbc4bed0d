"""Carrying out decide()'s actions: the coordination store, the local PostgreSQL, the fencer.

`ActionRunner.run(decision, view)` executes the actions in order and stops at the first that
fails or loses a race (see hamgr/ha/actions.py for that contract). It also owns the agent's
lease bookkeeping: the leader key's revision it holds, and the fence deadline of the last
successful keepalive, handed to the fencer process while PostgreSQL runs as primary.

The longer actions are carried out in modules of their own: the bootstrap and its abandonment
(hamgr/ha/bootstrapexec.py), cloning, pg_rewind, re-cloning and emptying the data directory
(hamgr/ha/cloneexec.py), and the standby leader's (hamgr/ha/standbyexec.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from hamgr import clock, postgres
from hamgr.config.values import split_address
from hamgr.dcs.base import Dcs, DcsError, KeepaliveResult
from hamgr.dcs.model import ClusterView, LeaderKey
from hamgr.dcs.settings import DynamicSettings
from hamgr.fencer.client import (
    FencerClient,
    FenceRefused,
    FencerError,
    postmaster_identity,
)
from hamgr.fencer.keeper import FencerKeeper
from hamgr.fencer.protocol import FenceStatus
from hamgr.fencer.watchdog import Watchdog
from hamgr.ha import actions as a
from hamgr.ha.applyparams import ParametersRefused, apply_parameters
from hamgr.ha.bootstrapexec import abandon_bootstrap, bootstrap_marker, run_bootstrap
from hamgr.ha.callbacks import PRIMARY, REPLICA, CallbackRunner
from hamgr.ha.cloneexec import clone_from, empty_data_dir, reclone, rewind
from hamgr.ha.inputs import LocalPostgres, SyncBarrier
from hamgr.ha.leaseclock import LeaseClock, Renewal
from hamgr.ha.slots import slot_name
from hamgr.ha.standbyexec import run_standby_action
from hamgr.ha.syncrep import ANY_STANDBY
from hamgr.postgres import PgSettings, PostgresError
from hamgr.postgres.conf import STANDBY_SIGNAL, clear_sync_conf, write_sync_conf
from hamgr.postgres.files import write_file
from hamgr.postgres.methods import MemberMethods
from hamgr.postgres.process import resolve_run_as
from hamgr.postgres.settings import ParamValue
from hamgr.postgres.syncrep import detach, set_synchronous_standby_names

log = logging.getLogger(__name__)

LONG_STEP = 900.0
"""Seconds a clone, rewind or bootstrap may take before a watchdog counts the loop as hung."""


@contextlib.contextmanager
def _no_watchdog(seconds: float) -> Iterator[None]:
    yield


StoreTransfer = Callable[[str], Awaitable[None]]

STARTS_POSTGRES = (
    a.AcquireLeader,
    a.Bootstrap,
    a.CloneFrom,
    a.StartReplica,
    a.Follow,
    a.CloneRemote,
    a.FollowRemote,
    a.Rewind,
    a.Reclone,
    a.Reinitialize,
    a.Promote,
    a.StartPostgres,
)
"""Actions that start PostgreSQL (or make it primary): never carried out by a stopping agent,
which would otherwise leave a PostgreSQL running with no agent (a hand-over's last cycle
decided "starting as a standby of the new leader", and the agent exited)."""


def _standby_without_upstream(pg: PgSettings) -> None:
    """Make the next start a standby's, whoever it follows (nobody yet, or a stale upstream).

    Without standby.signal the data dir of a fenced primary, or one whose failed pg_rewind
    cleared its standby config, would start as a primary that holds no leader key and accepts
    writes: in a leaderless cluster every member did, each demoting and restarting in turn.
    """
    write_file(Path(pg.data_dir) / STANDBY_SIGNAL, "", resolve_run_as(pg.os_user))
    clear_sync_conf(pg)


def _renewal(result: KeepaliveResult) -> Renewal:
    return Renewal(result.lease_id, result.sent_at, result.ttl)


@dataclass
class LeaseState:
    """What this agent holds: the leader key it took, and the current fence deadline."""

    key: LeaderKey | None = None
    fence_at: float | None = None
    rewind_failed: bool = False
    rewind_failed_against: str | None = None
    rewind_failures: int = 0
    rewind_retry_at: float = 0.0
    switchover_stopped_at: float | None = None
    granted_ttl: float | None = None
    # The data dir last ran as primary (only such a one can have diverged from the leader).
    was_primary: bool = False
    # Set when this agent starts taking its primary down: the REST API stops answering
    # /primary 200 at once, not one loop later. The next observation clears it.
    stepping_down: bool = False
    # What the last change of synchronous_standby_names returned (see ha/syncrep.py).
    sync_barrier: SyncBarrier | None = None

    @property
    def leader_revision(self) -> int | None:
        """The fencing token of the key held, if any."""
        return self.key.revision if self.key is not None else None


class ActionRunner:
    """Executes actions against the store, PostgreSQL and the fencer."""

    def __init__(
        self,
        name: str,
        dcs: Dcs,
        pg: PgSettings,
        *,
        fencer: FencerClient | None = None,
        store_transfer: StoreTransfer | None = None,
        bootstrap_settings: DynamicSettings | None = None,
        remove_data_on_rewind_failure: bool = False,
        watchdog: Watchdog | None = None,
        methods: MemberMethods | None = None,
        callbacks: CallbackRunner | None = None,
    ) -> None:
        self.name = name
        self.methods = methods or MemberMethods()
        """How this member makes its data (replica and bootstrap methods, post_bootstrap)."""
        self.callbacks = callbacks
        """The operator's callbacks (postgresql.callbacks), told of starts, stops and role
        changes this runner makes (None: none configured)."""
        self.watchdog = watchdog
        self.dcs = dcs
        self.pg = pg
        self.fencer = fencer
        self.fence_keeper = FencerKeeper(fencer) if fencer is not None else None
        self.store_transfer = store_transfer
        self.bootstrap_settings = bootstrap_settings
        self.remove_data_on_rewind_failure = remove_data_on_rewind_failure
        self.lease = LeaseState()
        # Wraps steps that may legitimately take long (clone, rewind, bootstrap) so that a
        # watchdog watching the loop does not take them for a hang.
        self.long_step: Callable[[float], AbstractContextManager[None]] = _no_watchdog
        self.safety_margin = (bootstrap_settings or DynamicSettings()).safety_margin
        self.ttl = (bootstrap_settings or DynamicSettings()).ttl
        self.rewinds = 0
        """pg_rewind runs since the agent started (whatever their outcome)."""
        # Told the outcome of every pg_rewind run: "rewound", "nothing" or "failed" (metrics).
        self.on_rewind: Callable[[str], None] | None = None
        self.paused = False
        """The cluster is paused (as last read): hands off PostgreSQL, the fencer disarmed."""
        self.fencer_armed = False
        """The fencer holds a deadline of ours (as its last answer said)."""
        self.refused_parameters: dict[str, ParamValue] | None = None
        """The last effective parameters hamgr or PostgreSQL refused (None: none)."""
        self.fencer_deadline: float | None = None
        """The deadline the fencer said it holds, in its last answer to ARM or CAP."""
        self.lease_clock = LeaseClock()
        """The leases the keys may be on, with their last renewals (the fence follows it)."""
        self.stop_requested: asyncio.Event | None = None
        """Set once the agent is stopping: from then on nothing starts PostgreSQL (see
        :data:`STARTS_POSTGRES`), whatever a cycle of the hand-over decides."""

    # -- the lease --------------------------------------------------------------------------

    async def keepalive(self, safety_margin: float) -> bool:
        """Renew the session lease; on success move the fence deadline and re-arm the fencer.

        Then, when the cluster's ttl changed, move the keys onto a lease of the new ttl
        (:meth:`switch_lease`)."""
        self.safety_margin = safety_margin
        try:
            result = await self.dcs.keepalive()
        except DcsError as exc:
            log.warning("lease keepalive failed: %s", exc)
            return False
        if not result.ok:
            log.warning("lease keepalive: the lease is gone (expired or revoked)")
            self.lease.key = None
            return False
        self._count(self.lease_clock.renewed(_renewal(result)), safety_margin)
        await self.arm_fencer()
        self._feed_watchdog()
        await self.switch_lease(safety_margin)
        return True

    def _count(self, lease_clock: LeaseClock, safety_margin: float) -> None:
        """Take ``lease_clock`` as what the keys' leases grant: the fence deadline follows."""
        self.lease_clock = lease_clock
        self.lease.fence_at = lease_clock.deadline(safety_margin)
        current = lease_clock.current
        self.lease.granted_ttl = current.ttl if current is not None else None

    def _feed_watchdog(self) -> None:
        current = self.lease_clock.current
        if (
            self.watchdog is not None
            and not self.paused
            and self.lease.key is not None
            and self.lease.fence_at
            and current is not None
        ):
            self.watchdog.feed(self.lease.fence_at, current.expires_no_earlier, current.ttl)

    async def switch_lease(self, safety_margin: float) -> bool:
        """Move the keys onto a lease of the cluster's current ttl, if theirs has another one.

        The fencer is moved to the earlier expiry of both leases BEFORE the keys move (a
        shorter ttl fences earlier at once); only once the move is confirmed does the new
        lease alone count (a longer ttl fences later only from then). True if the keys moved.
        """
        pending: list[int] = []

        async def before_move(grant: KeepaliveResult) -> None:
            pending.append(grant.lease_id)
            self._count(self.lease_clock.switching(_renewal(grant)), safety_margin)
            await self.arm_fencer()

        try:
            grant = await self.dcs.switch_lease(before_move)
        except DcsError as exc:
            # The keys may be on either lease: the fence keeps the earlier expiry of both.
            log.warning("could not move the keys onto a lease of the new ttl: %s", exc)
            return False
        if grant is None:
            if pending:
                self._count(self.lease_clock.abandoned(pending[0]), safety_margin)
            return False
        self._count(self.lease_clock.switched(grant.lease_id), safety_margin)
        log.info("moved the keys onto lease %d (ttl %g s)", grant.lease_id, grant.ttl)
        await self.arm_fencer()
        self._feed_watchdog()
        return True

    async def resume(self, lease_id: int, safety_margin: float) -> bool | None:
        """A restarted agent takes its earlier process's lease back, and the leader key with it.

        Nothing is assumed from the past: the lease is this agent's only if a keepalive on it
        succeeds now, the fence deadline is counted from that keepalive (the fencer, which may
        still hold the previous process's deadline, is re-armed only from it), and the leader
        key is ours only while it names this member and is attached to that lease. Then the
        HA loop sees a holder with a valid deadline: a PostgreSQL still running as primary
        stays primary (no demotion, no failover). True when the leader key was taken back,
        False when it was not ours (or the lease is gone), None when the store did not answer
        (try again).
        """
        self.safety_margin = safety_margin
        try:
            result, key = await self.dcs.adopt_lease(lease_id)
        except DcsError as exc:
            log.warning("could not renew the lease of my previous run (%d): %s", lease_id, exc)
            return None
        if not result.ok:
            log.info("the lease of my previous run (%d) is gone, and its keys with it", lease_id)
            return False
        self._count(LeaseClock().renewed(_renewal(result)), safety_margin)
        if key is None:
            log.info("renewed the lease of my previous run (%d); it holds no leader key", lease_id)
            return False
        self.lease.key = key
        log.info(
            "resumed leadership: the leader key (fencing token %d) is still attached to the "
            "lease of my previous run (%d), renewed now",
            key.revision,
            lease_id,
        )
        await self.arm_fencer()
        self._feed_watchdog()
        return True

    async def inherited_deadline(self) -> float | None:
        """The deadline the fencer holds for the postmaster running now (armed by an earlier
        process of this agent), or None: read only, never moved."""
        if self.fencer is None:
            return None
        ident = postmaster_identity(Path(self.pg.data_dir))
        try:
            status = await self.fencer.query()
        except (FencerError, OSError) as exc:
            log.warning("cannot ask the fencer for its deadline: %s", exc)
            return None
        if ident is None or not status.armed or (status.pid, status.start_time) != ident:
            return None
        return status.fence_at

    async def set_paused(self, paused: bool) -> None:
        """Follow the cluster's pause: paused, the fencer and the watchdog are disarmed (hands
        off PostgreSQL: a store hiccup during maintenance must not kill the primary); resumed,
        the fencer gets the deadline of the last successful keepalive again at once."""
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            log.warning(
                "the cluster is paused: disarming the fencer; PostgreSQL is left alone (no "
                "fencing, no demotion) until the cluster is resumed"
            )
            await self.disarm_fencer()
        else:
            log.info("the cluster is resumed: arming the fencer again")
            await self.arm_fencer()

    async def arm_fencer(self) -> None:
        """Hand the fencer the current deadline while this agent's PostgreSQL may be primary
        (never while paused: see :meth:`set_paused`).

        A fencer that does not answer is started again (FencerKeeper) and armed at once; when
        that fails too, PostgreSQL stops (never a primary without a fence) and, once the fence
        has been failing for a lease ttl, the leader key is released for a replica to take over.
        """
        if self.fencer is None or self.lease.leader_revision is None or self.paused:
            return
        ident = postmaster_identity(Path(self.pg.data_dir))
        if ident is None or self.lease.fence_at is None:
            return
        try:
            try:
                status = await self._arm(self.lease.fence_at, ident)
            except FenceRefused:
                # The fencer holds a later deadline than the keys' lease grants now (a
                # shorter ttl, a larger safety_margin): move it back.
                status = await self.fencer.cap(self.lease.fence_at)
                log.info("moved the fence back to the lease's deadline")
            self.fencer_armed = True
            self.fencer_deadline = status.fence_at
        except (FencerError, OSError) as exc:
            # Unfenced, a frozen agent could leave this primary writing past its lease: the
            # primary stops instead (availability is lost, never safety).
            log.critical("cannot arm the fencer (%s): stopping PostgreSQL now", exc)
            await postgres.stop(self.pg, "immediate")
            await self._give_up_if_unfenced_too_long()

    async def _arm(self, fence_at: float, ident: tuple[int, int]) -> FenceStatus:
        """Arm; on an unreachable fencer start a new one and arm that (raises if it fails)."""
        assert self.fencer is not None and self.fence_keeper is not None
        keeper = self.fence_keeper
        try:
            status = await self.fencer.arm(fence_at, *ident)
        except FenceRefused:
            keeper.armed_ok()
            raise
        except (FencerError, OSError) as exc:
            keeper.failed(clock.now())
            log.error("cannot arm the fencer (%s): starting a new one", exc)
            if not await keeper.revive(self._granted_ttl()):
                raise
            status = await self.fencer.arm(fence_at, *ident)
        keeper.armed_ok()
        return status

    def _granted_ttl(self) -> float:
        return self.lease.granted_ttl or self.ttl

    async def _fencer_allows_primary(self, what: str) -> bool:
        """PostgreSQL runs as primary only with a fencer that answers (started again if it
        died); otherwise not, and after a ttl without one the leader key is given back."""
        keeper = self.fence_keeper
        if keeper is None:
            return True
        if await keeper.alive(self._granted_ttl()):
            return True
        keeper.failed(clock.now())
        log.error("not %s: no fencer answers and none could be started", what)
        await self._give_up_if_unfenced_too_long()
        return False

    async def _give_up_if_unfenced_too_long(self) -> None:
        """Release the leader key once the fence has been failing for a lease ttl: a member
        that cannot be fenced must not keep the primary's place (a replica takes over)."""
        keeper, bound = self.fence_keeper, self._granted_ttl()
        if keeper is None or not keeper.unfenced_too_long(clock.now(), bound):
            return
        if postgres.is_running(self.pg):
            await postgres.stop(self.pg, "immediate")
        if self.lease.key is not None:
            log.critical(
                "no fencer for %.1f s (at least the lease ttl, %g s): releasing the leader key "
                "so that a replica takes over",
                clock.now() - (keeper.failing_since or clock.now()),
                bound,
            )
            self.lease.stepping_down = True
            await self.dcs.release_leader(self.lease.key)
            self.lease.key = None

    async def disarm_fencer(self) -> None:
        """PostgreSQL no longer runs as primary under our key: nothing to fence."""
        if self.watchdog is not None:
            self.watchdog.disable()
        if self.fencer is None:
            return
        try:
            await self.fencer.disarm()
            self.fencer_armed = False
            self.fencer_deadline = None
        except (FencerError, OSError) as exc:
            log.error("could not disarm the fencer: %s", exc)

    def settle_watchdog(self, pg: LocalPostgres, now: float) -> None:
        """Close the watchdog once it guards nothing: PostgreSQL does not run as primary (as
        last observed) and this agent holds no valid lease (e.g. the fencer stopped PostgreSQL
        while the store was unreachable, so no demotion of the agent's own disarmed it)."""
        wd = self.watchdog
        if wd is None or not wd.active:
            return
        may_be_primary = pg.running and pg.role in ("primary", "unknown")
        fence_at = self.lease.fence_at
        lease_valid = self.lease.key is not None and fence_at is not None and now < fence_at
        if not may_be_primary and not lease_valid:
            wd.disable()

    async def _watchdog_allows_primary(self, what: str) -> bool:
        """With ``watchdog.mode: required``, PostgreSQL runs as primary only while the device is
        open; otherwise the leader key is given back for another member to take."""
        if self.watchdog is None or self.watchdog.ready_for_primary():
            return True
        log.error(
            "not %s: watchdog mode is required and %s is not armed; giving the leader key back",
            what,
            self.watchdog.device,
        )
        self.lease.stepping_down = True
        if self.lease.key is not None:
            await self.dcs.release_leader(self.lease.key)
            self.lease.key = None
        await self.disarm_fencer()
        return False

    # -- running a decision -----------------------------------------------------------------

    async def run(self, decision: a.Decision, view: ClusterView) -> bool:
        """Execute the decision's actions in order; False at the first that did not succeed."""
        for action in decision.actions:
            if isinstance(action, a.ProbePeers):
                continue  # the loop handles probes before running a decision
            try:
                ok = await self._one(action, view)
            except (PostgresError, DcsError, OSError) as exc:
                log.error("%s failed: %s", type(action).__name__, exc)
                ok = False
            if not ok:
                return False
        return True

    async def _one(self, action: a.Action, view: ClusterView) -> bool:
        pg = self.pg
        stopping = self.stop_requested is not None and self.stop_requested.is_set()
        if stopping and isinstance(action, STARTS_POSTGRES):
            log.info("stopping: not carrying out %s", type(action).__name__)
            return False
        if isinstance(action, a.TakeInitialize):
            return await self.dcs.take_initialize(action.sysid)
        if isinstance(action, a.SetInitialize):
            await self.dcs.set_initialize(action.sysid)
            return True
        if isinstance(action, a.DropBootstrapClaim):
            log.warning(
                "the bootstrap claim (initialize written at revision %d) has no leader: "
                "its claimant died; deleting it so the bootstrap race starts again",
                action.revision,
            )
            await self.dcs.delete_initialize(revision=action.revision)
            return True
        if isinstance(action, a.RenewLease):
            return await self.keepalive(view.settings.safety_margin)
        if isinstance(action, a.AcquireLeader):
            if not await self._fencer_allows_primary("taking the leader key"):
                return False
            key = await self.dcs.acquire_leader()
            if key is None:
                return False
            self.lease.key = key
            log.info("took the leader key (fencing token %d)", key.revision)
            return await self.keepalive(view.settings.safety_margin)
        if isinstance(action, a.ReleaseLeader):
            self.lease.stepping_down = True
            released = await self.dcs.release_leader(action.key)
            self.lease.key = None
            await self.disarm_fencer()
            return released
        if isinstance(action, a.AbandonBootstrap):
            return await abandon_bootstrap(self, action.claim_revision)
        if isinstance(action, a.Bootstrap):
            if not await self._watchdog_allows_primary("bootstrapping"):
                return False
            with self.long_step(LONG_STEP):
                return await run_bootstrap(self, view, LONG_STEP)
        if isinstance(action, a.CloneFrom):
            with self.long_step(LONG_STEP):
                await clone_from(self, view, action.source)
            return True
        if isinstance(action, a.StartReplica):
            if action.leader is not None:
                host, port = self.address_of(view, action.leader)
                postgres.configure_standby(pg, host, port, self.slot_for(view, action.leader))
            else:
                _standby_without_upstream(pg)
            await postgres.start(pg, wait=False)  # a standby may need its upstream to be ready
            self.started_as(REPLICA)
            return True
        if isinstance(action, a.Follow):
            host, port = self.address_of(view, action.leader)
            was_running = postgres.is_running(pg)
            await postgres.follow(pg, host, port, self.slot_for(view, action.leader))
            if not was_running:
                self.started_as(REPLICA)
            return True
        if isinstance(action, a.CloneRemote | a.FollowRemote):
            with self.long_step(LONG_STEP):
                return await run_standby_action(self, action, view)
        if isinstance(action, a.Rewind):
            with self.long_step(LONG_STEP):
                return await rewind(self, view, action.leader)
        if isinstance(action, a.Reclone):
            with self.long_step(LONG_STEP):
                return await reclone(self, view, action.leader)
        if isinstance(action, a.Reinitialize):
            with self.long_step(LONG_STEP):
                return await empty_data_dir(self)
        if isinstance(action, a.Promote):
            if not await self._watchdog_allows_primary("promoting"):
                return False
            if not await self._fencer_allows_primary("promoting"):
                return False
            if action.strict:
                # Read at promotion: the new primary acknowledges nothing before a standby has it.
                write_sync_conf(pg, ANY_STANDBY)
                await postgres.reload(pg)
            await postgres.promote(pg)
            self.lease.sync_barrier = None
            await self.arm_fencer()
            if self.callbacks is not None:
                self.callbacks.role_changed(PRIMARY)
            return True
        if isinstance(action, a.Detach):
            await detach(pg)
            # Only a standby leader's handover waits on this instant; any other detach ends
            # an older one's (a stale instant would cut the next handover's wait short).
            self.lease.switchover_stopped_at = clock.now() if action.for_switchover else None
            return True
        if isinstance(action, a.SetSyncState):
            written = await self.dcs.set_sync(action.state, action.expected_revision)
            if not written:
                log.info("the synchronous-standby record changed meanwhile; deciding again")
            return written
        if isinstance(action, a.SetStandbyNames):
            lsn = await set_synchronous_standby_names(pg, action.names)
            self.lease.sync_barrier = SyncBarrier(action.names, lsn)
            log.info("synchronous_standby_names is now %r", action.names)
            return True
        if isinstance(action, a.RecordPosition):
            await self.dcs.set_position(action.position)
            return True
        if isinstance(action, a.Demote):
            self.lease.stepping_down = True
            await postgres.stop(pg, action.mode)
            await self.disarm_fencer()
            if self.callbacks is not None:
                self.callbacks.stopped(PRIMARY, demoting=True)
            if action.for_switchover:
                self.lease.switchover_stopped_at = clock.now()
            return True
        if isinstance(action, a.StopPostgres):
            self.lease.stepping_down = True
            await postgres.stop(pg, action.mode)
            await self.disarm_fencer()
            if self.callbacks is not None:
                self.callbacks.stopped()
            return True
        if isinstance(action, a.StartPostgres):
            if not await self._watchdog_allows_primary("starting PostgreSQL as primary"):
                return False
            if not await self._fencer_allows_primary("starting PostgreSQL as primary"):
                return False
            await postgres.start(pg)
            await self.arm_fencer()
            self.started_as(PRIMARY)
            return True
        if isinstance(action, a.ClearSwitchover):
            self.lease.switchover_stopped_at = None
            return await self.dcs.set_switchover(None, expected=action.expected)
        if isinstance(action, a.AppendHistory):
            await self.dcs.append_history(action.entry)
            return True
        if isinstance(action, a.ApplyParameters):
            return await self._apply_parameters(action.as_dict())
        if isinstance(action, a.TransferStoreLeadership):
            if self.store_transfer is not None:
                await self.store_transfer(action.to)
            return True
        raise AssertionError(f"unknown action {action!r}")

    async def _apply_parameters(self, parameters: dict[str, ParamValue]) -> bool:
        """Apply ``parameters`` (hamgr/ha/applyparams.py); only once applied are they this
        runner's (``pg.parameters``, what every later config write renders), so a failed
        reload is tried again next cycle. Refused ones are remembered
        (:attr:`refused_parameters`, logged once) and not tried again until they change."""
        if parameters == self.refused_parameters:
            return False
        try:
            new = await apply_parameters(self.pg, parameters)
        except ParametersRefused as exc:
            log.error(
                "PostgreSQL parameters refused, keeping those in force until they change: %s",
                exc,
            )
            self.refused_parameters = parameters
            return False
        self.refused_parameters = None
        old = self.pg.parameters
        changed = sorted(
            k for k in old.keys() | parameters.keys() if old.get(k) != parameters.get(k)
        )
        log.info("PostgreSQL parameters applied and reloaded: %s", ", ".join(changed) or "none")
        self.pg = new
        self.reloaded()
        return True

    def reloaded(self, role: str | None = None) -> None:
        """PostgreSQL was reloaded: the on_reload callback, with ``role`` (else the role last
        reported, else what the leader key says)."""
        if self.callbacks is not None:
            fallback = PRIMARY if self.lease.key is not None else REPLICA
            self.callbacks.fire("on_reload", role or self.callbacks.role or fallback)

    def started_as(self, role: str) -> None:
        """PostgreSQL was started in ``role``: on_start or on_role_change (the callbacks)."""
        if self.callbacks is not None:
            self.callbacks.started(role)

    def slot_for(self, view: ClusterView, upstream: str) -> str | None:
        """The slot to stream through from `upstream`: this member's, on the leader, when the
        cluster uses slots (only the leader creates them, see SlotKeeper); else none."""
        leader = view.leader.name if view.leader is not None else None
        return slot_name(self.name) if view.settings.use_slots and upstream == leader else None

    def address_of(self, view: ClusterView, member: str) -> tuple[str, int]:
        """``member``'s PostgreSQL address (host, port), as it publishes it in the store."""
        m = view.member(member)
        if m is None:
            raise DcsError(f"member {member} is not registered in the store")
        return split_address(m.conn_url)

    def bootstrap_unfinished(self) -> bool:
        """Whether the data directory holds what a failed or interrupted bootstrap left."""
        return bootstrap_marker(self.pg).exists()
