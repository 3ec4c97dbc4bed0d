"""Operator restarts carried out by the HA loop, in its cycle (never beside it).

The REST API hands a restart to the :class:`RestartDesk` (now: :meth:`RestartDesk.ask`, which
waits for the outcome; later: :meth:`RestartDesk.schedule`); the loop calls :func:`carry_out`
between reading the cluster and deciding, so no observation, decision or action of the loop
meets a PostgreSQL in the middle of its restart (no spurious start, rewind or reinit of a
server that is only restarting). The rules (filters, fencing, schedule, timeout) are
hamgr/ha/restartplan.py's; this module does the I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hamgr import clock, postgres
from hamgr.dcs.model import ClusterView
from hamgr.dcs.restartrequest import RestartRequest, iso_time
from hamgr.ha.actions import Decision, ReleaseLeader, StopPostgres
from hamgr.ha.inputs import LocalPostgres
from hamgr.ha.restartplan import RestartFacts, after_slow_start, refusal, scheduled_step

if TYPE_CHECKING:
    from hamgr.ha.loop import HaLoop

log = logging.getLogger(__name__)

Outcome = tuple[bool, str]
"""(restarted, message): what POST /restart answers (200 or 503)."""


@dataclass
class _Asked:
    request: RestartRequest
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    started: bool = False


class RestartDesk:
    """Restart requests between the REST API and the HA loop of one agent.

    At most one scheduled restart (Patroni's rule: a second one is refused until the first is
    cancelled or done) and one immediate restart at a time. ``wake`` is set when an immediate
    restart waits (or the schedule changed, to publish it), so the loop's sleep ends at once;
    the loop clears it as each cycle begins.
    """

    def __init__(self) -> None:
        self.scheduled: RestartRequest | None = None
        self._postmaster_seen: float | None = None
        """The postmaster's start time first observed while the restart was scheduled."""
        self._asked: _Asked | None = None
        self.wake = asyncio.Event()

    def schedule(self, request: RestartRequest) -> bool:
        """Keep ``request`` (it has ``at``) for the loop; False if one is scheduled already."""
        if self.scheduled is not None:
            return False
        self.scheduled = request
        self._postmaster_seen = None
        self.wake.set()  # published at the next cycle, at once
        return True

    def cancel(self) -> bool:
        """Drop the scheduled restart; False when there was none."""
        found, self.scheduled = self.scheduled is not None, None
        self.wake.set()
        return found

    async def ask(self, request: RestartRequest, wait: float) -> Outcome:
        """Have the loop restart now; its outcome, or a failure once ``wait`` seconds passed.

        A restart the loop has not begun by then is withdrawn (nothing was done); one under
        way goes on, and the answer says so."""
        if self._asked is not None:
            return False, "a restart is already in progress"
        asked = self._asked = _Asked(request)
        self.wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(asked.done), wait)
        except TimeoutError:
            if asked.started:
                return False, f"postgres is still restarting after {wait:g} s"
            return False, (
                f"the HA loop did not get to the restart within {wait:g} s (busy with a long "
                "step?); nothing was restarted"
            )
        finally:
            if self._asked is asked:
                self._asked = None

    def idle(self) -> bool:
        """No restart is scheduled or asked for (a cycle then has no restart to carry out)."""
        return self.scheduled is None and self._asked is None

    def refuse_waiting(self, why: str) -> None:
        """Answer a restart that waits for this cycle with ``why`` (e.g. the store is
        unreachable: the lease cannot be checked), restarting nothing."""
        asked = self._asked
        if asked is not None and not asked.started:
            _finish(asked, (False, why))

    def seconds_to_next(self, wall_now: float) -> float | None:
        """Seconds until the scheduled restart is due (for the loop's sleep); None if none is
        scheduled or it is due already (the next cycle takes it, or keeps it while paused:
        no busy loop then)."""
        at = self.scheduled.at if self.scheduled is not None else None
        return at - wall_now if at is not None and at > wall_now else None

    def take(
        self,
        wall_now: float,
        loop_wait: float,
        paused: bool,
        postmaster_started: float | None = None,
    ) -> _Asked | None:
        """The restart to carry out in this cycle, if any (a due scheduled one is taken off the
        schedule; a stale one is dropped with a log line).

        ``postmaster_started`` is the running postmaster's start time as this cycle observed it
        (None while stopped). As Patroni does, a scheduled restart is cancelled once PostgreSQL
        has been restarted meanwhile (by an immediate restart, a crash, an operator): the
        restart it asked for has happened."""
        asked = self._asked
        if asked is not None and not asked.started and not asked.done.done():
            return asked
        req = self.scheduled
        if req is None or req.at is None:
            return None
        if postmaster_started is not None:
            seen = self._postmaster_seen
            if seen is None:
                self._postmaster_seen = postmaster_started
            elif postmaster_started != seen:
                self.scheduled = None
                self.wake.set()  # published at once
                log.info(
                    "cancelling the restart scheduled at %s: PostgreSQL was restarted meanwhile "
                    "(at %s)",
                    req.schedule,
                    iso_time(postmaster_started),
                )
                return None
        step = scheduled_step(req.at, wall_now, loop_wait, paused)
        if step == "wait":
            return None
        self.scheduled = None
        if step == "stale":
            log.warning("dropping the restart scheduled at %s: found stale", req.schedule)
            return None
        log.info("scheduled restart at %s: due", req.schedule)
        return _Asked(req)


