"""The Dcs contract, as async checks run against any backend on a REAL store (no mocks).

Each check takes a `StoreUnderTest` and works in a scope of its own, so checks can share one
store. `CHECKS` lists them; a backend's test module parametrizes over it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Protocol

import msgspec
import pytest

from hamgr import clock
from hamgr.dcs import (
    DcsError,
    DynamicSettings,
    LeaderKey,
    MemberState,
    SwitchoverRequest,
    TimelineEntry,
    scope_keys,
)
from hamgr.dcs.base import KeepaliveResult
from hamgr.dcs.common import LeaseGone, Timer, encode_value
from hamgr.dcs.model import PrimaryPosition, SyncState
from hamgr.dcs.session import KvSession
from tests.tools.virtualtimer import VirtualTimer

_scopes = itertools.count(1)

WATCH_BOUND = 1.0
"""A watch must wake within this many seconds of the change it waits for."""
HOUR = 3600.0
"""A watch timeout no test reaches: a watch given it that returns True was woken by a change."""
QUIET_WATCH = 2.5
"""The timeout of a watch that must see nothing (member publications only): long enough that
a polling watch's last read (each may take the client's 1 s attempt on a loaded machine) still
ends inside it; a watch that runs out of time mid-read raises instead of vouching for quiet."""


class StoreUnderTest(Protocol):
    """What a backend's test module provides to the checks."""

    ttl: float

    def session(self, scope: str, name: str, *, retry_timeout: float = ...) -> KvSession: ...

    def unreachable(
        self, scope: str, name: str, retry_timeout: float, timer: Timer = ...
    ) -> KvSession: ...

    async def raw_put(self, key: str, value: bytes) -> None: ...

    async def raw_get(self, key: str) -> tuple[bytes, int, int] | None: ...

    async def deletions(
        self, prefix: str, since: int, keys: set[str], timeout: float
    ) -> dict[str, int]: ...


def new_scope(what: str) -> str:
    return f"{what[:40]}-{next(_scopes)}".replace("_", "-")


