"""hamgr/agent/metrics.py: every exposition is parsed with prometheus-client's own parser.

The unit tests drive each update method; the integration test builds real cluster state in a
real store (a one-member RaftNode on 127.0.0.73 with RaftDcs sessions for three members),
feeds the views and the node's status to the metrics, scrapes ``GET /metrics`` of the real
REST API over HTTP, and checks every value against that state. The fsync histogram is fed
from real saves of a real RaftStorage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hamgr import __version__
from hamgr.agent.api import build_app
from hamgr.agent.metrics import ROLES, Metrics, replica_lags
from hamgr.dcs import ClusterView, LeaderKey, MemberState, TimelineEntry
from hamgr.dcs.raft import RaftDcs
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.core.types import Entry, HardState
from hamgr.raft.server.node import RaftNode
from hamgr.raft.server.rpcserver import StoreRpcServer
from hamgr.raft.wal.storage import RaftStorage
from tests.apifake import FakeAgent, FakeStore, status

MB = 1 << 20
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: bytes | str) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, sorted labels), and every family's type by name."""
    if isinstance(text, bytes):
        text = text.decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def absent(samples: Samples, name: str) -> bool:
    return not any(n == name for n, _ in samples)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- unit tests ---------------------------------------------------------------------------------


def test_names_types_and_unknown_values() -> None:
    samples, types = parse(Metrics().exposition())
    assert types == {
        "hamgr_build_info": "gauge",
        "hamgr_postgres_role": "gauge",
        "hamgr_postgres_timeline": "gauge",
        "hamgr_cluster_paused": "gauge",
        "hamgr_replication_lag_bytes": "gauge",
        "hamgr_leader_changes": "counter",
        "hamgr_leader_changes_created": "gauge",
        "hamgr_failovers": "counter",
        "hamgr_failovers_created": "gauge",
        "hamgr_pg_rewinds": "counter",
        "hamgr_pg_rewinds_created": "gauge",
        "hamgr_ha_loop_duration_seconds": "histogram",
        "hamgr_ha_loop_duration_seconds_created": "gauge",
        "hamgr_lease_keepalive_duration_seconds": "histogram",
        "hamgr_lease_keepalive_duration_seconds_created": "gauge",
        "hamgr_lease_keepalive_failures": "counter",
        "hamgr_lease_keepalive_failures_created": "gauge",
        "hamgr_lease_keepalive_age_seconds": "gauge",
        "hamgr_fence_remaining_seconds": "gauge",
        "hamgr_store_term": "gauge",
        "hamgr_store_commit_index": "gauge",
        "hamgr_store_applied_index": "gauge",
        "hamgr_store_apply_lag_entries": "gauge",
        "hamgr_store_leader": "gauge",
        "hamgr_store_peers_connected": "gauge",
        "hamgr_store_messages_dropped": "counter",
        "hamgr_store_fsync_duration_seconds": "histogram",
        "hamgr_store_fsync_duration_seconds_created": "gauge",
        "hamgr_store_commit_duration_seconds": "histogram",
        "hamgr_store_commit_duration_seconds_created": "gauge",
    }
    assert value(samples, "hamgr_build_info", version=__version__) == 1
    assert value(samples, "hamgr_leader_changes_total") == 0
    for result in ("rewound", "nothing", "failed"):
        assert value(samples, "hamgr_pg_rewinds_total", result=result) == 0
    # Nothing known yet: absent, not a made-up zero.
    for name in (
        "hamgr_postgres_role",
        "hamgr_postgres_timeline",
        "hamgr_cluster_paused",
        "hamgr_replication_lag_bytes",
        "hamgr_lease_keepalive_age_seconds",
        "hamgr_fence_remaining_seconds",
        "hamgr_store_term",
        "hamgr_store_apply_lag_entries",
        "hamgr_store_peers_connected",
        "hamgr_store_messages_dropped_total",
        "hamgr_store_leader",
    ):
        assert absent(samples, name), name


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.leader_changed()
    assert value(parse(a.exposition())[0], "hamgr_leader_changes_total") == 1
    assert value(parse(b.exposition())[0], "hamgr_leader_changes_total") == 0


