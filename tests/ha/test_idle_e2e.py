"""An idle cluster costs no new PostgreSQL sessions and (almost) no store writes (issue 15).

Real agents, real PostgreSQL, real store members. Once the cluster has settled, every agent runs
a number of HA loops with nothing happening; over those loops, counted on each member:
- new PostgreSQL sessions (pg_stat_database.sessions, read through one connection held open
  for the whole window): none, since each agent observes its server over one held connection;
- the store's durable log saves (hamgr_store_fsync_duration_seconds_count): far fewer than the
  loops run, since member keys are rewritten only when their value or lease changes (before,
  each agent rewrote its key every loop: one save per agent and loop on every member);
- the cluster views read from the store (hamgr_ha_views_total{source="store"}): fewer than the
  loops run, since a cycle started by a quiet watch decides on the previous read (the view
  cache, hamgr/ha/loop.py).
Then the cache must not hide anything: changes made straight in the store, behind the
agents' backs (a member key deleted, a switchover request written), are acted on within a
couple of loops. Counts over windows of loops, not timings.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hamgr.agent.storemember import settings_from_config
from hamgr.config import load_config
from hamgr.dcs.common import encode_value
from hamgr.dcs.model import SwitchoverRequest
from hamgr.raft.client.storeclient import StoreClient
from tests.ha.agentcluster import AgentCluster, cluster_of_test
from tests.tools.poll import wait_for

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


ACTED_WITHIN = 3
"""Loops of the agent concerned within which a change made behind its back is acted on (the
watch that saw it ends, the next cycle reads afresh and acts; one more for a cycle under way)."""


def metric(c: AgentCluster, name: str, sample: str, **labels: str) -> float:
    """The value of `sample` (a sample name, with these labels) on member `name`'s /metrics."""
    with urllib.request.urlopen(c.members[name].api + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def loops(c: AgentCluster, name: str) -> float:
    return metric(c, name, "hamgr_ha_loop_duration_seconds_count")


def fsyncs(c: AgentCluster, name: str) -> float:
    return metric(c, name, "hamgr_store_fsync_duration_seconds_count")


def store_reads(c: AgentCluster, name: str) -> float:
    return metric(c, name, "hamgr_ha_views_total", source="store")


async def _in_store(c: AgentCluster, op: str, key: str, value: str = "") -> bool:
    """Straight to the store with a client of its own (no agent involved): ``get`` (is the key
    there?), ``del`` or ``put``."""
    first = next(iter(c.members.values()))
    settings = settings_from_config(load_config(first.config, resolve=False))
    async with StoreClient(
        [settings.client_advertise], settings.cluster_id, settings.secret
    ) as client:
        if op == "get":
            return bool((await client.get(key.encode())).kvs)
        if op == "del":
            await client.delete(key.encode())
        else:
            await client.put(key.encode(), value.encode())
        return True


def in_store(c: AgentCluster, op: str, key: str, value: str = "") -> bool:
    return asyncio.run(_in_store(c, op, key, value))


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
        reads0 = {n: store_reads(c, n) for n in names}
        _wait_loops(c, loops0, LOOPS)
        reads = {n: store_reads(c, n) - reads0[n] for n in names}
        ran_by = {n: loops(c, n) - loops0[n] for n in names}
        ran = sum(ran_by.values())
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
    # Reading the store every loop would make as many reads as loops (scraped after the
    # loops were counted: a read may run ahead of its loop's end, never the other way).
    print(f"store reads / loops while idle: {reads} / {ran_by}")
    for n in names:
        assert reads[n] < ran_by[n], f"{n}: {reads[n]:g} store reads in {ran_by[n]:g} loops"


def test_a_member_key_deleted_behind_the_agents_backs_is_written_again(idle: AgentCluster) -> None:
    """Member keys do not wake the loop, but they do make the next cycle read afresh: a
    member key deleted straight in the store is written back within a couple of loops of its
    agent (a cache that missed member events would leave it gone for good while idle)."""
    c = idle
    for name in sorted(
        c.members, key=lambda n: n in c.primaries()
    ):  # a replica's, then the primary's
        key = f"/hamgr/{c.scope}/members/{name}"
        in_store(c, "del", key)
        before = loops(c, name)
        wait_for(
            lambda key=key: in_store(c, "get", key),
            30,
            f"{key} written again by its agent",
            interval=0.05,
        )
        took = loops(c, name) - before
        assert took <= ACTED_WITHIN, f"{name} took {took:g} loops to write back its member key"


def test_a_switchover_written_behind_the_agents_backs_is_carried_out(idle: AgentCluster) -> None:
    """A switchover request put straight into the store (no REST API, nobody told) wakes
    the agents and moves the primary to the candidate."""
    c = idle
    primary = c.wait_primary(30)
    candidate = sorted(n for n in c.members if n != primary)[0]
    c.wait_streaming([candidate], 60, upstream=primary)
    request = SwitchoverRequest("switchover", leader=primary, candidate=candidate)
    before = loops(c, candidate)
    in_store(c, "put", f"/hamgr/{c.scope}/switchover", encode_value(request).decode())
    assert c.wait_primary(60, exclude=(primary,)) == candidate
    took = loops(c, candidate) - before
    print(f"switchover written in the store: {candidate} primary after {took:g} of its loops")


def _wait_loops(c: AgentCluster, since: dict[str, float], count: int) -> None:
    """Until every agent ran `count` more HA loops than `since` (bounded: 2 s a loop)."""
    deadline = time.monotonic() + 2.0 * count + 10
    while time.monotonic() < deadline:
        if all(loops(c, n) - since[n] >= count for n in since):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the agents did not run {count} loops; logs:\n{c.log_tails()}")
