"""What the coordination store holds about one cluster (scope), as frozen values.

The values agents and operators write under ``/hamgr/<scope>/...`` (members, the switchover
request, the history, the synchronous-standby record, the primary's position) are frozen
msgspec Structs: types, defaults and bounds are stated once in the annotations, and the stored
form is what ``msgspec.to_builtins`` makes of a value (hamgr/dcs/common.py writes it compact
and key-sorted). :func:`hamgr.dcs.strict.decode` reads it back, raising
:class:`~hamgr.dcs.strict.ModelError` naming the field (``members[1].timeline: expected `int` >=
1``). Names, bounds and choices are annotations (:data:`MemberName`, ``Meta(ge=0)``,
``Literal``), which msgspec checks when it decodes; rules that an annotation cannot state (an
address, one field against another) live in ``__post_init__``, which runs on decoding and when
code builds a value alike. Values built in code are checked against the annotations when they
are written (hamgr/dcs/common.py ``encode_value``), so that nothing is stored that readers refuse.

Unknown keys: what agents write (members, history, sync, position) tolerates them, so an older
agent can read what a newer one wrote during a rolling upgrade; what operators submit
(settings, switchover requests) rejects them, so a typo is an error and not a silent no-op.

LSNs are byte positions (ints); ``*_at`` fields are wall-clock seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from hamgr.config.problems import show
from hamgr.config.values import MEMBER_NAME, address_problem
from hamgr.dcs.restartrequest import RestartRequest
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError

Role = Literal["primary", "replica", "uninitialized", "stopped"]
RequestKind = Literal["switchover", "failover"]
Requester = Literal["operator", "shutdown"]
ParameterValue = str | int | float | bool
FencerState = Literal["", "armed", "disarmed"]
"""MemberState.fencer: not a primary (or unknown), a deadline armed, none armed."""

Lsn = Annotated[int, Meta(ge=0, description="a WAL position in bytes")]
Timeline = Annotated[int, Meta(ge=1)]
Count = Annotated[int, Meta(ge=0)]
MemberName = Annotated[str, MEMBER_NAME]
"""A scope or member name, as the config file's (MEMBER_NAME, whose pattern also refuses a
final newline: msgspec matches with ``re.search``, where ``$`` matches before one)."""

#: Common values of MemberState.state (the field accepts any non-empty word, for newer agents).
STATES = ("running", "starting", "stopping", "stopped", "crashed", "bootstrapping", "cloning")


class MemberTags(msgspec.Struct, frozen=True):
    """A member's role in failover and load balancing (the ``tags`` config section).

    ``nosync``: never made a synchronous standby. ``failover_priority`` (Patroni's tag): 0 never
    takes over; among equally advanced candidates the higher one wins. ``nofailover`` means 0.
    """

    nofailover: bool = False
    noloadbalance: bool = False
    nosync: bool = False
    clonefrom: bool = False
    failover_priority: Count = 1

    @property
    def priority(self) -> int:
        """The failover priority in force: 0 when tagged nofailover."""
        return 0 if self.nofailover else self.failover_priority


class MemberState(msgspec.Struct, frozen=True):
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

    name: MemberName
    api_url: Annotated[
        str, Meta(pattern="^https?://", description='an "http://" or "https://" URL')
    ]
    conn_url: str
    role: Role = "uninitialized"
    state: str = "stopped"
    timeline: Timeline | None = None
    received_lsn: Lsn | None = None
    replayed_lsn: Lsn | None = None
    tags: MemberTags = msgspec.field(default_factory=MemberTags)
    fence_token: Count = 0
    reason: str = ""
    paused: bool = False
    store_id: Count = 0
    fencer: FencerState = ""
    pending_restart: tuple[Annotated[str, Meta(min_length=1)], ...] = ()
    scheduled_restart: RestartRequest | None = None

    def __post_init__(self) -> None:
        problem = address_problem(self.conn_url)
        if problem:
            raise ModelError("conn_url", problem)
        if not self.state.isidentifier():
            raise ModelError(
                "state", f"expected a word such as {', '.join(STATES)}, got {show(self.state)}"
            )

    @property
    def position(self) -> int | None:
        """How much WAL this member has: the larger of received and replayed, if known."""
        known = [x for x in (self.received_lsn, self.replayed_lsn) if x is not None]
        return max(known) if known else None


class LeaderKey(msgspec.Struct, frozen=True):
    """The leader key: who holds it, and its create revision, which is the fencing token.

    Stored as the holder's name in plain text; the revision is the key's own."""

    name: MemberName
    revision: Annotated[int, Meta(ge=1)]


class SwitchoverRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An operator's request to move the primary, at ``switchover``.

    ``switchover`` needs the expected current ``leader`` (the candidate is optional: the best
    replica then); ``failover`` needs a ``candidate`` and works without a leader, promoting the
    candidate even when it is not the most advanced. ``scheduled_at`` (wall clock) delays it.
    ``requested_by`` says who asked, for the cluster history: ``operator`` (the REST API,
    hactl) or ``shutdown`` (the leader's agent handing over as it stops).
    """

    kind: RequestKind
    leader: MemberName | None = None
    candidate: MemberName | None = None
    scheduled_at: Annotated[float, Meta(gt=0)] | None = None
    requested_by: Requester = "operator"

    def __post_init__(self) -> None:
        if self.kind == "switchover" and self.leader is None:
            raise ModelError("leader", "a switchover needs the current leader's name")
        if self.kind == "failover" and self.candidate is None:
            raise ModelError("candidate", "a failover needs a candidate")
        if self.leader is not None and self.leader == self.candidate:
            raise ModelError("candidate", f"is the leader itself ({self.leader})")

    def due(self, wall_now: float) -> bool:
        """Whether the request applies now (unscheduled, or its time has come)."""
        return self.scheduled_at is None or self.scheduled_at <= wall_now


class TimelineEntry(msgspec.Struct, frozen=True):
    """One promotion: ``timeline`` ended at ``switch_lsn`` and ``new_leader`` began the next."""

    timeline: Timeline
    switch_lsn: Lsn
    reason: str
    at: Annotated[float, Meta(ge=0)]
    new_leader: MemberName


class SyncState(msgspec.Struct, frozen=True):
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

    leader: MemberName
    members: tuple[MemberName, ...] = ()
    acks: Count = 0

    def __post_init__(self) -> None:
        if list(self.members) != sorted(set(self.members)):
            raise ModelError(
                "members",
                f"expected member names sorted and unique, got {show(list(self.members))}",
            )
        if self.leader in self.members:
            raise ModelError("members", f"names the leader itself ({self.leader})")
        if self.acks > len(self.members):
            raise ModelError(
                "acks", f"must be <= the number of members ({len(self.members)}), got {self.acks}"
            )

    @property
    def needed(self) -> int | None:
        """How many members of R a candidate must see (None: no promise, nobody may)."""
        return len(self.members) - self.acks + 1 if self.acks else None


class PrimaryPosition(msgspec.Struct, frozen=True):
    """How far the primary ``leader`` got, at ``position``: its WAL write position on
    ``timeline``, written every loop and, on a clean shutdown, its shutdown checkpoint.

    Unlike the member key it is attached to no lease, so it outlives the primary: a failover
    candidate compares itself with it (``maximum_lag_on_failover``) even when no peer answers.
    """

    leader: MemberName
    timeline: Timeline
    lsn: Lsn


@dataclass(frozen=True)
class ClusterView:
    """Everything under one scope, read at store revision ``revision``: not stored as one
    value, but assembled from the scope's keys (``build_view`` in hamgr/dcs/common.py).

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
        if self.initialize and not self.initialize.isdigit():
            raise ModelError(
                "initialize",
                "expected a system identifier (decimal digits) or empty, got "
                + show(self.initialize),
            )
        object.__setattr__(self, "members", tuple(sorted(self.members, key=lambda m: m.name)))
        names = [m.name for m in self.members]
        for i, name in enumerate(names[1:]):
            if name == names[i]:
                raise ModelError("members", f"member {name} appears twice")
        timelines = [h.timeline for h in self.history]
        if timelines != sorted(set(timelines)):
            raise ModelError("history", f"timelines must increase, got {timelines}")
        if self.initialize is None and self.initialize_revision:
            raise ModelError(
                "initialize_revision",
                f"expected 0 without an initialize key, got {self.initialize_revision}",
            )

    def member(self, name: str) -> MemberState | None:
        """The member called ``name``, if it published its state."""
        return next((m for m in self.members if m.name == name), None)

    @property
    def timeline(self) -> int:
        """The cluster's current timeline as the history knows it (1 before any promotion)."""
        return self.history[-1].timeline + 1 if self.history else 1
