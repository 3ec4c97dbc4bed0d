"""The fence deadline never lies past the store's expiry of the lease the leader key is on,
whatever the ttl changes, margin changes and keepalive timings (hamgr/ha/leaseclock.py).

Pure: a small model of the store (leases counted from when it processes a grant or keepalive,
which is never before the agent sent it) and of the agent's LeaseClock, stepped by hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.ha.leaseclock import LeaseClock, Renewal


def test_table() -> None:
    c = LeaseClock().renewed(Renewal(1, 100.0, 6.0))
    assert c.deadline(2.0) == 104.0
    # A late answer of an older keepalive never moves it back; a newer one moves it on.
    assert c.renewed(Renewal(1, 99.0, 6.0)).deadline(2.0) == 104.0
    c = c.renewed(Renewal(1, 102.0, 6.0))
    assert c.deadline(2.0) == 106.0
    # A larger margin moves it back at once.
    assert c.deadline(3.0) == 105.0
    # Shorter ttl: while the key may be on either lease the earlier expiry counts.
    s = c.switching(Renewal(2, 103.0, 2.0))
    assert s.deadline(1.0) == 104.0
    assert s.switched(2).deadline(1.0) == 104.0
    # Longer ttl: the old lease bounds it until the move is confirmed.
    s = c.switching(Renewal(3, 103.0, 20.0))
    assert s.deadline(2.0) == 106.0
    done = s.switched(3)
    assert done.deadline(2.0) == 121.0
    # The old lease is retired: its late keepalive answers count for nothing.
    assert done.renewed(Renewal(1, 110.0, 6.0)) == done
    # A move that did not happen leaves the old lease alone.
    assert c.switching(Renewal(4, 103.0, 2.0)).abandoned(4).deadline(2.0) == 106.0
    # The session's new lease (the old one expired) replaces them.
    assert done.renewed(Renewal(5, 130.0, 6.0)).deadline(2.0) == 134.0
    with pytest.raises(ValueError, match="retired"):
        done.switching(Renewal(1, 140.0, 6.0))
    with pytest.raises(ValueError, match="not one the keys"):
        done.switched(9)
    assert LeaseClock().deadline(1.0) is None


@dataclass
class World:
    """The store's leases (id -> (ttl, expiry)), the key's lease, and the agent."""

    now: float = 0.0
    leases: dict[int, tuple[float, float]] = field(default_factory=dict)
    key_on: int = 1
    session: int = 1
    agent: LeaseClock = field(default_factory=LeaseClock)
    margin: float = 1.0
    inflight: list[tuple[float, Renewal]] = field(default_factory=list)
    next_id: int = 2
    checks: int = 0

    def alive(self, lease: int, at: float) -> bool:
        return lease in self.leases and self.leases[lease][1] > at

    def check(self) -> None:
        """The invariant, at this instant."""
        if not self.alive(self.key_on, self.now):
            return  # the key is gone: nobody is fenced by it, any member may take it
        fence = self.agent.deadline(self.margin)
        assert fence is not None
        assert fence <= self.leases[self.key_on][1], (fence, self.leases, self.key_on)
        self.checks += 1

    def advance(self, dt: float) -> None:
        end = self.now + dt
        for arrive, r in sorted(self.inflight, key=lambda x: x[0]):
            if arrive <= end:
                self.now = max(self.now, arrive)
                self.agent = self.agent.renewed(r)
                self.check()
        self.inflight = [(a, r) for a, r in self.inflight if a > end]
        self.now = end
        self.check()

    def keepalive(self, to_store: float, back: float) -> None:
        lease, sent = self.session, self.now
        processed = sent + to_store
        if not self.alive(lease, processed):
            return  # the store answers "gone": the agent's deadline does not move
        ttl, expiry = self.leases[lease]
        self.leases[lease] = (ttl, max(expiry, processed + ttl))
        self.inflight.append((processed + back, Renewal(lease, sent, ttl)))

    def switch(self, ttl: float, to_store: float, back: float) -> None:
        """Grant, cap the fence (switching), move the key by CAS, confirm, revoke the old."""
        old, new = self.session, self.next_id
        self.next_id += 1
        sent = self.now
        self.leases[new] = (ttl, sent + to_store + ttl)
        self.advance(to_store + back)
        self.agent = self.agent.switching(Renewal(new, sent, ttl))
        self.check()
        self.advance(to_store)  # the CAS travels to the store
        if not self.alive(self.key_on, self.now) or not self.alive(new, self.now):
            self.agent = self.agent.abandoned(new)
            self.leases.pop(new, None)
            return
        self.key_on = new
        self.check()
        self.advance(back)
        self.agent = self.agent.switched(new)
        self.session = new
        self.check()
        self.leases.pop(old, None)  # revoked


delay = st.floats(min_value=0.0, max_value=3.0)
step = st.one_of(
    st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=4.0)),
    st.tuples(st.just("keepalive"), delay, delay),
    st.tuples(st.just("switch"), st.floats(min_value=1.0, max_value=30.0), delay, delay),
    st.tuples(st.just("margin"), st.floats(min_value=0.0, max_value=3.0)),
)


@settings(max_examples=400, deadline=None)
@given(first_ttl=st.floats(min_value=1.0, max_value=30.0), steps=st.lists(step, max_size=40))
def test_fence_never_lies_past_the_store_expiry_of_the_keys_lease(
    first_ttl: float, steps: list[tuple[object, ...]]
) -> None:
    w = World(leases={1: (first_ttl, first_ttl)})
    w.agent = LeaseClock().renewed(Renewal(1, 0.0, first_ttl))
    w.check()
    for s in steps:
        kind, args = s[0], [float(x) for x in s[1:]]  # type: ignore[arg-type]
        if kind == "advance":
            w.advance(args[0])
        elif kind == "keepalive":
            w.keepalive(args[0], args[1])
        elif kind == "switch":
            w.switch(args[0], args[1], args[2])
        else:
            w.margin = args[0]
            w.check()
