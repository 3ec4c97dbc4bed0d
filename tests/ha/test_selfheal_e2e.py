"""End to end: the agent survives its own parts failing (issue 16).

Three real agents (fast profile: ttl 2 s) with real PostgreSQL on 127.0.0.141-143, sharing one
cluster (each test starts by waiting for it to be healthy again):

- kill -9 of the primary's fencer: within a bound the cluster again has exactly one primary
  answering /primary 200 (the agent started a new fencer and the same primary serves, or the key
  was released and a replica took over), and two members never acknowledged writes at once
  (one writer thread per member, straight into its PostgreSQL).
- a fencer that cannot be started again (a directory where its pid file goes): after a ttl
  without a fence the agent releases the key and a replica takes over.
- primary_start_timeout: the primary's PostgreSQL killed and its data directory made unusable
  (chmod 0), so it cannot start again: once the timeout passes its agent releases the leader
  key and a replica takes over (before the fix it kept the key and retried forever).

`AgentCluster.close()` stops every process by PID; the data directory's mode is restored in a
`finally`.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from hamgr import clock
from tests.ha.agentcluster import AgentCluster, cluster_of_test
from tests.ha.clusterops import call, log_since, log_size
from tests.ha.test_fencing_e2e import (
    FAILOVER,
    REJOIN,
    Writers,
    fencer_processes,
    healthy,
    mark,
    rejoined,
)
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTS = ["127.0.0.141", "127.0.0.142", "127.0.0.143"]
START_TIMEOUT = 3.0
"""primary_start_timeout for the test, in seconds (the fast profile's ttl is 2 s)."""


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "selfheal", HOSTS) as c:
        c.start_all()
        yield c


def settled(cluster: AgentCluster) -> tuple[str, list[str]]:
    """`healthy()`, plus a restartpoint on every replica at a checkpoint of the current
    timeline. After an earlier test's failover, a standby that stops receiving reports the
    timeline of its last restartpoint (pg_control), still the old one until checkpoint_timeout
    passes, and the race then finds no member on the cluster's timeline (see the report of
    this work); these tests are about what comes before the race."""
    primary, replicas = healthy(cluster)
    with cluster.connect(primary) as conn:
        conn.execute("CHECKPOINT")
    marker = mark(cluster, primary)
    for r in replicas:
        wait_for(partial(rejoined, cluster, r, marker), REJOIN, f"{r} to replay the marker")
        with cluster.connect(r) as conn:
            conn.execute("CHECKPOINT")  # on a standby: a restartpoint
    return primary, replicas


def fencer_socket(cluster: AgentCluster, name: str) -> Path:
    m = cluster.members[name]
    return m.data_dir.with_name(m.data_dir.name + ".run") / "hamgr-fencer.sock"


def writes_never_overlap(writers: Writers, since: float) -> list[str]:
    """Assert no two members acknowledged writes at once after `since`: ordered by their first
    acknowledgement, each member's last one comes before the next member's first. Returns the
    members that acknowledged writes, in that order."""
    spans = {}
    for name, w in writers.by_name.items():
        acks = [t for t in w.acks if t > since]
        if acks:
            spans[name] = (acks[0], acks[-1])
    order = sorted(spans, key=lambda n: spans[n][0])
    for before, after in itertools.pairwise(order):
        assert spans[before][1] < spans[after][0], (
            f"TWO PRIMARIES: {before} acknowledged a write "
            f"{(spans[before][1] - spans[after][0]) * 1000:.1f} ms after {after}'s first "
            f"({writers.summary()})"
        )
    return order


