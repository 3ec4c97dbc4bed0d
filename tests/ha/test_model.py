"""The store's cluster model: JSON round trips, errors that name the field, the DCS helpers."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamgr.config.schema import TIMING_PROFILES, DcsConfig, DcsPostgresConfig
from hamgr.config.standby import StandbyCluster
from hamgr.dcs import (
    ClusterView,
    DynamicSettings,
    KeepaliveResult,
    LeaderKey,
    MemberState,
    MemberTags,
    ModelError,
    SwitchoverRequest,
    TimelineEntry,
    scope_keys,
)
from hamgr.dcs.common import (
    RangeSnapshot,
    StoredKey,
    build_view,
    encode_history,
    encode_json,
    encode_settings,
    encode_value,
)
from hamgr.dcs.model import SyncState
from hamgr.dcs.strict import decode

NAME = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True)
LSN = st.none() | st.integers(0, 2**64 - 1)
SECONDS = st.floats(0.001, 1e10, allow_nan=False, allow_infinity=False)
PARAM = st.one_of(
    st.text(max_size=10),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)

MEMBERS = st.builds(
    MemberState,
    name=NAME,
    api_url=st.sampled_from(["http://10.0.0.1:8008", "https://db-1.example:8443"]),
    conn_url=st.sampled_from(["10.0.0.1:5432", "[::1]:5433", "db-1.example:6432"]),
    role=st.sampled_from(["primary", "replica", "uninitialized", "stopped"]),
    state=st.sampled_from(["running", "stopped", "crashed", "starting"]),
    timeline=st.none() | st.integers(1, 2**31),
    received_lsn=LSN,
    replayed_lsn=LSN,
    tags=st.builds(MemberTags, st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    fence_token=st.integers(0, 2**62),
    reason=st.text(max_size=40),
    paused=st.booleans(),
)


@st.composite
def dynamic_settings(draw: st.DrawFn) -> DynamicSettings:
    loop_wait, retry = draw(SECONDS), draw(SECONDS)
    ttl = (loop_wait + 2 * retry) * draw(st.floats(1.0, 3.0))
    return DynamicSettings(
        ttl=ttl,
        loop_wait=loop_wait,
        retry_timeout=retry,
        maximum_lag_on_failover=draw(st.integers(0, 2**40)),
        primary_start_timeout=draw(st.just(0.0) | SECONDS),
        safety_margin=loop_wait + (ttl - loop_wait) * draw(st.floats(0.0, 0.99)),
        pause=draw(st.booleans()),
        use_slots=draw(st.booleans()),
        parameters=draw(st.dictionaries(st.text(min_size=1, max_size=10), PARAM, max_size=3)),
    )


@st.composite
def requests(draw: st.DrawFn) -> SwitchoverRequest:
    leader = draw(NAME)
    candidate = draw(st.none() | NAME.filter(lambda n: n != leader))
    when = draw(st.none() | SECONDS)
    by = draw(st.sampled_from(["operator", "shutdown"]))
    if draw(st.booleans()) and candidate is not None:
        return SwitchoverRequest(
            "failover", draw(st.none() | st.just(leader)), candidate, when, requested_by=by
        )
    return SwitchoverRequest("switchover", leader, candidate, when, requested_by=by)


@st.composite
def views(draw: st.DrawFn) -> ClusterView:
    timelines = sorted(draw(st.sets(st.integers(1, 50), max_size=4)))
    return ClusterView(
        initialize=draw(st.none() | st.just("") | st.integers(1, 2**64).map(str)),
        settings=draw(dynamic_settings()),
        leader=draw(st.none() | st.builds(LeaderKey, NAME, st.integers(1, 2**62))),
        members=tuple(draw(st.lists(MEMBERS, max_size=4, unique_by=lambda m: m.name))),
        switchover=draw(st.none() | requests()),
        history=tuple(
            TimelineEntry(
                t,
                draw(st.integers(0, 2**64 - 1)),
                draw(st.text(max_size=20)),
                draw(st.just(0.0) | SECONDS),
                draw(NAME),
            )
            for t in timelines
        ),
        revision=draw(st.integers(0, 2**62)),
    )


@settings(max_examples=150, deadline=None)
@given(view=views())
def test_view_round_trips_through_the_stored_form(view: ClusterView) -> None:
    """Every key written as an agent writes it, read back into the same view."""
    keys = scope_keys("c1")

    def kv(key: str, value: bytes, create: int = 1) -> StoredKey:
        return StoredKey(key, value, create, 1)

    kvs = [kv(keys.config, encode_json(view.settings.to_dict()))]
    kvs += [kv(keys.member(m.name), encode_value(m)) for m in view.members]
    if view.initialize is not None:
        kvs.append(kv(keys.initialize, view.initialize.encode()))
    if view.leader is not None:
        kvs.append(kv(keys.leader, view.leader.name.encode(), view.leader.revision))
    if view.switchover is not None:
        kvs.append(kv(keys.switchover, encode_value(view.switchover)))
    if view.history:
        kvs.append(kv(keys.history, encode_history(view.history)))
    got = build_view(keys, RangeSnapshot(view.revision, tuple(kvs)))
    assert got == replace(
        view, settings_revision=1, initialize_revision=int(view.initialize is not None)
    )


def _member(**changes: Any) -> dict[str, Any]:
    return {"name": "b", "api_url": "http://10.0.0.2:8008", "conn_url": "10.0.0.2:5432", **changes}


Members = tuple[MemberState, ...]
History = tuple[TimelineEntry, ...]


BAD = [
    pytest.param(
        MemberState,
        {"api_url": "http://x:1"},
        "name: required field is missing",
        id="missing-field",
    ),
    pytest.param(
        MemberState, _member(name=None), "name: expected a string, got null", id="null-field"
    ),
    pytest.param(
        MemberState, _member(name="-x"), "name: expected 1 to 63 letters", id="bad-member-name"
    ),
    pytest.param(
        MemberState,
        _member(name="b\n"),
        "name: expected 1 to 63 letters",
        id="member-name-with-a-final-newline",
    ),
    pytest.param(
        SyncState,
        {"leader": "a", "members": ["b", "c d"], "acks": 1},
        'members[1]: expected 1 to 63 letters, digits, ".", "_" or "-", starting with a letter '
        'or digit, got "c d"',
        id="name-in-a-list",
    ),
    pytest.param(
        MemberState,
        _member(role="leader"),
        'role: expected one of "primary", "replica", "uninitialized", "stopped", got "leader"',
        id="bad-role",
    ),
    pytest.param(
        MemberState, _member(conn_url="db"), 'conn_url: expected "host:port"', id="bad-conn-url"
    ),
    pytest.param(
        MemberState, _member(api_url="10.0.0.2:8008"), "api_url: expected an", id="bad-api-url"
    ),
    pytest.param(
        MemberState, _member(state="in recovery"), "state: expected a word", id="bad-state"
    ),
    pytest.param(
        MemberState,
        _member(fence_token=True),
        "fence_token: expected an integer, got true",
        id="bool-is-no-integer",
    ),
    pytest.param(
        MemberState,
        _member(tags={"nofailover": "yes"}),
        'tags.nofailover: expected true or false, got "yes"',
        id="bad-tag",
    ),
    pytest.param(
        MemberState,
        _member(scheduled_restart={"schedule": "tomorrow"}),
        "scheduled_restart.schedule: expected ISO 8601, got 'tomorrow'",
        id="rule-in-a-nested-value",
    ),
    pytest.param(
        Members,
        [_member(), _member(timeline="x")],
        '[1].timeline: expected an integer or null, got "x"',
        id="nested-field-path",
    ),
    pytest.param(
        Members, [_member(timeline=0)], "[0].timeline: must be >= 1, got 0", id="timeline-zero"
    ),
    pytest.param(Members, [7], "[0]: expected a mapping of keys, got 7", id="member-not-object"),
    pytest.param(
        LeaderKey,
        {"name": "a", "revision": 0},
        "revision: must be >= 1, got 0",
        id="leader-revision",
    ),
    pytest.param(DynamicSettings, {"tll": 5}, "tll: unknown field", id="settings-typo"),
    pytest.param(
        DynamicSettings,
        {"ttl": 3},
        "ttl: must be >= loop_wait + 2 * retry_timeout = 5, got 3",
        id="settings-timing-rule",
    ),
    pytest.param(
        DynamicSettings,
        {"safety_margin": 6},
        "safety_margin: must be < ttl = 6",
        id="safety-margin",
    ),
    pytest.param(
        DynamicSettings,
        {"safety_margin": 0.5},
        "safety_margin: must be >= loop_wait = 1: the primary must stop its PostgreSQL at least "
        "one HA loop before its lease can end and another member take over, got 0.5",
        id="safety-margin-below-a-loop",
    ),
    pytest.param(
        DynamicSettings, {"loop_wait": -1}, "loop_wait: must be > 0, got -1", id="negative-duration"
    ),
    pytest.param(
        DynamicSettings,
        {"ttl": float("inf")},
        "ttl: must be a finite number, got inf",
        id="infinite-duration",
    ),
    pytest.param(
        DynamicSettings,
        {"synchronous_mode": "yes"},
        'synchronous_mode: expected one of "off", "on", "quorum", got "yes"',
        id="bad-sync-mode",
    ),
    pytest.param(
        DynamicSettings,
        {"parameters": {"": 1}},
        "parameters: a parameter name must not be empty",
        id="empty-parameter-name",
    ),
    pytest.param(
        DynamicSettings,
        {"parameters": [1]},
        "parameters: expected a mapping of keys, got a list",
        id="parameters-not-an-object",
    ),
    pytest.param(
        DynamicSettings,
        {"parameters": {"work_mem": float("nan")}},
        "parameters.work_mem: expected a string, number or boolean, got nan",
        id="nan-parameter",
    ),
    pytest.param(
        DynamicSettings,
        {"parameters": {"work_mem": [1]}},
        "parameters.work_mem: expected a string, number or boolean, got a list",
        id="bad-parameter",
    ),
    pytest.param(
        SwitchoverRequest,
        {"kind": "switchover", "candidate": "b"},
        "leader: a switchover needs the current leader's name",
        id="switchover-without-leader",
    ),
    pytest.param(
        SwitchoverRequest,
        {"kind": "failover"},
        "candidate: a failover needs a candidate",
        id="failover-without-candidate",
    ),
    pytest.param(
        SwitchoverRequest,
        {"kind": "switchover", "leader": "a", "candidate": "a"},
        "candidate: is the leader itself (a)",
        id="candidate-is-leader",
    ),
    pytest.param(
        SwitchoverRequest,
        {"kind": "failover", "candidate": "b", "at": 5},
        "at: unknown field",
        id="request-typo",
    ),
    pytest.param(
        SwitchoverRequest,
        {"kind": "switchover", "leader": "a", "requested_by": "cron"},
        'requested_by: expected one of "operator", "shutdown", got "cron"',
        id="bad-requester",
    ),
    pytest.param(
        SwitchoverRequest,
        {"kind": "takeover"},
        'kind: expected one of "switchover", "failover", got "takeover"',
        id="bad-kind",
    ),
    pytest.param(
        History,
        [{"timeline": 1, "at": 1, "new_leader": "a"}],
        "[0].switch_lsn: required field is missing",
        id="history-entry",
    ),
    pytest.param(MemberState, [], "value: expected a mapping of keys, got a list", id="not-object"),
]


@pytest.mark.parametrize("cls, data, message", BAD)
def test_bad_values_name_the_field(cls: Any, data: Any, message: str) -> None:
    with pytest.raises(ModelError) as caught:
        if cls is DynamicSettings:
            DynamicSettings.from_dict(data)
        else:
            decode(json.dumps(data), cls)
    assert message in str(caught.value)


def _members(*names: str) -> tuple[MemberState, ...]:
    return tuple(decode(json.dumps(_member(name=n)), MemberState) for n in names)


VIEW_RULES = [
    pytest.param({"members": _members("b", "b")}, "members: member b appears twice", id="twice"),
    pytest.param(
        {"initialize": "abc"}, "initialize: expected a system identifier", id="bad-initialize"
    ),
    pytest.param(
        {
            "history": (
                TimelineEntry(2, 1, "", 1.0, "a"),
                TimelineEntry(2, 9, "", 2.0, "b"),
            )
        },
        "history: timelines must increase, got [2, 2]",
        id="history-order",
    ),
]


@pytest.mark.parametrize("fields, message", VIEW_RULES)
def test_the_view_checks_what_spans_keys(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=re.escape(message)):
        ClusterView(**fields)


def test_unknown_member_fields_are_tolerated() -> None:
    """A newer agent's extra fields do not stop an older one from reading the member list."""
    m = decode(json.dumps(_member(added_in_v2={"x": 1})), MemberState)
    assert m == MemberState("b", "http://10.0.0.2:8008", "10.0.0.2:5432")


