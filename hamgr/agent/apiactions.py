"""The REST API's operator actions: switchover, failover, restart, reinitialize, reload,
``PATCH /config`` and the embedded store's membership (``/store/members``).

Every one needs the access that hamgr/agent/api.py's middleware checks (HTTP basic auth,
client certificates, the allowlist). A bad body is answered 400 naming the field and changes
nothing; what does not fit the cluster 400, 409 or 412 with the reason; a failed action 503. A
switchover or failover is stored as a request, and the answer waits until its outcome shows in
the cluster (as Patroni's); a scheduled one answers 202 at once. The request checks
(:func:`check_request`, :func:`check_paused_failover`, :func:`outcome`) are pure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hamgr import clock
from hamgr.agent.apibodies import FailoverBody, NoBody, StoreMemberBody, SwitchoverBody, read_body
from hamgr.agent.apierrors import HttpError, error_response
from hamgr.agent.apirestart import delete_restart, delete_switchover, post_restart
from hamgr.apiview import AgentView, apply_settings_patch
from hamgr.config.problems import show
from hamgr.dcs.base import DcsError
from hamgr.dcs.model import ClusterView, SwitchoverRequest
from hamgr.dcs.strict import ModelError
from hamgr.ha.race import describe_request
from hamgr.ha.restartplan import RestartBody
from hamgr.ha.syncrep import outside_sync_set

if TYPE_CHECKING:
    from hamgr.agent.storeadmin import StoreAdmin

log = logging.getLogger(__name__)


def parse_scheduled(value: str | float | None, wall_now: float) -> float | None:
    """``scheduled_at`` as wall-clock seconds: ISO 8601 with a timezone, or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ModelError(
                "scheduled_at", f"expected an ISO 8601 time with a timezone, got {show(value)}"
            ) from None
        if when.tzinfo is None:
            raise ModelError(
                "scheduled_at", f"needs a timezone (like {value}+00:00), got {show(value)}"
            )
        value = when.timestamp()
    if value < wall_now:
        raise ModelError("scheduled_at", f"lies in the past ({show(value)})")
    return float(value)


def check_request(
    body: SwitchoverBody | FailoverBody, cluster: ClusterView, wall_now: float
) -> SwitchoverRequest:
    """The switchover or failover that ``body`` asks for, checked against ``cluster``.

    Raises ModelError (malformed field) or HttpError (400: does not fit the cluster; 409: a
    request is already under way) naming what is wrong.
    """
    if isinstance(body, SwitchoverBody):
        at = parse_scheduled(body.scheduled_at, wall_now)
        req = SwitchoverRequest("switchover", body.leader, body.candidate, at)
        force, kind = False, "switchover"
    else:
        req = SwitchoverRequest("failover", None, body.candidate)
        force, kind = body.force, "failover"
    if cluster.settings.standby_cluster is not None and cluster.settings.pause:
        # Moving the standby leader's role means re-pointing PostgreSQL: hands off while paused.
        raise HttpError(400, f"the standby cluster is paused: no {kind} while paused; resume first")
    if cluster.settings.pause:
        check_paused_failover(req, cluster, force)
    current = cluster.leader.name if cluster.leader else None
    if req.leader is not None and req.leader != current:
        now_is = f"the leader is {current}" if current else "there is no leader: use failover"
        raise HttpError(400, f"leader: {req.leader} is not the current leader ({now_is})")
    if req.candidate is not None:
        member = cluster.member(req.candidate)
        if member is None:
            names = ", ".join(m.name for m in cluster.members) or "none"
            raise HttpError(400, f"candidate: {req.candidate} is not a member (members: {names})")
        if member.tags.nofailover:
            raise HttpError(400, f"candidate: {req.candidate} is tagged nofailover")
        if req.candidate == current:
            raise HttpError(400, f"candidate: {req.candidate} is already the leader")
        outside = outside_sync_set(cluster, req.candidate)
        if outside and not force:
            hint = ' (a failover can be forced with "force": true)' if kind == "failover" else ""
            raise HttpError(412, f"candidate: {outside}{hint}")
    pending = cluster.switchover
    if pending is not None and pending.due(wall_now):
        raise HttpError(409, f"a {describe_request(pending)} is already under way")
    return req


