"""The agent's REST API (aiohttp): health checks for load balancers, cluster state, management.

Paths and status codes follow Patroni's REST API. Health checks (GET, HEAD, OPTIONS; 200 or
503, the body is this member's status as JSON) answer from the agent's memory only, never
from the store::

    /, /primary, /read-write  PostgreSQL primary AND leader key held AND lease deadline ahead
    /leader                   this member holds the leader key (primary or standby leader)
    /standby-leader           this member is the standby leader of a standby cluster (as
                              Patroni: /primary answers 503 there, /leader 200)
    /replica                  running standby, streaming, not tagged noloadbalance;
                              ?lag=16MB fails above that lag, ?tag_<name>=<value> checks a tag
    /read-only                /primary or /replica
    /health                   PostgreSQL is running
    /liveness                 the HA loop ran within ttl
    /readiness                primary serving, or a standby streaming (?lag= as /replica)
    /synchronous, /sync       /replica, and a synchronous standby (synchronous_mode on)
    /quorum                   /replica, and a quorum standby (synchronous_mode quorum)
    /asynchronous, /async     /replica, and not counted in the synchronous set

JSON: ``/patroni`` (alias ``/status``: this member), ``/cluster``, ``/history``, ``/config``
(``/cluster`` and ``/history`` in Patroni's shapes: hamgr/agent/patroniview.py);
``/store`` (the store member's view: Raft leader, members; hamgr/agent/storeview.py) and
``/events?since=N`` (recent events, hamgr/agent/events.py), from the agent's memory. ``/ui`` is the
read-only status page built on them (hamgr/agent/ui).
Unsafe methods need HTTP basic auth (``restapi.authentication``; without it they are refused
with 403): POST ``/switchover``, ``/failover``, ``/restart``, ``/reinitialize``, ``/reload``,
DELETE ``/restart`` and ``/switchover`` (cancel what is scheduled: hamgr/agent/apirestart.py)
and PATCH ``/config`` (a JSON merge patch of the dynamic settings). A bad body is answered 400 with
``{"error": "<field>: <problem>"}`` and changes nothing; a failed action 503. ``/metrics`` serves
what the ``metrics`` hook of :func:`build_app` returns (404 without one).

The embedded store's membership (``hactl members``; 404 on an agent without an embedded store
member, e.g. on etcd): GET ``/store/members`` (voters, learners, the Raft leader, each member's
applied index), POST ``/store/members`` ``{"name", "address", "node_id"?, "client_address"?}``
adds one as a learner, DELETE ``/store/members/<name>`` removes one; a change that is unsafe
or does not fit the membership now is answered 409 with the reason and changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from hamgr import __version__, clock
from hamgr.agent.apiaccess import Access
from hamgr.agent.apibodies import FailoverBody, NoBody, StoreMemberBody, SwitchoverBody, read_body
from hamgr.agent.apirestart import delete_restart, delete_switchover, post_restart
from hamgr.agent.events import EventLog
from hamgr.agent.openapi import description
from hamgr.agent.patroniview import history_lines, member_fields, scheduled_switchover
from hamgr.agent.storemembers import MembershipRefused
from hamgr.agent.ui import add_ui_routes
from hamgr.apiview import (
    AgentView,
    LocalStatus,
    RequestFailed,
    RequestRejected,
    apply_settings_patch,
)
from hamgr.config.problems import show
from hamgr.config.values import split_address
from hamgr.dcs.base import DcsError
from hamgr.dcs.model import ClusterView, SwitchoverRequest
from hamgr.dcs.strict import ModelError
from hamgr.ha.race import describe_request
from hamgr.ha.restartplan import RestartBody
from hamgr.ha.syncrep import outside_sync_set, sync_role

if TYPE_CHECKING:
    from hamgr.agent.storeadmin import StoreAdmin

log = logging.getLogger(__name__)

Auth = tuple[str, str]
#: Returns the Prometheus exposition body and its content type.
MetricsHook = Callable[[], Awaitable[tuple[bytes, str]]]
#: Returns the ``GET /store`` body (hamgr/agent/storeview.py), from memory.
StoreStatusHook = Callable[[], dict[str, Any]]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_HEALTH = {
    "/": "primary",
    "/primary": "primary",
    "/read-write": "primary",
    "/leader": "leader",
    "/standby-leader": "standby-leader",
    "/standby_leader": "standby-leader",
    "/replica": "replica",
    "/read-only": "read-only",
    "/health": "health",
    "/liveness": "liveness",
    "/readiness": "readiness",
    "/synchronous": "synchronous",
    "/sync": "synchronous",
    "/asynchronous": "asynchronous",
    "/async": "asynchronous",
    "/quorum": "quorum",
}


class HttpError(Exception):
    """An answer other than success, with the message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- Pure parts: sizes, health checks, JSON views, request checks -----------------------------


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``1024kB``, ``16MB``, ``1GB`` (units of 1024, any case)."""
    found = _SIZE.fullmatch(text)
    if not found:
        raise ValueError(
            f"expected bytes, plain or with a unit (16kB, 64MB, 1GB), got {show(text)}"
        )
    return int(found.group(1)) * _UNITS[(found.group(2) or "").lower()]


def _tags_match(local: LocalStatus, query: Mapping[str, str]) -> bool:
    """Patroni's ``?tag_<name>=<value>``: every named tag is set, to that value."""
    tags = msgspec.to_builtins(local.member.tags)
    for key, wanted in query.items():
        if not key.startswith("tag_"):
            continue
        have = tags.get(key[4:])
        if have is None:
            return False
        if (have if isinstance(have, str) else str(have).lower()) != wanted:
            return False
    return True