def test_settings_default_to_bootstrap_dcs() -> None:
    dcs = DcsConfig()
    assert DynamicSettings() == DynamicSettings.from_config(dcs)
    assert DynamicSettings.from_dict({}) == DynamicSettings()
    fast = {k.rsplit(".", 1)[1]: v for k, v in TIMING_PROFILES["fast"].items() if "dcs" in k}
    assert DynamicSettings(**fast).ttl == 2.0


NOT_A_VALUE: Any = [1]


def test_bootstrap_dcs_becomes_the_settings_key_for_key() -> None:
    """from_config reads bootstrap.dcs as a stored config key is read: the same keys, with
    ``postgresql.use_slots`` and ``postgresql.parameters`` lifted to the top."""
    standby = StandbyCluster(host="h", recovery_min_apply_delay="5s")
    dcs = DcsConfig(
        ttl=10.0,
        synchronous_mode=True,
        standby_cluster=standby,
        slots={"s1": {"type": "physical"}},
        postgresql=DcsPostgresConfig(parameters={"a": 1, "b": True}, use_slots=False),
    )
    got = DynamicSettings.from_config(dcs)
    assert (got.ttl, got.synchronous_mode, got.standby_cluster, got.slots) == (
        10.0,
        "on",
        standby,
        ("s1",),
    )
    assert (got.use_slots, got.parameters) == (False, {"a": 1, "b": True})
    with pytest.raises(ModelError, match=re.escape("ttl: must be >= loop_wait + 2 * retry")):
        DynamicSettings.from_config(DcsConfig(ttl=3.0))