def test_a_killed_fencer_never_leaves_an_unfenced_or_missing_primary(
    cluster: AgentCluster,
) -> None:
    """kill -9 of the primary's fencer: the agent starts a new one (or gives the key up), and
    the cluster again has exactly one primary that takes writes; never two at once."""
    old, _ = settled(cluster)
    sock = fencer_socket(cluster, old)
    killed = fencer_processes(sock)
    assert len(killed) == 1, f"{old} should run one fencer, runs {killed}"
    offset = log_size(cluster, old)
    with Writers(cluster) as writers:
        wait_for(lambda: len(writers.acks(old)) >= 20, 10, f"writes acknowledged by {old}")
        killed_at = clock.now()
        os.kill(killed[0], signal.SIGKILL)

        def serving_again() -> str | None:
            found = cluster.primaries()
            if len(found) != 1:
                return None
            name = found[0]
            recent = [t for t in writers.acks(name) if t > killed_at]
            return name if len(recent) >= 20 else None

        primary = wait_for(serving_again, FAILOVER, "one primary taking writes again")
        back = clock.now() - killed_at
        assert cluster.primaries() == [primary]
    order = writes_never_overlap(writers, killed_at)
    print(
        f"\nafter the fencer's kill: {primary} took writes again {back:.1f} s later; writes "
        f"acknowledged by {order} ({writers.summary()})"
    )
    if primary == old:
        fencers = fencer_processes(sock)
        assert len(fencers) == 1 and fencers != killed, (
            f"{old} serves as primary without a new fencer: {fencers} (killed {killed})"
        )
        text = log_since(cluster, old, offset)
        assert "started a new fencer" in text, text[-3000:]


def test_a_fencer_that_cannot_be_started_again_gives_the_key_up(cluster: AgentCluster) -> None:
    """The primary's fencer killed and no new one can start (a directory stands where its pid
    file goes): the agent runs no PostgreSQL as primary without a fence and, after a ttl,
    releases the leader key; a replica takes over. Once a fencer can start again the old
    primary rejoins as a replica."""
    old, replicas = settled(cluster)
    sock = fencer_socket(cluster, old)
    [fencer] = fencer_processes(sock)
    pid_path = sock.with_name(sock.name + ".pid")
    aside = pid_path.with_name(pid_path.name + ".aside")
    offset = log_size(cluster, old)
    pid_path.rename(aside)  # the running fencer keeps its lock on the renamed file
    pid_path.mkdir()
    try:
        os.kill(fencer, signal.SIGKILL)
        killed_at = clock.now()
        new = cluster.wait_primary(FAILOVER, exclude=(old,))
        print(f"\n{new} primary {clock.now() - killed_at:.1f} s after {old}'s fencer died")
        assert new in replicas
        text = log_since(cluster, old, offset)
        assert "could not start a new fencer" in text, text[-3000:]
        assert "releasing the leader key" in text, text[-3000:]
    finally:
        pid_path.rmdir()
        aside.unlink(missing_ok=True)
    marker = mark(cluster, new)
    wait_for(lambda: rejoined(cluster, old, marker), REJOIN, f"{old} back as a replica")
    assert cluster.primaries() == [new]


def test_a_primary_that_cannot_start_fails_over_after_primary_start_timeout(
    cluster: AgentCluster,
) -> None:
    """The primary's postmaster killed and its data directory unusable: its agent cannot start
    PostgreSQL again and, after primary_start_timeout, releases the key; a replica takes over.
    Once the directory is usable again the old primary rejoins as a replica."""
    old, replicas = settled(cluster)
    code, body = call(
        cluster, replicas[0], "PATCH", "/config", {"primary_start_timeout": START_TIMEOUT}
    )
    assert code == 200 and body["primary_start_timeout"] == START_TIMEOUT, (code, body)
    wait_for(
        lambda: (
            (cluster.http(old, "/config")[1] or {}).get("primary_start_timeout") == START_TIMEOUT
        ),
        15,
        f"{old} to see primary_start_timeout {START_TIMEOUT:g}",
    )
    data = cluster.members[old].data_dir
    mode = data.stat().st_mode & 0o7777
    offset = log_size(cluster, old)
    try:
        os.chmod(data, 0)
        cluster.kill9_postgres(old)
        down_at = clock.now()
        new = cluster.wait_primary(FAILOVER, exclude=(old,))
        print(f"\n{new} primary {clock.now() - down_at:.1f} s after {old}'s postmaster died")
        assert new in replicas
        text = log_since(cluster, old, offset)
        assert "primary_start_timeout" in text, text[-3000:]
    finally:
        os.chmod(data, mode)
    marker = mark(cluster, new)
    wait_for(lambda: rejoined(cluster, old, marker), REJOIN, f"{old} back as a replica")
    assert cluster.primaries() == [new]