def test_member_role_timeline_pause() -> None:
    m = Metrics()
    m.set_member("replica", 4, True)
    s, _ = parse(m.exposition())
    assert {r: value(s, "hamgr_postgres_role", role=r) for r in ROLES} == {
        "primary": 0,
        "replica": 1,
        "uninitialized": 0,
        "stopped": 0,
    }
    assert value(s, "hamgr_postgres_timeline") == 4
    assert value(s, "hamgr_cluster_paused") == 1
    m.set_member("stopped", None, False)
    s, _ = parse(m.exposition())
    assert value(s, "hamgr_postgres_role", role="stopped") == 1
    assert absent(s, "hamgr_postgres_timeline")
    assert value(s, "hamgr_cluster_paused") == 0
    with pytest.raises(ValueError, match=r"role must be one of .*got 'leader'"):
        m.set_member("leader", 1, False)
    with pytest.raises(ValueError, match="timeline must be an integer >= 1"):
        m.set_member("primary", 0, False)


def test_histograms_and_keepalive_age() -> None:
    clock = Clock()
    m = Metrics(clock=clock)
    for d in (0.003, 0.2, 0.2, 7.0):
        m.observe_loop(d)
    m.observe_keepalive(0.004, True, at=clock.now - 0.004)
    m.observe_keepalive(2.0, False)
    m.observe_keepalive(0.02, True)  # at: now - latency
    clock.now += 1.5
    m.observe_fsync(0.0007)
    s, _ = parse(m.exposition())
    loop = "hamgr_ha_loop_duration_seconds"
    assert value(s, loop + "_count") == 4
    assert value(s, loop + "_sum") == pytest.approx(7.403)
    assert value(s, loop + "_bucket", le="0.005") == 1
    assert value(s, loop + "_bucket", le="0.25") == 3
    assert value(s, loop + "_bucket", le="5.0") == 3
    assert value(s, loop + "_bucket", le="+Inf") == 4
    ka = "hamgr_lease_keepalive_duration_seconds"
    assert value(s, ka + "_count") == 2  # successes only
    assert value(s, ka + "_sum") == pytest.approx(0.024)
    assert value(s, "hamgr_lease_keepalive_failures_total") == 1
    # The newest success counts (sent at now - 0.004, before the clock moved 1.5 s).
    assert value(s, "hamgr_lease_keepalive_age_seconds") == pytest.approx(1.504)
    assert value(s, "hamgr_store_fsync_duration_seconds_bucket", le="0.001") == 1
    assert value(s, "hamgr_store_fsync_duration_seconds_bucket", le="0.0005") == 0
    # A success reported late, sent before the newest one, does not make the age older.
    m.observe_keepalive(0.01, True, at=clock.now - 10)
    s, _ = parse(m.exposition())
    assert value(s, "hamgr_lease_keepalive_age_seconds") == pytest.approx(1.504)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="duration_s must be a finite number"):
            m.observe_loop(bad)
    with pytest.raises(ValueError, match="latency_s"):
        m.observe_keepalive(-0.1, True)


def test_fence_margin_and_commit_latency() -> None:
    clock = Clock()
    m = Metrics(clock=clock)
    m.set_fence_deadline(clock.now + 1.25)
    m.observe_commit(0.003)
    m.observe_commit(0.04)
    s, _ = parse(m.exposition())
    assert value(s, "hamgr_fence_remaining_seconds") == pytest.approx(1.25)
    assert value(s, "hamgr_store_commit_duration_seconds_count") == 2
    assert value(s, "hamgr_store_commit_duration_seconds_bucket", le="0.005") == 1
    clock.now += 2.0  # past the deadline: negative, as the fencer would have acted
    assert value(parse(m.exposition())[0], "hamgr_fence_remaining_seconds") == pytest.approx(-0.75)
    m.set_fence_deadline(None)  # the key is gone: no deadline held
    assert absent(parse(m.exposition())[0], "hamgr_fence_remaining_seconds")
    with pytest.raises(ValueError, match="at must be a finite instant"):
        m.set_fence_deadline(math.inf)
    with pytest.raises(ValueError, match="seconds must be a finite number"):
        m.observe_commit(-1.0)


