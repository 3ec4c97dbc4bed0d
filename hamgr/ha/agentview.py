"""The running HA loop as its REST API sees it (hamgr/apiview.py's AgentView).

Reads come from the loop's memory (never wait on the store), except `cluster()` and
`history()`, which ask the store; operator requests are written to the store as keys that the
agents' loops act upon, like every other decision.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hamgr import clock
from hamgr.apiview import (
    LocalStatus,
    RequestFailed,
    RequestRejected,
    apply_settings_patch,
    primary_serving,
)
from hamgr.dcs.base import DcsError
from hamgr.dcs.model import (
    ClusterView,
    MemberState,
    SwitchoverRequest,
    TimelineEntry,
)
from hamgr.dcs.restartrequest import RestartRequest
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError
from hamgr.ha.loop import HaLoop
from hamgr.ha.standby import is_standby_leader
from hamgr.ha.syncrep import sync_role


class LoopView:
    """AgentView over one HaLoop."""

    def __init__(
        self, loop: HaLoop, scope: str, reload: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._loop = loop
        self._scope = scope
        self._reload = reload

    @property
    def name(self) -> str:
        return self._loop.me.name

    @property
    def scope(self) -> str:
        return self._scope

    @property
    def api_url(self) -> str:
        return self._loop.me.api_url

    def local(self) -> LocalStatus:
        loop = self._loop
        pg = loop.last_pg
        view = loop.last_view
        key = view.leader if view is not None else None
        lease = loop.runner.lease
        holds = (
            key is not None
            and key.name == self.name
            and key.revision == lease.leader_revision
            and not lease.stepping_down
        )
        member = loop.last_member or MemberState(
            self.name, loop.me.api_url, loop.me.conn_url, tags=loop.me.tags
        )
        lag = None
        if view is not None and key is not None and pg.role == "replica":
            leader = view.member(key.name)
            mine = pg.replayed_lsn if pg.replayed_lsn is not None else pg.received_lsn
            if leader is not None and leader.position is not None and mine is not None:
                lag = max(0, leader.position - mine)
        return LocalStatus(
            sync_role=sync_role(view, self.name) if pg.role == "replica" else None,
            member=member,
            pg=pg,
            streaming=pg.role == "replica" and pg.upstream is not None,
            lag=lag,
            holds_leader_key=holds,
            standby_leader=holds and is_standby_leader(view, pg),
            replication_slots=loop.slots_kept(),
            fence_at=lease.fence_at,
            pending_restart=bool(pg.pending_restart),
            loop_at=loop.last_loop_at,
            ttl=loop.settings.ttl,
            timing=timing_of(loop),
        )

    def is_primary_serving(self) -> bool:
        return primary_serving(self.local(), clock.now())

    async def cluster(self) -> ClusterView:
        try:
            return await self._loop.dcs.get_cluster()
        except DcsError as exc:
            raise RequestFailed(f"the store did not answer: {exc}") from exc

    async def history(self) -> tuple[TimelineEntry, ...]:
        return (await self.cluster()).history

    async def _request(self, req: SwitchoverRequest) -> None:
        try:
            await self._loop.dcs.set_switchover(req)
        except DcsError as exc:
            raise RequestFailed(f"could not store the request: {exc}") from exc

    async def request_switchover(
        self, leader: str, candidate: str | None, scheduled_at: float | None
    ) -> None:
        try:
            req = SwitchoverRequest("switchover", leader, candidate, scheduled_at)
        except ModelError as exc:
            raise RequestRejected(str(exc)) from exc
        await self._request(req)

    async def request_failover(self, candidate: str) -> None:
        try:
            req = SwitchoverRequest("failover", None, candidate, None)
        except ModelError as exc:
            raise RequestRejected(str(exc)) from exc
        await self._request(req)

    async def restart_postgres(self, request: RestartRequest) -> tuple[bool, str]:
        settings = self._loop.settings
        timeout = request.timeout if request.timeout is not None else settings.primary_start_timeout
        # The loop takes it at its next cycle (woken at once), then pg_ctl has the timeout.
        wait = timeout + 2 * settings.loop_wait + settings.retry_timeout + 5.0
        return await self._loop.restarts.ask(request, wait)

    def schedule_restart(self, request: RestartRequest) -> bool:
        return self._loop.restarts.schedule(request)

    def cancel_restart(self) -> bool:
        return self._loop.restarts.cancel()

    async def cancel_switchover(self) -> bool | None:
        stored = (await self.cluster()).switchover
        if stored is None or stored.scheduled_at is None:
            return False
        try:
            return await self._loop.dcs.set_switchover(None, expected=stored) or None
        except DcsError as exc:
            raise RequestFailed(f"could not delete the request: {exc}") from exc

    async def request_reinitialize(self) -> None:
        self._loop.reinit_requested = True

    async def reload_config(self) -> None:
        if self._reload is None:
            raise RequestFailed("this agent cannot reload its configuration")
        await self._reload()

    async def patch_settings(self, patch: Mapping[str, Any]) -> DynamicSettings:
        view = await self.cluster()
        try:
            new = apply_settings_patch(view.settings, patch)
        except ModelError as exc:
            raise RequestRejected(str(exc)) from exc
        try:
            written = await self._loop.dcs.set_settings(new, expected_revision=view.revision)
        except DcsError as exc:
            raise RequestFailed(f"could not store the settings: {exc}") from exc
        if not written:
            raise RequestFailed("the settings changed meanwhile; read them again and retry")
        return new


def timing_of(loop: HaLoop) -> dict[str, float | int | None]:
    """The timing in force in ``loop``'s agent (see :attr:`LocalStatus.timing`)."""
    runner = loop.runner
    current = runner.lease_clock.current
    armed = runner.fencer_deadline if runner.fencer_armed else None
    return {
        "ttl": loop.dcs.ttl,
        "retry_timeout": loop.dcs.retry_timeout,
        "loop_wait": loop.settings.loop_wait,
        "safety_margin": loop.settings.safety_margin,
        "lease_id": current.lease_id if current is not None else None,
        "lease_ttl": current.ttl if current is not None else None,
        "fence_window": (
            armed - current.sent_at if armed is not None and current is not None else None
        ),
        "switching": len(runner.lease_clock.leases) > 1,
        "cycles": loop.loop_count,
        "keepalives": loop.keepalive_rounds,
    }
