"""What the REST API needs from the running agent: one small interface, :class:`AgentView`.

The HA loop implements it; the API (``hamgr/agent/api.py``) only reads through it and asks it to
act, so the HTTP layer can be tested with a plain test class and no PostgreSQL.

Health checks read only :meth:`AgentView.local` and :meth:`AgentView.is_primary_serving`, which
must answer from memory at once (a load balancer's check must not wait on the store); the JSON
views and the management calls may go to the store and raise :class:`~hamgr.dcs.DcsError`.

Two pure helpers state rules that the implementation and the API share:
:func:`primary_serving` (the fencing rule behind ``GET /primary``) and
:func:`apply_settings_patch` (a JSON merge patch of the dynamic settings, checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hamgr.dcs.model import ClusterView, MemberState, TimelineEntry
from hamgr.dcs.restartrequest import RestartRequest
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError
from hamgr.ha.inputs import LocalPostgres
from hamgr.postgres.errors import ConfigError as PgConfigError
from hamgr.postgres.settings import validate_parameters


class RequestRejected(Exception):
    """The request does not fit the cluster's state (answered 400); nothing was changed."""


class RequestFailed(Exception):
    """The request was valid but could not be carried out (answered 503); the message says why."""


@dataclass(frozen=True)
class LocalStatus:
    """This agent as it knows itself right now.

    ``member`` is the MemberState it last published (name, URLs, role, tags, the last
    decision's ``reason``, whether it saw the cluster ``paused``); ``pg`` the local PostgreSQL
    as last observed (running, role, timeline, LSNs). ``streaming``: a standby's WAL receiver
    is streaming from the leader. ``lag``: bytes of WAL this standby's replay is behind the
    leader's last known position (None: unknown, or not a standby). ``fence_at`` and
    ``loop_at`` are instants of the deadline clock (``hamgr.clock.now()``): the lease deadline
    of the last successful keepalive, and the end of the last HA loop cycle; ``ttl`` the lease
    TTL in force (how stale ``loop_at`` may be before ``GET /liveness`` fails).
    ``sync_role``: ``"sync"`` or ``"quorum"`` while the store's record counts this standby in
    the synchronous set. ``standby_leader``: this member holds the key of a standby cluster
    and runs PostgreSQL as a standby of the remote primary (hamgr/ha/standby.py).
    ``replication_slots``: the slots the primary (or standby leader) keeps (hamgr/ha/slots.py).
    """

    member: MemberState
    pg: LocalPostgres
    streaming: bool = False
    lag: int | None = None
    holds_leader_key: bool = False
    standby_leader: bool = False
    replication_slots: tuple[str, ...] = ()
    fence_at: float | None = None
    pending_restart: bool = False
    sync_role: str | None = None
    loop_at: float | None = None
    ttl: float = DynamicSettings().ttl
    timing: Mapping[str, float | int | None] = field(default_factory=dict)
    """The timing in force in this agent (GET /patroni ``timing``): the store session's
    ``ttl`` and ``retry_timeout``, ``loop_wait`` and ``safety_margin`` as last read, the lease
    the keys are on (``lease_id``, ``lease_ttl`` as the store granted it), ``fence_window``
    (the deadline the fencer holds minus the instant the renewal it came from was sent:
    ``lease_ttl - safety_margin`` while the fence follows the lease; ``switching`` while the
    keys are being moved onto a lease of a new ttl, when the earlier of both leases counts),
    and the counts of HA loop ``cycles`` and timed ``keepalives`` since start."""


