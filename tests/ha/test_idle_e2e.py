"""An idle cluster costs no new PostgreSQL sessions and (almost) no store writes (issue 15).

Real agents, real PostgreSQL, real store members. Once the cluster has settled, every agent runs
a number of HA loops with nothing happening; over those loops, counted on each member:
- new PostgreSQL sessions (pg_stat_database.sessions, read through one connection held open
  for the whole window): none, since each agent observes its server over one held connection;
- the store's durable log saves (hamgr_store_fsync_duration_seconds_count): far fewer than the
  loops run, since member keys are rewritten only when their value or lease changes (before,
  each agent rewrote its key every loop: one save per agent and loop on every member).
Counts over a window of loops, not timings.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ha.agentcluster import AgentCluster, cluster_of_test

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HOSTS = ["127.0.0.151", "127.0.0.152", "127.0.0.153"]
LOOPS = 12
"""HA loops each agent runs in the measured window (the fast profile: 0.5 s each)."""
SESSIONS_SQL = "SELECT coalesce(sum(sessions), 0)::bigint FROM pg_stat_database"


@pytest.fixture(scope="module")
def idle(request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "idle", HOSTS) as c:
        c.start_all()
        primary = c.wait_primary(90)
        c.wait_streaming([n for n in c.members if n != primary], 90)
        yield c


def metric(c: AgentCluster, name: str, sample: str) -> float:
    """The value of `sample` (a sample name of family `name`) on member `name`'s /metrics."""
    with urllib.request.urlopen(c.members[name].api + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == sample
    )


def loops(c: AgentCluster, name: str) -> float:
    return metric(c, name, "hamgr_ha_loop_duration_seconds_count")


def fsyncs(c: AgentCluster, name: str) -> float:
    return metric(c, name, "hamgr_store_fsync_duration_seconds_count")


def sessions(conn: psycopg.Connection[Any]) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(SESSIONS_SQL).fetchone()
    assert row is not None
    return int(row[0])


def test_idle_agents_open_no_sessions_and_barely_write_the_store(idle: AgentCluster) -> None:
    c = idle
    names = list(c.members)
    conns = {n: c.connect(n) for n in names}
    try:
        # Let the settling's own writes (slots, first positions) and session counts land first:
        # a few loops of each agent before the window opens.
        start = {n: loops(c, n) for n in names}
        _wait_loops(c, start, 4)
        loops0 = {n: loops(c, n) for n in names}
        sessions0 = {n: sessions(conns[n]) for n in names}
        fsyncs0 = {n: fsyncs(c, n) for n in names}
        _wait_loops(c, loops0, LOOPS)
        ran = sum(loops(c, n) - loops0[n] for n in names)
        new_sessions = {n: sessions(conns[n]) - sessions0[n] for n in names}
        saves = {n: fsyncs(c, n) - fsyncs0[n] for n in names}
    finally:
        for conn in conns.values():
            conn.close()
    assert new_sessions == dict.fromkeys(names, 0), (
        f"new PostgreSQL sessions while idle: {new_sessions}"
    )
    # Rewriting member keys every loop would be one save per agent loop on every member.
    for n in names:
        assert saves[n] <= ran / 6, f"{n}: {saves[n]:g} store log saves in {ran:g} agent loops"


def _wait_loops(c: AgentCluster, since: dict[str, float], count: int) -> None:
    """Until every agent ran `count` more HA loops than `since` (bounded: 2 s a loop)."""
    deadline = time.monotonic() + 2.0 * count + 10
    while time.monotonic() < deadline:
        if all(loops(c, n) - since[n] >= count for n in since):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the agents did not run {count} loops; logs:\n{c.log_tails()}")
