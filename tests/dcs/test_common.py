"""The backend-independent parts of the stores (`hamgr/dcs/common.py`): the stored form of the
values, the view assembled from one range read, and the time budget. Pure; no store needed."""

from __future__ import annotations

import pytest

from hamgr.dcs import (
    DcsError,
    DynamicSettings,
    LeaderKey,
    SwitchoverRequest,
    TimelineEntry,
    scope_keys,
)
from hamgr.dcs.common import (
    Deadline,
    RangeSnapshot,
    StoredKey,
    Watched,
    build_view,
    encode_history,
    encode_json,
    encode_value,
    poll_for_change,
    prefix_end,
)
from tests.dcs.contract import member
from tests.tools.virtualtimer import VirtualTimer

KEYS = scope_keys("c1")


def kv(key: str, value: bytes, create: int = 1, mod: int = 1, lease: int = 0) -> StoredKey:
    return StoredKey(key, value, create, mod, lease)


def test_a_full_view_round_trips_through_the_stored_form() -> None:
    settings = DynamicSettings(ttl=10.0, parameters={"max_connections": 50})
    request = SwitchoverRequest("switchover", leader="a", candidate="b")
    history = (TimelineEntry(1, 5, "x", 1.0, "a"), TimelineEntry(2, 9, "y", 2.0, "b"))
    snap = RangeSnapshot(
        42,
        (
            kv(KEYS.config, encode_json(settings.to_dict())),
            kv(KEYS.history, encode_history(history)),
            kv(KEYS.initialize, b"7300000000000000001"),
            kv(KEYS.leader, b"a", create=17, mod=17, lease=5),
            kv(KEYS.member("b"), encode_value(member("b"))),
            kv(KEYS.member("a"), encode_value(member("a", role="primary"))),
            kv(KEYS.switchover, encode_value(request)),
            kv(KEYS.prefix + "something-newer", b"\xff"),
        ),
    )
    view = build_view(KEYS, snap)
    assert view.revision == 42
    assert view.settings == settings
    assert view.history == history
    assert view.initialize == "7300000000000000001"
    assert view.leader == LeaderKey("a", 17), "the fencing token is the create revision"
    assert [m.name for m in view.members] == ["a", "b"]
    assert view.member("a") == member("a", role="primary")
    assert view.switchover == request


def test_an_empty_scope_reads_as_defaults() -> None:
    view = build_view(KEYS, RangeSnapshot(7, ()))
    assert view.initialize is None and view.leader is None and view.members == ()
    assert view.settings == DynamicSettings() and view.history == () and view.revision == 7


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (KEYS.member("x"), b'{"name": "x",', "not valid JSON"),
        (KEYS.member("x"), encode_value(member("y")), "not of 'x'"),
        (KEYS.member("x"), b'{"name": "x"}', "api_url: required field is missing"),
        (KEYS.leader, b"", "name: expected 1 to 63"),
        (KEYS.leader, b"\xff\xfe", "not UTF-8"),
        (
            KEYS.config,
            b'{"ttl": 1, "loop_wait": 1}',
            "ttl: must be >= loop_wait + 2 * retry_timeout",
        ),
        (KEYS.history, b'{"timeline": 1}', "value: expected a list, got a mapping"),
        (KEYS.history, b'[{"timeline": 1}]', "[0].switch_lsn: required field is missing"),
        (
            KEYS.history,
            b'[{"at":0,"new_leader":"a","reason":"","switch_lsn":1,"timeline":2},'
            b'{"at":0,"new_leader":"a","reason":"","switch_lsn":1,"timeline":1}]',
            "timelines must increase",
        ),
        (KEYS.switchover, b'{"kind": "switchover"}', "leader: a switchover needs"),
        (KEYS.initialize, b"abc", "initialize: expected a system identifier"),
    ],
)
def test_a_malformed_value_names_its_key_and_field(key: str, value: bytes, problem: str) -> None:
    with pytest.raises(DcsError) as caught:
        build_view(KEYS, RangeSnapshot(3, (kv(key, value),)))
    message = str(caught.value)
    assert message.startswith(key + ": "), message
    assert problem in message, message


def test_prefix_end() -> None:
    assert prefix_end(b"/hamgr/c1/") == b"/hamgr/c10"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def test_encode_json_is_compact_and_stable() -> None:
    assert encode_json({"b": 1, "a": [1.5, None]}) == b'{"a":[1.5,null],"b":1}'
    with pytest.raises(ValueError):
        encode_json({"x": float("nan")})


async def test_deadline_names_the_call_and_the_last_error() -> None:
    d = Deadline("get_cluster", 0.05)
    assert 0 < d.remaining() <= 0.05
    d.last = ConnectionRefusedError("refused")
    await d.pause(1.0)  # bounded by the budget, not by the pause asked for
    with pytest.raises(DcsError, match=r"get_cluster: no answer .* within 0.05 s; .*refused"):
        d.remaining()


async def test_poll_for_change_compares_keys_and_revisions() -> None:
    seen = RangeSnapshot(5, (kv("/p/a", b"", 1, 3), kv("/p/b", b"", 4, 5)))
    reads: list[RangeSnapshot] = [seen, seen, RangeSnapshot(6, (kv("/p/a", b"", 1, 3),))]

    async def read(timeout: float) -> RangeSnapshot:
        return reads.pop(0) if reads else seen

    assert await poll_for_change(read, seen, 2.0, 0.001) is Watched.CHANGE, "a key was deleted"
    assert reads == []
    timer = VirtualTimer()
    assert await poll_for_change(read, seen, 0.1, 0.01, timer=timer) is Watched.QUIET
    assert timer.now() == pytest.approx(0.1), "polled until the timeout, not longer"
    assert max(timer.sleeps) == pytest.approx(0.01), "no pause longer than the interval"


async def test_poll_for_change_reports_ignored_keys_without_waking() -> None:
    """A member key that changed does not end the wait, but the ending says OTHER (a cached
    view is out of date); a wait that never compared a read cannot vouch for QUIET."""
    seen = RangeSnapshot(5, (kv("/p/a", b"", 1, 3), kv("/p/members/x", b"", 4, 5)))
    moved = RangeSnapshot(6, (kv("/p/a", b"", 1, 3), kv("/p/members/x", b"", 4, 6)))
    reads = [moved]

    async def read(timeout: float) -> RangeSnapshot:
        return reads.pop(0) if reads else seen  # changed back: still OTHER, not QUIET

    timer = VirtualTimer()
    assert await poll_for_change(read, seen, 0.1, 0.01, "/p/members/", timer) is Watched.OTHER
    assert timer.now() == pytest.approx(0.1), "an ignored key does not end the wait"
    assert await poll_for_change(read, seen, 0.0, 0.01, timer=timer) is Watched.OTHER
