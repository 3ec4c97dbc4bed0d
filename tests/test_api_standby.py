"""The REST API on a standby cluster, as Patroni's: GET /standby-leader answers 200 on the
standby leader only, /leader 200 there too, /primary 503; its role is ``standby_leader``."""

from __future__ import annotations

import pytest

from hamgr.agent.apiactions import check_request
from hamgr.agent.apibodies import FailoverBody, SwitchoverBody
from hamgr.agent.apierrors import HttpError
from hamgr.agent.apiread import cluster_json, health_ok, member_status
from hamgr.apiview import LocalStatus
from hamgr.cli.ctl_list import list_rows
from hamgr.config.standby import StandbyCluster
from hamgr.dcs.model import ClusterView, LeaderKey, MemberState
from hamgr.dcs.settings import DynamicSettings
from hamgr.ha.inputs import LocalPostgres
from hamgr.ha.standby import is_standby_leader

STANDBY_PG = LocalPostgres(initialized=True, data_dir_empty=False, running=True, role="replica")
ME = MemberState("a", "http://127.0.0.1:8008", "127.0.0.1:5432", role="replica")
SETTINGS = DynamicSettings(standby_cluster=StandbyCluster(host="10.0.0.1"))


def test_health_checks_of_a_standby_leader_and_of_its_members() -> None:
    leader = LocalStatus(
        member=ME, pg=STANDBY_PG, streaming=True, holds_leader_key=True, standby_leader=True
    )
    member = LocalStatus(member=ME, pg=STANDBY_PG, streaming=True)
    checks = ("standby-leader", "leader", "primary", "replica", "read-only")
    assert [health_ok(c, leader, False, {}, 0.0) for c in checks] == [1, 1, 0, 0, 1]
    assert [health_ok(c, member, False, {}, 0.0) for c in checks] == [0, 0, 0, 1, 1]


def test_is_standby_leader_needs_a_standby_cluster_and_a_running_standby() -> None:
    view = ClusterView(settings=SETTINGS)
    assert is_standby_leader(view, STANDBY_PG)
    assert not is_standby_leader(ClusterView(), STANDBY_PG)
    assert not is_standby_leader(view, LocalPostgres(initialized=True, running=False))
    assert not is_standby_leader(None, STANDBY_PG)


def test_roles_in_patroni_cluster_and_hactl_list() -> None:
    b = MemberState("b", "http://127.0.0.2:8008", "127.0.0.2:5432", role="replica")
    view = ClusterView(settings=SETTINGS, leader=LeaderKey("a", 3), members=(ME, b))
    shown = cluster_json("s", view)
    assert [m["role"] for m in shown["members"]] == ["standby_leader", "replica"]
    rows = list_rows(shown, reasons=False)
    assert (rows[0]["Role"], rows[0]["Lag in MB"]) == ("Standby Leader", None)
    normal = cluster_json("s", ClusterView(leader=LeaderKey("a", 3), members=(ME, b)))
    assert normal["members"][0]["role"] == "leader"


class _View:
    name, scope, api_url = "a", "s", "http://127.0.0.1:8008"

    def is_primary_serving(self) -> bool:
        return False


def test_patroni_status_role_of_the_standby_leader() -> None:
    leader = LocalStatus(member=ME, pg=STANDBY_PG, holds_leader_key=True, standby_leader=True)
    assert member_status(_View(), leader, 0.0)["role"] == "standby_leader"  # type: ignore[arg-type]
    member = LocalStatus(member=ME, pg=STANDBY_PG)
    assert member_status(_View(), member, 0.0)["role"] == "replica"  # type: ignore[arg-type]


def test_switchover_and_failover_are_accepted_in_a_standby_cluster_unless_paused() -> None:
    """The standby leader hands its role over (hamgr/ha/standbyswitch.py); while paused it
    would not (hands off PostgreSQL), so the request is refused with the reason."""
    b = MemberState("b", "http://127.0.0.2:8008", "127.0.0.2:5432", role="replica")
    view = ClusterView(settings=SETTINGS, leader=LeaderKey("a", 3), members=(ME, b))
    paused = ClusterView(
        settings=DynamicSettings(standby_cluster=SETTINGS.standby_cluster, pause=True),
        leader=LeaderKey("a", 3),
        members=(ME, b),
    )
    bodies = (("switchover", SwitchoverBody("a"), None), ("failover", FailoverBody("b"), "b"))
    for kind, body, candidate in bodies:
        req = check_request(body, view, 0.0)
        assert (req.kind, req.candidate) == (kind, candidate)
        with pytest.raises(HttpError, match=f"the standby cluster is paused: no {kind}"):
            check_request(body, paused, 0.0)
