"""Table tests of the parameters' part of decide() (hamgr/ha/pgparams.py): every member applies
the cluster-wide PostgreSQL parameters, its own values winning where Patroni lets them, at the
end of whatever else it decided, and never while its data directory is being (re)built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from hamgr.dcs.model import ClusterView, ParameterValue
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha import (
    ApplyParameters,
    CloneFrom,
    Demote,
    RenewLease,
    Rewind,
    StopPostgres,
)
from hamgr.ha.inputs import LocalState
from tests.ha.builders import EMPTY, NOW, history, local, member, primary, replica, view
from tests.ha.builders import check as check_decision

Params = Mapping[str, ParameterValue]


def cluster(params: Params, **kw: Any) -> ClusterView:
    """The default cluster (a leads, b and c follow) with these cluster-wide parameters."""
    return view(settings=DynamicSettings(parameters=dict(params), **kw))


def follower(applied: Params | None, own: Params | None = None, **kw: Any) -> LocalState:
    """Member b, a streaming standby of a, whose config file holds ``applied``."""
    pg = kw.pop("pg", None) or replica(upstream="127.0.0.1:5432", detached=False)
    return local("b", pg, applied_parameters=applied, local_parameters=dict(own or {}), **kw)


def apply(**params: ParameterValue) -> ApplyParameters:
    return ApplyParameters(tuple(params.items()))


DIVERGED = replica(upstream="127.0.0.1:5432", detached=False, timeline=1)


@pytest.mark.parametrize(
    ("v", "loc", "actions", "fragment"),
    [
        pytest.param(
            cluster({"work_mem": "64MB"}),
            follower({}),
            (apply(work_mem="64MB"),),
            "following leader a (received 0/3000000); applying changed PostgreSQL parameters "
            "(work_mem)",
            id="standby-applies-a-new-cluster-parameter",
        ),
        pytest.param(
            cluster({"work_mem": "64MB"}),
            follower({"work_mem": "64MB"}),
            (),
            "following leader a",
            id="nothing-changed-nothing-done",
        ),
        pytest.param(
            cluster({"work_mem": "64MB"}),
            follower({"work_mem": "64MB", "shared_buffers": "16MB"}, {"shared_buffers": "16MB"}),
            (),
            "following leader a",
            id="own-values-on-top-of-the-cluster-s",
        ),
        pytest.param(
            cluster({"work_mem": "64MB"}),
            follower({"work_mem": "4MB"}, {"work_mem": "4MB"}),
            (),
            "following leader a",
            id="own-value-wins-over-the-cluster-s",
        ),
        pytest.param(
            cluster({"max_connections": 50}),
            follower({"max_connections": 10}, {"max_connections": 10}),
            (apply(max_connections=50),),
            "applying changed PostgreSQL parameters (max_connections)",
            id="cluster-wide-only-parameter-from-the-cluster",
        ),
        pytest.param(
            cluster({}),
            follower({"work_mem": "64MB"}),
            (apply(),),
            "applying changed PostgreSQL parameters (work_mem)",
            id="a-removed-parameter-is-removed",
        ),
        pytest.param(
            cluster({"work_mem": "64MB"}),
            local("a", primary(), leader=True, applied_parameters={}),
            (RenewLease(), apply(work_mem="64MB")),
            "I am the leader",
            id="primary-applies-after-renewing-its-lease",
        ),
        pytest.param(
            cluster({"work_mem": "64MB"}),
            local("a", primary(), leader=True, fence_at=NOW - 1, applied_parameters={}),
            (Demote("immediate"), apply(work_mem="64MB")),
            "fencing",
            id="a-fencing-stop-comes-first",
        ),
        pytest.param(
            cluster({"work_mem": "64MB"}, pause=True),
            follower({}),
            (apply(work_mem="64MB"),),
            "paused",
            id="paused-still-reloads",
        ),
        pytest.param(
            cluster({"work_mem": "banana"}),
            follower({"work_mem": "64MB"}, refused_parameters={"work_mem": "banana"}),
            (),
            "following leader a (received 0/3000000); the changed PostgreSQL parameters "
            "(work_mem) were refused (see the agent's log); keeping those in force",
            id="refused-parameters-are-not-tried-again",
        ),
        pytest.param(
            cluster({"work_mem": "32MB"}),
            follower({"work_mem": "64MB"}, refused_parameters={"work_mem": "banana"}),
            (apply(work_mem="32MB"),),
            "applying changed PostgreSQL parameters (work_mem)",
            id="changed-again-after-a-refusal-tried-again",
        ),
        pytest.param(
            cluster({"work_mem": "64MB"}),
            follower(None),
            (),
            "following leader a",
            id="unknown-applied-parameters-change-nothing",
        ),
        pytest.param(
            view(members=(member("a", "primary"), member("b", state="stopped"), member("c"))),
            local("b", EMPTY, applied_parameters={"work_mem": "1MB"}),
            (CloneFrom("a"),),
            "cloning from a",
            id="not-while-cloning",
        ),
        pytest.param(
            view(
                members=(member("a", "primary", timeline=2), member("b"), member("c")),
                history=history(1),
                settings=DynamicSettings(parameters={"work_mem": "64MB"}),
            ),
            local("b", DIVERGED, applied_parameters={}, timeline_diverged=True),
            (StopPostgres("fast"), Rewind("a")),
            "rewinding",
            id="not-while-rewinding",
        ),
    ],
)
def test_parameters(
    v: ClusterView, loc: LocalState, actions: tuple[Any, ...], fragment: str
) -> None:
    check_decision(v, loc, None, actions, fragment)


def test_apply_parameters_carries_the_effective_mapping() -> None:
    action = apply(work_mem="64MB", max_connections=50)
    assert action.as_dict() == {"work_mem": "64MB", "max_connections": 50}