def test_store_values_and_apply_lag() -> None:
    m = Metrics()
    m.set_store_status({"id": 1, "state": "new"})  # not started: nothing known
    assert absent(parse(m.exposition())[0], "hamgr_store_term")
    m.set_store_status({"term": 7, "commit": 120, "applied": 117, "role": "follower"})
    s, _ = parse(m.exposition())
    assert value(s, "hamgr_store_term") == 7
    assert value(s, "hamgr_store_commit_index") == 120
    assert value(s, "hamgr_store_applied_index") == 117
    assert value(s, "hamgr_store_apply_lag_entries") == 3
    assert value(s, "hamgr_store_leader") == 0
    assert absent(s, "hamgr_store_peers_connected")  # an older status without the field
    with pytest.raises(ValueError, match="commit must be an integer >= 0"):
        m.set_store(1, -1, 0)


def test_store_links_and_dropped_messages() -> None:
    m = Metrics()
    m.set_store_status(
        {
            "term": 3,
            "commit": 10,
            "applied": 10,
            "role": "leader",
            "peers_connected": [2],
            "messages_dropped": {"queue_full": 0, "unreachable": 41},
        }
    )
    s, _ = parse(m.exposition())
    assert value(s, "hamgr_store_peers_connected") == 1
    assert value(s, "hamgr_store_messages_dropped_total", reason="unreachable") == 41
    assert value(s, "hamgr_store_messages_dropped_total", reason="queue_full") == 0
    with pytest.raises(ValueError, match="dropped oversize must be an integer >= 0"):
        m.set_store_status(
            {"term": 3, "commit": 10, "applied": 10, "messages_dropped": {"oversize": -1}}
        )


def test_replica_lags_replace_the_previous_set() -> None:
    m = Metrics()
    m.set_replica_lags({"b": 0, "c": 30 * MB})
    m.set_replica_lags({"c": 31 * MB})
    s, _ = parse(m.exposition())
    assert value(s, "hamgr_replication_lag_bytes", member="c") == 31 * MB
    assert ("hamgr_replication_lag_bytes", (("member", "b"),)) not in s
    with pytest.raises(ValueError, match="lag of c must be an integer >= 0"):
        m.set_replica_lags({"c": -5})


def _member(name: str, role: str, pos: int | None) -> MemberState:
    return MemberState(
        name=name,
        api_url=f"http://{name}:8008",
        conn_url=f"{name}:5432",
        role=role,  # type: ignore[arg-type]
        state="running",
        received_lsn=pos,
        replayed_lsn=pos,
    )


def test_replica_lags_from_a_view() -> None:
    members = (
        _member("a", "primary", 100 * MB),
        _member("b", "replica", 99 * MB),
        _member("c", "replica", None),
        _member("d", "stopped", 1),
        _member("e", "replica", 101 * MB),
    )
    view = ClusterView(leader=LeaderKey("a", 5), members=members)
    assert replica_lags(view) == {"b": MB, "e": 0}
    assert replica_lags(dataclasses.replace(view, leader=None)) == {}
    assert replica_lags(dataclasses.replace(view, leader=LeaderKey("z", 5))) == {}


def test_leader_changes_and_failovers_from_views() -> None:
    m = Metrics()
    h1 = TimelineEntry(1, 10, "failover to a", 1.7e9, "a")
    h2 = TimelineEntry(2, 20, "switchover from a to b", 1.7e9, "b")
    h3 = TimelineEntry(3, 30, "failover to a", 1.7e9, "a")
    views = [
        ClusterView(leader=LeaderKey("a", 5), history=(h1,)),  # baseline: counts nothing
        ClusterView(leader=LeaderKey("a", 5), history=(h1,)),
        ClusterView(leader=None, history=(h1,)),
        ClusterView(leader=LeaderKey("b", 9), history=(h1, h2)),  # switchover: change only
        ClusterView(leader=LeaderKey("a", 12), history=(h1, h2, h3)),  # failover
        ClusterView(leader=LeaderKey("a", 12), history=(h1, h2, h3)),
    ]
    counts = []
    for v in views:
        m.observe_view(v)
        s, _ = parse(m.exposition())
        counts.append((value(s, "hamgr_leader_changes_total"), value(s, "hamgr_failovers_total")))
    assert counts == [(0, 0), (0, 0), (0, 0), (1, 0), (2, 1), (2, 1)]


