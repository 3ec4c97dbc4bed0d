"""A manual failover while paused, without I/O: the REST API's check (refused unless the old
primary's agent reports its PostgreSQL stopped, or forced with the risk named), and the
decisions that carry out an accepted one (the candidate promotes; nothing else moves)."""

from __future__ import annotations

import pytest

from hamgr.agent.apiactions import check_paused_failover, check_request
from hamgr.agent.apibodies import FailoverBody, SwitchoverBody
from hamgr.agent.apierrors import HttpError
from hamgr.dcs.model import ClusterView, MemberState, PrimaryPosition
from hamgr.ha import AcquireLeader, ClearSwitchover, Promote, ReleaseLeader, RenewLease
from hamgr.ha.actions import Action
from tests.ha.builders import (
    ARGS,
    BASE,
    KEY_A,
    PAUSED,
    WALL,
    check,
    local,
    member,
    primary,
    replica,
    row,
    stopped,
    switchover,
    view,
)

FAILOVER = switchover(None, "b")  # a failover to b
GONE = PrimaryPosition("a", 1, BASE)  # the old primary's last position record


def _members(a_state: str = "running", a_role: str = "primary") -> tuple[MemberState, ...]:
    return (member("a", a_role, state=a_state), member("b"), member("c"))


@pytest.mark.parametrize(
    ("v", "force", "refused"),
    [
        (view(dcs=PAUSED, members=_members()), False, "does not confirm"),
        (view(dcs=PAUSED, members=_members()), True, None),  # forced: the operator's risk
        (view(dcs=PAUSED, members=_members("stopped", "stopped")), False, None),  # confirmed
        (view(leader=None, dcs=PAUSED, members=_members("stopped", "stopped")), False, None),
        # The old primary's agent is gone (its member key expired): nobody confirms.
        (view(leader=None, dcs=PAUSED, members=_members()[1:], position=GONE), False, "not answer"),
        (view(leader=None, dcs=PAUSED, members=_members()[1:], position=GONE), True, None),
    ],
)
def test_a_paused_failover_needs_the_old_primary_stopped_or_force(
    v: ClusterView, force: bool, refused: str | None
) -> None:
    if refused is None:
        check_paused_failover(FAILOVER, v, force)
        return
    with pytest.raises(HttpError) as err:
        check_paused_failover(FAILOVER, v, force)
    assert err.value.status == 409
    assert refused in str(err.value) and "two primaries" in str(err.value)


def test_a_paused_switchover_is_refused() -> None:
    v = view(dcs=PAUSED)
    with pytest.raises(HttpError) as err:
        check_request(SwitchoverBody("a", "b"), v, WALL)
    assert err.value.status == 400 and "paused" in str(err.value)


def test_check_request_passes_force_through_while_paused() -> None:
    v = view(dcs=PAUSED)
    with pytest.raises(HttpError):
        check_request(FailoverBody("b"), v, WALL)
    req = check_request(FailoverBody("b", force=True), v, WALL)
    assert req.kind == "failover" and req.candidate == "b"


PROMOTE: tuple[Action, ...] = (AcquireLeader(), Promote())
PAUSED_FAILOVER = [
    row(
        "candidate-promotes",
        view(leader=None, dcs=PAUSED, switchover=FAILOVER),
        local("b", replica()),
        None,
        PROMOTE,
        "paused: manual failover to me",
    ),
    row(
        "others-wait",
        view(leader=None, dcs=PAUSED, switchover=FAILOVER),
        local("c", replica()),
        None,
        (),
        "paused: no leader",
    ),
    row(
        "stopped-old-leader-releases",
        view(dcs=PAUSED, switchover=FAILOVER),
        local("a", stopped(), leader=True),
        None,
        (ReleaseLeader(KEY_A),),
        "instead of promoting it back",
    ),
    row(
        "forced-running-old-leader-gives-the-key-up",
        view(dcs=PAUSED, switchover=FAILOVER),
        local("a", primary(), leader=True),
        None,
        (ReleaseLeader(KEY_A),),
        "two primaries",
    ),
    row(
        "new-leader-clears-the-request",
        view(leader="b", dcs=PAUSED, switchover=FAILOVER),
        local("b", primary(), leader=True, leader_revision=7),
        None,
        (RenewLease(), ClearSwitchover(FAILOVER)),
        "after the manual failover to me",
    ),
    row(
        "a-switchover-still-waits",
        view(leader=None, dcs=PAUSED, switchover=switchover("a", "b")),
        local("b", replica()),
        None,
        (),
        "waits until resume",
    ),
]


@pytest.mark.parametrize(ARGS, PAUSED_FAILOVER)
def test_paused_failover(v, loc, peers, actions, fragment) -> None:  # type: ignore[no-untyped-def]
    check(v, loc, peers, actions, fragment)
