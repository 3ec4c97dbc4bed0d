"""The view cache's reuse rule in KvSession (issue 15), without I/O: a scripted transport and
a virtual clock.

The rule (KvSession.cached_cluster): the last read stands in for a new one only right after a
watch that ended QUIET (no event at all under the scope since the read, member keys
included, the watch in place and answering), once per such watch, while the read is younger
than the age asked, and with no write of the session's own since the watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.dcs.base import DcsError
from hamgr.dcs.common import (
    Compare,
    Delete,
    Put,
    RangeSnapshot,
    StoreUnavailable,
    TxnOutcome,
    Watched,
)
from hamgr.dcs.model import PrimaryPosition
from hamgr.dcs.session import KvSession
from tests.dcs.contract import member
from tests.tools.virtualtimer import VirtualTimer

ERROR = "error"
"""A scripted watch ending: the transport raised (store unreachable)."""


class ScriptedTransport:
    """Answers every read with one snapshot; each watch ends as `endings` says (in order),
    after letting `watch_seconds` pass on the virtual clock."""

    def __init__(self, timer: VirtualTimer) -> None:
        self.timer = timer
        self.endings: list[Watched | str] = []
        self.revision = 7
        self.reads = 0

    async def range(self, key: str, *, prefix: bool, timeout: float) -> RangeSnapshot:
        self.reads += 1
        return RangeSnapshot(self.revision, ())

    async def put(self, op: Put, *, timeout: float) -> int:
        self.revision += 1
        return self.revision

    async def delete(self, key: str, *, timeout: float) -> int:
        return await self.put(Put(key, b""), timeout=timeout)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Put | Delete], *, timeout: float
    ) -> TxnOutcome:
        return TxnOutcome(True, await self.put(Put("", b""), timeout=timeout))

    async def lease_grant(self, lease_id: int, ttl: float, *, timeout: float) -> float:
        return ttl

    async def lease_keepalive(self, lease_id: int, *, timeout: float) -> float:
        return 6.0

    async def lease_revoke(self, lease_id: int, *, timeout: float) -> None:
        return None

    async def wait_for_change(
        self, prefix: str, seen: RangeSnapshot | None, timeout: float, ignore: str = ""
    ) -> Watched:
        await self.timer.sleep(timeout)
        ending = self.endings.pop(0)
        if ending == ERROR:
            raise StoreUnavailable("scripted: unreachable")
        assert isinstance(ending, Watched)
        return ending

    async def close(self) -> None:
        return None


def session() -> tuple[KvSession, ScriptedTransport, VirtualTimer]:
    timer = VirtualTimer()
    transport = ScriptedTransport(timer)
    return KvSession("c1", "a", transport, timer=timer), transport, timer


async def watch(s: KvSession, t: ScriptedTransport, ending: Watched | str, seconds: float) -> None:
    t.endings.append(ending)
    try:
        await s.watch(seconds)
    except DcsError:
        assert ending == ERROR


# (watch ending, seconds the watch took, max_age asked, reused?)
TABLE = [
    (Watched.QUIET, 1.0, 1.5, True),
    (Watched.QUIET, 1.0, 1.0, False),  # as old as the limit: read again
    (Watched.QUIET, 2.0, 1.5, False),  # older than the limit
    (Watched.OTHER, 1.0, 60.0, False),  # a member key changed (or the watch did not look)
    (Watched.CHANGE, 0.1, 60.0, False),
    (ERROR, 0.0, 60.0, False),  # the watch did not answer
]


@pytest.mark.parametrize(("ending", "seconds", "max_age", "reused"), TABLE)
async def test_reuse_rule_table(
    ending: Watched | str, seconds: float, max_age: float, reused: bool
) -> None:
    s, t, _ = session()
    view = await s.get_cluster()
    await watch(s, t, ending, seconds)
    assert (s.cached_cluster(max_age) == view) is reused
    assert s.cached_cluster(max_age) is None, "never twice for one watch"


async def test_no_reuse_before_any_read_or_watch() -> None:
    s, t, _ = session()
    assert s.cached_cluster(60.0) is None
    await watch(s, t, Watched.QUIET, 0.5)
    assert s.cached_cluster(60.0) is None, "a quiet watch with no read before it vouches nothing"
    await s.get_cluster()
    assert s.cached_cluster(60.0) is None, "a read with no watch after it"


async def test_an_own_write_after_the_watch_spoils_it_a_keepalive_does_not() -> None:
    s, t, _ = session()
    await s.get_cluster()
    await watch(s, t, Watched.QUIET, 0.5)
    await s.set_position(PrimaryPosition("a", 1, 5))
    assert s.cached_cluster(60.0) is None
    await s.get_cluster()
    await watch(s, t, Watched.QUIET, 0.5)
    await s.get_cluster()  # a read spoils it too: it is a newer view
    assert s.cached_cluster(60.0) is None
    await s.touch_member(member("a"))  # grants the lease: keepalives below do renew it
    view = await s.get_cluster()
    await watch(s, t, Watched.QUIET, 0.5)
    assert (await s.keepalive()).ok
    assert s.cached_cluster(60.0) == view


OPS = st.one_of(
    st.just(("read",)),
    st.tuples(st.just("watch"), st.sampled_from([*Watched, ERROR]), st.sampled_from([0.0, 0.5])),
    st.just(("write",)),
    st.just(("keepalive",)),
    st.tuples(st.just("ask"), st.sampled_from([0.3, 1.0, 2.5])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=25))
def test_reuse_rule_against_a_model(ops: list[tuple[object, ...]]) -> None:
    """Any sequence of reads, watches, writes, keepalives and asks: the cache answers exactly
    when the model says (a read, then a QUIET watch, no read or write after it, not asked since,
    and the read younger than the age asked)."""

    async def run() -> None:
        s, t, timer = session()
        read_at: float | None = None
        quiet = False
        for op in ops:
            if op[0] == "read":
                await s.get_cluster()
                read_at, quiet = timer.now(), False
            elif op[0] == "watch":
                ending, seconds = op[1], op[2]
                assert isinstance(ending, Watched | str) and isinstance(seconds, float)
                await watch(s, t, ending, seconds)
                quiet = ending is Watched.QUIET and read_at is not None
            elif op[0] == "write":
                await s.set_position(PrimaryPosition("a", 1, 5))
                quiet = False
            elif op[0] == "keepalive":
                await s.keepalive()
            else:
                max_age = op[1]
                assert isinstance(max_age, float)
                expected = quiet and read_at is not None and timer.now() - read_at < max_age
                assert (s.cached_cluster(max_age) is not None) is expected, (ops, op)
                quiet = False

    asyncio.run(run())