def test_pg_rewinds_by_outcome() -> None:
    m = Metrics()
    for result in ("rewound", "failed", "rewound", "nothing"):
        m.observe_rewind(result)
    s, _ = parse(m.exposition())
    got = {
        r: value(s, "hamgr_pg_rewinds_total", result=r) for r in ("rewound", "nothing", "failed")
    }
    assert got == {"rewound": 2, "nothing": 1, "failed": 1}
    with pytest.raises(ValueError, match="result must be one of rewound, nothing, failed"):
        m.observe_rewind("maybe")


async def test_api_hook_refreshes_and_survives_a_failing_refresh() -> None:
    m = Metrics()
    calls = []

    def refresh() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("node gone")
        m.set_store(len(calls), 0, 0)

    hook = m.api_hook(refresh)
    body, content_type = await hook()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert value(parse(body)[0], "hamgr_store_term") == 1
    body, _ = await hook()  # the failure is logged; the last values are served
    assert value(parse(body)[0], "hamgr_store_term") == 1


def test_fsync_of_real_raft_storage_saves(tmp_path: Path) -> None:
    """The proposed node hook times RaftStorage.save; here the test does the timing."""
    m = Metrics()
    storage = RaftStorage.open(str(tmp_path / "raft"))
    try:
        for i in range(1, 6):
            started = time.perf_counter()
            storage.save(HardState(1, 1, i - 1), [Entry(1, i, data=b"x" * 100)], None)
            m.observe_fsync(time.perf_counter() - started)
    finally:
        storage.close()
    s, _ = parse(m.exposition())
    assert value(s, "hamgr_store_fsync_duration_seconds_count") == 5
    assert value(s, "hamgr_store_fsync_duration_seconds_sum") > 0


# --- against a real store and the real REST API --------------------------------------------------

HOST = "127.0.0.73"
CLUSTER = "test-metrics"
SECRET = b"m" * 32


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[RaftNode, StoreRpcServer]]:
    node = RaftNode(
        1,
        tmp_path / "n1",
        CLUSTER,
        SECRET,
        (HOST, 0),
        None,
        {},
        tick_interval=0.05,
        election_tick=8,
    )
    await node.start()
    server = StoreRpcServer(node, CLUSTER, SECRET, client_addresses={})
    await server.start(HOST, 0)
    try:
        deadline = time.monotonic() + 10
        while not node.is_leader:
            assert time.monotonic() < deadline, "the one-member store elected no leader"
            await asyncio.sleep(0.02)
        yield node, server
    finally:
        await server.close()
        await node.stop()


@pytest.fixture
def sessions(store: tuple[RaftNode, StoreRpcServer]) -> Iterator[dict[str, RaftDcs]]:
    node, server = store
    out = {
        name: RaftDcs(
            "demo",
            name,
            StoreClient([server.address], CLUSTER, SECRET, timeout=5),
            local_node=node,
            ttl=30,
            retry_timeout=5,
        )
        for name in ("a", "b", "c")
    }
    yield out


async def _scrape(m: Metrics, node: RaftNode, view: ClusterView) -> tuple[Samples, dict[str, Any]]:
    """GET /metrics over HTTP; the node's status as it was for that scrape."""
    agent = FakeAgent("a", FakeStore(view), status(view.members[0]))
    app = build_app(agent, None, metrics=m.api_hook(lambda: m.set_store_status(node.status())))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(20):  # bounded: retried only if the store moved during the scrape
                before = node.status()
                async with http.get(f"http://{HOST}:{port}/metrics") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    body = await resp.text()
                if node.status() == before:
                    return parse(body)[0], before
            raise AssertionError("the store never held still for one scrape")
    finally:
        await runner.cleanup()