PAUSED_RISK = "two primaries may then accept writes at once"


def check_paused_failover(req: SwitchoverRequest, cluster: ClusterView, force: bool) -> None:
    """While paused nothing fences the primary (hands off PostgreSQL), so a promotion is safe
    only once the old primary is known to be stopped: a switchover is refused; a failover (to
    a named candidate, as in Patroni) only once the old primary's agent reports its
    PostgreSQL stopped, unless forced (``"force": true``), the operator taking that risk."""
    if req.kind == "switchover":
        raise HttpError(
            400,
            "the cluster is paused: no switchover while paused; resume first, or stop the "
            "primary's PostgreSQL and fail over",
        )
    old = old_primary(cluster)
    if old is None or old == req.candidate:
        return
    member = cluster.member(old)
    if member is not None and member.state != "running":
        return  # its agent confirms: PostgreSQL stopped
    if force:
        return
    said = f"it reports PostgreSQL {member.state}" if member else "its agent does not answer"
    raise HttpError(
        409,
        f"the cluster is paused and {old}'s agent does not confirm that its PostgreSQL stopped "
        f"({said}): stop it first, or force the failover knowing that {PAUSED_RISK} "
        f'({old} and {req.candidate}): "force": true (hactl failover --force-paused)',
    )


def old_primary(cluster: ClusterView) -> str | None:
    """Who may still run PostgreSQL as primary: the leader key's holder, else the last
    recorded primary, else a member that publishes itself as primary."""
    if cluster.leader is not None:
        return cluster.leader.name
    if cluster.position is not None:
        return cluster.position.leader
    return next((m.name for m in cluster.members if m.role == "primary"), None)


