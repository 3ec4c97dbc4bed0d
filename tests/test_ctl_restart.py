"""hactl restart (filters, --scheduled) and hactl flush against fake agents (ctlrestart.py)."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from hamgr.dcs.restartrequest import RestartRequest
from tests import test_ctl
from tests.apifake import status
from tests.test_ctl import USER, Cluster, _one_line, hactl

cluster = test_ctl.cluster  # the fixture: a and b served by fake agents, c unreachable

AT = "2030-01-31T04:00:00+00:00"


def _pending(c: Cluster, name: str) -> None:
    """Member ``name`` waits for a restart (its agent and its published record say so)."""
    view = c.store.view
    members = tuple(
        msgspec.structs.replace(m, pending_restart=("shared_buffers",)) if m.name == name else m
        for m in view.members
    )
    c.store.view = dataclasses.replace(view, members=members)
    record = c.store.view.member(name)
    assert record is not None
    c.agents[name].status = status(record, pending_restart=True)


async def test_restart_only_pending_replicas_with_the_filters_sent(cluster: Cluster) -> None:
    base = ("--url", cluster.urls["a"], "--username", USER)
    _pending(cluster, "b")
    code, out, err = await hactl(
        *base, "restart", "--role", "replica", "--pending", "--pg-version", "15.9", "--force"
    )
    assert (code, out, err) == (0, "Success: restarted PostgreSQL on b\n", ""), err
    assert cluster.agents["a"].calls == []  # the primary is not a replica
    sent = cluster.agents["b"].restarts
    assert sent == [RestartRequest(None, True, "replica", "15.9", None)]


async def test_a_failed_restart_is_reported_and_the_others_go_on(cluster: Cluster) -> None:
    base = ("--url", cluster.urls["a"], "--username", USER)
    code, out, err = await hactl(*base, "restart", "a", "b", "--pg-version", "15.4", "--force")
    assert code == 1 and "postgres version mismatch" in out, (out, err)
    assert out.count("Failed: restart on") == 2
    assert _one_line(err) == "hactl: restart failed on a, b"


async def test_scheduled_restart_then_flush(cluster: Cluster) -> None:
    base = ("--url", cluster.urls["a"], "--username", USER)
    code, out, err = await hactl(
        *base, "restart", "b", "--scheduled", AT, "--timeout", "30", "--force"
    )
    assert (code, out) == (0, f"Success: restart scheduled on b at {AT}\n"), err
    kept = cluster.agents["b"].scheduled
    assert kept is not None and kept.schedule == AT and kept.timeout == 30.0
    code, out, _ = await hactl(*base, "list")
    assert "Scheduled restart" in out and AT in out
    code, out, err = await hactl(*base, "restart", "b", "--scheduled", AT, "--force")
    assert code == 0, err  # --force replaces the one scheduled
    code, out, err = await hactl(*base, "flush", "demo", "a", "b", "restart")
    assert (code, out) == (
        0,
        "No scheduled restart for member a\nSuccess: scheduled restart deleted for member b\n",
    ), err
    assert cluster.agents["b"].scheduled is None


async def test_flush_a_scheduled_switchover(cluster: Cluster) -> None:
    base = ("--url", cluster.urls["a"], "--username", USER)
    code, out, _ = await hactl(*base, "flush", "demo", "switchover")
    assert (code, out) == (0, "No pending scheduled switchover\n")
    code, out, err = await hactl(
        *base, "switchover", "--candidate", "b", "--scheduled", AT, "--force"
    )
    assert code == 0 and cluster.store.view.switchover is not None, err
    code, out, err = await hactl(*base, "flush", "demo", "switchover")
    assert (code, out) == (0, "Success: scheduled switchover deleted\n"), err
    assert cluster.store.view.switchover is None


@pytest.mark.parametrize(
    ("args", "code", "problem"),
    [
        (("flush", "other", "restart"), 1, "cluster other: the agent at"),
        (("flush", "demo", "zz", "restart"), 1, "no member named zz"),
        (("restart", "--pg-version", "15", "--force"), 2, "a PostgreSQL version like 15.4"),
        (("restart", "--scheduled", "soon", "--force"), 2, "expected an ISO 8601 time"),
        (("restart", "--role", "leader", "--force"), 2, "invalid choice: 'leader'"),
    ],
)
async def test_bad_input_is_named(
    cluster: Cluster, args: tuple[str, ...], code: int, problem: str
) -> None:
    got, _, err = await hactl("--url", cluster.urls["a"], "--username", USER, *args)
    assert got == code and problem in err, err