async def test_exposition_matches_a_real_cluster_state(
    store: tuple[RaftNode, StoreRpcServer], sessions: dict[str, RaftDcs]
) -> None:
    node, _ = store
    a, b, c = sessions["a"], sessions["b"], sessions["c"]
    m = Metrics()
    node.on_commit = m.observe_commit
    try:
        await a.touch_member(_member("a", "primary", 100 * MB))
        await b.touch_member(_member("b", "replica", 100 * MB - 4096))
        await c.touch_member(_member("c", "replica", 70 * MB))
        assert await a.acquire_leader() is not None
        ka = await a.keepalive()
        assert ka.ok
        m.observe_keepalive(time.monotonic() - ka.sent_at, ka.ok, at=ka.sent_at)
        view = await a.get_cluster()
        m.observe_view(view)
        m.set_member("primary", view.timeline, view.settings.pause)
        m.observe_loop(0.05)

        s, st = await _scrape(m, node, view)
        assert value(s, "hamgr_postgres_role", role="primary") == 1
        assert value(s, "hamgr_postgres_timeline") == view.timeline == 1
        assert value(s, "hamgr_cluster_paused") == 0
        assert {
            labels[0][1]: v for (n, labels), v in s.items() if n == "hamgr_replication_lag_bytes"
        } == {"b": 4096, "c": 30 * MB}
        assert value(s, "hamgr_leader_changes_total") == 0
        assert value(s, "hamgr_failovers_total") == 0
        assert value(s, "hamgr_lease_keepalive_duration_seconds_count") == 1
        assert 0 <= value(s, "hamgr_lease_keepalive_age_seconds") < 30
        assert value(s, "hamgr_store_term") == st["term"] >= 1
        assert value(s, "hamgr_store_commit_index") == st["commit"] > 0
        assert value(s, "hamgr_store_applied_index") == st["applied"]
        assert value(s, "hamgr_store_apply_lag_entries") == st["commit"] - st["applied"]
        assert value(s, "hamgr_store_leader") == 1
        assert value(s, "hamgr_store_peers_connected") == len(st["peers_connected"]) == 0
        # Three members published and a key taken, each a write proposed on this leader.
        assert value(s, "hamgr_store_commit_duration_seconds_count") >= 4
        for reason, count in st["messages_dropped"].items():
            assert value(s, "hamgr_store_messages_dropped_total", reason=reason) == count

        # a's key goes; b takes over by failover (a new timeline in the history) ...
        assert view.leader is not None and await a.release_leader(view.leader)
        assert await b.acquire_leader() is not None
        await b.append_history(TimelineEntry(1, 100 * MB - 4096, "failover to b", time.time(), "b"))
        await b.touch_member(_member("b", "primary", 100 * MB))
        # ... then the operator pauses the cluster.
        view = await a.get_cluster()
        assert await a.set_settings(dataclasses.replace(view.settings, pause=True), view.revision)
        view = await a.get_cluster()
        m.observe_view(view)
        m.set_member("replica", view.timeline, view.settings.pause)
        s, st = await _scrape(m, node, view)
        assert view.leader is not None and view.leader.name == "b"
        assert value(s, "hamgr_postgres_role", role="replica") == 1
        assert value(s, "hamgr_postgres_timeline") == view.timeline == 2
        assert value(s, "hamgr_cluster_paused") == 1
        assert value(s, "hamgr_leader_changes_total") == 1
        assert value(s, "hamgr_failovers_total") == 1
        lags = {
            labels[0][1]: v for (n, labels), v in s.items() if n == "hamgr_replication_lag_bytes"
        }
        assert lags == {"c": 30 * MB}  # a still says primary: not a replica of b yet
        assert value(s, "hamgr_store_commit_index") == st["commit"]
    finally:
        for session in sessions.values():
            await session.close()
