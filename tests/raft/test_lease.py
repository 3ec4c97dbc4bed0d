"""Tests for the leader-side lease clock (hamgr.raft.kv.lease): leases never expire early, a new
leader extends every lease, a follower counts nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.raft.errors import LeaseExpiredError, LeaseNotFoundError, NotLeaderError
from hamgr.raft.kv.kvcommands import encode_lease_grant, encode_lease_revoke, encode_put
from hamgr.raft.kv.lease import LeaseClock, effective_ttl
from hamgr.raft.kv.store import KVStore


@pytest.mark.parametrize(
    ("requested", "election_timeout", "expected"),
    [
        (6, 1.0, 6.0),
        (1, 1.0, 1.5),
        (1.5, 1.0, 1.5),
        (2, 2.0, 3.0),
        (0.1, 0.2, 0.30000000000000004),
    ],
)
def test_effective_ttl(requested: float, election_timeout: float, expected: float) -> None:
    assert effective_ttl(requested, election_timeout) == expected


@pytest.mark.parametrize(
    ("requested", "election_timeout", "match"),
    [
        (0, 1.0, "requested ttl must be > 0"),
        (-1, 1.0, "requested ttl must be > 0"),
        (math.nan, 1.0, "requested ttl must be a finite number"),
        (5, math.inf, "election timeout must be a finite number"),
        (5, 0, "election timeout must be > 0"),
        ("5", 1.0, "requested ttl must be a finite number"),
        (True, 1.0, "requested ttl must be a finite number"),
    ],
)
def test_effective_ttl_refuses_nonsense(
    requested: object, election_timeout: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        effective_ttl(requested, election_timeout)  # type: ignore[arg-type]


def test_grant_keepalive_expire() -> None:
    clock = LeaseClock(retry_interval=1.0)
    clock.become_leader(100.0, {})
    clock.grant(1, 5.0, 100.0)
    assert clock.time_to_live(1, 101.0) == 4.0
    assert clock.expired(104.9) == []
    assert clock.keepalive(1, 104.0) == 5.0  # now lives until 109
    assert clock.expired(108.9) == []
    assert clock.time_to_live(1, 108.0) == 1.0
    assert clock.expired(109.0) == [1]
    assert clock.time_to_live(1, 110.0) == 0.0
    with pytest.raises(LeaseExpiredError, match=r"lease 1 expired 0\.500s ago"):
        clock.keepalive(1, 109.5)
    # Reported again only after the retry interval, until the revoke entry applies.
    assert clock.expired(109.5) == []
    assert clock.expired(110.0) == [1]
    clock.revoke(1)
    assert clock.expired(200.0) == []
    with pytest.raises(LeaseNotFoundError, match="lease 1 is not known"):
        clock.keepalive(1, 200.0)
    clock.revoke(1)  # idempotent


def test_expired_reports_soonest_first() -> None:
    clock = LeaseClock()
    clock.become_leader(0.0, {7: 3.0, 2: 5.0, 9: 1.0})
    clock.grant(4, 3.0, 0.0)
    assert clock.expired(10.0) == [9, 4, 7, 2]


def test_become_leader_extends_every_lease_to_its_full_ttl() -> None:
    old = LeaseClock()
    old.become_leader(0.0, {})
    old.grant(1, 10.0, 0.0)
    old.grant(2, 4.0, 0.0)
    assert old.expired(4.0) == [2]
    # The old leader dies at t=9 (lease 1 had 1 s left); a new one takes over at t=9.5.
    new = LeaseClock()
    new.become_leader(9.5, {1: 10.0, 2: 4.0})
    assert new.time_to_live(1, 9.5) == 10.0
    assert new.expired(13.4) == []
    assert new.expired(13.5) == [2]
    new.revoke(2)  # the node proposed the revoke and it applied
    assert new.expired(19.4) == []
    assert new.expired(19.5) == [1]


def test_become_leader_again_never_shortens_and_forgets_unknown() -> None:
    clock = LeaseClock()
    clock.become_leader(0.0, {1: 10.0, 2: 10.0})
    clock.keepalive(1, 8.0)  # until 18
    clock.become_leader(5.0, {1: 10.0})  # would give 15
    assert clock.time_to_live(1, 5.0) == 13.0
    with pytest.raises(LeaseNotFoundError):
        clock.time_to_live(2, 5.0)


def test_follower_counts_nothing() -> None:
    clock = LeaseClock()
    assert not clock.is_leader
    clock.grant(1, 5.0, 0.0)  # ignored
    assert len(clock) == 0
    assert clock.expired(100.0) == []
    with pytest.raises(NotLeaderError, match="not the Raft leader"):
        clock.keepalive(1, 0.0)
    with pytest.raises(NotLeaderError):
        clock.time_to_live(1, 0.0)

    clock.become_leader(0.0, {1: 5.0})
    assert clock.is_leader
    clock.step_down()
    assert not clock.is_leader
    assert len(clock) == 0
    assert clock.expired(100.0) == []
    with pytest.raises(NotLeaderError):
        clock.keepalive(1, 1.0)
    # Leading again starts afresh from the leases the KV holds.
    clock.become_leader(50.0, {1: 5.0})
    assert clock.expired(54.9) == []
    assert clock.expired(55.0) == [1]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.grant(1, 0, 1.0), "ttl must be > 0"),
        (lambda c: c.grant(1, 5, math.nan), "now must be a finite number"),
        (lambda c: c.keepalive(1, math.inf), "now must be a finite number"),
        (lambda c: c.expired(None), "now must be a finite number"),
        (lambda c: c.become_leader(0.0, {1: -1}), "ttl of lease 1 must be > 0"),
    ],
)
def test_bad_times_are_refused(call: object, match: str) -> None:
    clock = LeaseClock()
    clock.become_leader(0.0, {1: 5.0})
    with pytest.raises(ValueError, match=match):
        call(clock)  # type: ignore[operator]
    with pytest.raises(ValueError, match="retry_interval"):
        LeaseClock(retry_interval=0)


def test_clock_and_store_together() -> None:
    """What the node does: the KV holds the leases, the leader's clock turns expiry into revokes."""
    store = KVStore()
    store.apply(1, encode_lease_grant(11, effective_ttl(2, 1.0)))
    store.apply(2, encode_put(b"/leader", b"n1", 11))
    clock = LeaseClock()
    clock.become_leader(1000.0, store.leases())
    assert clock.expired(1001.9) == []
    index = 3
    for lease_id in clock.expired(1002.0):
        store.apply(index, encode_lease_revoke(lease_id))
        clock.revoke(lease_id)
        index += 1
    assert store.get(b"/leader") is None
    assert store.leases() == {}
    assert len(clock) == 0