async def facts_of(
    loop: HaLoop, view: ClusterView, pg: LocalPostgres, need_version: bool
) -> RestartFacts:
    """This member's :class:`RestartFacts` from the loop's state and the fresh observation."""
    lease = loop.runner.lease
    holds = (
        view.leader is not None
        and lease.leader_revision is not None
        and view.leader.revision == lease.leader_revision
        and not lease.stepping_down
    )
    version = None
    if need_version and pg.running:
        try:
            version = (await postgres.status(loop.runner.pg)).server_version
        except postgres.PostgresError as exc:
            log.warning("restart: could not read the server version: %s", exc)
    return RestartFacts(
        role=pg.role if pg.running and pg.role in ("primary", "replica") else "stopped",
        pending_restart=bool(pg.pending_restart),
        holds_leader_key=holds,
        lease_ok=lease.fence_at is not None and clock.now() < lease.fence_at,
        paused=view.settings.pause,
        server_version=version,
    )


async def carry_out(loop: HaLoop, view: ClusterView, pg: LocalPostgres) -> bool:
    """Run the restart that is due in this cycle, if any; True when PostgreSQL was touched
    (the loop then observes it again before deciding)."""
    desk = loop.restarts
    asked = desk.take(
        time.time(), view.settings.loop_wait, view.settings.pause, pg.postmaster_started
    )
    if asked is None:
        return False
    asked.started = True
    try:
        return await _restart(loop, view, pg, asked)
    except Exception as exc:  # answered, never taken again; the loop logs the cycle's failure
        _finish(asked, (False, f"restart failed: {type(exc).__name__}: {exc}"))
        raise


async def _restart(loop: HaLoop, view: ClusterView, pg: LocalPostgres, asked: _Asked) -> bool:
    req = asked.request
    facts = await facts_of(loop, view, pg, req.postgres_version is not None)
    why = refusal(req, facts)
    if why is not None:
        log.info("not restarting PostgreSQL: %s", why)
        _finish(asked, (False, why))
        return False
    timeout = req.timeout if req.timeout is not None else view.settings.primary_start_timeout
    timeout = max(timeout, 1.0)
    log.info("restarting PostgreSQL (%s, timeout %g s)", facts.role, timeout)
    runner = loop.runner
    # Health checks answer from memory: while it restarts, PostgreSQL is not running (GET
    # /primary and /replica 503, so load balancers leave it), until the cycle observes it again.
    loop.last_pg = dataclasses.replace(loop.last_pg, running=False)
    try:
        await postgres.restart(runner.pg, "fast", timeout)
    except postgres.PostgresError as exc:
        give_up, then = after_slow_start(facts.role == "primary", view, loop.me.name)
        if give_up and view.leader is not None:
            stop = Decision(
                (StopPostgres("immediate"), ReleaseLeader(view.leader)),
                f"restart: PostgreSQL did not come up within {timeout:g} s",
            )
            await runner.run(stop, view)
        message = f"restart failed: {exc}; {then}"
        log.error("%s", message)
        _finish(asked, (False, message))
        return True
    if runner.callbacks is not None:
        runner.callbacks.restarted(pg.role)
    await runner.arm_fencer()
    try:
        pending = await postgres.pending_restart(runner.pg)
    except postgres.PostgresError:
        pending = pg.pending_restart  # not answering yet: the next cycle tells
    # Up again in its role (pg_ctl waited for it): health checks answer as before the restart,
    # with the pending parameters PostgreSQL reports now, before the answer goes out.
    loop.last_pg = dataclasses.replace(pg, pending_restart=pending)
    _finish(asked, (True, "restarted successfully"))
    return True


def _finish(asked: _Asked, outcome: Outcome) -> None:
    if not asked.done.done():
        asked.done.set_result(outcome)