def test_patroni_spells_sync_mode_as_a_boolean() -> None:
    assert DynamicSettings.from_dict({"synchronous_mode": True}).synchronous_mode == "on"
    assert DynamicSettings.from_dict({"synchronous_mode": False}).synchronous_mode == "off"


@pytest.mark.parametrize(
    "value, message",
    [
        (DynamicSettings(maximum_lag_on_failover=-5), "maximum_lag_on_failover: must be >= 0"),
        (DynamicSettings(parameters={"work_mem": NOT_A_VALUE}), "parameters.work_mem: expected"),
        (SyncState("a", ("b\n",)), "members[0]: expected 1 to 63 letters"),
        (TimelineEntry(1, 0, "", 1.0, "-x"), "[0].new_leader: expected 1 to 63 letters"),
    ],
)
def test_values_built_in_code_are_checked_when_written(value: Any, message: str) -> None:
    """Building a value in code checks only what ``__post_init__`` says (rules across fields);
    the annotations (names, bounds) are checked on the way into the store, as readers check
    them, so that nothing is written that the agents then refuse to read."""
    with pytest.raises(ModelError, match=re.escape(message)):
        if isinstance(value, DynamicSettings):
            encode_settings(value)
        elif isinstance(value, TimelineEntry):
            encode_history([value])
        else:
            encode_value(value)


def test_view_helpers() -> None:
    view = ClusterView(members=_members("b", "a"), history=(TimelineEntry(1, 5, "", 1.0, "b"),))
    assert [m.name for m in view.members] == ["a", "b"]
    assert view.member("b") is not None and view.member("c") is None
    assert view.timeline == 2 and ClusterView().timeline == 1
    assert MemberState("b", "http://h:1", "h:1", received_lsn=5, replayed_lsn=9).position == 9


def test_keepalive_deadline_counts_from_sending() -> None:
    assert KeepaliveResult(ok=True, sent_at=100.0, ttl=6.0).fence_at(2.0) == 104.0
    assert KeepaliveResult(ok=False, sent_at=100.0, ttl=6.0).fence_at(2.0) is None


def test_key_layout() -> None:
    keys = scope_keys("demo")
    assert (keys.initialize, keys.config, keys.leader) == (
        "/hamgr/demo/initialize",
        "/hamgr/demo/config",
        "/hamgr/demo/leader",
    )
    assert keys.member("b") == "/hamgr/demo/members/b"
    assert (keys.switchover, keys.history) == ("/hamgr/demo/switchover", "/hamgr/demo/history")
