"""The cluster history on three real agents with real PostgreSQL: every promotion is recorded
with the LSN where the old timeline ended (the new primary's own timeline history file) and why
(a switchover the operator asked for, an automatic failover); a former primary that did not
diverge just follows the new one, and only one that did is rewound, which its log and its
``hamgr_pg_rewinds_total`` metric show.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hamgr.postgres.parse import parse_timeline_history
from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import (
    call,
    freeze_walsenders,
    hactl,
    has_row,
    log_since,
    log_size,
    sql,
    streaming_on,
)
from tests.ha.test_cluster import (
    FAILOVER,
    boot,
    fresh_cluster,
    kill_member,
    row_everywhere,
    timeline_of,
)
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REWIND_LOG = "running pg_rewind against leader"


@pytest.fixture
def cluster(pg_bindir: Path, request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with fresh_cluster(request) as c:
        yield c


def rewinds(c: AgentCluster, name: str) -> dict[str, float]:
    """Member `name`'s hamgr_pg_rewinds_total, by result."""
    with urllib.request.urlopen(c.members[name].api + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        s.labels["result"]: s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "hamgr_pg_rewinds"
        for s in fam.samples
        if s.name == "hamgr_pg_rewinds_total"
    }


def fork_on(c: AgentCluster, name: str, timeline: int) -> tuple[int, int]:
    """(parent timeline, switch LSN) of `timeline`, from member `name`'s history file."""
    text = sql(c, name, "SELECT pg_read_file(%s)", (f"pg_wal/{timeline:08X}.history",))[0][0]
    last = parse_timeline_history(text)[-1]
    return last.timeline, last.switch_lsn


def history_entry(c: AgentCluster, via: str, timeline: int) -> dict[str, Any] | None:
    """The /history entry of `timeline` (the one that ended), as member `via` serves it."""
    code, entries = call(c, via, "GET", "/history")
    if code != 200 or not isinstance(entries, list):
        return None
    # Patroni's history lines: [timeline, lsn, reason, timestamp, new_leader]
    keys = ("timeline", "switch_lsn", "reason", "at", "new_leader")
    found = next((e for e in entries if e[0] == timeline), None)
    return dict(zip(keys, found, strict=True)) if found is not None else None


def test_switchover_is_recorded_and_the_old_primary_follows_without_rewind(
    cluster: AgentCluster,
) -> None:
    c = cluster
    old, replicas = boot(c)
    candidate = sorted(replicas)[-1]
    sql(c, old, "CREATE TABLE h (x int PRIMARY KEY)")
    sql(c, old, "INSERT INTO h VALUES (1)")
    row_everywhere(c, replicas, "h", 1)
    offset = log_size(c, old)

    code, body = call(
        c, old, "POST", "/switchover", {"leader": old, "candidate": candidate}, timeout=45
    )
    assert code == 200, (code, body)
    wait_for(lambda: c.primaries() == [candidate], FAILOVER, f"{candidate} sole primary")
    tl = timeline_of(c, candidate)
    wait_for(lambda: streaming_on(c, old, tl), 60, f"old primary {old} streaming on {tl}")

    entry = wait_for(lambda: history_entry(c, old, tl - 1), 30, f"history of timeline {tl - 1}")
    assert (entry["timeline"], entry["switch_lsn"]) == fork_on(c, candidate, tl)
    assert entry["new_leader"] == candidate
    assert entry["reason"] == f"switchover from {old} to {candidate}, requested by the operator"
    shown = hactl(c, old, "history")
    assert shown.returncode == 0, shown.stderr
    assert f"switchover from {old} to {candidate}" in shown.stdout, shown.stdout

    rejoin = log_since(c, old, offset)
    assert REWIND_LOG not in rejoin, "the old primary did not diverge, yet was rewound"
    assert rewinds(c, old) == {"rewound": 0, "nothing": 0, "failed": 0}
    sql(c, candidate, "INSERT INTO h VALUES (2)")
    row_everywhere(c, [old], "h", 2)


def test_failover_is_recorded_and_the_diverged_old_primary_is_rewound(
    cluster: AgentCluster,
) -> None:
    c = cluster
    old, replicas = boot(c)
    sql(c, old, "CREATE TABLE h (x int PRIMARY KEY)")
    sql(c, old, "INSERT INTO h VALUES (1)")
    row_everywhere(c, replicas, "h", 1)
    # Rows the old primary acknowledges while no standby gets its WAL: its timeline diverges.
    freeze_walsenders(c, old, expected=2)
    sql(c, old, "INSERT INTO h SELECT generate_series(1000, 1999)")

    kill_member(c, old)
    new = c.wait_primary(FAILOVER, exclude=(old,))
    tl = timeline_of(c, new)
    entry = wait_for(lambda: history_entry(c, new, tl - 1), 30, f"history of timeline {tl - 1}")
    assert (entry["timeline"], entry["switch_lsn"]) == fork_on(c, new, tl)
    assert entry["new_leader"] == new
    assert entry["reason"].startswith(f"failover to {new}, automatic"), entry

    offset = log_size(c, old)
    c.start(old)
    wait_for(lambda: streaming_on(c, old, tl), 90, f"old primary {old} streaming on {tl}")
    assert not has_row(c, old, "h", 1000), "the rewound member kept its diverged rows"
    assert REWIND_LOG in log_since(c, old, offset)
    assert rewinds(c, old)["rewound"] == 1
