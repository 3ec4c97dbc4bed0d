"""The rules of an operator's PostgreSQL restart (POST /restart, hactl restart): pure, no I/O.

Patroni is the model (its REST API's ``do_POST_restart`` and its HA loop's scheduled restart):

- the request: ``schedule`` (ISO 8601 with a timezone, not in the past), ``restart_pending``,
  ``role`` (``primary`` or ``replica``), ``postgres_version`` (restart only while the running
  server is older) and ``timeout`` (seconds PostgreSQL may take to come back); anything else,
  or a bad value, is refused with the status Patroni answers (400; 422 for an unparsable or
  past schedule) and a message naming the field. A restart cannot be scheduled while paused.
- the filters are checked when the restart runs, in the HA loop's cycle (a scheduled restart
  with ``restart_pending`` restarts only if a restart is still pending at its time);
- a scheduled restart runs at its time, never before, and not while paused; one found long
  after its time (``stale_after``) is dropped instead of restarting at a surprising moment;
- beyond Patroni, for hamgr's fencing: PostgreSQL running as primary is restarted only while
  this member holds the leader key and its lease deadline lies ahead (a primary brought back
  without its lease would be killed by its fencer, or run unfenced); a stopped PostgreSQL is
  not "restarted" (the HA loop starts it, in the right role).

What happens when PostgreSQL does not come back within the timeout is :func:`after_slow_start`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Literal

import msgspec

from hamgr.config.problems import show
from hamgr.dcs.model import ClusterView
from hamgr.dcs.restartrequest import RestartRequest, RestartRole, iso_time, parse_version
from hamgr.dcs.strict import ModelError

STALE_FLOOR = 60.0
"""Seconds after its time a scheduled restart still runs, at least (see :func:`stale_after`)."""

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|min|h)?\s*")
_UNIT = {"": 1.0, "s": 1.0, "min": 60.0, "h": 3600.0}


class RestartInputError(Exception):
    """The request is refused as asked (``status``: 400, 409 or 422); nothing changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_schedule(value: str, wall_now: float) -> float:
    """``schedule`` as wall-clock seconds: ISO 8601 with a timezone, not in the past."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise RestartInputError(
            422,
            f"schedule: unable to parse {show(value)}; expected an unambiguous time, "
            "ISO 8601 like 2030-01-31T04:00:00+00:00",
        ) from None
    if when.tzinfo is None:
        raise RestartInputError(
            400, f"schedule: timezone information is mandatory (like {value}+00:00)"
        )
    at = when.timestamp()
    if at < wall_now:
        raise RestartInputError(422, f"schedule: cannot schedule a restart in the past ({value})")
    return at


def parse_timeout(value: object) -> float:
    """``timeout`` in seconds: a number, or text like ``30``, ``30s``, ``2min``; > 0."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value)):
        seconds = float(found.group(1)) * _UNIT[found.group(2) or ""]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise RestartInputError(
            400, f'timeout: should be a positive number of seconds (30, "2min"), got {show(value)}'
        )
    return seconds


class RestartBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /restart's JSON body, every field optional (an empty body restarts now).

    ``timeout`` is seconds or text such as ``"2min"`` (:func:`parse_timeout`). Decoding
    (hamgr/agent/apibodies.py ``read_body``) refuses other fields and wrong types with 400 naming
    the field; :func:`parse_request` applies the rules that carry Patroni's status codes."""

    schedule: str | None = None
    restart_pending: bool = False
    role: RestartRole | None = None
    postgres_version: str | None = None
    timeout: float | str | None = None


def parse_request(body: RestartBody, wall_now: float, paused: bool) -> RestartRequest:
    """The restart that POST /restart's ``body`` asks for. Raises RestartInputError."""
    at = None
    if body.schedule is not None:
        if paused:
            raise RestartInputError(
                409, "schedule: can't schedule a restart in the paused state (resume first)"
            )
        at = parse_schedule(body.schedule, wall_now)
    if body.postgres_version is not None:
        try:
            parse_version(body.postgres_version)
        except ModelError as e:
            raise RestartInputError(400, str(e)) from None
    timeout = parse_timeout(body.timeout) if body.timeout is not None else None
    schedule = iso_time(at) if at is not None else None
    return RestartRequest(schedule, body.restart_pending, body.role, body.postgres_version, timeout)


