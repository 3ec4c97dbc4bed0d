"""Property of a primary's switchover (hamgr/ha/switchover.py), over random states: the key
holder, its PostgreSQL stopped for the switchover, releases the leader key only once the target
(the named candidate, else an eligible standby) has received WAL past its shutdown checkpoint,
so the member that takes over holds every acknowledged write."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.dcs.model import ClusterView, LeaderKey, SwitchoverRequest
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha import LocalPostgres, LocalState, PeerProbe, ReleaseLeader, decide
from tests.ha.builders import BASE, MB, NOW, SYS, WALL, member, peer_probes

MEMBERS = (member("a"), member("b"), member("c"))
LSNS = st.sampled_from([BASE - MB, BASE - 1, BASE, BASE + 1, BASE + 0x68, BASE + MB])
REQUESTS = st.sampled_from(
    [SwitchoverRequest("switchover", "a", "b"), SwitchoverRequest("switchover", "a", None)]
)


@st.composite
def stopped_holders(draw: st.DrawFn) -> LocalState:
    """Member a holding the key, its PostgreSQL stopped (for the switchover, or not)."""
    return LocalState(
        name="a",
        now=NOW,
        wall_now=WALL,
        pg=LocalPostgres(
            initialized=True,
            data_dir_empty=False,
            running=False,
            role="stopped",
            timeline=1,
            system_identifier=SYS,
            checkpoint_lsn=draw(st.sampled_from([BASE, BASE, None])),
            cluster_state="shut down",
        ),
        leader_revision=7,
        fence_at=NOW + 3.0,
        # Mostly within the ttl (the default, 30 s), where the release is decided.
        switchover_stopped_at=draw(st.sampled_from([None, NOW - 1.0, NOW - 5.0, NOW - 60.0])),
    )


@settings(max_examples=300, deadline=None)
@given(stopped_holders(), REQUESTS, peer_probes("b", LSNS), peer_probes("c", LSNS), st.booleans())
def test_the_key_goes_only_to_a_target_past_my_shutdown_checkpoint(
    local: LocalState, req: SwitchoverRequest, b: PeerProbe, c: PeerProbe, asked: bool
) -> None:
    view = ClusterView(
        initialize=str(SYS),
        settings=DynamicSettings(),
        leader=LeaderKey("a", 7),
        members=MEMBERS,
        switchover=req,
    )
    peers = {"b": b, "c": c} if asked else None
    d = decide(view, local, peers)
    if not any(isinstance(x, ReleaseLeader) for x in d.actions):
        return
    checkpoint = local.pg.checkpoint_lsn
    assert checkpoint is not None and local.switchover_stopped_at is not None, d
    assert peers is not None
    names = [req.candidate] if req.candidate else ["b", "c"]
    fit = [
        p
        for n in names
        if (p := peers[n]).running and p.role == "replica" and p.priority > 0
        if p.position is not None and p.position > checkpoint
    ]
    assert fit, f"released to nobody past the checkpoint {checkpoint:#x}: {d}"
