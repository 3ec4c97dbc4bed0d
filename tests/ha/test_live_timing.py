"""Timing changed live with `hactl edit-config` takes effect on the running agents, safely.

Three real agents (fast profile: ttl 2 s, loop_wait 0.5 s, retry_timeout 0.5 s, safety_margin
0.5 s) with real PostgreSQL on 127.0.0.171-173, sharing one cluster. What is read back:

- the store: the leader key (`hamgr store-ctl get`) and the TTL its lease was granted with
  (`hamgr store-ctl lease ID`);
- each agent's GET /patroni ``timing``: the store session's ttl and retry_timeout, the lease
  its keys are on, ``fence_window`` (the deadline the fencer holds minus the instant the renewal
  it came from was sent: ttl - safety_margin while the fence follows the lease), and its counts
  of loop cycles and keepalives.

No timed assertion: every check waits on a condition with a deadline, and the loop cadence is
compared as counts (cycles per keepalive under one loop_wait and under another).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from hamgr import clock
from tests.ha.agentcluster import AgentCluster, cluster_of_test
from tests.ha.clusterops import hactl, status_of
from tests.ha.test_fencing_e2e import (
    FAILOVER,
    REJOIN,
    Writers,
    check_near_deadline,
    fence_lines,
    healthy,
    judge,
    mark,
    postgres_alive,
    rejoined,
)
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTS = ["127.0.0.171", "127.0.0.172", "127.0.0.173"]
SETTLE = 30.0
"""Seconds for a changed setting to reach every agent (a loop or two, a keepalive or two)."""
EXACT = 1e-6
"""fence_window is arithmetic on the agent's own instants: equal up to float rounding."""


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "timing", HOSTS) as c:
        c.start_all()
        yield c


def edit(c: AgentCluster, via: str, **changes: float) -> None:
    sets = [x for k, v in changes.items() for x in ("--set", f"{k}={v:g}")]
    done = hactl(c, via, "edit-config", *sets, "--force")
    assert done.returncode == 0, done.stderr


