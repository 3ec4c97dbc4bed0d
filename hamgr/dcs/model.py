"""What the coordination store holds about one cluster (scope), as frozen values.

Every class converts to and from a JSON-friendly dict (``to_dict`` / ``from_dict``): that is how
it is stored under ``/hamgr/<scope>/...`` and how the REST API shows it. ``from_dict`` raises
:class:`ModelError` naming the field (``members[1].timeline: expected an integer >= 1, got
"x"``); the value rules live in ``__post_init__``, so a value built in code is checked too.

Unknown keys: what agents write (members, leader, history, the whole view) tolerates them, so an
older agent can read what a newer one wrote during a rolling upgrade; what operators submit
(settings, switchover requests) rejects them, so a typo is an error and not a silent no-op.

LSNs are byte positions (ints); ``*_at`` fields are wall-clock seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from hamgr.config.values import address_problem
from hamgr.dcs.jsonfields import (
    JsonObject,
    ModelError,
    check_choice,
    check_int,
    check_name,
    check_seconds,
    fail,
)
from hamgr.dcs.restartrequest import RestartRequest
from hamgr.dcs.settings import DynamicSettings

Role = Literal["primary", "replica", "uninitialized", "stopped"]
RequestKind = Literal["switchover", "failover"]
Requester = Literal["operator", "shutdown"]
ParameterValue = str | int | float | bool

#: Common values of MemberState.state (the field accepts any non-empty word, for newer agents).
STATES = ("running", "starting", "stopping", "stopped", "crashed", "bootstrapping", "cloning")


@dataclass(frozen=True)
class MemberTags:
    """A member's role in failover and load balancing (the ``tags`` config section).

    ``nosync``: never made a synchronous standby. ``failover_priority`` (Patroni's tag): 0 never
    takes over; among equally advanced candidates the higher one wins. ``nofailover`` means 0.
    """

    nofailover: bool = False
    noloadbalance: bool = False
    nosync: bool = False
    clonefrom: bool = False
    failover_priority: int = 1

    def __post_init__(self) -> None:
        check_int("failover_priority", self.failover_priority, 0)

    @property
    def priority(self) -> int:
        """The failover priority in force: 0 when tagged nofailover."""
        return 0 if self.nofailover else self.failover_priority

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> MemberTags:
        o = JsonObject(data, path)
        flags = {f.name: o.flag(f.name, False) for f in fields(cls) if f.type == "bool"}
        return o.build(cls, **flags, failover_priority=o.integer("failover_priority", 1))


@dataclass(frozen=True)
class MemberState:
    """One agent's published status, at ``members/<name>``, attached to the agent's lease.

    ``conn_url`` is PostgreSQL's ``host:port``. For a primary, ``received_lsn`` and
    ``replayed_lsn`` both hold its current WAL position. ``fence_token`` is the leader key's
    create revision while this member is primary, else 0. ``reason`` is its last decision's
    reason; ``paused`` whether it saw the cluster paused; ``store_id`` the node id of the store
    member embedded in this agent (0: none), so that store leadership can be moved to it.
    ``fencer`` is a primary's fence: ``"armed"`` (its fencer holds a lease deadline) or
    ``"disarmed"`` (e.g. while paused: hands off PostgreSQL); ``""`` for any other member.
    ``pending_restart`` names the parameters its PostgreSQL runs with an older value of until
    it restarts (pg_settings.pending_restart), sorted; empty when none.
    ``scheduled_restart``: the restart an operator scheduled on it (hamgr/dcs/restartrequest.py).
    """

    name: str
    api_url: str
    conn_url: str
    role: Role = "uninitialized"
    state: str = "stopped"
    timeline: int | None = None
    received_lsn: int | None = None
    replayed_lsn: int | None = None
    tags: MemberTags = field(default_factory=MemberTags)
    fence_token: int = 0
    reason: str = ""
    paused: bool = False
    store_id: int = 0
    fencer: str = ""
    pending_restart: tuple[str, ...] = ()
    scheduled_restart: RestartRequest | None = None

    def __post_init__(self) -> None:
        check_name("name", self.name)
        check_choice("fencer", self.fencer, FENCER_STATES)
        for i, name in enumerate(self.pending_restart):
            if not isinstance(name, str) or not name:
                fail(f"pending_restart[{i}]", "a parameter name", name)
        if not self.api_url.startswith(("http://", "https://")):
            fail("api_url", 'an "http://" or "https://" URL', self.api_url)
        problem = address_problem(self.conn_url)
        if problem:
            raise ModelError("conn_url", problem)
        check_choice("role", self.role, get_args(Role))
        if not self.state or not self.state.isidentifier():
            fail("state", f"a word such as {', '.join(STATES)}", self.state)
        check_int("timeline", self.timeline, 1)
        check_int("received_lsn", self.received_lsn, 0)
        check_int("replayed_lsn", self.replayed_lsn, 0)
        check_int("fence_token", self.fence_token, 0)
        check_int("store_id", self.store_id, 0)

    @property
    def position(self) -> int | None:
        """How much WAL this member has: the larger of received and replayed, if known."""
        known = [x for x in (self.received_lsn, self.replayed_lsn) if x is not None]
        return max(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["tags"] = self.tags.to_dict()
        out["pending_restart"] = list(self.pending_restart)
        sr = self.scheduled_restart
        out["scheduled_restart"] = sr.to_dict() if sr is not None else None
        return out

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> MemberState:
        o = JsonObject(data, path)
        return o.build(
            cls,
            name=o.text("name"),
            api_url=o.text("api_url"),
            conn_url=o.text("conn_url"),
            role=o.text("role", "uninitialized"),
            state=o.text("state", "stopped"),
            timeline=o.integer("timeline", None),
            received_lsn=o.integer("received_lsn", None),
            replayed_lsn=o.integer("replayed_lsn", None),
            tags=MemberTags.from_dict(o.get("tags", {}), o.name("tags")),
            fence_token=o.integer("fence_token", 0),
            reason=o.text("reason", ""),
            paused=o.flag("paused", False),
            store_id=o.integer("store_id", 0),
            fencer=o.text("fencer", ""),
            pending_restart=tuple(o.items("pending_restart")),
            scheduled_restart=(
                RestartRequest.from_dict(sr, o.name("scheduled_restart"))
                if (sr := o.get("scheduled_restart", None)) is not None
                else None
            ),
        )


FENCER_STATES = ("", "armed", "disarmed")
"""MemberState.fencer: not a primary (or unknown), a deadline armed, none armed."""


@dataclass(frozen=True)
class LeaderKey:
    """The leader key: who holds it, and its create revision, which is the fencing token."""

    name: str
    revision: int

    def __post_init__(self) -> None:
        check_name("name", self.name)
        check_int("revision", self.revision, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision}

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> LeaderKey:
        o = JsonObject(data, path)
        return o.build(cls, name=o.text("name"), revision=o.integer("revision"))


@dataclass(frozen=True)
class SwitchoverRequest:
    """An operator's request to move the primary, at ``switchover``.

    ``switchover`` needs the expected current ``leader`` (the candidate is optional: the best
    replica then); ``failover`` needs a ``candidate`` and works without a leader, promoting the
    candidate even when it is not the most advanced. ``scheduled_at`` (wall clock) delays it.
    ``requested_by`` says who asked, for the cluster history: ``operator`` (the REST API,
    hactl) or ``shutdown`` (the leader's agent handing over as it stops).
    """

    kind: RequestKind
    leader: str | None = None
    candidate: str | None = None
    scheduled_at: float | None = None
    requested_by: Requester = "operator"

    _FIELDS = ("kind", "leader", "candidate", "scheduled_at", "requested_by")

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, get_args(RequestKind))
        check_choice("requested_by", self.requested_by, get_args(Requester))
        for key in ("leader", "candidate"):
            if getattr(self, key) is not None:
                check_name(key, getattr(self, key))
        if self.kind == "switchover" and self.leader is None:
            raise ModelError("leader", "a switchover needs the current leader's name")
        if self.kind == "failover" and self.candidate is None:
            raise ModelError("candidate", "a failover needs a candidate")
        if self.leader is not None and self.leader == self.candidate:
            raise ModelError("candidate", f"is the leader itself ({self.leader})")
        if self.scheduled_at is not None:
            check_seconds("scheduled_at", self.scheduled_at)

    def due(self, wall_now: float) -> bool:
        """Whether the request applies now (unscheduled, or its time has come)."""
        return self.scheduled_at is None or self.scheduled_at <= wall_now

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._FIELDS}

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> SwitchoverRequest:
        o = JsonObject(data, path, known=cls._FIELDS)
        return o.build(
            cls,
            kind=o.text("kind"),
            leader=o.text("leader", None),
            candidate=o.text("candidate", None),
            scheduled_at=o.number("scheduled_at", None),
            requested_by=o.text("requested_by", "operator"),
        )


@dataclass(frozen=True)
class TimelineEntry:
    """One promotion: ``timeline`` ended at ``switch_lsn`` and ``new_leader`` began the next."""

    timeline: int
    switch_lsn: int
    reason: str
    at: float
    new_leader: str

    def __post_init__(self) -> None:
        check_int("timeline", self.timeline, 1)
        check_int("switch_lsn", self.switch_lsn, 0)
        check_seconds("at", self.at, zero_ok=True)
        check_name("new_leader", self.new_leader)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> TimelineEntry:
        o = JsonObject(data, path)
        return o.build(
            cls,
            timeline=o.integer("timeline"),
            switch_lsn=o.integer("switch_lsn"),
            reason=o.text("reason", ""),
            at=o.number("at"),
            new_leader=o.text("new_leader"),
        )


@dataclass(frozen=True)
class SyncState:
    """The primary's record of its synchronous standbys, at ``sync`` (Patroni's ``/sync``).

    Every commit that ``leader`` acknowledged is on at least ``acks`` of ``members`` (R).
    So any ``len(R) - acks + 1`` members of R include one that holds every acknowledged commit
    (pigeonhole): :attr:`needed` is how many of them a failover candidate must see, stopped
    receiving from the old primary, and be at least as advanced as. ``acks`` 0 promises
    nothing: no member may take over automatically (e.g. right after a promotion, or while the
    primary runs without a synchronous standby). In mode ``on`` PostgreSQL waits for all of R
    (``acks == len(R)``): any member of R may take over.

    The primary keeps this true by the order of its writes (see :mod:`hamgr.ha.syncrep`):
    a change that makes PostgreSQL wait for more is made in PostgreSQL first and recorded here
    second; a change that promises less is recorded here first and made in PostgreSQL second.
    """

    leader: str
    members: tuple[str, ...] = ()
    acks: int = 0

    def __post_init__(self) -> None:
        check_name("leader", self.leader)
        for i, name in enumerate(self.members):
            check_name(f"members[{i}]", name)
        if list(self.members) != sorted(set(self.members)):
            fail("members", "member names sorted and unique", list(self.members))
        if self.leader in self.members:
            raise ModelError("members", f"names the leader itself ({self.leader})")
        check_int("acks", self.acks, 0)
        if self.acks > len(self.members):
            raise ModelError(
                "acks", f"must be <= the number of members ({len(self.members)}), got {self.acks}"
            )

    @property
    def needed(self) -> int | None:
        """How many members of R a candidate must see (None: no promise, nobody may)."""
        return len(self.members) - self.acks + 1 if self.acks else None

    def to_dict(self) -> dict[str, Any]:
        return {"leader": self.leader, "members": list(self.members), "acks": self.acks}

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> SyncState:
        o = JsonObject(data, path)
        return o.build(
            cls,
            leader=o.text("leader"),
            members=tuple(o.items("members")),
            acks=o.integer("acks", 0),
        )


@dataclass(frozen=True)
class PrimaryPosition:
    """How far the primary ``leader`` got, at ``position``: its WAL write position on
    ``timeline``, written every loop and, on a clean shutdown, its shutdown checkpoint.

    Unlike the member key it is attached to no lease, so it outlives the primary: a failover
    candidate compares itself with it (``maximum_lag_on_failover``) even when no peer answers.
    """

    leader: str
    timeline: int
    lsn: int

    def __post_init__(self) -> None:
        check_name("leader", self.leader)
        check_int("timeline", self.timeline, 1)
        check_int("lsn", self.lsn, 0)

    def to_dict(self) -> dict[str, Any]:
        return {"leader": self.leader, "timeline": self.timeline, "lsn": self.lsn}

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> PrimaryPosition:
        o = JsonObject(data, path)
        return o.build(
            cls, leader=o.text("leader"), timeline=o.integer("timeline"), lsn=o.integer("lsn")
        )


@dataclass(frozen=True)
class ClusterView:
    """Everything under one scope, read at store revision ``revision``.

    ``initialize`` is None before anyone claimed the cluster, ``""`` while the winner of the
    bootstrap race is creating it, then PostgreSQL's system identifier (decimal);
    ``initialize_revision`` is the store revision of its last write (0 while absent or not
    known), so that a claim judged orphaned is deleted only if it is still that claim.
    ``members`` is sorted by name, names unique; ``history`` is in timeline order.
    ``sync`` is the primary's synchronous-standby record and ``sync_revision`` its store mod
    revision (0: absent), for the compare-and-swap that changes it; ``position`` the last
    primary's recorded WAL position. ``settings_revision`` is the config key's mod revision
    (0: absent, so ``settings`` holds the built-in defaults, not the cluster's).
    """

    initialize: str | None = None
    initialize_revision: int = 0
    settings: DynamicSettings = field(default_factory=DynamicSettings)
    leader: LeaderKey | None = None
    members: tuple[MemberState, ...] = ()
    switchover: SwitchoverRequest | None = None
    history: tuple[TimelineEntry, ...] = ()
    revision: int = 0
    sync: SyncState | None = None
    sync_revision: int = 0
    position: PrimaryPosition | None = None
    settings_revision: int = 0

    def __post_init__(self) -> None:
        check_int("sync_revision", self.sync_revision, 0)
        check_int("settings_revision", self.settings_revision, 0)
        if self.initialize and not self.initialize.isdigit():
            fail("initialize", "a system identifier (decimal digits) or empty", self.initialize)
        object.__setattr__(self, "members", tuple(sorted(self.members, key=lambda m: m.name)))
        names = [m.name for m in self.members]
        for i, name in enumerate(names[1:]):
            if name == names[i]:
                raise ModelError("members", f"member {name} appears twice")
        timelines = [h.timeline for h in self.history]
        if timelines != sorted(set(timelines)):
            raise ModelError("history", f"timelines must increase, got {timelines}")
        check_int("revision", self.revision, 0)
        check_int("initialize_revision", self.initialize_revision, 0)
        if self.initialize is None and self.initialize_revision:
            fail("initialize_revision", "0 without an initialize key", self.initialize_revision)

    def member(self, name: str) -> MemberState | None:
        """The member called ``name``, if it published its state."""
        return next((m for m in self.members if m.name == name), None)

    @property
    def timeline(self) -> int:
        """The cluster's current timeline as the history knows it (1 before any promotion)."""
        return self.history[-1].timeline + 1 if self.history else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "initialize": self.initialize,
            "initialize_revision": self.initialize_revision,
            "settings": self.settings.to_dict(),
            "leader": self.leader.to_dict() if self.leader else None,
            "members": [m.to_dict() for m in self.members],
            "switchover": self.switchover.to_dict() if self.switchover else None,
            "history": [h.to_dict() for h in self.history],
            "revision": self.revision,
            "sync": self.sync.to_dict() if self.sync else None,
            "sync_revision": self.sync_revision,
            "position": self.position.to_dict() if self.position else None,
            "settings_revision": self.settings_revision,
        }

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> ClusterView:
        o = JsonObject(data, path)
        leader, request = o.get("leader", None), o.get("switchover", None)
        sync, position = o.get("sync", None), o.get("position", None)
        return o.build(
            cls,
            initialize=o.text("initialize", None),
            initialize_revision=o.integer("initialize_revision", 0),
            settings=DynamicSettings.from_dict(o.get("settings", {}), o.name("settings")),
            leader=LeaderKey.from_dict(leader, o.name("leader")) if leader is not None else None,
            members=tuple(
                MemberState.from_dict(m, o.name(f"members[{i}]"))
                for i, m in enumerate(o.items("members"))
            ),
            switchover=(
                SwitchoverRequest.from_dict(request, o.name("switchover"))
                if request is not None
                else None
            ),
            history=tuple(
                TimelineEntry.from_dict(h, o.name(f"history[{i}]"))
                for i, h in enumerate(o.items("history"))
            ),
            revision=o.integer("revision", 0),
            sync=SyncState.from_dict(sync, o.name("sync")) if sync is not None else None,
            sync_revision=o.integer("sync_revision", 0),
            position=(
                PrimaryPosition.from_dict(position, o.name("position"))
                if position is not None
                else None
            ),
            settings_revision=o.integer("settings_revision", 0),
        )