@dataclass(frozen=True)
class RestartFacts:
    """This member when the restart is about to run.

    ``role``: PostgreSQL's (``primary``, ``replica``), or ``stopped`` when it is not running.
    ``server_version``: ``server_version_num`` (None: not asked for, or unknown).
    ``lease_ok``: the lease deadline (``fence_at``) lies ahead; ``paused``: the cluster is.
    """

    role: str
    pending_restart: bool
    holds_leader_key: bool
    lease_ok: bool
    paused: bool = False
    server_version: int | None = None


def refusal(req: RestartRequest, facts: RestartFacts) -> str | None:
    """Why the restart must not run now (None: go). Filters first, as Patroni words them
    (``restart conditions are not satisfied: ...``), then hamgr's fencing rules."""
    why = []
    if req.role is not None and req.role != facts.role:
        why.append(f"host role mismatch (PostgreSQL runs as {facts.role}, asked {req.role})")
    wanted = req.version_num
    if wanted is not None:
        have = facts.server_version
        if have is None:
            why.append("postgres version unknown (PostgreSQL did not answer)")
        elif wanted <= have:
            why.append(
                f"postgres version mismatch (running {have}, not older than {req.postgres_version})"
            )
    if req.restart_pending and not facts.pending_restart:
        why.append("pending restart flag is not set")
    if why:
        return "restart conditions are not satisfied: " + "; ".join(why)
    if facts.role == "stopped":
        return "PostgreSQL is not running: nothing to restart (the HA loop starts it)"
    if facts.role == "primary" and not facts.holds_leader_key:
        return (
            "PostgreSQL runs as primary but this member does not hold the leader key: it is "
            "being demoted; a primary is never restarted without its lease"
        )
    if facts.role == "primary" and not facts.lease_ok and not facts.paused:
        return (
            "PostgreSQL runs as primary but its lease deadline has passed (fenced): a primary "
            "is never restarted without its lease"
        )
    return None


Step = Literal["wait", "run", "stale"]


def stale_after(loop_wait: float) -> float:
    """Seconds after its time a scheduled restart is dropped instead of run: Patroni's 1.5
    loop_wait, but at least :data:`STALE_FLOOR` (a busy cycle must not lose it)."""
    return max(1.5 * loop_wait, STALE_FLOOR)


def scheduled_step(at: float, wall_now: float, loop_wait: float, paused: bool) -> Step:
    """What the HA loop does with a restart scheduled at ``at`` now: wait (before its time, or
    paused), run it, or drop it as stale."""
    if paused or wall_now < at:
        return "wait"
    if wall_now - at > stale_after(loop_wait):
        return "stale"
    return "run"


def failover_possible(view: ClusterView, me: str) -> bool:
    """Whether another member could take over from this primary: one running as replica,
    not tagged nofailover (Patroni's ``is_failover_possible``, simplified)."""
    return any(
        m.name != me and m.role == "replica" and m.state == "running" and m.tags.priority > 0
        for m in view.members
    )


def after_slow_start(was_primary: bool, view: ClusterView, me: str) -> tuple[bool, str]:
    """PostgreSQL did not come back within the restart's timeout: whether to stop it and give
    the leader key back (Patroni fails over), and what to tell the operator.

    Safe under hamgr's fencing because PostgreSQL is stopped (immediate) before the key is
    released: nobody can take the key while a postmaster of ours may still come up as primary.
    """
    if not was_primary:
        return False, "the HA loop goes on with it"
    if failover_possible(view, me):
        return True, "stopped it and released the leader key for a replica to take over"
    return False, (
        "no replica can take over, so this member keeps the leader key and waits for it "
        "(primary_start_timeout)"
    )