def health_ok(
    check: str, local: LocalStatus, serving: bool, query: Mapping[str, str], now: float
) -> bool:
    """Whether health check ``check`` passes (200) or not (503). ``serving`` is
    :meth:`AgentView.is_primary_serving`; ``now`` is ``hamgr.clock.now()``. Raises HttpError
    400 for a malformed ``lag``."""
    pg = local.pg
    max_lag: int | None = None
    if "lag" in query:
        try:
            max_lag = parse_size(query["lag"])
        except ValueError as e:
            raise HttpError(400, f"lag: {e}") from None
    lag_ok = max_lag is None or (local.lag is not None and local.lag <= max_lag)
    standby = pg.running and pg.role == "replica" and local.streaming
    # As Patroni: a standby leader is no replica (its role is standby_leader), but read-only.
    replica = (
        standby and lag_ok and not local.member.tags.noloadbalance and not local.standby_leader
    )
    if check == "primary":
        return serving
    if check == "leader":
        return local.holds_leader_key
    if check == "standby-leader":
        return local.standby_leader
    if check == "liveness":
        return local.loop_at is not None and now - local.loop_at <= local.ttl
    if check == "readiness":
        return serving or (standby and lag_ok)
    passed = {
        "replica": replica,
        "read-only": serving or replica or (local.standby_leader and lag_ok),
        "health": pg.running,
        "synchronous": replica and local.sync_role == "sync",
        "quorum": replica and local.sync_role == "quorum",
        "asynchronous": replica and local.sync_role is None,
    }[check]
    return passed and _tags_match(local, query)


def member_status(view: AgentView, local: LocalStatus, now: float) -> dict[str, Any]:
    """This member's status, shaped like Patroni's ``GET /patroni`` plus hamgr's own facts."""
    m, pg = local.member, local.pg
    primary = pg.role == "primary"
    received, replayed = (
        (pg.current_lsn, pg.current_lsn) if primary else (pg.received_lsn, pg.replayed_lsn)
    )
    state = "running" if pg.running else (m.state if m.state != "running" else "stopped")
    return {
        "name": view.name,
        "scope": view.scope,
        "api_url": view.api_url,
        "conn_url": m.conn_url,
        "state": state,
        "role": "standby_leader" if local.standby_leader else (pg.role if pg.running else m.role),
        "timeline": pg.timeline,
        "xlog": (
            {"location": pg.current_lsn}
            if primary
            else {"received_location": received, "replayed_location": replayed}
        ),
        "received_lsn": received,
        "replayed_lsn": replayed,
        "lag": local.lag,
        "streaming": local.streaming,
        "detached": pg.detached,
        "server_version": pg.server_version,
        "database_system_identifier": (
            str(pg.system_identifier) if pg.system_identifier is not None else None
        ),
        "holds_leader_key": local.holds_leader_key,
        "primary_serving": view.is_primary_serving(),
        "fence_token": m.fence_token,
        "fence_remaining": round(local.fence_at - now, 3) if local.fence_at is not None else None,
        "replication_slots": list(local.replication_slots),
        "pending_restart": local.pending_restart,
        "pending_restart_reason": list(pg.pending_restart),
        "scheduled_restart": msgspec.to_builtins(m.scheduled_restart),
        "pause": m.paused,
        "fencer": m.fencer or None,
        "tags": msgspec.to_builtins(m.tags),
        "reason": m.reason,
        "loop_age": round(now - local.loop_at, 3) if local.loop_at is not None else None,
        "timing": dict(local.timing),
        "patroni": {"version": __version__, "scope": view.scope, "name": view.name},
    }


def _standby_role(cluster: ClusterView, name: str, role: str) -> str:
    """Patroni's roles in /cluster: ``sync_standby`` / ``quorum_standby`` for the members the
    leader's synchronous record counts."""
    found = sync_role(cluster, name) if role == "replica" else None
    return {"sync": "sync_standby", "quorum": "quorum_standby"}.get(found or "", role)


