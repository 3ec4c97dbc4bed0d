"""A plain AgentView for the REST API and hactl tests, with no PostgreSQL and no store.

:class:`FakeStore` holds one ClusterView that several :class:`FakeAgent` share, and plays the
HA loop's part in a switchover or failover (``mode``): ``obey`` moves the leader key at once,
``refuse`` clears the request with a reason on the old leader, ``ignore`` leaves it stored.
:func:`cluster3` is a three-member cluster: ``a`` primary and leader, ``b`` a replica level
with it, ``c`` a replica 30 MB behind tagged nofailover.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from hamgr import clock
from hamgr.apiview import LocalStatus, apply_settings_patch, primary_serving
from hamgr.dcs import (
    ClusterView,
    DcsError,
    DynamicSettings,
    LeaderKey,
    MemberState,
    MemberTags,
    SwitchoverRequest,
    TimelineEntry,
)
from hamgr.dcs.restartrequest import RestartRequest
from hamgr.ha import LocalPostgres
from hamgr.ha.restartplan import RestartFacts, refusal

MB = 1 << 20
TOP = 100 * MB  # the leader's WAL position
HISTORY = (TimelineEntry(1, 50 * MB, "no recovery target specified", 1.7e9, "a"),)


def member(name: str, api_url: str, role: str, position: int, **kw: Any) -> MemberState:
    port = {"a": 5432, "b": 5433, "c": 5434}.get(name, 5440)
    return MemberState(
        name=name,
        api_url=api_url,
        conn_url=f"127.0.0.{1 + port - 5432}:{port}",
        role=role,  # type: ignore[arg-type]
        state="running",
        timeline=2,
        received_lsn=position,
        replayed_lsn=position,
        **kw,
    )


def cluster3(urls: Mapping[str, str], **kw: Any) -> ClusterView:
    members = (
        member("a", urls["a"], "primary", TOP, fence_token=7, reason="I am the leader"),
        member("b", urls["b"], "replica", TOP, reason="following a"),
        member("c", urls["c"], "replica", TOP - 30 * MB, tags=MemberTags(nofailover=True)),
    )
    args: dict[str, Any] = {
        "initialize": "7300000000000000001",
        "leader": LeaderKey("a", 7),
        "members": members,
        "history": HISTORY,
        "revision": 40,
    }
    args.update(kw)
    return ClusterView(**args)


def status(
    m: MemberState, *, fence_in: float | None = 5.0, lag: int | None = 0, **kw: Any
) -> LocalStatus:
    """The local status of member ``m`` as a healthy agent sees it (override with ``kw``)."""
    now = clock.now()
    primary = m.role == "primary"
    pg = LocalPostgres(
        initialized=True,
        data_dir_empty=False,
        running=True,
        role="primary" if primary else "replica",
        timeline=m.timeline,
        received_lsn=None if primary else m.received_lsn,
        replayed_lsn=None if primary else m.replayed_lsn,
        current_lsn=m.position if primary else None,
        system_identifier=7300000000000000001,
    )
    args: dict[str, Any] = {
        "member": m,
        "pg": pg,
        "streaming": not primary,
        "lag": None if primary else lag,
        "holds_leader_key": primary,
        "fence_at": now + fence_in if primary and fence_in is not None else None,
        "loop_at": now,
        "ttl": 6.0,
    }
    args.update(kw)
    return LocalStatus(**args)


class FakeStore:
    """The cluster view the agents share, and what the HA loop would do with a request."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view
        self.mode = "obey"
        self.broken = False  # every store read fails

    def read(self) -> ClusterView:
        if self.broken:
            raise DcsError("no quorum: 1 of 3 store members reachable")
        return self.view

    def store_request(self, req: SwitchoverRequest) -> None:
        view = dataclasses.replace(self.view, switchover=req)
        old = view.leader
        if self.mode == "obey" and req.scheduled_at is None:
            fit = [m.name for m in view.members if old is None or m.name != old.name]
            new = req.candidate or fit[0]
            rev = (old.revision if old else 1) + 5
            view = dataclasses.replace(view, leader=LeaderKey(new, rev), switchover=None)
        elif self.mode == "refuse" and old is not None:
            holder = view.member(old.name)
            assert holder is not None
            said = msgspec.structs.replace(
                holder, reason="switchover from a to b refused: b is not reachable"
            )
            rest = tuple(m for m in view.members if m.name != old.name)
            view = dataclasses.replace(view, members=(*rest, said), switchover=None)
        self.view = view