def store_ctl(c: AgentCluster, via: str, *args: str) -> list[dict[str, Any]]:
    config = str(c.members[via].config)
    out = subprocess.run(
        [sys.executable, "-m", "hamgr", "store-ctl", "--config", config, "--timeout", "5", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        return []
    return [json.loads(line) for line in out.stdout.splitlines()]


def leader_key(c: AgentCluster, via: str) -> dict[str, Any] | None:
    """The leader key as the store holds it (name, create revision, lease), with its lease's
    granted TTL as ``granted_ttl``; None when there is none (or no answer)."""
    rows = store_ctl(c, via, "get", f"/hamgr/{c.scope}/leader")
    key = next((r for r in rows if "key" in r), None)
    if key is None:
        return None
    lease = store_ctl(c, via, "lease", str(key["lease"]))
    return {**key, "granted_ttl": lease[0]["granted_ttl"]} if lease else None


def timing(c: AgentCluster, name: str) -> dict[str, Any]:
    t = status_of(c, name).get("timing")
    return t if isinstance(t, dict) else {}


def window_is(c: AgentCluster, name: str, expected: float) -> dict[str, Any] | None:
    t = timing(c, name)
    w = t.get("fence_window")
    return t if isinstance(w, float) and abs(w - expected) < EXACT else None


def fence_within_lease(c: AgentCluster, name: str, margin: float) -> dict[str, Any]:
    """`name`'s timing, asserting the fence it holds ends no later than the lease its keys are
    on allows: fence_window <= lease_ttl - margin (checked whenever the keys sit on one lease;
    while they are being moved, the earlier of both counts and is capped first)."""
    t = timing(c, name)
    w, ttl = t.get("fence_window"), t.get("lease_ttl")
    if isinstance(w, float) and isinstance(ttl, float) and not t.get("switching"):
        assert w <= ttl - margin + EXACT, f"{name}'s fencer holds a deadline past its lease: {t}"
    return t


def test_ttl_changed_live_moves_the_leader_key_onto_a_lease_of_that_ttl(
    cluster: AgentCluster,
) -> None:
    """edit-config ttl: the leader key moves onto a lease granted with the new ttl (same name,
    same fencing token: no failover), longer and then shorter; every member's session takes
    the new ttl and retry_timeout; the fencer's deadline never lies past the lease the key is
    on (watched at every answer), and follows it. Then a kill -9 of the primary's agent still
    fails over, with no two primaries."""
    c = cluster
    old, replicas = healthy(c)
    first = wait_for(lambda: leader_key(c, old), 30, "the leader key")
    assert first["value"] == old and first["granted_ttl"] == 2.0
    margin = 0.5
    for ttl, retry in ((4.0, 1.0), (3.0, 0.75)):  # longer, then shorter
        edit(c, old, ttl=ttl, retry_timeout=retry)

        def follows(ttl: float = ttl) -> dict[str, Any] | None:
            t = fence_within_lease(c, old, margin)
            w = t.get("fence_window")
            on_new = t.get("lease_ttl") == ttl and not t.get("switching")
            return (
                t if on_new and isinstance(w, float) and abs(w - (ttl - margin)) < EXACT else None
            )

        t = wait_for(follows, SETTLE, f"{old}'s fence at ttl {ttl:g} - margin", interval=0.02)
        # A few more renewals on the new lease, the fence still within it at every answer.
        wait_for(
            lambda t=t: fence_within_lease(c, old, margin)["keepalives"] >= t["keepalives"] + 3,
            SETTLE,
            f"three renewals of {old} at ttl {ttl:g}",
            interval=0.02,
        )
        key = wait_for(lambda: leader_key(c, old), 30, "the leader key")
        assert key["granted_ttl"] == ttl and key["lease"] == t["lease_id"], (key, t)
        assert key["value"] == old, "the ttl change must not move the leadership"
        assert key["create_revision"] == first["create_revision"], "same fencing token"
        for name in c.members:
            wait_for(
                lambda name=name, ttl=ttl, retry=retry: (
                    timing(c, name).get("lease_ttl") == ttl
                    and timing(c, name).get("ttl") == ttl
                    and timing(c, name).get("retry_timeout") == retry
                ),
                SETTLE,
                f"{name}'s session and lease on ttl {ttl:g}, retry_timeout {retry:g}",
            )

    postmaster = c.postmaster_pid(old)
    with Writers(c) as writers:
        wait_for(lambda: len(writers.acks(old)) >= 20, 10, f"writes acknowledged by {old}")
        killed_at = clock.now()
        c.kill9_agent(old)
        new = wait_for(lambda: writers.acked_elsewhere(old, 20), FAILOVER, "a new primary")
        assert not postgres_alive(postmaster), "the old postmaster outlived its fence"
        c.start(old)
        marker = mark(c, new)
        wait_for(lambda: rejoined(c, old, marker), REJOIN, f"{old} back as a replica")
    verdict = judge(writers, old, killed_at)
    assert verdict.new == new and new in replicas
    fences = fence_lines(c, old, killed_at)
    assert fences and postmaster in fences[0].killed, f"no fence of {postmaster}: {fences}"
    check_near_deadline(verdict, fences[0])
    edit(c, new, ttl=2.0, retry_timeout=0.5)


def test_safety_margin_changed_live_moves_the_fence_by_the_difference(
    cluster: AgentCluster,
) -> None:
    """A larger safety_margin moves the fence the fencer holds back by the difference from the
    first timed renewal under it on (ttl 9: a timed renewal every 3 s, and the margin grows by
    7.5 s, so a fencer whose deadline only moved forward would still hold the old one then);
    a smaller margin moves it forward again."""
    c = cluster
    primary, _ = healthy(c)
    edit(c, primary, ttl=9.0, safety_margin=0.5)
    before = wait_for(lambda: window_is(c, primary, 8.5), SETTLE, "fence window 9 - 0.5")
    edit(c, primary, safety_margin=8.0)
    seen = wait_for(
        lambda: t if (t := timing(c, primary)).get("safety_margin") == 8.0 else None,
        SETTLE,
        "the new margin read by the primary",
        interval=0.02,
    )
    # The timed round counted two after the first answer showing the new margin began after
    # it; from then on no renewal counts with the old margin.
    first = wait_for(
        lambda: (
            t if (t := timing(c, primary)).get("keepalives", 0) >= seen["keepalives"] + 2 else None
        ),
        SETTLE,
        "two timed renewals under the new margin",
        interval=0.02,
    )
    assert first["fence_window"] <= 1.0 + EXACT, f"the fence did not move back at once: {first}"
    after = wait_for(lambda: window_is(c, primary, 1.0), SETTLE, "fence window 9 - 8")
    assert abs((before["fence_window"] - after["fence_window"]) - 7.5) < EXACT
    edit(c, primary, safety_margin=0.5)
    wait_for(lambda: window_is(c, primary, 8.5), SETTLE, "fence window back at 9 - 0.5")
    edit(c, primary, ttl=2.0)


def cadence(c: AgentCluster, name: str, keepalives: int) -> float:
    """Loop cycles per keepalive of member `name` over the next `keepalives` keepalives."""
    start = wait_for(lambda: timing(c, name) or None, 10, f"{name}'s timing")
    end = wait_for(
        lambda: (
            t
            if (t := timing(c, name)).get("keepalives", 0) >= start["keepalives"] + keepalives
            else None
        ),
        60,
        f"{keepalives} keepalives of {name}",
        interval=0.2,
    )
    cycles = end["cycles"] - start["cycles"]
    renewals = end["keepalives"] - start["keepalives"]
    print(f"\n{name}: {cycles} cycles over {renewals} keepalives ({end['loop_wait']} s loop_wait)")
    return float(cycles) / renewals


def test_loop_wait_changed_live_sets_the_loop_cadence(cluster: AgentCluster) -> None:
    """The keepalive timer runs every ttl/3 whatever loop_wait is: against it, a replica's loop
    cycles at least twice as often under loop_wait 0.25 s as under loop_wait 2 s (expected:
    ~4 vs ~0.7 cycles per keepalive at ttl 4)."""
    c = cluster
    primary, replicas = healthy(c)
    replica = replicas[0]
    edit(c, primary, ttl=4.0, loop_wait=0.25, safety_margin=2.0)
    wait_for(lambda: timing(c, replica).get("loop_wait") == 0.25, SETTLE, "loop_wait 0.25")
    fast = cadence(c, replica, 6)
    edit(c, primary, loop_wait=2.0)
    wait_for(lambda: timing(c, replica).get("loop_wait") == 2.0, SETTLE, "loop_wait 2")
    cadence(c, replica, 1)  # the cycle that began under the old loop_wait ends
    slow = cadence(c, replica, 6)
    assert fast > 2 * slow, f"{fast:.2f} cycles per keepalive at 0.25 s vs {slow:.2f} at 2 s"
    edit(c, primary, ttl=2.0, loop_wait=0.5, safety_margin=0.5)