def outcome(
    req: SwitchoverRequest, old_leader: str | None, cluster: ClusterView
) -> tuple[int, str] | None:
    """How a stored request ended, judged from ``cluster`` (None: not over yet)."""
    new = cluster.leader.name if cluster.leader else None
    if new is not None and new != old_leader:
        verb = "switched" if req.kind == "switchover" else "failed"
        if req.candidate in (None, new):
            return 200, f"Successfully {verb} over to {new}"
        return 200, f"{verb.capitalize()} over to {new} instead of {req.candidate}"
    if cluster.switchover is None:
        said = cluster.member(old_leader) if old_leader else None
        why = f"; {old_leader}'s last reason: {said.reason}" if said and said.reason else ""
        return 503, f"{req.kind} failed: the request was withdrawn{why}"
    return None


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The body of PATCH /config, a merge patch of the dynamic settings that
    ``apply_settings_patch`` checks; every other body is a Struct (hamgr/agent/apibodies.py)."""
    raw = await request.read()
    if not raw.strip():
        raise HttpError(400, "body: expected a JSON object, got nothing")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HttpError(400, f"body: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise HttpError(400, f"body: expected a JSON object, got {show(data)}")
    return data


class ActionRoutes:
    """The operator actions' handlers, bound to one agent view."""

    def __init__(
        self,
        view: AgentView,
        outcome_timeout: float,
        poll_interval: float,
        store: StoreAdmin | None = None,
    ) -> None:
        self.view = view
        self.store = store
        self.outcome_timeout = outcome_timeout
        self.poll_interval = poll_interval

    def add_to(self, app: web.Application) -> None:
        """Register the routes on ``app``."""
        app.router.add_patch("/config", self.patch_config)
        app.router.add_post("/switchover", self.switchover)
        app.router.add_post("/failover", self.failover)
        app.router.add_post("/restart", self.restart)
        app.router.add_delete("/restart", self.cancel_restart)
        app.router.add_delete("/switchover", self.cancel_switchover)
        app.router.add_post("/reinitialize", self.reinitialize)
        app.router.add_post("/reload", self.reload)
        app.router.add_get("/store/members", self.store_members)
        app.router.add_post("/store/members", self.store_add)
        app.router.add_delete("/store/members/{name}", self.store_remove)

    async def patch_config(self, request: web.Request) -> web.Response:
        patch = await _json_object(request)
        apply_settings_patch((await self.view.cluster()).settings, patch)
        settings = await self.view.patch_settings(patch)
        return web.json_response(settings.to_dict())

    async def switchover(self, request: web.Request) -> web.Response:
        return await self._request(await read_body(request, SwitchoverBody))

    async def failover(self, request: web.Request) -> web.Response:
        return await self._request(await read_body(request, FailoverBody))

    async def _request(self, body: SwitchoverBody | FailoverBody) -> web.Response:
        cluster = await self.view.cluster()
        req = check_request(body, cluster, time.time())
        kind = req.kind
        old_leader = cluster.leader.name if cluster.leader else None
        if req.kind == "switchover":
            assert req.leader is not None  # checked by SwitchoverRequest
            await self.view.request_switchover(req.leader, req.candidate, req.scheduled_at)
        else:
            assert req.candidate is not None
            await self.view.request_failover(req.candidate)
        if req.scheduled_at is not None:
            return web.json_response({"message": f"{kind.capitalize()} scheduled"}, status=202)
        status, message = await self._await_outcome(req, old_leader)
        if status != 200:
            return error_response(status, message)
        return web.json_response({"message": message})

    async def _await_outcome(
        self, req: SwitchoverRequest, old_leader: str | None
    ) -> tuple[int, str]:
        """Watch the cluster until the request's outcome shows, as Patroni does."""
        deadline = clock.now() + self.outcome_timeout
        while True:
            try:
                found = outcome(req, old_leader, await self.view.cluster())
            except DcsError as e:
                log.debug("waiting for the %s: %s", req.kind, e)
                found = None
            if found is not None:
                return found
            if clock.now() >= deadline:
                return 503, (
                    f"{req.kind} status unknown after {self.outcome_timeout:g} s "
                    "(the request stays stored; see hactl list)"
                )
            await asyncio.sleep(self.poll_interval)

    async def restart(self, request: web.Request) -> web.Response:
        return await post_restart(self.view, await read_body(request, RestartBody, optional=True))

    async def cancel_restart(self, request: web.Request) -> web.Response:
        return await delete_restart(self.view)

    async def cancel_switchover(self, request: web.Request) -> web.Response:
        return await delete_switchover(self.view)

    async def reinitialize(self, request: web.Request) -> web.Response:
        await read_body(request, NoBody, optional=True)
        if self.view.local().holds_leader_key:
            return error_response(503, "I am the leader, can not reinitialize")
        view = await self.view.cluster()
        if view.leader is None or view.leader.name == self.view.name:
            return error_response(503, "no leader to clone from: can not reinitialize")
        if view.settings.pause:
            return error_response(503, "the cluster is paused: resume it to reinitialize")
        await self.view.request_reinitialize()
        return web.json_response({"message": "reinitialize started"})

    async def reload(self, request: web.Request) -> web.Response:
        await read_body(request, NoBody, optional=True)
        await self.view.reload_config()
        return web.json_response({"message": "reload scheduled"}, status=202)

    def _store(self) -> StoreAdmin:
        if self.store is None:
            raise HttpError(
                404,
                "this agent runs no embedded store member (store.backend etcd?): change the "
                "store's membership with that store's own tools",
            )
        return self.store

    async def store_members(self, request: web.Request) -> web.Response:
        return web.json_response(await self._store().view())

    async def store_add(self, request: web.Request) -> web.Response:
        store = self._store()
        body = await read_body(request, StoreMemberBody)
        try:
            done = await store.add(body.name, body.address, body.node_id, body.client_address)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        return web.json_response(done)

    async def store_remove(self, request: web.Request) -> web.Response:
        return web.json_response(await self._store().remove(request.match_info["name"]))