class FakeAgent:
    """One agent's AgentView over a FakeStore; ``calls`` records what the API asked of it."""

    def __init__(self, name: str, store: FakeStore, local: LocalStatus) -> None:
        self.name = name
        self.scope = "demo"
        self.api_url = "http://127.0.0.1:1"
        self.store = store
        self.status = local
        self.calls: list[tuple[Any, ...]] = []
        self.restart_error: str | None = None
        self.server_version = 150004
        self.scheduled: RestartRequest | None = None
        self.restarts: list[RestartRequest] = []

    def local(self) -> LocalStatus:
        return self.status

    def is_primary_serving(self) -> bool:
        return primary_serving(self.status, clock.now())

    async def cluster(self) -> ClusterView:
        return self.store.read()

    async def history(self) -> tuple[TimelineEntry, ...]:
        return self.store.read().history

    async def request_switchover(
        self, leader: str, candidate: str | None, scheduled_at: float | None
    ) -> None:
        self.calls.append(("switchover", leader, candidate, scheduled_at))
        self.store.store_request(SwitchoverRequest("switchover", leader, candidate, scheduled_at))

    async def request_failover(self, candidate: str) -> None:
        self.calls.append(("failover", candidate))
        self.store.store_request(SwitchoverRequest("failover", None, candidate))

    async def restart_postgres(self, request: RestartRequest) -> tuple[bool, str]:
        """The HA loop's rules (hamgr/ha/restartplan.py) on this fake's local status."""
        self.calls.append(("restart",))
        self.restarts.append(request)
        s = self.status
        facts = RestartFacts(
            role=s.pg.role if s.pg.running else "stopped",
            pending_restart=s.pending_restart,
            holds_leader_key=s.holds_leader_key,
            lease_ok=s.fence_at is not None and clock.now() < s.fence_at,
            paused=self.store.read().settings.pause,
            server_version=self.server_version,
        )
        why = refusal(request, facts)
        if why is not None:
            return False, why
        if self.restart_error:
            return False, self.restart_error
        return True, "restarted successfully"

    def schedule_restart(self, request: RestartRequest) -> bool:
        self.calls.append(("schedule_restart", request))
        if self.scheduled is not None:
            return False
        self.scheduled = request
        self._publish()
        return True

    def cancel_restart(self) -> bool:
        self.calls.append(("cancel_restart",))
        found, self.scheduled = self.scheduled is not None, None
        self._publish()
        return found

    def _publish(self) -> None:
        """The scheduled restart into this member's record, as the HA loop publishes it."""
        view = self.store.view
        members = tuple(
            msgspec.structs.replace(m, scheduled_restart=self.scheduled)
            if m.name == self.name
            else m
            for m in view.members
        )
        self.store.view = dataclasses.replace(view, members=members)

    async def cancel_switchover(self) -> bool | None:
        self.calls.append(("cancel_switchover",))
        stored = self.store.read().switchover
        if stored is None or stored.scheduled_at is None:
            return False
        self.store.view = dataclasses.replace(self.store.view, switchover=None)
        return True

    async def request_reinitialize(self) -> None:
        self.calls.append(("reinitialize",))

    async def reload_config(self) -> None:
        self.calls.append(("reload",))

    async def patch_settings(self, patch: Mapping[str, Any]) -> DynamicSettings:
        self.calls.append(("patch", dict(patch)))
        settings = apply_settings_patch(self.store.read().settings, patch)
        self.store.view = dataclasses.replace(self.store.view, settings=settings)
        return settings
