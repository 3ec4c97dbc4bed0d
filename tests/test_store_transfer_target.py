"""Where a primary hands the embedded store's leadership (hamgr/agent/process.py
`store_transfer_target`): to the named member's store member only while it is connected to
this one. A host lost a moment ago keeps a member key saying it runs until its lease ends;
leadership handed to it stopped the store's writes for an election timeout (a `hactl members
remove` of that very host was refused with "leadership is moving to 2" in CI)."""

from __future__ import annotations

import pytest

from hamgr.agent.process import store_transfer_target
from hamgr.dcs.model import ClusterView
from tests.ha.builders import member, view


def _cluster() -> ClusterView:
    members = (
        member("a", "primary"),
        member("b", store_id=2),
        member("c", store_id=3),
        member("d"),  # no store member of its own (etcd, or a member without one)
    )
    return view(members=members)


@pytest.mark.parametrize(
    ("name", "connected", "target"),
    [
        ("b", {2, 3}, 2),
        ("b", {3}, None),  # b's host is gone: its key still says running
        ("c", {3}, 3),
        ("d", {2, 3}, None),
        ("x", {2, 3}, None),  # not a member
        ("b", set(), None),
    ],
)
def test_leadership_goes_only_to_a_connected_store_member(
    name: str, connected: set[int], target: int | None
) -> None:
    assert store_transfer_target(_cluster(), name, connected) == target
