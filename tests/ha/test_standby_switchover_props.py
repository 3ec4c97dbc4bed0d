"""Properties of a standby cluster's switchover (hamgr/ha/standbyswitch.py), over random states.

(a) The standby leader gives its key up only once the target (the named candidate, else an
    eligible standby) holds at least its own final position, so the new standby leader needs
    no WAL the remote primary may have dropped since.
(b) It never gives the key up while still receiving WAL (its position could still move).
(c) Nobody in a standby cluster is ever promoted, whatever the request and the probes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.config.standby import StandbyCluster
from hamgr.dcs.model import ClusterView, LeaderKey, SwitchoverRequest
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha import LocalPostgres, LocalState, PeerProbe, Promote, ReleaseLeader, decide
from tests.ha.builders import BASE, MB, NOW, SYS, WALL, member, peer_probes

SETTINGS = DynamicSettings(standby_cluster=StandbyCluster(host="127.0.1.1", port=5432))
MEMBERS = (member("a"), member("b"), member("c"))
LSNS = st.sampled_from([BASE - 2 * MB, BASE - 1, BASE, BASE + 1, BASE + MB])
FAST = settings(max_examples=300, deadline=None)


@st.composite
def holders(draw: st.DrawFn) -> LocalState:
    """Member a holding the key as standby leader, attached or detached for a handover."""
    detached = draw(st.booleans())
    return LocalState(
        name="a",
        now=NOW,
        wall_now=WALL,
        pg=LocalPostgres(
            initialized=True,
            data_dir_empty=False,
            running=True,
            role="replica",
            timeline=1,
            received_lsn=draw(st.none() | LSNS),
            replayed_lsn=draw(LSNS),
            system_identifier=SYS,
            upstream=None if detached else "127.0.1.1:5432",
            detached=detached,
        ),
        leader_revision=7,
        fence_at=NOW + 3.0,
        switchover_stopped_at=draw(st.none() | st.floats(NOW - 10.0, NOW)),
    )


REQUESTS = st.sampled_from(
    [
        SwitchoverRequest("switchover", "a", "b"),
        SwitchoverRequest("switchover", "a", None),
        SwitchoverRequest("failover", None, "c"),
    ]
)


def _view(req: SwitchoverRequest | None, leader: str | None = "a") -> ClusterView:
    return ClusterView(
        initialize=str(SYS),
        settings=SETTINGS,
        leader=LeaderKey(leader, 7) if leader else None,
        members=MEMBERS,
        switchover=req,
    )


@FAST
@given(holders(), REQUESTS, peer_probes("b", LSNS), peer_probes("c", LSNS), st.booleans())
def test_the_key_goes_only_to_a_target_holding_my_wal(
    local: LocalState, req: SwitchoverRequest, b: PeerProbe, c: PeerProbe, asked: bool
) -> None:
    peers = {"b": b, "c": c} if asked else None
    d = decide(_view(req), local, peers)
    assert not any(isinstance(x, Promote) for x in d.actions), d
    if not any(isinstance(x, ReleaseLeader) for x in d.actions):
        return
    assert local.pg.detached, f"released while still receiving: {d}"
    assert peers is not None
    mine = local.pg.position
    assert mine is not None
    names = [req.candidate] if req.candidate else ["b", "c"]
    fit = [
        p
        for n in names
        if (p := peers[n]).running and p.role == "replica" and p.priority > 0
        if p.position is not None and p.position >= mine
    ]
    assert fit, f"released to nobody holding {mine:#x}: {d}"


@FAST
@given(
    REQUESTS | st.none(),
    peer_probes("a", LSNS),
    peer_probes("c", LSNS),
    st.booleans(),
    st.booleans(),
)
def test_nobody_in_a_standby_cluster_is_promoted(
    req: SwitchoverRequest | None, a: PeerProbe, c: PeerProbe, keyless: bool, detached: bool
) -> None:
    pg = LocalPostgres(
        initialized=True,
        data_dir_empty=False,
        running=True,
        role="replica",
        timeline=1,
        received_lsn=BASE,
        replayed_lsn=BASE,
        system_identifier=SYS,
        upstream=None if detached else "127.0.0.1:5432",
        detached=detached,
    )
    local = LocalState(name="b", now=NOW, wall_now=WALL, pg=pg)
    d = decide(_view(req, None if keyless else "a"), local, {"a": a, "c": c})
    assert not any(isinstance(x, Promote) for x in d.actions), d