class AgentView(Protocol):
    """The running agent, as its REST API sees it."""

    @property
    def name(self) -> str:
        """This member's name."""
        ...

    @property
    def scope(self) -> str:
        """The cluster's name."""
        ...

    @property
    def api_url(self) -> str:
        """This agent's REST API base URL, as other members and hactl reach it."""
        ...

    def local(self) -> LocalStatus:
        """This agent's state, from memory (never waits)."""
        ...

    def is_primary_serving(self) -> bool:
        """True only while PostgreSQL runs as primary, this member holds the leader key and its
        ``fence_at`` lies in the future (see :func:`primary_serving`); from memory."""
        ...

    async def cluster(self) -> ClusterView:
        """The cluster as the store holds it now (a linearizable read; may raise DcsError)."""
        ...

    async def history(self) -> tuple[TimelineEntry, ...]:
        """The cluster's timeline history, oldest first."""
        ...

    async def request_switchover(
        self, leader: str, candidate: str | None, scheduled_at: float | None
    ) -> None:
        """Store a switchover request (``scheduled_at``: wall-clock seconds, None for now).

        Returns once the request is stored; the API then watches :meth:`cluster` for the
        outcome. The API has checked it against a fresh view already; raise RequestRejected if
        the store's state no longer allows it.
        """
        ...

    async def request_failover(self, candidate: str) -> None:
        """Store a failover request to ``candidate``; like :meth:`request_switchover`."""
        ...

    async def restart_postgres(self, request: RestartRequest) -> tuple[bool, str]:
        """Have the HA loop restart the local PostgreSQL in its current role, in its cycle, if
        ``request``'s filters hold and hamgr's fencing allows (hamgr/ha/restartplan.py); return
        (restarted, message) once it runs again or failed, or when waiting took too long."""
        ...

    def schedule_restart(self, request: RestartRequest) -> bool:
        """Keep ``request`` (``at`` set) for the HA loop; False if one is scheduled already."""
        ...

    def cancel_restart(self) -> bool:
        """Drop the scheduled restart; False when none was scheduled."""
        ...

    async def cancel_switchover(self) -> bool | None:
        """Delete the stored switchover if it is a scheduled one: True when deleted, False when
        none is scheduled, None when the store's request changed meanwhile (not deleted)."""
        ...

    async def request_reinitialize(self) -> None:
        """Ask the HA loop to rebuild this replica: stop it, empty its data directory and clone
        it again from the leader. Returns at once; the API checked that this member is not the
        leader and that the cluster has one."""
        ...

    async def reload_config(self) -> None:
        """Re-read the agent's configuration file and apply what can change without restart."""
        ...

    async def patch_settings(self, patch: Mapping[str, Any]) -> DynamicSettings:
        """Apply ``patch`` to the cluster's dynamic settings and return the new settings.

        Use :func:`apply_settings_patch` on the stored settings and write the result with a
        compare-and-swap against the revision read, retrying on a lost race; ModelError
        (answered 400) when the patched settings are invalid, RequestFailed when the write
        keeps losing.
        """
        ...


def primary_serving(local: LocalStatus, now: float) -> bool:
    """The fencing rule of ``GET /primary``: primary, key held, lease deadline in the future.

    Load balancers must leave a primary BEFORE its fencer stops it, so the answer turns 503 as
    soon as ``now`` (``hamgr.clock.now()``) reaches ``fence_at``, whatever else the agent believes.
    """
    pg = local.pg
    return (
        pg.running
        and pg.role == "primary"
        and local.holds_leader_key
        and local.fence_at is not None
        and now < local.fence_at
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def apply_settings_patch(settings: DynamicSettings, patch: Mapping[str, Any]) -> DynamicSettings:
    """``settings`` with the JSON merge patch ``patch`` applied, checked as a whole.

    ``{"pause": true}`` pauses; ``{"ttl": null}`` returns ttl to its default;
    ``{"parameters": {"work_mem": null}}`` removes one PostgreSQL parameter. Raises
    ModelError naming the field (``ttl: must be > 0, got -1``; ``tll: unknown field``;
    ``parameters: 'port' is managed by hamgr ...``: every member would refuse to apply it).
    """
    if not isinstance(patch, Mapping):
        raise ModelError("body", "expected a JSON object of settings to change")
    if not patch:
        raise ModelError("body", "the patch is empty: nothing to change")
    new = DynamicSettings.from_dict(merge_patch(settings.to_dict(), patch))
    try:
        validate_parameters(new.parameters)
    except PgConfigError as exc:
        raise ModelError("parameters", str(exc).removeprefix("parameters: ")) from None
    return new
