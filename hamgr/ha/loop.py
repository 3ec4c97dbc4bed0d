"""The HA loop: observe, decide, act, publish; every loop_wait and at once on a store change.

The primary's lease keepalive runs on its own timer (every ttl/3), so slow loop work (a
pg_basebackup, a hung peer probe) never delays it; each success moves the fence deadline that
the fencer process enforces even when this process is frozen.

The view cache (issue 15; Patroni's etcd3 KVCache does the same): an idle cluster changes
nothing between cycles, so reading and decoding the whole scope every loop_wait buys nothing.
A cycle decides on its previous read instead of a new one only when ALL of these hold:
- it was started by a watch (from that read's revision + 1) that timed out with no event at
  all under the scope, member keys included, and with the watch in place and answering; on the
  embedded store the local member also vouched for its copy (same Raft term as the read, in
  touch with its leader, caught up): see ``Dcs.cached_cluster``;
- no write of this agent's own since that watch, no operator restart waiting, no reinitialize
  asked, no previous run's lease to resume;
- the read is younger than loop_wait + retry_timeout (``view_max_age``): silence from a store
  member that lags or is cut off hides changes, and age bounds for how long;
- decide() on it returns no action but a lease keepalive (``RenewLease``, which the holder
  asks for every cycle: it writes no key and changes nothing in PostgreSQL; the lease is
  renewed by its id, whatever the view). Anything to DO (write the store, change PostgreSQL,
  probe peers) is decided again on a fresh linearizable read.
Writes stay compare-and-set and the primary's right to run stays its lease keepalive and the
fencer, never this view.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from hamgr import clock, postgres
from hamgr.dcs.base import Dcs, DcsError
from hamgr.dcs.model import (
    ClusterView,
    MemberState,
    MemberTags,
    ParameterValue,
    PrimaryPosition,
    Role,
)
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError
from hamgr.ha.actions import Decision, Detach, ProbePeers, Reinitialize, RenewLease
from hamgr.ha.decide import decide
from hamgr.ha.execute import ActionRunner
from hamgr.ha.inputs import LocalPostgres, LocalState
from hamgr.ha.observe import (
    TimelineForks,
    UnledClaim,
    last_ran_as_primary,
    observe_postgres,
    primary_down_since,
    probe_peers,
    timeline_diverged,
    unled_claim,
)
from hamgr.ha.restartjob import RestartDesk, carry_out
from hamgr.ha.slots import SlotKeeper
from hamgr.ha.standbyexec import keep_standby_leader_conf
from hamgr.postgres import HeldConnection, PgSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """How this member presents itself to the others."""

    name: str
    api_url: str
    conn_url: str
    tags: MemberTags = field(default_factory=MemberTags)
    use_pg_rewind: bool = True
    reclone_on_rewind_failure: bool = False
    store_id: int = 0


CycleHook = Callable[[ClusterView, LocalPostgres, Decision, float], None]
KeepaliveHook = Callable[[float, bool, float], None]
StoreErrorHook = Callable[[str, bool], None]
ViewHook = Callable[[bool], None]


def view_max_age(settings: DynamicSettings) -> float:
    """How old a read may be for a cycle to decide on it again (see the module docstring).

    The next cycle starts loop_wait after the one that read, so an age of loop_wait alone
    would never let a read stand; retry_timeout more allows it, and the validated rule
    ``loop_wait + 2 * retry_timeout <= ttl`` keeps a view that silence made stale younger than
    a lease (ttl - retry_timeout): a leader key its holder lost is seen gone, at the latest,
    one loop later than with a read every cycle."""
    return settings.loop_wait + settings.retry_timeout


RESUME_TRIES = 3
"""Cycles a restarted agent tries to renew its previous run's lease before deciding anyway."""
SWITCHOVER_POLL = 0.05
"""Seconds between cycles while a stopped primary waits for its switchover candidate."""
RACE_POLL = 0.1
"""Seconds between cycles while a leaderless member waits on its peers in the race."""

