"""POST/DELETE /restart and DELETE /switchover over a fake agent (no PostgreSQL): Patroni's
status codes and messages, bad input named, the fencing refusals (hamgr/agent/apirestart.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import msgspec
import pytest

from hamgr.dcs import SwitchoverRequest
from hamgr.dcs.restartrequest import RestartRequest, iso_time
from tests import test_api
from tests.test_api import Api, _as

api = test_api.api  # the fixture: agent ``a``, the primary, served with basic auth


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


BAD = [
    ({"schedule": "2030-01-01T10:00"}, 400, "schedule: timezone information is mandatory"),
    ({"schedule": "soon"}, 422, "schedule: unable to parse"),
    ({"schedule": "2001-01-01T10:00+00:00"}, 422, "cannot schedule a restart in the past"),
    ({"schedule": 5}, 400, "schedule: expected a string or null, got 5"),
    ({"role": "master"}, 400, 'role: expected one of "primary", "replica", got "master"'),
    ({"postgres_version": "15"}, 400, "postgres_version: expected a PostgreSQL version"),
    ({"postgres_version": "9.6"}, 400, "postgres_version: expected a PostgreSQL version"),
    ({"postgres_version": 15.4}, 400, "postgres_version: expected a string or null, got 15.4"),
    ({"timeout": 0}, 400, "timeout: should be a positive number of seconds"),
    ({"timeout": "soon"}, 400, "timeout: should be a positive number of seconds"),
    ({"timeout": True}, 400, "timeout: expected a number, a string or null, got true"),
    ({"timeout": -3}, 400, "timeout: should be a positive number of seconds"),
    ({"restart_pending": 1}, 400, "restart_pending: expected true or false, got 1"),
    ({"force": True}, 400, "force: unknown field"),
    ([1], 400, "body: expected a mapping of keys, got a list"),
]


@pytest.mark.parametrize(("body", "status", "problem"), BAD)
async def test_bad_restart_bodies_are_refused_naming_the_field(
    api: Api, body: Any, status: int, problem: str
) -> None:
    code, answer = await api.call("POST", "/restart", body)
    assert code == status and problem in answer["error"], answer
    assert api.agent.calls == [] and api.agent.scheduled is None


async def test_filters_are_checked_against_the_member(api: Api) -> None:
    code, answer = await api.call("POST", "/restart", {"role": "replica"})
    assert code == 503, answer
    assert answer["error"].startswith("restart conditions are not satisfied: host role mismatch")
    code, answer = await api.call("POST", "/restart", {"postgres_version": "15.4"})
    assert code == 503 and "postgres version mismatch" in answer["error"], answer
    good = {"role": "primary", "postgres_version": "15.5", "timeout": "30s"}
    assert await api.call("POST", "/restart", good) == (200, {"message": "restarted successfully"})


async def test_a_primary_without_its_lease_is_not_restarted(api: Api) -> None:
    _as(api, "a", fence_in=-1.0)
    code, answer = await api.call("POST", "/restart")
    assert code == 503 and "lease deadline has passed (fenced)" in answer["error"], answer
    _as(api, "a", holds_leader_key=False)
    code, answer = await api.call("POST", "/restart")
    assert code == 503 and "does not hold the leader key" in answer["error"], answer


async def test_schedule_once_then_cancel(api: Api) -> None:
    at = time.time() + 3600
    body = {"schedule": _iso(at), "restart_pending": True}
    assert await api.call("POST", "/restart", body) == (202, {"message": "Restart scheduled"})
    kept = api.agent.scheduled
    assert kept is not None and kept.restart_pending and kept.at == pytest.approx(at)
    code, answer = await api.call("POST", "/restart", body)
    assert code == 409 and "already scheduled" in answer["error"], answer
    assert await api.call("DELETE", "/restart") == (200, {"message": "scheduled restart deleted"})
    assert await api.call("DELETE", "/restart") == (404, {"error": "no restarts are scheduled"})


async def test_no_schedule_while_paused(api: Api) -> None:
    view = api.agent.store.view
    paused = msgspec.structs.replace(view.settings, pause=True)
    api.agent.store.view = dataclasses.replace(view, settings=paused)
    code, answer = await api.call("POST", "/restart", {"schedule": _iso(time.time() + 60)})
    assert code == 409 and "paused" in answer["error"], answer


async def test_delete_switchover_only_a_scheduled_one(api: Api) -> None:
    assert await api.call("DELETE", "/switchover") == (404, {"error": "no switchover is scheduled"})
    req = SwitchoverRequest("switchover", "a", "b", time.time() + 3600)
    api.agent.store.view = dataclasses.replace(api.agent.store.view, switchover=req)
    code, answer = await api.call("DELETE", "/switchover")
    assert (code, answer) == (200, {"message": "scheduled switchover deleted"})
    assert api.agent.store.view.switchover is None


async def test_cancelling_needs_credentials(api: Api) -> None:
    for path in ("/restart", "/switchover"):
        code, _ = await api.call("DELETE", path, auth=None)
        assert code == 401


async def test_cluster_shows_what_is_scheduled_as_patroni(api: Api) -> None:
    at = time.time() + 3600
    req = SwitchoverRequest("switchover", "a", "b", at)
    view = api.agent.store.view
    b = view.members[1]
    restart = RestartRequest(iso_time(at), restart_pending=True)
    members = (
        view.members[0],
        msgspec.structs.replace(b, scheduled_restart=restart),
        view.members[2],
    )
    api.agent.store.view = dataclasses.replace(view, switchover=req, members=members)
    code, cluster = await api.call("GET", "/cluster")
    assert code == 200
    assert cluster["scheduled_switchover"] == {"at": _iso(at), "from": "a", "to": "b"}
    rows = {m["name"]: m for m in cluster["members"]}
    assert rows["b"]["scheduled_restart"]["schedule"] == _iso(at)
    assert rows["b"]["scheduled_restart"]["restart_pending"] is True
    assert "scheduled_restart" not in rows["c"]
    _as(api, "b")  # its agent's GET /patroni shows it too, as Patroni's
    code, me = await api.call("GET", "/patroni")
    assert code == 200 and me["scheduled_restart"]["schedule"] == _iso(at), me
