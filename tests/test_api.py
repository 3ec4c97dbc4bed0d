"""The REST API over real HTTP on 127.0.0.1, served by aiohttp from a plain AgentView.

This is a test of the HTTP layer: the view (tests/apifake.py) holds a ClusterView and local
facts; every path's status codes, the JSON shapes, auth, and bad bodies are checked.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from hamgr import clock
from hamgr.agent.api import build_app, serve
from hamgr.agent.apiread import parse_size
from hamgr.agent.storemembers import MembershipRefused
from hamgr.apiview import apply_settings_patch, primary_serving
from hamgr.cli.ctl_client import basic_auth
from hamgr.dcs import DynamicSettings, ModelError, SwitchoverRequest
from hamgr.dcs.model import MemberTags, SyncState
from tests.apifake import MB, FakeAgent, FakeStore, cluster3, status

AUTH = ("admin", "s3cret-pass")
GOOD = basic_auth(*AUTH)
HEALTH = (
    *("/", "/primary", "/read-write", "/leader", "/replica", "/read-only", "/health"),
    *("/liveness", "/readiness"),
)
URLS = {n: f"http://127.0.0.1:{p}" for n, p in (("a", 8008), ("b", 8009), ("c", 8010))}


class Api:
    """One served agent and a client session to it."""

    def __init__(self, agent: FakeAgent, url: str, session: aiohttp.ClientSession) -> None:
        self.agent, self.url, self.session = agent, url, session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        auth: Any = GOOD,
    ) -> tuple[int, Any]:
        kw: dict[str, Any] = {"headers": {"Authorization": auth} if auth else {}}
        if raw is not None:
            kw["data"] = raw
        elif body is not None:
            kw["json"] = body
        async with self.session.request(method, self.url + path, **kw) as resp:
            text = await resp.text()
            return resp.status, (await resp.json() if text else None)

    async def code(self, path: str, method: str = "GET") -> int:
        async with self.session.request(method, self.url + path) as resp:
            return resp.status


async def _start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """Agent ``a`` (the primary) served by serve() with basic auth."""
    store = FakeStore(cluster3(URLS))
    agent = FakeAgent("a", store, status(store.view.members[0]))
    runner = await serve(agent, "127.0.0.1:0", AUTH)
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        yield Api(agent, f"http://{host}:{port}", session)
    await runner.cleanup()


def _as(api: Api, name: str, **kw: Any) -> None:
    """Make the served agent be member ``name`` in the state ``kw`` overrides."""
    m = api.agent.store.view.member(name)
    assert m is not None
    api.agent.status = status(m, **kw)


async def _codes(api: Api) -> dict[str, int]:
    return {p: await api.code(p) for p in HEALTH}


def _expect(ok: set[str]) -> dict[str, int]:
    return {p: 200 if p in ok else 503 for p in HEALTH}


PRIMARY_OK = {"/", "/primary", "/read-write", "/leader", "/read-only", "/health"}
PRIMARY_OK |= {"/liveness", "/readiness"}
REPLICA_OK = {"/replica", "/read-only", "/health", "/liveness", "/readiness"}


async def test_primary_and_replica_health_codes(api: Api) -> None:
    assert await _codes(api) == _expect(PRIMARY_OK)
    _as(api, "b")
    assert await _codes(api) == _expect(REPLICA_OK)


async def test_fenced_primary_fails_primary_checks_but_keeps_the_key(api: Api) -> None:
    _as(api, "a", fence_in=-0.5)  # the lease deadline has passed: load balancers must leave
    assert await _codes(api) == _expect({"/leader", "/health", "/liveness"})
    _, body = await api.call("GET", "/patroni")
    assert body["primary_serving"] is False and body["fence_remaining"] < 0
    _as(api, "a", fence_in=None)  # no successful keepalive yet
    assert await api.code("/primary") == 503


async def test_primary_without_the_key_and_stopped_postgres(api: Api) -> None:
    _as(api, "a", holds_leader_key=False)
    assert await _codes(api) == _expect({"/health", "/liveness"})
    _as(api, "b")
    api.agent.status = dataclasses.replace(
        api.agent.status, pg=dataclasses.replace(api.agent.status.pg, running=False)
    )
    assert await _codes(api) == _expect({"/liveness"})
    _as(api, "b", streaming=False)  # running but not streaming: not a usable replica
    assert await _codes(api) == _expect({"/health", "/liveness"})


async def test_head_and_options_answer_the_same_codes_without_a_body(api: Api) -> None:
    for method in ("HEAD", "OPTIONS"):
        assert await api.code("/primary", method) == 200
        assert await api.code("/replica", method) == 503
    status_, body = await api.call("OPTIONS", "/primary")
    assert (status_, body) == (200, None)


async def test_lagging_replica_and_the_lag_query(api: Api) -> None:
    _as(api, "c", lag=30 * MB)
    assert await api.code("/replica") == 200
    assert await api.code("/replica?lag=10MB") == 503
    assert await api.code("/replica?lag=64mb") == 200
    assert await api.code(f"/replica?lag={30 * MB}") == 200
    assert await api.code(f"/replica?lag={30 * MB - 1}") == 503
    assert await api.code("/read-only?lag=1kB") == 503
    assert await api.code("/readiness?lag=1GB") == 200
    assert await api.code("/readiness?lag=1MB") == 503
    status_, body = await api.call("GET", "/replica?lag=lots")
    assert (
        status_ == 400
        and body["error"].startswith("lag: expected bytes")
        and "lots" in body["error"]
    )
    _as(api, "c", lag=None)  # unknown lag never passes a lag limit
    assert await api.code("/replica?lag=1GB") == 503


async def test_tags_noloadbalance_and_tag_queries(api: Api) -> None:
    _as(api, "c")  # tagged nofailover
    assert await api.code("/replica?tag_nofailover=true") == 200
    assert await api.code("/replica?tag_nofailover=false") == 503
    assert await api.code("/replica?tag_nosuchtag=x") == 503
    assert await api.code("/primary?tag_nofailover=false") == 503  # not a primary anyway
    _as(api, "a")
    assert await api.code("/primary?tag_nofailover=true") == 200  # tags do not apply to it
    b = api.agent.store.view.member("b")
    assert b is not None
    quiet = msgspec.structs.replace(b, tags=msgspec.structs.replace(b.tags, noloadbalance=True))
    api.agent.status = status(quiet)
    assert await _codes(api) == _expect({"/health", "/liveness", "/readiness"})


async def test_liveness_follows_the_loop(api: Api) -> None:
    _as(api, "a", loop_at=clock.now() - 7.0)  # ttl 6 s
    assert await api.code("/liveness") == 503
    _as(api, "a", loop_at=None)
    assert await api.code("/liveness") == 503
    _as(api, "a", loop_at=clock.now() - 1.0)
    assert await api.code("/liveness") == 200


async def test_member_status_json(api: Api) -> None:
    code, primary = await api.call("GET", "/patroni")
    assert code == 200
    assert primary["state"] == "running" and primary["role"] == "primary"
    assert primary["xlog"] == {"location": 100 * MB}
    assert primary["received_lsn"] == primary["replayed_lsn"] == 100 * MB
    assert primary["holds_leader_key"] and primary["primary_serving"]
    assert 4 < primary["fence_remaining"] <= 5 and primary["fence_token"] == 7
    assert primary["patroni"] == {"version": "0.1.0", "scope": "demo", "name": "a"}
    assert primary["database_system_identifier"] == "7300000000000000001"
    assert primary["reason"] == "I am the leader" and primary["pause"] is False
    assert primary["tags"]["nofailover"] is False and primary["timeline"] == 2
    _as(api, "c", lag=30 * MB)
    code, replica = await api.call("GET", "/status")
    assert replica["role"] == "replica" and replica["lag"] == 30 * MB and replica["streaming"]
    assert replica["xlog"] == {"received_location": 70 * MB, "replayed_location": 70 * MB}
    code, body = await api.call("GET", "/replica")  # health checks carry the same body
    assert code == 200 and body == {**replica, "loop_age": body["loop_age"]}


async def test_cluster_history_and_config_json(api: Api) -> None:
    code, cluster = await api.call("GET", "/cluster")
    assert code == 200
    assert {k: cluster[k] for k in ("scope", "leader", "fence_token", "pause", "switchover")} == {
        "scope": "demo",
        "leader": "a",
        "fence_token": 7,
        "pause": False,
        "switchover": None,
    }
    rows = {m["name"]: m for m in cluster["members"]}
    assert [rows[n]["role"] for n in "abc"] == ["leader", "replica", "replica"]
    assert [rows[n]["lag"] for n in "abc"] == [None, 0, 30 * MB]
    assert rows["b"]["host"] == "127.0.0.2" and rows["b"]["port"] == 5433
    assert rows["b"]["api_url"] == URLS["b"] and rows["b"]["reason"] == "following a"
    assert rows["c"]["tags"]["nofailover"] is True and rows["c"]["received_lsn"] == 70 * MB
    # Patroni's shapes: WAL positions spelled as PostgreSQL does, lags in bytes; history lines.
    assert rows["c"]["receive_lsn"] == "0/4600000" and rows["c"]["receive_lag"] == 30 * MB
    assert "lsn" not in rows["a"] and cluster["scheduled_switchover"] is None
    code, history = await api.call("GET", "/history")
    assert history == [
        [1, 50 * MB, "no recovery target specified", "2023-11-14T22:13:20+00:00", "a"]
    ]
    code, config = await api.call("GET", "/config")
    assert config == DynamicSettings().to_dict()


async def test_store_failure_is_503_but_health_checks_still_answer(api: Api) -> None:
    api.agent.store.broken = True
    code, body = await api.call("GET", "/cluster")
    assert code == 503 and body["error"].startswith("coordination store: no quorum")
    assert await api.code("/primary") == 200


async def test_unsafe_methods_need_the_password(api: Api) -> None:
    body = {"leader": "a", "candidate": "b"}
    for auth in (None, basic_auth("admin", "guess"), basic_auth("root", AUTH[1]), "Bearer x"):
        code, answer = await api.call("POST", "/switchover", body, auth=auth)
        assert code == 401 and "wrong or missing username or password" in answer["error"]
    raw = {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}
    async with api.session.post(api.url + "/reload", headers=raw) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Basic realm="hamgr"'
    async with api.session.post(api.url + "/reload", headers={"Authorization": "Basic !!"}) as r:
        assert r.status == 401
    assert api.agent.calls == [] and api.agent.store.view.leader.name == "a"  # type: ignore[union-attr]
    assert (await api.call("POST", "/reload"))[0] == 202


async def test_without_configured_auth_unsafe_methods_are_refused() -> None:
    store = FakeStore(cluster3(URLS))
    agent = FakeAgent("a", store, status(store.view.members[0]))
    runner, url = await _start(build_app(agent, None))
    try:
        async with aiohttp.ClientSession() as s:
            async with s.patch(
                url + "/config", json={"pause": True}, headers={"Authorization": GOOD}
            ) as resp:
                assert resp.status == 403
                assert "set restapi.authentication" in (await resp.json())["error"]
            async with s.get(url + "/config") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
    assert agent.calls == [] and store.view.settings.pause is False


BAD_BODIES = [
    ("/switchover", b"{leader: a", "body: not valid JSON"),
    ("/switchover", b"", "body: expected a JSON object, got nothing"),
    ("/switchover", b'["a", "b"]', "body: expected a mapping of keys, got a list"),
    ("/switchover", {"leader": 5}, "leader: expected a string, got 5"),
    ("/switchover", {"candidate": "b"}, "leader: required"),
    ("/switchover", {"leader": "a", "canidate": "b"}, "canidate: unknown field"),
    ("/switchover", {"leader": "b", "candidate": "c"}, "leader: b is not the current leader"),
    ("/switchover", {"leader": "a", "candidate": "zz"}, "candidate: zz is not a member"),
    ("/switchover", {"leader": "a", "candidate": "a"}, "candidate: is the leader itself"),
    ("/switchover", {"leader": "a", "candidate": "c"}, "candidate: c is tagged nofailover"),
    ("/switchover", {"leader": "a", "candidate": "b v"}, "candidate: expected 1 to 63"),
    ("/switchover", {"leader": "a", "scheduled_at": "2030-01-01T10:00"}, "needs a timezone"),
    ("/switchover", {"leader": "a", "scheduled_at": "soon"}, "scheduled_at: expected an ISO"),
    ("/switchover", {"leader": "a", "scheduled_at": 1000.0}, "scheduled_at: lies in the past"),
    ("/switchover", b'{"leader": "a", "scheduled_at": NaN}', "body: not valid JSON"),
    ("/switchover", b'{"leader": "a", "scheduled_at": 1e999}', "scheduled_at: number out of range"),
    (
        "/switchover",
        {"leader": "a", "scheduled_at": True},
        "scheduled_at: expected a number, a string or null, got true",
    ),
    ("/failover", {}, "candidate: required field is missing"),
    ("/failover", {"candidate": None}, "candidate: expected a string, got null"),
    ("/failover", {"candidate": "b", "force": "yes"}, 'force: expected true or false, got "yes"'),
    ("/failover", {"candidate": "a"}, "candidate: a is already the leader"),
    ("/failover", {"candidate": "b", "scheduled_at": 2e9}, "scheduled_at: unknown field"),
    ("/restart", {"now": True}, "now: unknown field"),
    ("/reload", {"now": True}, "now: unknown field"),
    ("/restart", {"restart_pending": "yes"}, 'restart_pending: expected true or false, got "yes"'),
]


@pytest.mark.parametrize(("path", "body", "problem"), BAD_BODIES)
async def test_bad_bodies_are_400_naming_the_problem_and_change_nothing(
    api: Api, path: str, body: Any, problem: str
) -> None:
    before = api.agent.store.view
    raw = body if isinstance(body, bytes) else None
    code, answer = await api.call("POST", path, None if raw is not None else body, raw=raw)
    assert code == 400 and problem in answer["error"], answer
    assert api.agent.calls == [] and api.agent.store.view is before


async def test_a_paused_cluster_refuses_requests_and_shows_pause(api: Api) -> None:
    code, settings = await api.call("PATCH", "/config", {"pause": True})
    assert code == 200 and settings["pause"] is True
    assert api.agent.store.view.settings.pause is True
    paused = msgspec.structs.replace(api.agent.store.view.members[0], paused=True)
    api.agent.status = status(paused)
    assert (await api.call("GET", "/patroni"))[1]["pause"] is True
    assert (await api.call("GET", "/cluster"))[1]["pause"] is True
    assert await _codes(api) == _expect(PRIMARY_OK)  # pause changes no health check
    code, answer = await api.call("POST", "/switchover", {"leader": "a", "candidate": "b"})
    assert code == 400 and "the cluster is paused" in answer["error"]
    assert api.agent.calls == [("patch", {"pause": True})]


async def test_switchover_answers_with_its_outcome(api: Api) -> None:
    code, answer = await api.call("POST", "/switchover", {"leader": "a", "candidate": "b"})
    assert (code, answer) == (200, {"message": "Successfully switched over to b"})
    assert api.agent.calls == [("switchover", "a", "b", None)]
    assert api.agent.store.view.leader.name == "b"  # type: ignore[union-attr]
    code, answer = await api.call("POST", "/switchover", {"leader": "b"})
    assert (code, answer["message"]) == (200, "Successfully switched over to a")


async def test_switchover_refused_by_the_leader_is_503_with_its_reason(api: Api) -> None:
    api.agent.store.mode = "refuse"
    code, answer = await api.call("POST", "/switchover", {"leader": "a", "candidate": "b"})
    assert code == 503
    why = "a's last reason: switchover from a to b refused: b is not reachable"
    assert answer["error"] == f"switchover failed: the request was withdrawn; {why}"


async def test_switchover_without_an_outcome_times_out_and_blocks_another() -> None:
    store = FakeStore(cluster3(URLS))
    store.mode = "ignore"
    agent = FakeAgent("a", store, status(store.view.members[0]))
    runner, url = await _start(build_app(agent, AUTH, outcome_timeout=0.3, poll_interval=0.05))
    try:
        async with aiohttp.ClientSession(headers={"Authorization": GOOD}) as s:
            async with s.post(url + "/switchover", json={"leader": "a", "candidate": "b"}) as r:
                assert r.status == 503
                assert (await r.json())["error"].startswith("switchover status unknown after 0.3 s")
            async with s.post(url + "/failover", json={"candidate": "b"}) as r:
                assert r.status == 409
                assert (await r.json())["error"] == "a switchover from a to b is already under way"
    finally:
        await runner.cleanup()
    assert store.view.switchover == SwitchoverRequest("switchover", "a", "b")
    assert len(agent.calls) == 1


async def test_scheduled_switchover_is_202_and_can_be_replaced(api: Api) -> None:
    at = "2100-01-01T12:00:00+01:00"
    code, answer = await api.call("POST", "/switchover", {"leader": "a", "scheduled_at": at})
    assert (code, answer) == (202, {"message": "Switchover scheduled"})
    assert api.agent.calls == [("switchover", "a", None, 4102484400.0)]
    code, answer = await api.call("POST", "/switchover", {"leader": "a", "scheduled_at": 4.2e9})
    assert code == 202 and api.agent.calls[-1] == ("switchover", "a", None, 4.2e9)


async def test_failover_with_and_without_a_leader(api: Api) -> None:
    code, answer = await api.call("POST", "/failover", {"candidate": "b"})
    assert (code, answer["message"]) == (200, "Successfully failed over to b")
    store = api.agent.store
    store.view = dataclasses.replace(store.view, leader=None)
    code, answer = await api.call("POST", "/switchover", {"leader": "b"})
    assert code == 400 and "there is no leader: use failover" in answer["error"]
    code, answer = await api.call("POST", "/failover", {"candidate": "a"})
    assert (code, answer["message"]) == (200, "Successfully failed over to a")
    assert api.agent.calls == [("failover", "b"), ("failover", "a")]


async def test_patch_config_merges_and_checks(api: Api) -> None:
    code, new = await api.call("PATCH", "/config", {"ttl": 10, "parameters": {"work_mem": "8MB"}})
    assert code == 200 and new["ttl"] == 10.0 and new["parameters"] == {"work_mem": "8MB"}
    code, new = await api.call("PATCH", "/config", {"ttl": None, "parameters": {"work_mem": None}})
    assert code == 200 and new == DynamicSettings().to_dict()
    before = api.agent.store.view
    for patch, problem in (
        ({"ttl": -1}, "ttl: must be > 0, got -1"),
        ({"tll": 6}, "tll: unknown field"),
        ({"loop_wait": 10}, "must be >= loop_wait + 2 * retry_timeout = 14, got 6"),
        ({"safety_margin": 0.001}, "safety_margin: must be >= loop_wait = 1: the primary must"),
        ({"pause": "yes"}, 'pause: expected true or false, got "yes"'),
        ({}, "the patch is empty"),
    ):
        code, answer = await api.call("PATCH", "/config", patch)
        assert code == 400 and problem in answer["error"], answer
    assert api.agent.store.view is before and len(api.agent.calls) == 2


async def test_restart_and_reload(api: Api) -> None:
    assert await api.call("POST", "/restart") == (200, {"message": "restarted successfully"})
    code, answer = await api.call("POST", "/restart", {"restart_pending": True})
    assert code == 503 and "pending restart flag is not set" in answer["error"]
    _as(api, "a", pending_restart=True)
    assert (await api.call("POST", "/restart", {"restart_pending": True}))[0] == 200
    api.agent.restart_error = "PostgreSQL did not start within 60 s"
    code, answer = await api.call("POST", "/restart")
    assert (code, answer["error"]) == (503, "PostgreSQL did not start within 60 s")
    assert await api.call("POST", "/reload", {}) == (202, {"message": "reload scheduled"})
    assert api.agent.calls == [("restart",)] * 4 + [("reload",)]


async def test_reinitialize_only_a_replica_of_a_running_leader(api: Api) -> None:
    code, answer = await api.call("POST", "/reinitialize")
    assert (code, answer["error"]) == (503, "I am the leader, can not reinitialize")
    api.agent.name = "b"
    _as(api, "b")
    store = api.agent.store
    with_leader = store.view
    store.view = dataclasses.replace(with_leader, leader=None)
    code, answer = await api.call("POST", "/reinitialize")
    assert code == 503 and "no leader to clone from" in answer["error"]
    store.view = dataclasses.replace(
        with_leader, settings=msgspec.structs.replace(with_leader.settings, pause=True)
    )
    code, answer = await api.call("POST", "/reinitialize")
    assert code == 503 and "paused" in answer["error"]
    store.view = with_leader
    code, answer = await api.call("POST", "/reinitialize", {"now": True})
    assert code == 400 and "now: unknown field" in answer["error"]
    assert api.agent.calls == []
    assert (await api.call("POST", "/reinitialize", auth=None))[0] == 401
    assert await api.call("POST", "/reinitialize") == (200, {"message": "reinitialize started"})
    assert api.agent.calls == [("reinitialize",)]


async def test_unknown_paths_methods_and_metrics_hook(api: Api) -> None:
    assert await api.call("GET", "/nope") == (404, {"error": "no such path: /nope"})
    code, answer = await api.call("POST", "/cluster", {})
    assert code == 405 and answer["error"].startswith("POST is not allowed on /cluster")
    assert (await api.call("GET", "/metrics"))[0] == 404

    async def metrics() -> tuple[bytes, str]:
        return b"hamgr_up 1\n", "text/plain; version=0.0.4; charset=utf-8"

    store = FakeStore(cluster3(URLS))
    agent = FakeAgent("a", store, status(store.view.members[0]))
    runner, url = await _start(build_app(agent, None, metrics=metrics))
    try:
        async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as resp:
            assert resp.status == 200 and await resp.text() == "hamgr_up 1\n"
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    finally:
        await runner.cleanup()


def test_parse_size() -> None:
    assert [parse_size(t) for t in ("0", "1048576", "1024kB", "16MB", "1gb", " 2 TB ")] == [
        0,
        MB,
        MB,
        16 * MB,
        1 << 30,
        2 << 40,
    ]
    for bad in ("", "-1", "1.5MB", "10 XB", "MB"):
        with pytest.raises(ValueError, match="expected bytes"):
            parse_size(bad)


def test_primary_serving_and_settings_patch_rules() -> None:
    view = cluster3(URLS)
    assert primary_serving(status(view.members[0]), clock.now())
    assert not primary_serving(status(view.members[0], fence_in=-0.01), clock.now())
    assert not primary_serving(status(view.members[1]), clock.now())
    base = DynamicSettings(parameters={"a": 1})
    assert apply_settings_patch(base, {"parameters": {"b": "x"}}).parameters == {"a": 1, "b": "x"}
    with pytest.raises(ModelError, match="body: expected a JSON object"):
        apply_settings_patch(base, ["pause"])  # type: ignore[arg-type]
    # A parameter no member would apply (hamgr sets it) is refused, not stored.
    with pytest.raises(ModelError, match="parameters: 'port' is managed by hamgr"):
        apply_settings_patch(base, {"parameters": {"port": 6000}})


async def test_synchronous_health_paths_follow_the_sync_role(api: Api) -> None:
    paths = ("/synchronous", "/sync", "/quorum", "/asynchronous", "/async")
    for role, ok in (
        ("sync", {"/synchronous", "/sync"}),
        ("quorum", {"/quorum"}),
        (None, {"/asynchronous", "/async"}),
    ):
        _as(api, "b", sync_role=role)
        assert {p: await api.code(p) for p in paths} == {
            p: 200 if p in ok else 503 for p in paths
        }, role
    _as(api, "a")
    assert {await api.code(p) for p in paths} == {503}


async def test_requests_outside_the_synchronous_set_are_refused_unless_forced(api: Api) -> None:
    store = api.agent.store
    settings = msgspec.structs.replace(store.view.settings, synchronous_mode="on")
    members = tuple(msgspec.structs.replace(m, tags=MemberTags()) for m in store.view.members)
    store.view = dataclasses.replace(
        store.view,
        settings=settings,
        members=members,
        sync=SyncState("a", ("b",), 1),
        sync_revision=5,
    )
    code, cl = await api.call("GET", "/cluster")
    roles = {m["name"]: m["role"] for m in cl["members"]}
    assert roles == {"a": "leader", "b": "sync_standby", "c": "replica"}
    assert cl["sync"] == {"leader": "a", "members": ["b"], "acks": 1}
    code, answer = await api.call("POST", "/switchover", {"leader": "a", "candidate": "c"})
    assert code == 412 and "c is not a synchronous standby" in answer["error"], answer
    code, answer = await api.call("POST", "/failover", {"candidate": "c"})
    assert code == 412 and '"force": true' in answer["error"], answer
    assert api.agent.calls == []
    code, answer = await api.call("POST", "/switchover", {"leader": "a", "candidate": "b"})
    assert code == 200, answer
    code, answer = await api.call("POST", "/failover", {"candidate": "c", "force": True})
    assert code == 200, answer
    code, answer = await api.call("POST", "/failover", {"candidate": "c", "force": "yes"})
    assert code == 400 and "force" in answer["error"], answer


class _RefusingStore:
    """A StoreAdmin stand-in for the HTTP layer: every change is refused, with its reason."""

    def __init__(self) -> None:
        self.added: list[tuple[Any, ...]] = []

    async def view(self) -> dict[str, Any]:
        return {"scope": "it", "leader": 1, "term": 2, "voters": [1], "learners": [], "members": []}

    async def add(self, *args: Any) -> dict[str, Any]:
        self.added.append(args)
        raise MembershipRefused("another change is pending: m4 is still a learner")

    async def remove(self, who: str) -> dict[str, Any]:
        raise MembershipRefused(f"removing {who} would leave no majority")


async def test_store_members_paths() -> None:
    """/store/members: 404 without an embedded store member; a refused change is 409 with its
    reason; a bad body 400 naming the field; changes need the password."""
    fake = FakeStore(cluster3(URLS))
    agent = FakeAgent("a", fake, status(fake.view.members[0]))
    store = _RefusingStore()
    without, url_without = await _start(build_app(agent, AUTH))
    served, url = await _start(build_app(agent, AUTH, store=store))  # type: ignore[arg-type]
    try:
        async with aiohttp.ClientSession(headers={"Authorization": GOOD}) as s:
            async with s.get(url_without + "/store/members") as resp:
                assert resp.status == 404
                assert "no embedded store member" in (await resp.json())["error"]
            async with s.get(url + "/store/members") as resp:
                assert (resp.status, (await resp.json())["voters"]) == (200, [1])
            body = {"name": "m5", "address": "127.0.0.5:7000"}
            async with s.post(url + "/store/members", json=body) as resp:
                assert resp.status == 409
                assert (await resp.json())["error"] == (
                    "refused: another change is pending: m4 is still a learner"
                )
            async with s.delete(url + "/store/members/m2") as resp:
                assert resp.status == 409 and "no majority" in (await resp.json())["error"]
            for bad, problem in (
                ({"name": "m5"}, "address: required field is missing"),
                ({**body, "name": "a/b"}, "name: expected 1 to 63 letters"),
                ({**body, "node_id": "4"}, 'node_id: expected an integer or null, got "4"'),
                ({**body, "node_id": 0}, "node_id: must be >= 1, got 0"),
                ({**body, "nodeid": 4}, "nodeid: unknown field"),
            ):
                async with s.post(url + "/store/members", json=bad) as resp:
                    assert resp.status == 400, bad
                    assert problem in (await resp.json())["error"]
        async with aiohttp.ClientSession() as s, s.delete(url + "/store/members/m2") as resp:
            assert resp.status == 401
    finally:
        await without.cleanup()
        await served.cleanup()
    assert len(store.added) == 1
