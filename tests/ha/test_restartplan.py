"""hamgr/ha/restartplan.py without I/O: request parsing, filters, fencing, the schedule."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamgr.dcs.restartrequest import RestartRequest, parse_version
from hamgr.dcs.strict import ModelError, decode
from hamgr.ha.restartplan import (
    STALE_FLOOR,
    RestartBody,
    RestartFacts,
    RestartInputError,
    after_slow_start,
    parse_request,
    parse_timeout,
    refusal,
    scheduled_step,
)
from tests.apifake import cluster3

NOW = 2_000_000_000.0
PRIMARY = RestartFacts("primary", False, holds_leader_key=True, lease_ok=True)
REPLICA = RestartFacts("replica", True, holds_leader_key=False, lease_ok=False)


@pytest.mark.parametrize(
    ("text", "number"),
    [("15.4", 150004), ("10.0", 100000), ("9.6.3", 90603), ("16.12", 160012)],
)
def test_versions_read_as_patroni_does(text: str, number: int) -> None:
    assert parse_version(text) == number


@pytest.mark.parametrize("text", ["15", "9.6", "15.4.1", "x.1", "15.", "", "15.100", "1e1.1"])
def test_bad_versions_are_refused(text: str) -> None:
    with pytest.raises(ModelError, match="postgres_version: expected a PostgreSQL version"):
        parse_version(text)


@pytest.mark.parametrize(
    ("value", "seconds"), [(30, 30.0), (1.5, 1.5), ("30", 30.0), ("30s", 30.0), ("2min", 120.0)]
)
def test_timeouts(value: object, seconds: float) -> None:
    assert parse_timeout(value) == seconds


def test_a_request_with_every_field() -> None:
    body = {
        "schedule": "2033-05-18T03:33:21+00:00",
        "restart_pending": True,
        "role": "replica",
        "postgres_version": "15.5",
        "timeout": 20,
    }
    req = parse_request(msgspec.convert(body, RestartBody), NOW, paused=False)
    assert req == RestartRequest("2033-05-18T03:33:21+00:00", True, "replica", "15.5", 20.0)
    assert req.at == NOW + 1 and req.version_num == 150005
    assert decode(msgspec.json.encode(req), RestartRequest) == req
    assert parse_request(RestartBody(), NOW, paused=True) == RestartRequest()
    with pytest.raises(RestartInputError, match="paused") as e:
        parse_request(RestartBody(schedule="2033-05-18T03:33:21+00:00"), NOW, paused=True)
    assert e.value.status == 409


# (request, facts, expected refusal fragment or None)
FILTERS = [
    (RestartRequest(), PRIMARY, None),
    (RestartRequest(role="replica"), PRIMARY, "host role mismatch"),
    (RestartRequest(role="replica"), REPLICA, None),
    (RestartRequest(restart_pending=True), PRIMARY, "pending restart flag is not set"),
    (RestartRequest(restart_pending=True), REPLICA, None),
    (RestartRequest(postgres_version="15.4"), PRIMARY, "version unknown"),
    (
        RestartRequest(postgres_version="15.4"),
        dataclasses.replace(PRIMARY, server_version=150004),
        "postgres version mismatch",
    ),
    (
        RestartRequest(postgres_version="15.5"),
        dataclasses.replace(PRIMARY, server_version=150004),
        None,
    ),
    (RestartRequest(), dataclasses.replace(PRIMARY, lease_ok=False), "(fenced)"),
    (RestartRequest(), dataclasses.replace(PRIMARY, lease_ok=False, paused=True), None),
    (RestartRequest(), dataclasses.replace(PRIMARY, holds_leader_key=False), "leader key"),
    (RestartRequest(), dataclasses.replace(REPLICA, role="stopped"), "not running"),
]


@pytest.mark.parametrize(("req", "facts", "why"), FILTERS)
def test_filters_and_fencing(req: RestartRequest, facts: RestartFacts, why: str | None) -> None:
    got = refusal(req, facts)
    assert (got is None) if why is None else (got is not None and why in got), got


@given(
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["primary", "replica", "stopped"]),
    st.sampled_from([None, "primary", "replica"]),
)
def test_a_primary_runs_a_restart_only_with_its_lease(
    holds: bool, lease_ok: bool, paused: bool, role: str, want: str | None
) -> None:
    facts = RestartFacts(role, True, holds_leader_key=holds, lease_ok=lease_ok, paused=paused)
    go = refusal(RestartRequest(role=want), facts) is None  # type: ignore[arg-type]
    if go:
        assert role != "stopped" and want in (None, role)
        assert role != "primary" or (holds and (lease_ok or paused))


@given(st.floats(-1e6, 1e6), st.floats(0.1, 100), st.booleans())
def test_a_scheduled_restart_never_runs_before_its_time_nor_paused(
    offset: float, loop_wait: float, paused: bool
) -> None:
    wall = NOW + offset
    offset = wall - NOW  # as the float sum has it
    step = scheduled_step(NOW, wall, loop_wait, paused)
    if offset < 0 or paused:
        assert step == "wait"
    elif offset <= max(1.5 * loop_wait, STALE_FLOOR):
        assert step == "run"
    else:
        assert step == "stale"


def test_a_slow_start_gives_the_key_back_only_when_a_replica_can_take_over() -> None:
    view = cluster3({n: f"http://127.0.0.1:{p}" for n, p in (("a", 1), ("b", 2), ("c", 3))})
    assert after_slow_start(True, view, "a")[0] is True
    assert after_slow_start(False, view, "b")[0] is False
    alone = dataclasses.replace(view, members=view.members[:1])
    give_up, why = after_slow_start(True, alone, "a")
    assert not give_up and "no replica can take over" in why
