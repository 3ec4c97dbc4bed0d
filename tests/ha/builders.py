"""Small builders for decide() inputs: a three-member cluster a (leader), b, c by default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import strategies as st

from hamgr.dcs.model import (
    ClusterView,
    LeaderKey,
    MemberState,
    MemberTags,
    PrimaryPosition,
    SwitchoverRequest,
    TimelineEntry,
)
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha import Action, decide
from hamgr.ha.inputs import LocalPostgres, LocalState, PeerProbe

SYS = 7301234567890123456
NOW = 1000.0
WALL = 1_700_000_000.0
MB = 1 << 20
BASE = 0x3000000


def member(name: str, role: str = "replica", state: str = "running", **kw: Any) -> MemberState:
    n = ord(name[0]) - ord("a") + 1
    kw.setdefault("timeline", 1)
    return MemberState(
        name=name,
        api_url=f"http://127.0.0.{n}:8008",
        conn_url=f"127.0.0.{n}:5432",
        role=role,  # type: ignore[arg-type]
        state=state,
        **kw,
    )


def view(
    leader: str | None = "a",
    revision: int = 7,
    members: tuple[MemberState, ...] | None = None,
    initialize: str | None = str(SYS),
    **kw: Any,
) -> ClusterView:
    if members is None:
        members = (member("a", "primary"), member("b"), member("c"))
    settings = kw.pop("settings", None) or DynamicSettings(**kw.pop("dcs", {}))
    # The leader recorded how far it got (as a primary at BASE does every loop).
    kw.setdefault("position", PrimaryPosition(leader, 1, BASE) if leader else None)
    return ClusterView(
        initialize=initialize,
        settings=settings,
        leader=LeaderKey(leader, revision) if leader else None,
        members=members,
        revision=100,
        **kw,
    )


def primary(lsn: int = BASE, **kw: Any) -> LocalPostgres:
    kw.setdefault("timeline", 1)
    kw.setdefault("system_identifier", SYS)
    return LocalPostgres(
        initialized=True, data_dir_empty=False, running=True, role="primary", current_lsn=lsn, **kw
    )


def replica(lsn: int = BASE, upstream: str | None = "127.0.0.1:5432", **kw: Any) -> LocalPostgres:
    kw.setdefault("timeline", 1)
    kw.setdefault("system_identifier", SYS)
    kw.setdefault("replayed_lsn", lsn)
    # Without a leader a standby stops receiving before it races; the tables start from there
    # (the flag matters nowhere else). detached=False shows the step itself.
    kw.setdefault("detached", True)
    return LocalPostgres(
        initialized=True,
        data_dir_empty=False,
        running=True,
        role="replica",
        received_lsn=lsn,
        upstream=upstream,
        **kw,
    )


def stopped(**kw: Any) -> LocalPostgres:
    kw.setdefault("system_identifier", SYS)
    kw.setdefault("timeline", 1)
    return LocalPostgres(initialized=True, data_dir_empty=False, running=False, **kw)


EMPTY = LocalPostgres()


def local(name: str = "a", pg: LocalPostgres = EMPTY, **kw: Any) -> LocalState:
    """Local state; ``leader=True`` makes it the holder of revision 7 with a valid lease."""
    if kw.pop("leader", False):
        kw.setdefault("leader_revision", 7)
        kw.setdefault("fence_at", NOW + 3.0)
    if "nofailover" in kw:
        kw["tags"] = MemberTags(nofailover=kw.pop("nofailover"))
    return LocalState(name=name, now=NOW, wall_now=WALL, pg=pg, **kw)


def probe(name: str, lsn: int | None = BASE, **kw: Any) -> PeerProbe:
    kw.setdefault("state", "running")
    kw.setdefault("role", "replica")
    kw.setdefault("timeline", 1)
    kw.setdefault("detached", kw["role"] == "replica")
    return PeerProbe(
        name=name, reachable=kw.pop("reachable", True), received_lsn=lsn, replayed_lsn=lsn, **kw
    )


def probes(*ps: PeerProbe) -> dict[str, PeerProbe]:
    return {p.name: p for p in ps}


def switchover(
    leader: str | None = "a", candidate: str | None = "b", **kw: Any
) -> SwitchoverRequest:
    kind = kw.pop("kind", "switchover" if leader else "failover")
    return SwitchoverRequest(kind=kind, leader=leader, candidate=candidate, **kw)


def history(*timelines: int) -> tuple[TimelineEntry, ...]:
    return tuple(TimelineEntry(t, BASE, "failover", WALL - 100, "a") for t in timelines)


KEY_A = LeaderKey("a", 7)
PAUSED = {"pause": True}
REQ = switchover("a", "b")
NO_LEADER = view(leader=None)

#: The parameters of every table test: view, local state, probes, expected actions, reason part.
ARGS = "v, loc, peers, actions, fragment"


def row(
    id: str,
    v: ClusterView,
    loc: LocalState,
    peers: Mapping[str, PeerProbe] | None,
    actions: tuple[Action, ...],
    fragment: str,
) -> Any:
    """One table row, shown by pytest under ``id``."""
    return pytest.param(v, loc, peers, actions, fragment, id=id)


def check(
    v: ClusterView,
    loc: LocalState,
    peers: Mapping[str, PeerProbe] | None,
    actions: tuple[Action, ...],
    fragment: str,
) -> None:
    """decide() gives exactly ``actions``, with ``fragment`` in its reason."""
    decision = decide(v, loc, peers)
    assert decision.actions == actions, decision.reason
    assert fragment in decision.reason


@st.composite
def peer_probes(draw: st.DrawFn, name: str, lsns: st.SearchStrategy[int]) -> PeerProbe:
    """A probe of peer `name` as a switchover's holder may see it: reachable or not, running or
    stopped, mostly a replica, its WAL positions drawn from `lsns` (or unknown)."""
    return PeerProbe(
        name=name,
        reachable=draw(st.booleans()),
        state=draw(st.sampled_from(["running", "running", "stopped"])),
        role=draw(st.sampled_from(["replica", "replica", "primary"])),
        timeline=draw(st.sampled_from([1, 1, 2])),
        received_lsn=draw(st.none() | lsns),
        replayed_lsn=draw(st.none() | lsns),
        nofailover=draw(st.booleans()),
    )
