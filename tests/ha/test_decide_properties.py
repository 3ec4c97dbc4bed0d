"""Properties of decide() over random clusters (hypothesis).

(a) Members that see the same view and the same probes name at most one winner of the race,
    and exactly one when an eligible member exists in a healthy cluster.
(b) A member whose lease deadline passed never keeps (or makes) PostgreSQL primary.
(c) Pause yields no PostgreSQL-changing action (except the self-fence of (b)).
(d) decide() never raises and always gives a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamgr.dcs.model import (
    ClusterView,
    LeaderKey,
    MemberState,
    MemberTags,
    SwitchoverRequest,
    TimelineEntry,
)
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha import (
    POSTGRES_ACTIONS,
    AcquireLeader,
    Bootstrap,
    Decision,
    Demote,
    LocalPostgres,
    LocalState,
    PeerProbe,
    Promote,
    StartPostgres,
    decide,
)
from tests.ha.builders import BASE, MB, NOW, SYS, WALL

NAMES = ("a", "b", "c", "d", "e")
LSNS = st.sampled_from([BASE, BASE + 1, BASE + MB // 2, BASE + MB, BASE + 3 * MB, BASE + 9 * MB])
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Node:
    """One member of a random world: what it observes of itself equals what peers probe."""

    name: str
    alive: bool
    running: bool
    role: str
    timeline: int
    received: int
    replayed: int
    nofailover: bool

    def pg(self) -> LocalPostgres:
        return LocalPostgres(
            initialized=True,
            data_dir_empty=False,
            running=self.running,
            role=self.role,  # type: ignore[arg-type]
            timeline=self.timeline,
            received_lsn=None if self.role == "primary" else self.received,
            replayed_lsn=None if self.role == "primary" else self.replayed,
            current_lsn=self.received if self.role == "primary" else None,
            system_identifier=SYS,
            detached=self.role == "replica",  # a leaderless standby detaches before racing
        )

    def probe(self) -> PeerProbe:
        return PeerProbe(
            name=self.name,
            reachable=self.alive,
            state="running" if self.running else "stopped",
            role=self.role,
            timeline=self.timeline,
            received_lsn=self.received,
            replayed_lsn=self.replayed if self.role != "primary" else self.received,
            nofailover=self.nofailover,
            detached=self.role == "replica",
        )

    def member(self) -> MemberState:
        n = NAMES.index(self.name) + 1
        return MemberState(
            name=self.name,
            api_url=f"http://127.0.0.{n}:8008",
            conn_url=f"127.0.0.{n}:5432",
            role="replica" if self.role in ("unknown", "replica") else self.role,  # type: ignore[arg-type]
            state="running" if self.running else "stopped",
            timeline=self.timeline,
            received_lsn=self.received,
            tags=MemberTags(nofailover=self.nofailover),
        )


@st.composite
def nodes(draw: st.DrawFn, name: str, healthy: bool = False) -> Node:
    running = True if healthy else draw(st.booleans())
    roles = ["replica"] if healthy else ["replica", "replica", "primary", "unknown"]
    role = draw(st.sampled_from(roles)) if running else "stopped"
    received = draw(LSNS)
    return Node(
        name=name,
        alive=True if healthy else draw(st.booleans()),
        running=running,
        role=role,
        timeline=1 if healthy else draw(st.integers(1, 3)),
        received=received,
        replayed=draw(st.integers(BASE - MB, received)),
        nofailover=False if healthy else draw(st.booleans()),
    )


@st.composite
def worlds(draw: st.DrawFn, healthy: bool = False) -> list[Node]:
    count = draw(st.integers(2, len(NAMES)))
    return [draw(nodes(n, healthy)) for n in NAMES[:count]]


@st.composite
def requests(draw: st.DrawFn) -> SwitchoverRequest | None:
    kind = draw(st.sampled_from(["none", "switchover", "failover"]))
    if kind == "none":
        return None
    leader = draw(st.sampled_from(NAMES)) if kind == "switchover" else None
    others = [n for n in NAMES if n != leader]
    pick = st.sampled_from(others)
    candidate = draw(st.none() | pick) if kind == "switchover" else draw(pick)
    when = draw(st.none() | st.sampled_from([WALL - 5, WALL + 60]))
    return SwitchoverRequest(kind, leader, candidate, when)  # type: ignore[arg-type]


def dcs_settings(pause: bool | None = None) -> st.SearchStrategy[DynamicSettings]:
    return st.builds(
        DynamicSettings,
        maximum_lag_on_failover=st.sampled_from([0, MB, 10 * MB]),
        pause=st.booleans() if pause is None else st.just(pause),
    )


HISTORIES = st.sampled_from(
    [
        (),
        (TimelineEntry(1, BASE, "failover", WALL - 99, "a"),),
        tuple(TimelineEntry(t, BASE, "failover", WALL - 99, "b") for t in (1, 2)),
    ]
)


def _local(node: Node, **kw: object) -> LocalState:
    return LocalState(
        name=node.name,
        now=NOW,
        wall_now=WALL,
        pg=node.pg(),
        tags=MemberTags(nofailover=node.nofailover),
        **kw,  # type: ignore[arg-type]
    )


def _winners(view: ClusterView, world: list[Node]) -> list[str]:
    peers = {n.name: n.probe() for n in world}
    out = []
    for node in world:
        if node.alive:
            d = decide(view, _local(node), peers)
            if Promote() in d.actions:
                assert d.actions[:2] == (AcquireLeader(), Promote()), d
                out.append(node.name)
    return out


@FAST
@given(world=worlds(), dcs=dcs_settings(), request=requests(), hist=HISTORIES, data=st.data())
def test_at_most_one_member_takes_the_key(
    world: list[Node],
    dcs: DynamicSettings,
    request: SwitchoverRequest | None,
    hist: tuple[TimelineEntry, ...],
    data: st.DataObject,
) -> None:
    published = data.draw(st.lists(st.sampled_from(world), unique=True))
    view = ClusterView(
        initialize=str(SYS),
        settings=dcs,
        members=tuple(n.member() for n in published),
        switchover=request,
        history=hist,
    )
    assert len(_winners(view, world)) <= 1


@FAST
@given(world=worlds(healthy=True))
def test_exactly_one_healthy_member_takes_the_key(world: list[Node]) -> None:
    view = ClusterView(initialize=str(SYS), settings=DynamicSettings(maximum_lag_on_failover=0))
    best = min(world, key=lambda n: (-n.received, n.name))
    assert _winners(view, world) == [best.name]


MAYBE_LSN = st.none() | LSNS
#: PostgreSQL observations as odd as an observer may report (stopped yet primary, and so on).
ODD_PG = st.builds(
    LocalPostgres,
    initialized=st.booleans(),
    data_dir_empty=st.booleans(),
    running=st.booleans(),
    role=st.sampled_from(["primary", "replica", "stopped", "unknown"]),
    timeline=st.none() | st.integers(1, 4),
    received_lsn=MAYBE_LSN,
    replayed_lsn=MAYBE_LSN,
    current_lsn=MAYBE_LSN,
    system_identifier=st.none() | st.sampled_from([SYS, 42]),
    upstream=st.none() | st.sampled_from(["127.0.0.1:5432", "127.0.0.2:5432"]),
    checkpoint_lsn=MAYBE_LSN,
    timeline_switch_lsn=MAYBE_LSN,
)
#: Probe answers with missing and unexpected fields.
ODD_PROBE = st.builds(
    PeerProbe,
    name=st.sampled_from(NAMES),
    reachable=st.booleans(),
    state=st.none() | st.sampled_from(["running", "stopped", "starting", "weird"]),
    role=st.none() | st.sampled_from(["primary", "replica", "stopped", "unknown"]),
    timeline=st.none() | st.integers(1, 4),
    received_lsn=MAYBE_LSN,
    replayed_lsn=MAYBE_LSN,
    nofailover=st.booleans(),
)


@st.composite
def any_local(draw: st.DrawFn, name: str) -> LocalState:
    node = draw(nodes(name))
    pg = draw(st.sampled_from([node.pg(), node.pg(), LocalPostgres()]) | ODD_PG)
    return LocalState(
        name=name,
        now=NOW,
        wall_now=WALL,
        pg=pg,
        tags=MemberTags(nofailover=node.nofailover),
        leader_revision=draw(st.none() | st.sampled_from([6, 7])),
        fence_at=draw(st.none() | st.sampled_from([NOW - 3, NOW - 0.001, NOW, NOW + 2])),
        use_pg_rewind=draw(st.booleans()),
        reclone_on_rewind_failure=draw(st.booleans()),
        rewind_failed=draw(st.booleans()),
        timeline_diverged=draw(st.booleans()),
        switchover_stopped_at=draw(st.none() | st.sampled_from([NOW - 100, NOW - 1])),
        store_leader_here=draw(st.booleans()),
    )


@st.composite
def any_case(
    draw: st.DrawFn, pause: bool | None = None
) -> tuple[ClusterView, LocalState, dict[str, PeerProbe] | None]:
    world = draw(worlds())
    me = draw(any_local(world[0].name))
    leader = draw(st.none() | st.sampled_from([n.name for n in world]))
    view = ClusterView(
        initialize=draw(st.sampled_from([None, "", str(SYS), "12345"])),
        settings=draw(dcs_settings(pause)),
        leader=LeaderKey(leader, draw(st.sampled_from([6, 7]))) if leader else None,
        members=tuple(n.member() for n in world if draw(st.booleans())),
        switchover=draw(requests()),
        history=draw(HISTORIES),
    )
    consistent = {n.name: n.probe() for n in world}
    odd = st.dictionaries(st.sampled_from(NAMES), ODD_PROBE, max_size=4)
    peers = draw(st.none() | st.just(consistent) | odd)
    return view, me, peers


def _fence_due(local: LocalState) -> bool:
    return local.fence_at is not None and local.now >= local.fence_at


@FAST
@given(case=any_case())
def test_expired_lease_never_keeps_or_makes_a_primary(
    case: tuple[ClusterView, LocalState, dict[str, PeerProbe] | None],
) -> None:
    view, local, peers = case
    d = decide(view, local, peers)
    if local.pg.is_primary and _fence_due(local) and not view.settings.pause:
        # (Paused: hands off, the fencer disarmed; see hamgr/ha/decide.py, step 3.)
        assert d.actions == (Demote("immediate"),), d
    if _fence_due(local) or local.fence_at is None:
        for i, action in enumerate(d.actions):
            if isinstance(action, Promote | StartPostgres | Bootstrap):
                assert AcquireLeader() in d.actions[:i], d


@FAST
@given(case=any_case(pause=True))
def test_pause_changes_no_postgres(
    case: tuple[ClusterView, LocalState, dict[str, PeerProbe] | None],
) -> None:
    view, local, peers = case
    d = decide(view, local, peers)
    req = view.switchover
    asked_to_me = (  # the one exception, as Patroni: a manual failover the operator asked for
        view.leader is None
        and req is not None
        and req.kind == "failover"
        and req.candidate == local.name
        and req.due(local.wall_now)
    )
    touches = [a for a in d.actions if isinstance(a, POSTGRES_ACTIONS)]
    if asked_to_me and touches:
        assert d.actions[0] == AcquireLeader() and all(isinstance(a, Promote) for a in touches), d
    else:
        assert not touches, d
    assert d.reason.startswith("paused"), d


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=any_case())
def test_decide_never_raises(
    case: tuple[ClusterView, LocalState, dict[str, PeerProbe] | None],
) -> None:
    view, local, peers = case
    d = decide(view, local, peers)
    assert isinstance(d, Decision) and d.reason