CACHE_SAFE_ACTIONS: tuple[type, ...] = (RenewLease,)
"""The only actions a decision on a cached view may carry out (see the module docstring)."""


def settles_on_cache(decision: Decision) -> bool:
    """Whether a decision made on a cached view may be carried out as it is: it holds no
    action but those in CACHE_SAFE_ACTIONS. Else the cycle reads afresh and decides again."""
    return all(isinstance(x, CACHE_SAFE_ACTIONS) for x in decision.actions)


_LSN = re.compile(r"\b[0-9A-F]+/[0-9A-F]+\b")


def _gist(decision: Decision) -> tuple[tuple[str, ...], str]:
    return decision.kinds(), _LSN.sub("LSN", decision.reason)


class HaLoop:
    """One agent's HA loop; `last_*` attributes are what the REST API reports."""

    def __init__(
        self,
        me: Identity,
        dcs: Dcs,
        pg: PgSettings,
        runner: ActionRunner,
        http: aiohttp.ClientSession,
        *,
        settings: DynamicSettings,
        store_leader_here: Callable[[], bool] | None = None,
        on_cycle: CycleHook | None = None,
        on_keepalive: KeepaliveHook | None = None,
        on_store_error: StoreErrorHook | None = None,
        on_view_read: ViewHook | None = None,
        resume_lease: int | None = None,
        local_parameters: Mapping[str, ParameterValue] | None = None,
    ) -> None:
        """`on_cycle(view, pg, decision, seconds)` runs after every completed cycle and
        `on_keepalive(latency, ok, sent_at)` after every timed keepalive (metrics, systemd);
        `on_store_error(error, stopped)` after a cycle that could not read the store, `stopped`
        when that made this primary stop PostgreSQL (its lease deadline had passed);
        `on_view_read(reused)` after each cycle's cluster view was read from the store or
        taken from the cache (see the module docstring).
        `resume_lease` is the lease id an earlier process of this agent wrote down (see
        hamgr/ha/leasefile.py): the first cycles try to take it, and its leader key, back.
        `local_parameters` are this member's own ``postgresql.parameters``: with the cluster's
        they make the parameters PostgreSQL runs with (hamgr/ha/pgparams.py)."""
        self.me = me
        self.dcs = dcs
        self.pg = pg
        self.runner = runner
        self.http = http
        self.settings = settings
        self._bootstrap_settings = settings
        self._store_leader_here = store_leader_here
        self._on_cycle = on_cycle
        self._on_keepalive = on_keepalive
        self._on_store_error = on_store_error
        self._on_view_read = on_view_read
        self.views_reused = 0
        """Cycles that decided on the cached view instead of a new read."""
        self._quiet_wake = False
        """The wait before this cycle was a watch that timed out (see :meth:`_view`)."""
        self.last_view: ClusterView | None = None
        self.last_pg = LocalPostgres()
        self.last_decision: Decision | None = None
        self.last_member: MemberState | None = None
        self.last_loop_at: float | None = None
        self.loop_count = 0
        self._session_started = False
        self._slots = SlotKeeper(pg, me.name)
        self._unled_claim: UnledClaim | None = None
        self._primary_down_since: float | None = None
        self._forks = TimelineForks()
        self.held = HeldConnection(pg)
        """The observations' persistent connection to the local PostgreSQL."""
        self.restarts = RestartDesk()
        """Operator restarts (POST /restart), carried out in the cycle (hamgr/ha/restartjob.py)."""
        self.reinit_requested = False
        """Set by the REST API (POST /reinitialize); cleared once the data dir was emptied."""
        self.keepalive_errors = 0
        self.keepalive_rounds = 0
        """Keepalive timer rounds that renewed (or tried to renew) the lease."""
        """Keepalive timer rounds that raised (logged; the timer goes on)."""
        self._resume_lease = resume_lease
        self._resume_tries = 0
        self.local_parameters: Mapping[str, ParameterValue] = dict(local_parameters or {})
        """This member's own PostgreSQL parameters (replaced on a configuration reload)."""

    # -- the cycle --------------------------------------------------------------------------

    async def cycle(self) -> Decision | None:
        """One observe-decide-act round; None when the store could not be read."""
        started = clock.now()
        quiet, self._quiet_wake = self._quiet_wake, False
        self.restarts.wake.clear()  # this cycle sees what woke it
        pg = await observe_postgres(self.pg, self._forks, self.held)
        self.last_pg = pg
        self.runner.settle_watchdog(pg, clock.now())
        self.runner.lease.stepping_down = False
        if self._resume_lease is not None:
            # Before the first decision: a PostgreSQL left primary by my previous run stays
            # primary if its leader key is still attached to that run's lease. Without an
            # answer, decide nothing yet (a decision now would demote it), a few times.
            margin = self.settings.safety_margin
            outcome = await self.runner.resume(self._resume_lease, margin)
            self._resume_tries += 1
            if outcome is None and self._resume_tries < RESUME_TRIES:
                await self._store_unreachable(pg, DcsError("no answer to the lease renewal"))
                return None
            self._resume_lease = None
        try:
            view, settled = await self._view(pg, quiet)
        except DcsError as exc:
            await self._store_unreachable(pg, exc)
            return None
        self.last_view = view
        self.settings = view.settings
        # Timing changed live (hactl edit-config) reaches the running session: retry_timeout
        # bounds the next store call, a new ttl moves the keys onto a new lease at the next
        # keepalive (see ActionRunner.switch_lease), safety_margin and loop_wait are read from
        # self.settings at each keepalive and each wait.
        self.dcs.apply_timing(view.settings.ttl, view.settings.retry_timeout)
        self.runner.ttl = view.settings.ttl
        await self.runner.set_paused(view.settings.pause)
        self._track(view, pg)
        lease = self.runner.lease
        if self.reinit_requested and lease.leader_revision is not None:
            # Won a race meanwhile: the request was for a replica, and must not empty this
            # data directory some day later, when it follows again.
            log.warning("dropping the reinitialize request: this member holds the leader key")
            self.reinit_requested = False
        if await carry_out(self, view, pg):
            # An operator's restart ran in this cycle: decide on PostgreSQL as it is now.
            pg = await observe_postgres(self.pg, self._forks, self.held)
            self.last_pg = pg
        # On a cached view, the decision is the one that let it stand: nothing but a keepalive
        # (deciding again a moment later could act on it, e.g. a timeout passing in between).
        decision = settled if settled is not None else decide(view, self._local(view, pg))
        if any(isinstance(x, Detach) for x in decision.actions):
            # Stop receiving, then decide on the final position at once (not a loop later).
            self._log_decision(decision)
            if await self.runner.run(decision, view):
                pg = await observe_postgres(self.pg, self._forks, self.held)
                self.last_pg = pg
                decision = decide(view, self._local(view, pg))
        if any(isinstance(x, ProbePeers) for x in decision.actions):
            others = [m for m in view.members if m.name != self.me.name]
            probes = await probe_peers(self.http, others, timeout=view.settings.retry_timeout)
            decision = decide(view, self._local(view, pg), probes)
        self._log_decision(decision)
        self.last_decision = decision
        done = await self.runner.run(decision, view)
        if done and any(isinstance(x, Reinitialize) for x in decision.actions):
            self.reinit_requested = False
        self._follow_runner_settings()
        key = view.leader
        holder = key is not None and key.revision == self.runner.lease.leader_revision
        await self._slots.maintain(view, pg, holder, clock.now())
        await keep_standby_leader_conf(self.pg, view, pg, holder)
        await self._publish(view, pg, decision)
        self.last_loop_at = clock.now()
        self.loop_count += 1
        if self._on_cycle is not None:
            self._on_cycle(view, pg, decision, self.last_loop_at - started)
        return decision

    async def _view(self, pg: LocalPostgres, quiet: bool) -> tuple[ClusterView, Decision | None]:
        """The cluster view this cycle decides on: the previous read, with the decision (no
        action) that let it stand, when the cache rules allow it (see the module docstring;
        ``quiet``: this cycle was started by a watch that timed out); else a linearizable
        read, and None."""
        if (
            quiet
            and self._resume_lease is None
            and not self.reinit_requested
            and self.restarts.idle()
            and self.last_decision is not None
        ):
            cached = self.dcs.cached_cluster(view_max_age(self.settings))
            if cached is not None:
                cached = self._with_own_settings(cached)
                settled = self._decides_nothing(cached, pg)
                if settled is not None:
                    self.views_reused += 1
                    if self._on_view_read is not None:
                        self._on_view_read(True)
                    return cached, settled
        view = self._with_own_settings(await self.dcs.get_cluster())
        if self._on_view_read is not None:
            self._on_view_read(False)
        return view, None

    def _with_own_settings(self, view: ClusterView) -> ClusterView:
        if not view.initialize or not view.settings_revision:
            # Until the bootstrap writes the config key, the view carries the built-in defaults
            # (ttl 6 s, safety margin 2 s, no parameters), not the ttl this agent's lease was
            # granted with: a fence deadline computed from them lies in the past, and the
            # bootstrap's parameters would be taken away. Use our own until then.
            return dataclasses.replace(view, settings=self._bootstrap_settings)
        return view

    def _decides_nothing(self, view: ClusterView, pg: LocalPostgres) -> Decision | None:
        """decide() on ``view`` when it returns no action but those in CACHE_SAFE_ACTIONS,
        else None; the state it follows from view to view is left as it was (the cycle
        tracks it on the view it keeps)."""
        lease = self.runner.lease
        saved = lease.was_primary, self._unled_claim, self._primary_down_since
        try:
            self._track(view, pg)
            decision = decide(view, self._local(view, pg))
            return decision if settles_on_cache(decision) else None
        finally:
            lease.was_primary, self._unled_claim, self._primary_down_since = saved

    def _track(self, view: ClusterView, pg: LocalPostgres) -> None:
        """Follow, from view to view, what decide() needs to know of the past."""
        lease = self.runner.lease
        lease.was_primary = last_ran_as_primary(view, pg, lease.was_primary)
        self._unled_claim = unled_claim(view, self._unled_claim, clock.now())
        holds = view.leader is not None and view.leader.revision == lease.leader_revision
        self._primary_down_since = primary_down_since(
            holds, pg, self._primary_down_since, clock.now()
        )

    def slots_kept(self) -> tuple[str, ...]:
        """The replication slots this agent keeps as primary or standby leader (REST API)."""
        return self._slots.kept

    def _follow_runner_settings(self) -> None:
        """Take the runner's PostgreSQL settings once it applied new parameters (ApplyParameters),
        so that every later write of the config files renders them."""
        if self.runner.pg is not self.pg:
            self.pg = self.runner.pg
            self._slots.pg = self.pg

    def _local(self, view: ClusterView, pg: LocalPostgres) -> LocalState:
        lease = self.runner.lease
        return LocalState(
            name=self.me.name,
            now=clock.now(),
            wall_now=time.time(),
            pg=pg,
            tags=self.me.tags,
            leader_revision=lease.leader_revision,
            fence_at=lease.fence_at,
            use_pg_rewind=self.me.use_pg_rewind,
            reclone_on_rewind_failure=self.me.reclone_on_rewind_failure,
            # A failure against one leader says nothing about the next one: try again.
            rewind_failed=lease.rewind_failed
            and view.leader is not None
            and view.leader.name == lease.rewind_failed_against,
            timeline_diverged=timeline_diverged(view, pg, lease.was_primary),
            switchover_stopped_at=lease.switchover_stopped_at,
            store_leader_here=self._store_leader_here() if self._store_leader_here else False,
            claim_unled_since=self._unled_claim[1] if self._unled_claim else None,
            reinit_requested=self.reinit_requested,
            sync_barrier=lease.sync_barrier if pg.is_primary else None,
            primary_down_since=self._primary_down_since,
            local_parameters=self.local_parameters,
            clone_without_leader=self.runner.methods.clone_without_leader,
            applied_parameters=self.runner.pg.parameters,
            refused_parameters=self.runner.refused_parameters,
            bootstrap_unfinished=self.runner.bootstrap_unfinished(),
        )

    async def _store_unreachable(self, pg: LocalPostgres, exc: DcsError) -> None:
        """Without the store we decide nothing, but a primary past its deadline still stops
        (unless the cluster is paused, as last read: then PostgreSQL is left alone, see
        hamgr/ha/decide.py)."""
        log.warning("cannot read the cluster from the store: %s", exc)
        self.restarts.refuse_waiting(
            f"not restarting: the store is unreachable ({exc}), so the lease cannot be checked"
        )
        fence_at = self.runner.lease.fence_at
        if fence_at is None and self._resume_lease is not None and pg.is_primary:
            # Restarted, the previous run's lease not renewed yet: its deadline, which the
            # fencer still enforces, is the one in force (read, never extended).
            fence_at = await self.runner.inherited_deadline()
        late = fence_at is None or clock.now() >= fence_at
        stopped = False
        if pg.is_primary and late and self.runner.paused:
            log.warning("the store is unreachable; paused: not stopping PostgreSQL")
        elif pg.is_primary and late:
            log.error("lease deadline passed and the store is unreachable: stopping PostgreSQL")
            await postgres.stop(self.pg, "immediate")
            await self.runner.disarm_fencer()
            stopped = True
        if self._on_store_error is not None:
            self._on_store_error(str(exc), stopped)

    def _log_decision(self, decision: Decision) -> None:
        """One log line per change of decision (WAL positions moving do not count)."""
        previous = self.last_decision
        if previous is None or _gist(previous) != _gist(decision):
            log.info("decision: %s [%s]", decision.reason, ", ".join(decision.kinds()) or "wait")

    async def _publish(self, view: ClusterView, pg: LocalPostgres, decision: Decision) -> None:
        role: Role = "uninitialized"
        if pg.initialized:
            role = pg.role if pg.running and pg.role in ("primary", "replica") else "stopped"
        primary = role == "primary"
        state = MemberState(
            name=self.me.name,
            api_url=self.me.api_url,
            conn_url=self.me.conn_url,
            role=role,
            state="running" if pg.running else "stopped",
            timeline=pg.timeline,
            received_lsn=pg.current_lsn if primary else pg.received_lsn,
            replayed_lsn=pg.current_lsn if primary else pg.replayed_lsn,
            tags=self.me.tags,
            fence_token=(self.runner.lease.leader_revision or 0) if primary else 0,
            reason=decision.reason,
            paused=view.settings.pause,
            store_id=self.me.store_id,
            fencer=("armed" if self.runner.fencer_armed else "disarmed") if primary else "",
            pending_restart=pg.pending_restart,
            scheduled_restart=self.restarts.scheduled,
        )
        self.last_member = state
        try:
            await self.dcs.touch_member(state)
            self._session_started = True
        except DcsError as exc:
            log.warning("could not publish member state: %s", exc)

    def _racing(self) -> bool:
        view, decision = self.last_view, self.last_decision
        return (
            view is not None
            and view.leader is None
            and decision is not None
            and any(isinstance(x, ProbePeers) for x in decision.actions)
        )

    async def record_shutdown_position(self) -> None:
        """After a clean stop of my primary: write its shutdown checkpoint into the store, so
        that failover candidates compare themselves with how far it really got."""
        key, view = self.runner.lease.key, self.last_view
        if key is None or view is None or postgres.is_running(self.pg):
            return
        try:
            cd = await postgres.controldata(self.pg)
            if cd.state == "shut down":
                await self.dcs.set_position(
                    PrimaryPosition(self.me.name, cd.timeline, cd.checkpoint_lsn)
                )
        except (postgres.PostgresError, DcsError, ModelError) as exc:
            log.warning("could not record the shutdown checkpoint's position: %s", exc)

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until `stop` is set; the keepalive timer runs alongside."""
        self.runner.stop_requested = stop
        keeper = asyncio.create_task(self._keepalive_timer(stop), name="hamgr-keepalive")
        try:
            while not stop.is_set():
                started = clock.now()
                keeper = self._supervise_keepalive(keeper, stop)
                try:
                    await self.cycle()
                except Exception:
                    log.exception("HA loop cycle failed")
                wait = max(0.0, self.settings.loop_wait - (clock.now() - started))
                if self.runner.lease.switchover_stopped_at is not None:
                    # Stopped for a switchover: release the key as soon as the candidate has
                    # our shutdown checkpoint, not a whole loop later.
                    wait = min(wait, SWITCHOVER_POLL)
                elif self._racing():
                    # A failover race waits on the peers (e.g. to stop receiving): ask again
                    # soon rather than a whole loop later.
                    wait = min(wait, RACE_POLL)
                due = self.restarts.seconds_to_next(time.time())
                if due is not None:
                    wait = min(wait, due)  # a scheduled restart runs at its time, not later
                self._quiet_wake = await self._wait_for_change(stop, wait)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self.held.close()

    async def _wait_for_change(self, stop: asyncio.Event, timeout: float) -> bool:
        """Sleep up to `timeout`, waking early on a store change, an operator's restart or `stop`.

        True only when the store's watch itself ended the wait by timing out (no change): the
        first condition of the view cache. A watch that fails at once (store unreachable) must
        not make the loop spin: the rest of the wait is then slept out.
        """
        end = clock.now() + timeout
        watcher = asyncio.ensure_future(self.dcs.watch(timeout))
        stopper = asyncio.ensure_future(stop.wait())
        asked = asyncio.ensure_future(self.restarts.wake.wait())
        try:
            done, _ = await asyncio.wait(
                {watcher, stopper, asked}, timeout=timeout + 1.0, return_when="FIRST_COMPLETED"
            )
            if watcher in done and not watcher.cancelled() and watcher.exception() is not None:
                log.debug("store watch failed: %s", watcher.exception())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, end - clock.now()))
                return False
            return done == {watcher} and watcher.result() is False
        finally:
            for t in (watcher, stopper, asked):
                t.cancel()
            for t in (watcher, stopper, asked):
                with contextlib.suppress(asyncio.CancelledError, DcsError):
                    await t

    async def _keepalive_timer(self, stop: asyncio.Event) -> None:
        """Renew the session lease every ttl/3, whatever the loop is busy with.

        An error in one round (a bug, a hook that raises) is logged and the timer goes on with
        the next round: left dead, renewal would fall to the slower loop, and a primary whose
        loop is busy (a long step) would be fenced although the store is fine.
        """
        while not stop.is_set():
            started = clock.now()
            try:
                await self._keepalive_round(started)
            except Exception:
                self.keepalive_errors += 1
                log.exception("lease keepalive timer: the round failed; going on with the next")
            period = min(self.settings.ttl, self.runner.lease.granted_ttl or math.inf) / 3
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, period - (clock.now() - started)))

    async def _keepalive_round(self, started: float) -> None:
        # A key taken in this agent's first cycle (the bootstrap race) is renewed too:
        # initdb can outlast the ttl, and that cycle publishes nothing until it ends.
        if self._session_started or self.runner.lease.key is not None:
            ok = await self.runner.keepalive(self.settings.safety_margin)
            self.keepalive_rounds += 1
            if self._on_keepalive is not None:
                self._on_keepalive(clock.now() - started, ok, started)

    def _supervise_keepalive(
        self, keeper: asyncio.Task[None], stop: asyncio.Event
    ) -> asyncio.Task[None]:
        """The keepalive timer task, started again if it ended while the loop still runs."""
        if not keeper.done() or stop.is_set():
            return keeper
        error = None if keeper.cancelled() else keeper.exception()
        log.error("the lease keepalive timer ended (%r); starting it again", error)
        self.keepalive_errors += 1
        return asyncio.create_task(self._keepalive_timer(stop), name="hamgr-keepalive")