def _leader_role(cluster: ClusterView) -> str:
    """The key holder's role in /cluster: ``standby_leader`` in a standby cluster (Patroni's)."""
    return "standby_leader" if cluster.settings.standby_cluster is not None else "leader"


def cluster_json(scope: str, cluster: ClusterView) -> dict[str, Any]:
    """``GET /cluster``: every member with its lag behind the leader, the leader, pause, request."""
    leader = cluster.leader.name if cluster.leader else None
    holder = cluster.member(leader) if leader else None
    top = holder.position if holder else None
    members = []
    for m in cluster.members:
        host, port = split_address(m.conn_url)
        pos = m.position
        lag = None if m.name == leader or top is None or pos is None else max(0, top - pos)
        members.append(
            {
                "name": m.name,
                "host": host,
                "port": port,
                "api_url": m.api_url,
                "role": _leader_role(cluster)
                if m.name == leader
                else _standby_role(cluster, m.name, m.role),
                "state": m.state,
                "timeline": m.timeline,
                "received_lsn": m.received_lsn,
                "replayed_lsn": m.replayed_lsn,
                "lag": lag,
                "tags": msgspec.to_builtins(m.tags),
                "reason": m.reason,
                "fencer": m.fencer or None,
                "pending_restart": bool(m.pending_restart),
                "pending_restart_reason": list(m.pending_restart),
                **member_fields(m, leader, top),
            }
        )
    members.sort(key=lambda m: str(m["name"]))
    return {
        "scope": scope,
        "leader": leader,
        "fence_token": cluster.leader.revision if cluster.leader else None,
        "pause": cluster.settings.pause,
        "switchover": msgspec.to_builtins(cluster.switchover),
        "scheduled_switchover": scheduled_switchover(cluster.switchover),
        "timeline": cluster.timeline,
        "synchronous_mode": cluster.settings.synchronous_mode,
        "sync": msgspec.to_builtins(cluster.sync),
        "position": msgspec.to_builtins(cluster.position),
        "members": members,
    }


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


# --- HTTP -----------------------------------------------------------------------------------


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


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


class _Api:
    """The handlers, bound to one agent view."""

    def __init__(
        self,
        view: AgentView,
        access: Access,
        metrics: MetricsHook | None,
        outcome_timeout: float,
        poll_interval: float,
        store: StoreAdmin | None = None,
        events: EventLog | None = None,
        store_status: StoreStatusHook | None = None,
    ) -> None:
        self.store = store
        self.view = view
        self.access = access
        self.metrics_hook = metrics
        self.events_log = events
        self.store_status_hook = store_status
        self.outcome_timeout = outcome_timeout
        self.poll_interval = poll_interval

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """`Access` on unsafe methods, and every failure as ``{"error": ...}``."""
        if request.method in _UNSAFE:
            cert = request.transport.get_extra_info("peercert") if request.transport else None
            denied = self.access.check(
                request.remote, request.headers.get("Authorization"), bool(cert)
            )
            if denied is not None:
                headers = (
                    {"WWW-Authenticate": 'Basic realm="hamgr"'} if denied.status == 401 else None
                )
                return _error(denied.status, denied.message, headers)
        try:
            return await handler(request)
        except HttpError as e:
            return _error(e.status, str(e))
        except (ModelError, RequestRejected) as e:
            return _error(400, str(e))
        except MembershipRefused as e:
            return _error(409, f"refused: {e}")
        except RequestFailed as e:
            return _error(503, str(e))
        except DcsError as e:
            return _error(503, f"coordination store: {e}")
        except web.HTTPMethodNotAllowed as e:
            allowed = ", ".join(sorted(e.allowed_methods))
            return _error(405, f"{request.method} is not allowed on {request.path} ({allowed})")
        except web.HTTPNotFound:
            return _error(404, f"no such path: {request.path}")
        except web.HTTPException:
            raise
        except Exception as e:
            log.exception("REST API: %s %s failed", request.method, request.path)
            return _error(500, f"internal error: {type(e).__name__}: {e}")

    async def health(self, request: web.Request) -> web.Response:
        check = _HEALTH[request.path]
        now = clock.now()
        local = self.view.local()
        ok = health_ok(check, local, self.view.is_primary_serving(), request.query, now)
        status = 200 if ok else 503
        if request.method == "OPTIONS":
            return web.Response(status=status)
        return web.json_response(member_status(self.view, local, now), status=status)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(member_status(self.view, self.view.local(), clock.now()))

    async def cluster(self, request: web.Request) -> web.Response:
        return web.json_response(cluster_json(self.view.scope, await self.view.cluster()))

    async def history(self, request: web.Request) -> web.Response:
        return web.json_response(history_lines(await self.view.history()))

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response((await self.view.cluster()).settings.to_dict())

    async def patch_config(self, request: web.Request) -> web.Response:
        patch = await _json_object(request)
        apply_settings_patch((await self.view.cluster()).settings, patch)
        settings = await self.view.patch_settings(patch)
        return web.json_response(settings.to_dict())

    async def metrics(self, request: web.Request) -> web.Response:
        if self.metrics_hook is None:
            return _error(404, "metrics are not enabled on this agent")
        body, content_type = await self.metrics_hook()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def events(self, request: web.Request) -> web.Response:
        if self.events_log is None:
            return _error(404, "events are not kept on this agent")
        raw = request.query.get("since", "0")
        if not (raw.isascii() and raw.isdigit()):
            raise HttpError(400, f"since: expected an event number >= 0, got {show(raw)}")
        ring = self.events_log
        return web.json_response(
            {
                "last": ring.last_seq,
                "capacity": ring.capacity,
                "events": [e.to_dict() for e in ring.since(int(raw))],
            }
        )

    async def store_status(self, request: web.Request) -> web.Response:
        if self.store_status_hook is None:
            return _error(404, "no store status on this agent")
        return web.json_response(self.store_status_hook())

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(description())

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
            return _error(status, message)
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
            return _error(503, "I am the leader, can not reinitialize")
        view = await self.view.cluster()
        if view.leader is None or view.leader.name == self.view.name:
            return _error(503, "no leader to clone from: can not reinitialize")
        if view.settings.pause:
            return _error(503, "the cluster is paused: resume it to reinitialize")
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


