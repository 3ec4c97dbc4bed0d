"""The REST API's health checks and read-only views: what load balancers, dashboards and
``hactl list`` read, answered from the agent's memory (health checks, ``/patroni``, ``/events``,
``/store``, ``/metrics``) or from the store's view through the AgentView (``/cluster``,
``/history``, ``GET /config``).

Health checks (GET, HEAD, OPTIONS; 200 or 503, the body is this member's status as JSON) never
ask the store; the paths and their meanings are listed in hamgr/agent/api.py. The pure parts
(:func:`health_ok`, :func:`member_status`, :func:`cluster_json`) are tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from hamgr import __version__, clock
from hamgr.agent.apierrors import HttpError, error_response
from hamgr.agent.events import EventLog
from hamgr.agent.openapi import description
from hamgr.agent.patroniview import history_lines, member_fields, scheduled_switchover
from hamgr.apiview import AgentView, LocalStatus
from hamgr.config.problems import show
from hamgr.config.values import split_address
from hamgr.dcs.model import ClusterView
from hamgr.ha.syncrep import sync_role

#: Returns the Prometheus exposition body and its content type.
MetricsHook = Callable[[], Awaitable[tuple[bytes, str]]]
#: Returns the ``GET /store`` body (hamgr/agent/storeview.py), from memory.
StoreStatusHook = Callable[[], dict[str, Any]]

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


class ReadRoutes:
    """The health-check and read-only handlers, bound to one agent view."""

    def __init__(
        self,
        view: AgentView,
        metrics: MetricsHook | None = None,
        events: EventLog | None = None,
        store_status: StoreStatusHook | None = None,
    ) -> None:
        self.view = view
        self.metrics_hook = metrics
        self.events_log = events
        self.store_status_hook = store_status

    def add_to(self, app: web.Application) -> None:
        """Register the routes on ``app``."""
        for path in _HEALTH:
            app.router.add_get(path, self.health)
            app.router.add_route("OPTIONS", path, self.health)
        app.router.add_get("/patroni", self.status)
        app.router.add_get("/status", self.status)
        app.router.add_get("/cluster", self.cluster)
        app.router.add_get("/history", self.history)
        app.router.add_get("/config", self.get_config)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/events", self.events)
        app.router.add_get("/store", self.store_status)
        app.router.add_get("/openapi.json", self.openapi)

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

    async def metrics(self, request: web.Request) -> web.Response:
        if self.metrics_hook is None:
            return error_response(404, "metrics are not enabled on this agent")
        body, content_type = await self.metrics_hook()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def events(self, request: web.Request) -> web.Response:
        if self.events_log is None:
            return error_response(404, "events are not kept on this agent")
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
            return error_response(404, "no store status on this agent")
        return web.json_response(self.store_status_hook())

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(description())