def member(name: str, **kw: object) -> MemberState:
    return MemberState(
        name=name,
        api_url=f"http://{name}.example:8008",
        conn_url=f"{name}.example:5432",
        **kw,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def sessions(
    store: StoreUnderTest, scope: str, *names: str
) -> AsyncIterator[list[KvSession]]:
    """Sessions for `names`, closed afterwards even when the check failed."""
    made = [store.session(scope, n) for n in names]
    try:
        yield made
    finally:
        for s in made:
            with suppress(DcsError):
                await s.close()


# --- the checks ---------------------------------------------------------------------------------


async def check_race_has_one_winner_holding_the_create_revision(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("race"), "a", "b", "c") as agents:
        for s in agents:
            await s.touch_member(member(s.name))
        results = await asyncio.gather(*(s.acquire_leader() for s in agents))
        winners = [(s, r) for s, r in zip(agents, results, strict=True) if r is not None]
        assert len(winners) == 1, f"exactly one must win the race, got {results}"
        winner, key = winners[0]
        assert key.name == winner.name
        for s in agents:  # every loser (and the winner) sees the winner, same fencing token
            view = await s.get_cluster()
            assert view.leader == key, f"{s.name} sees {view.leader}, winner holds {key}"
            assert key.revision <= view.revision
            assert {m.name for m in view.members} == {"a", "b", "c"}
        for s in agents:  # the key is held: nobody else takes it, the winner neither
            assert await s.acquire_leader() is None


async def check_keepalive_reports_sent_at_and_ttl(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("keepalive"), "a") as (a,):
        without = await a.keepalive()
        assert not without.ok, "no lease yet: keepalive must say so"
        assert without.fence_at(0.5) is None
        await a.touch_member(member("a"))
        before = clock.now()
        result = await a.keepalive()
        after = clock.now()
        assert result.ok
        assert before <= result.sent_at <= after
        assert result.ttl >= store.ttl
        assert result.fence_at(0.5) == result.sent_at + result.ttl - 0.5


async def check_expiry_removes_leader_and_member_at_one_revision(
    store: StoreUnderTest,
) -> None:
    scope = new_scope("expiry")
    keys = scope_keys(scope)
    async with sessions(store, scope, "a", "b", "c") as (a, b, c):
        await c.touch_member(member("c"))  # c's lease is granted first, never renewed
        await a.touch_member(member("a"))
        first = await a.acquire_leader()
        assert first is not None
        renewal = await a.keepalive()
        assert renewal.ok
        earliest = renewal.sent_at + renewal.ttl  # no expiry may be seen before this
        give_up = earliest + 10.0
        while True:  # a sends no more keepalives
            view = await b.get_cluster()
            seen_at = clock.now()
            has_leader, has_member = view.leader is not None, view.member("a") is not None
            assert has_leader == has_member, (
                f"leader key and member key must vanish at one revision, view {view.revision} "
                f"has leader={has_leader} member={has_member}"
            )
            if not has_leader:
                break
            assert seen_at < give_up, "the lease never expired"
            await asyncio.sleep(0.02)
        assert seen_at >= earliest, (
            f"the lease was gone {earliest - seen_at:.3f} s before sent_at + ttl of the last "
            "successful keepalive"
        )
        gone = await store.deletions(
            keys.prefix, first.revision, {keys.leader, keys.member("a")}, timeout=2.0
        )
        assert {keys.leader, keys.member("a")} <= set(gone), f"deletions seen: {gone}"
        assert gone[keys.leader] == gone[keys.member("a")], f"deleted at {gone}"
        lost = await a.keepalive()
        assert not lost.ok, "a keepalive of an expired lease must say ok False"
        assert lost.fence_at(0.5) is None
        await b.touch_member(member("b"))
        second = await b.acquire_leader()
        assert second is not None and second.name == "b"
        assert second.revision > first.revision, "the fencing token must grow"
        await a.touch_member(member("a"))  # a new lease for a, as documented
        assert (await a.keepalive()).ok
        view = await a.get_cluster()
        assert view.leader == second and view.member("a") is not None
        assert view.member("c") is None, "c's lease was granted before a's last renewal"
        await c.touch_member(member("c"))  # its lease is gone: the put fails, c gets a new one
        assert (await c.keepalive()).ok
        assert (await b.get_cluster()).member("c") is not None


async def check_close_revokes_the_lease_at_once(store: StoreUnderTest) -> None:
    scope = new_scope("close")
    async with sessions(store, scope, "b") as (b,):
        a = store.session(scope, "a")
        await a.touch_member(member("a"))
        assert await a.acquire_leader() is not None
        await a.close()
        view = await b.get_cluster()
        assert view.leader is None and view.member("a") is None
        assert await b.acquire_leader() is not None


async def check_a_restarted_agent_adopts_its_own_lease(store: StoreUnderTest) -> None:
    """A new session of the same member takes the old session's lease back with a keepalive,
    and the leader key with it; a gone lease, or a key on another lease, is never ours."""
    scope = new_scope("adopt")
    async with sessions(store, scope, "b") as (b,):
        old = store.session(scope, "a")  # the process that dies: never closed (kill -9)
        written: list[int] = []
        old.before_grant = written.append
        await old.touch_member(member("a"))
        key = await old.acquire_leader()
        assert key is not None and old.lease_id is not None
        assert written == [old.lease_id], "the lease id is handed out before its grant"
        async with sessions(store, scope, "a") as (new,):
            before = clock.now()
            result, held = await new.adopt_lease(old.lease_id)
            assert result.ok and result.sent_at >= before, "counted from the new keepalive"
            assert held == key, "the leader key on the adopted lease is ours again"
            assert new.lease_id == old.lease_id
            assert (await new.keepalive()).ok
            await new.touch_member(member("a"))  # no second lease
            assert new.lease_id == old.lease_id
            assert (await b.get_cluster()).leader == key
        # `new` closed: the lease is revoked, and adopting it again finds nothing.
        again = store.session(scope, "a")
        try:
            gone, none = await again.adopt_lease(old.lease_id)
            assert not gone.ok and none is None and again.lease_id is None
            await b.touch_member(member("b"))
            theirs = await b.acquire_leader()
            assert theirs is not None
            # b's lease holds b's key: adopting b's lease as "a" does not make the key a's.
            assert b.lease_id is not None
            result, held = await again.adopt_lease(b.lease_id)
            assert result.ok and held is None
        finally:
            for s in (again, old):
                with suppress(DcsError):
                    await s.close()


async def check_a_new_ttl_moves_the_keys_onto_a_new_lease(store: StoreUnderTest) -> None:
    """A live ttl change: the keys move onto a lease of the new ttl, the leader key keeping its
    name and fencing token; the fence hook runs while the key is still on the old lease; the old
    lease is revoked. A hook that fails stops the switch and leaves the keys where they were."""
    scope = new_scope("switch")
    keys = scope_keys(scope)
    async with sessions(store, scope, "a", "b") as (a, b):
        await a.touch_member(member("a"))
        key = await a.acquire_leader()
        old = a.lease_id
        assert key is not None and old is not None
        transport = a._transport

        async def lease_of(k: str) -> int | None:
            kv = (await transport.range(k, prefix=False, timeout=5.0)).get(k)
            return None if kv is None else kv.lease

        assert await a.switch_lease(_no_hook) is None, "same ttl: nothing to move"
        a.apply_timing(store.ttl + 2, a.retry_timeout)

        async def refuse(grant: KeepaliveResult) -> None:
            raise RuntimeError("the fencer could not be capped")

        with pytest.raises(RuntimeError, match="capped"):
            await a.switch_lease(refuse)
        assert a.lease_id == old and await lease_of(keys.leader) == old

        seen: list[tuple[KeepaliveResult, int | None]] = []

        async def hook(grant: KeepaliveResult) -> None:
            seen.append((grant, await lease_of(keys.leader)))

        before = clock.now()
        grant = await a.switch_lease(hook)
        assert grant is not None and grant.ok and grant.sent_at >= before
        assert grant.ttl >= store.ttl + 2 and grant.lease_id == a.lease_id != old
        assert seen == [(grant, old)], "the fence hook runs before the key moves"
        assert await lease_of(keys.leader) == grant.lease_id
        assert await lease_of(keys.member("a")) == grant.lease_id
        assert (await b.get_cluster()).leader == key, "same name, same fencing token"
        with pytest.raises(LeaseGone):
            await transport.lease_keepalive(old, timeout=5.0)
        renewal = await a.keepalive()
        assert renewal.ok and renewal.lease_id == grant.lease_id and renewal.ttl == grant.ttl
        assert await a.switch_lease(hook) is None and len(seen) == 1


async def _no_hook(grant: KeepaliveResult) -> None:
    raise AssertionError("no switch expected")


async def check_release_only_deletes_the_matching_key(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("release"), "a", "b") as (a, b):
        await a.touch_member(member("a"))
        await b.touch_member(member("b"))
        k1 = await a.acquire_leader()
        assert k1 is not None
        assert await b.release_leader(LeaderKey("a", k1.revision + 1000)) is False
        assert (await b.get_cluster()).leader == k1, "a wrong revision must delete nothing"
        assert await a.release_leader(k1) is True
        assert (await a.get_cluster()).leader is None
        assert await a.release_leader(k1) is False, "already gone"
        k2 = await b.acquire_leader()
        assert k2 is not None and k2.revision > k1.revision
        assert await a.release_leader(k1) is False, "a stale key never deletes a newer one"
        view = await a.get_cluster()
        assert view.leader == k2
        assert view.member("a") is not None, "release keeps the lease and the member key"
        assert (await a.keepalive()).ok


async def check_settings_compare_and_swap(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("settings"), "a", "b") as (a, b):
        view = await a.get_cluster()
        assert view.settings == DynamicSettings(), "no config key reads as the defaults"
        s1 = DynamicSettings(ttl=30.0, parameters={"work_mem": "8MB"})
        s2 = DynamicSettings(ttl=40.0, pause=True)
        assert await a.set_settings(s1, 0) is True, "0: only if absent"
        assert await b.set_settings(s2, 0) is False, "0 with the key present must lose"
        assert await b.set_settings(s2, view.revision) is False, "based on a stale view: lose"
        fresh = await b.get_cluster()
        assert fresh.settings == s1
        assert await b.set_settings(s2, fresh.revision) is True
        assert await a.set_settings(s1, fresh.revision) is False, "b changed it since"
        assert (await a.get_cluster()).settings == s2


async def check_switchover_set_and_clear_with_expected(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("switchover"), "a") as (a,):
        r1 = SwitchoverRequest("switchover", leader="a", candidate="b")
        r2 = SwitchoverRequest("failover", candidate="c")
        assert await a.set_switchover(None, expected=r1) is False, "nothing stored yet"
        assert await a.set_switchover(r1) is True
        assert (await a.get_cluster()).switchover == r1
        assert await a.set_switchover(None, expected=r2) is False, "r1 is not r2"
        assert (await a.get_cluster()).switchover == r1
        assert await a.set_switchover(r2, expected=r1) is True
        assert (await a.get_cluster()).switchover == r2
        assert await a.set_switchover(None, expected=r1) is False, "never clear a newer request"
        assert await a.set_switchover(None, expected=r2) is True
        assert (await a.get_cluster()).switchover is None
        assert await a.set_switchover(None) is True, "clearing nothing is fine"


async def check_history_append_is_idempotent(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("history"), "a", "b") as (a, b):
        e1 = TimelineEntry(1, 100, "failover", 1_700_000_000.0, "b")
        e2 = TimelineEntry(2, 200, "switchover", 1_700_000_100.0, "a")
        await asyncio.gather(a.append_history(e1), b.append_history(e1))
        assert (await a.get_cluster()).history == (e1,), "two agents, one entry"
        await a.append_history(e1)
        await b.append_history(e2)
        await a.append_history(e2)
        await a.append_history(e1)  # an older timeline after a newer one: nothing
        view = await a.get_cluster()
        assert view.history == (e1, e2)
        assert view.timeline == 3


async def check_watch_wakes_on_a_leader_change(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("watch"), "a", "b") as (a, b):
        await a.touch_member(member("a"))
        await b.touch_member(member("b"))
        await a.get_cluster()
        # Nothing changes: a watch does not end early (one with an hour to go is still waiting
        # after three full reads by another session: counted, not timed), and one whose own
        # timeout passes ends False.
        waiting = asyncio.create_task(a.watch(HOUR))
        for _ in range(3):
            await b.get_cluster()
        assert not waiting.done(), f"the watch ended with nothing changed: {waiting}"
        waiting.cancel()
        with suppress(asyncio.CancelledError):
            await waiting
        await a.get_cluster()
        assert await a.watch(0.3) is False, "nothing changed: the watch must time out"
        # Woken by the change: the watch's own timeout is an hour away, and the change must wake
        # it within WATCH_BOUND (a deadline to wait on, not a duration measured).
        waiting = asyncio.create_task(a.watch(HOUR))
        key = await b.acquire_leader()
        assert key is not None
        assert await asyncio.wait_for(waiting, WATCH_BOUND) is True
        # A change made before the call, after the last read, counts too.
        await a.get_cluster()
        assert await b.release_leader(key)
        assert await asyncio.wait_for(a.watch(HOUR), WATCH_BOUND) is True


async def check_watch_ignores_member_publications(store: StoreUnderTest) -> None:
    """Members publish every cycle; that must not wake the others' loops."""
    async with sessions(store, new_scope("quiet"), "a", "b") as (a, b):
        await a.touch_member(member("a"))
        await b.touch_member(member("b"))
        await a.get_cluster()
        waiting = asyncio.create_task(a.watch(QUIET_WATCH))
        for _ in range(3):
            await b.touch_member(member("b"))
        assert await waiting is False, "a member's publication woke the watch"
        waiting = asyncio.create_task(a.watch(10.0))
        key = await b.acquire_leader()
        assert key is not None
        assert await asyncio.wait_for(waiting, WATCH_BOUND + 1.0) is True


async def check_cached_view_only_after_a_quiet_watch(store: StoreUnderTest) -> None:
    """The view cache (issue 15): the last read stands in for a new one only right after a
    watch that saw no event at all under the scope, member keys included, only once per such
    watch, only while younger than the age asked, and never after a write of the session's
    own or one made behind its back."""
    scope = new_scope("cache")
    keys = scope_keys(scope)
    async with sessions(store, scope, "a", "b") as (a, b):
        await a.touch_member(member("a"))
        await b.touch_member(member("b"))
        view = await a.get_cluster()
        assert a.cached_cluster(60.0) is None, "no watch since the read"
        assert await a.watch(0.3) is False
        assert a.cached_cluster(60.0) == view, "a quiet watch: the read stands"
        assert a.cached_cluster(60.0) is None, "one answer per quiet watch"
        assert await a.watch(0.3) is False
        assert a.cached_cluster(0.0) is None, "older than the age asked"
        # Another member's publication: no wake, but the cache is out of date.
        await a.get_cluster()
        waiting = asyncio.create_task(a.watch(QUIET_WATCH))
        await b.touch_member(member("b", state="stopped"))
        assert await waiting is False, "a member's publication woke the watch"
        assert a.cached_cluster(60.0) is None, "a member key changed since the read"
        # A key written behind the agents' backs, straight into the store.
        await a.get_cluster()
        request = SwitchoverRequest("switchover", leader="b")
        await store.raw_put(keys.switchover, encode_value(request))
        assert await a.watch(10.0) is True
        assert a.cached_cluster(60.0) is None
        # The session's own write after a quiet watch.
        await a.get_cluster()
        assert await a.watch(0.3) is False
        await a.set_position(PrimaryPosition("a", 1, 100))
        assert a.cached_cluster(60.0) is None, "a write of the session's own since the watch"
        # A watch cut short (cancelled) vouches for nothing.
        await a.get_cluster()
        waiting = asyncio.create_task(a.watch(10.0))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with suppress(asyncio.CancelledError):
            await waiting
        assert a.cached_cluster(60.0) is None


async def check_an_unchanged_member_key_is_not_rewritten(store: StoreUnderTest) -> None:
    """An agent publishes its state every loop; while the store already holds exactly that
    state on the session's lease, nothing is written (no log entry, no fsync on any member),
    and the keepalive keeps the key. A changed state is written, and so is the same state
    once the key no longer is the session's (here: overwritten without a lease)."""
    scope = new_scope("quiet_member")
    key = scope_keys(scope).member("a")
    async with sessions(store, scope, "a") as (a,):
        state = member("a", reason="idle")
        await a.touch_member(state)
        first = await store.raw_get(key)
        assert first is not None and first[2] == a.lease_id
        for _ in range(3):
            await a.get_cluster()
            await a.touch_member(state)
            assert (await a.keepalive()).ok
        assert await store.raw_get(key) == first, "rewritten although nothing changed"
        await a.get_cluster()
        await a.touch_member(member("a", reason="something happened"))
        changed = await store.raw_get(key)
        assert changed is not None and changed[1] > first[1]
        plain = json.dumps(msgspec.to_builtins(member("a", reason="something happened"))).encode()
        await store.raw_put(key, plain)
        await a.get_cluster()
        await a.touch_member(member("a", reason="something happened"))
        again = await store.raw_get(key)
        assert again is not None and again[2] == a.lease_id, "put back on the session's lease"


async def check_take_initialize_only_once(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("init"), "a", "b", "c") as agents:
        a, b, _ = agents
        assert (await a.get_cluster()).initialize is None
        won = await asyncio.gather(*(s.take_initialize("") for s in agents))
        assert sorted(won) == [False, False, True], f"one winner, got {won}"
        assert (await a.get_cluster()).initialize == ""
        await a.set_initialize("7300000000000000001")
        assert (await b.get_cluster()).initialize == "7300000000000000001"
        assert await b.take_initialize("7300000000000000002") is False
        assert (await b.get_cluster()).initialize == "7300000000000000001"
        await a.delete_initialize()
        await a.delete_initialize()  # absent is fine
        assert (await b.get_cluster()).initialize is None
        assert await b.take_initialize("7300000000000000002") is True


async def check_orphaned_claim_is_dropped_only_while_unchanged(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("claim"), "a", "b") as agents:
        a, b = agents
        assert (await a.get_cluster()).initialize_revision == 0
        assert await a.take_initialize("") is True
        claim = await b.get_cluster()
        assert claim.initialize == "" and claim.initialize_revision > 0
        await b.delete_initialize(revision=claim.initialize_revision - 1)  # not that write
        assert (await b.get_cluster()).initialize == ""
        await a.set_initialize("7300000000000000001")  # the claimant finished meanwhile
        await b.delete_initialize(revision=claim.initialize_revision)
        done = await b.get_cluster()
        assert done.initialize == "7300000000000000001"
        assert done.initialize_revision > claim.initialize_revision
        await b.delete_initialize(revision=done.initialize_revision)
        assert (await a.get_cluster()).initialize is None
        await b.delete_initialize(revision=done.initialize_revision)  # absent is fine
        assert await b.take_initialize("") is True


async def check_malformed_values_are_named_not_dropped(store: StoreUnderTest) -> None:
    scope = new_scope("malformed")
    keys = scope_keys(scope)
    async with sessions(store, scope, "a") as (a,):
        await a.touch_member(member("a"))
        await store.raw_put(keys.member("x"), b"{not json")
        try:
            await a.get_cluster()
        except DcsError as exc:
            assert keys.member("x") in str(exc) and "JSON" in str(exc), str(exc)
        else:
            raise AssertionError("a member value that is not JSON must raise DcsError")
        bad = msgspec.to_builtins(member("x")) | {"timeline": "two"}
        await store.raw_put(keys.member("x"), json.dumps(bad).encode())
        try:
            await a.get_cluster()
        except DcsError as exc:
            assert keys.member("x") in str(exc) and "timeline" in str(exc), str(exc)
        else:
            raise AssertionError("a member with a bad field must raise DcsError")
        await store.raw_put(keys.config, b'{"ttl": 30, "tll": 2}')
        await store.raw_put(keys.member("x"), encode_value(member("x")))
        try:
            await a.get_cluster()
        except DcsError as exc:
            assert keys.config in str(exc) and "tll" in str(exc), str(exc)
        else:
            raise AssertionError("settings with an unknown field must raise DcsError")
        await store.raw_put(keys.config, b'{"ttl": 30}')
        view = await a.get_cluster()
        assert view.settings.ttl == 30.0 and view.member("x") is not None
        await store.raw_put(keys.prefix + "from-a-newer-agent", b"\x00\xff")
        assert (await a.get_cluster()).member("a") is not None, "unknown keys are ignored"


async def check_calls_are_bounded_by_retry_timeout(store: StoreUnderTest) -> None:
    """Against no store, each call tries again after each pause until its budget has passed on
    its clock, and no longer: then a DcsError names the call and the budget. (The budget and
    the pauses are on virtual time: nothing here measures how long a call took.)"""
    timer = VirtualTimer()
    dcs = store.unreachable(new_scope("unreachable"), "a", retry_timeout=0.22, timer=timer)
    try:
        for name, call in (
            ("get_cluster", dcs.get_cluster),
            ("touch_member", lambda: dcs.touch_member(member("a"))),
            ("acquire_leader", dcs.acquire_leader),
        ):
            started, pauses = timer.now(), len(timer.sleeps)
            try:
                await call()
            except DcsError as exc:
                assert name in str(exc), f"the error must name the call: {exc}"
                assert "within 0.22 s" in str(exc), f"the budget must have run out: {exc}"
            else:
                raise AssertionError(f"{name} against no store must raise DcsError")
            assert timer.now() - started == pytest.approx(0.22), "tried until the budget, no longer"
            assert len(timer.sleeps) - pauses > 1, "with a try after each pause"
    finally:
        with suppress(DcsError):
            await dcs.close()


async def check_bad_input_is_refused_before_anything_is_written(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("badinput"), "a") as (a,):
        for call in (
            lambda: a.touch_member(member("b")),
            lambda: a.take_initialize("not-digits"),
            lambda: a.delete_initialize(revision=0),
            lambda: a.set_settings(DynamicSettings(), -1),
            lambda: a.watch(-1.0),
        ):
            try:
                await call()
            except ValueError:
                continue
            raise AssertionError("bad input must raise ValueError")
        view = await a.get_cluster()
        assert view.members == () and view.initialize is None


async def check_sync_record_is_compare_and_swap(store: StoreUnderTest) -> None:
    async with sessions(store, new_scope("sync"), "a", "b") as (a, b):
        first = SyncState("a", ("b",), 0)
        assert await a.set_sync(first, 0)
        assert not await b.set_sync(SyncState("b"), 0)  # it exists now: a create must lose
        view = await b.get_cluster()
        assert view.sync == first and view.sync_revision > 0
        stronger = SyncState("a", ("b",), 1)
        assert await a.set_sync(stronger, view.sync_revision)
        assert not await a.set_sync(SyncState("a"), view.sync_revision)  # stale revision
        after = await b.get_cluster()
        assert after.sync == stronger and after.sync_revision > view.sync_revision
        assert not await b.set_sync(None, view.sync_revision)
        assert await b.set_sync(None, after.sync_revision)
        gone = await a.get_cluster()
        assert gone.sync is None and gone.sync_revision == 0


async def check_position_outlives_the_session(store: StoreUnderTest) -> None:
    scope = new_scope("position")
    async with sessions(store, scope, "a", "b") as (a, b):
        await a.touch_member(member("a"))
        await a.set_position(PrimaryPosition("a", 3, 123456))
        await a.close()  # the lease goes, the member key with it; the position stays
        view = await b.get_cluster()
        assert view.member("a") is None
        assert view.position == PrimaryPosition("a", 3, 123456)


Check = Callable[[StoreUnderTest], Awaitable[None]]

CHECKS: list[Check] = [
    check_race_has_one_winner_holding_the_create_revision,
    check_keepalive_reports_sent_at_and_ttl,
    check_expiry_removes_leader_and_member_at_one_revision,
    check_close_revokes_the_lease_at_once,
    check_a_restarted_agent_adopts_its_own_lease,
    check_a_new_ttl_moves_the_keys_onto_a_new_lease,
    check_release_only_deletes_the_matching_key,
    check_settings_compare_and_swap,
    check_switchover_set_and_clear_with_expected,
    check_history_append_is_idempotent,
    check_watch_wakes_on_a_leader_change,
    check_watch_ignores_member_publications,
    check_cached_view_only_after_a_quiet_watch,
    check_an_unchanged_member_key_is_not_rewritten,
    check_take_initialize_only_once,
    check_orphaned_claim_is_dropped_only_while_unchanged,
    check_malformed_values_are_named_not_dropped,
    check_calls_are_bounded_by_retry_timeout,
    check_bad_input_is_refused_before_anything_is_written,
    check_sync_record_is_compare_and_swap,
    check_position_outlives_the_session,
]