def build_app(
    view: AgentView,
    auth: Auth | None,
    *,
    metrics: MetricsHook | None = None,
    store: StoreAdmin | None = None,
    outcome_timeout: float = 30.0,
    poll_interval: float = 0.25,
    access: Access | None = None,
    events: EventLog | None = None,
    store_status: StoreStatusHook | None = None,
) -> web.Application:
    """The REST API of ``view``'s agent. ``auth`` is (username, password) for unsafe methods
    (None: they are refused); ``access``, when given, replaces it with the full rules
    (certificates, allowlist: `hamgr.agent.apiaccess`). A switchover or failover answers once its
    outcome shows in the cluster (200 or 503), at most ``outcome_timeout`` seconds; a scheduled
    one answers 202. ``events`` and ``store_status`` serve ``GET /events`` and ``GET /store``
    (404 without them)."""
    api = _Api(
        view,
        access or Access(auth=auth),
        metrics,
        outcome_timeout,
        poll_interval,
        store=store,
        events=events,
        store_status=store_status,
    )
    app = web.Application(middlewares=[api.guard])
    for path in _HEALTH:
        app.router.add_get(path, api.health)
        app.router.add_route("OPTIONS", path, api.health)
    app.router.add_get("/patroni", api.status)
    app.router.add_get("/status", api.status)
    app.router.add_get("/cluster", api.cluster)
    app.router.add_get("/history", api.history)
    app.router.add_get("/config", api.get_config)
    app.router.add_patch("/config", api.patch_config)
    app.router.add_get("/metrics", api.metrics)
    app.router.add_get("/events", api.events)
    app.router.add_get("/store", api.store_status)
    add_ui_routes(app)
    app.router.add_post("/switchover", api.switchover)
    app.router.add_post("/failover", api.failover)
    app.router.add_post("/restart", api.restart)
    app.router.add_delete("/restart", api.cancel_restart)
    app.router.add_delete("/switchover", api.cancel_switchover)
    app.router.add_post("/reinitialize", api.reinitialize)
    app.router.add_post("/reload", api.reload)
    app.router.add_get("/store/members", api.store_members)
    app.router.add_post("/store/members", api.store_add)
    app.router.add_delete("/store/members/{name}", api.store_remove)
    app.router.add_get("/openapi.json", api.openapi)
    return app


async def serve(
    view: AgentView,
    listen: str,
    auth: Auth | None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    metrics: MetricsHook | None = None,
    access: Access | None = None,
    store: StoreAdmin | None = None,
    events: EventLog | None = None,
    store_status: StoreStatusHook | None = None,
) -> web.AppRunner:
    """Serve the API on ``listen`` (``restapi.listen``), over TLS with ``ssl_context``;
    ``runner.cleanup()`` stops it. ``runner.addresses`` tells the bound address (useful with
    port 0)."""
    app = build_app(
        view,
        auth,
        metrics=metrics,
        access=access,
        store=store,
        events=events,
        store_status=store_status,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_address(listen, any_port=True)
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