# --------------------------------------------------------------------------------------------
# Property: a lease is never expired before the latest of (grant, keepalive, leader start) + ttl


@dataclass
class Model:
    """What the clock promised: lease id -> the instant before which it must be alive."""

    leader: bool = False
    ttl: dict[int, float] = field(default_factory=dict)  # leases the KV holds
    promise: dict[int, float] = field(default_factory=dict)  # counted by this leader
    reported: dict[int, float] = field(default_factory=dict)


ids = st.integers(1, 4)
ttls = st.sampled_from([0.5, 1.5, 3.0, 6.0])
steps = st.lists(
    st.tuples(
        st.sampled_from(["grant", "keepalive", "tick", "revoke", "lead", "step_down"]),
        ids,
        ttls,
        st.floats(0.0, 4.0),  # time advance
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from([0.25, 1.0, 3.0]))
def test_never_expires_early_and_always_reports_when_due(
    script: list[tuple[str, int, float, float]], retry: float
) -> None:
    clock = LeaseClock(retry_interval=retry)
    model = Model()
    now = 1000.0
    for action, lease_id, ttl, advance in script:
        now += advance
        # The KV refuses duplicate ids, and the node only reports grants that applied.
        if action == "grant" and lease_id not in model.ttl:
            model.ttl[lease_id] = ttl
            clock.grant(lease_id, ttl, now)
            if model.leader:
                model.promise[lease_id] = now + ttl
        elif action == "keepalive":
            try:
                remaining = clock.keepalive(lease_id, now)
            except NotLeaderError:
                assert not model.leader
            except LeaseExpiredError:
                assert model.leader
                assert now >= model.promise[lease_id]  # never refused while promised
            except LeaseNotFoundError:
                assert model.leader
                assert lease_id not in model.promise
            else:
                assert model.leader
                assert remaining == model.ttl[lease_id]
                assert now < model.promise[lease_id]
                model.promise[lease_id] = now + model.ttl[lease_id]
                assert clock.time_to_live(lease_id, now) == pytest.approx(model.ttl[lease_id])
        elif action == "revoke":
            model.ttl.pop(lease_id, None)
            model.promise.pop(lease_id, None)
            model.reported.pop(lease_id, None)
            clock.revoke(lease_id)
        elif action == "lead":
            # A full TTL from now; a second call while leader never shortens a promise.
            old = model.promise if model.leader else {}
            model.promise = {i: max(now + t, old.get(i, now)) for i, t in model.ttl.items()}
            model.reported = {}
            model.leader = True
            clock.become_leader(now, dict(model.ttl))
            for i, t in model.ttl.items():
                assert clock.time_to_live(i, now) == pytest.approx(t)  # float rounding only
        elif action == "step_down":
            model.leader = False
            model.promise = {}
            model.reported = {}
            clock.step_down()

        reported = clock.expired(now)
        assert len(reported) == len(set(reported))
        for i in reported:
            assert model.leader
            assert now >= model.promise[i], "reported before its deadline"
            model.reported[i] = now
        if model.leader:
            # Liveness: every lease past its promise was reported now or within the retry window.
            for i, deadline in model.promise.items():
                if now >= deadline:
                    assert now - model.reported[i] < retry or i in reported
                else:
                    assert i not in reported
        else:
            assert reported == []
