"""The agent as a daemon: SIGTERM hands a primary over, SIGHUP reloads, logs can be JSON.

A real 3-member cluster (fast profile) on 127.0.0.151-153.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import Writer, sql
from tests.tools.poll import wait_for

pytestmark = pytest.mark.integration

HOSTS = ["127.0.0.151", "127.0.0.152", "127.0.0.153"]


@pytest.fixture
def cluster(pg_bindir: Path) -> Iterator[AgentCluster]:
    root = Path(tempfile.mkdtemp(prefix="hamgr-sig-", dir="/tmp"))
    os.chmod(root, 0o755)
    c = AgentCluster(root, HOSTS, scope="sig")
    failed = True
    try:
        for name in c.members:
            c.start(name, args=("--log-format", "json"))
        primary = c.wait_primary(90)
        c.wait_streaming([n for n in c.members if n != primary], 90)
        yield c
        failed = False
    finally:
        c.close()
        if not failed:
            shutil.rmtree(root, ignore_errors=True)


def test_sigterm_on_the_primary_hands_over_without_losing_writes(cluster: AgentCluster) -> None:
    c = cluster
    old = c.wait_primary(30)
    sql(c, old, "CREATE TABLE handover (x int PRIMARY KEY)")
    writer = Writer(c, "handover", limit=120)
    writer.start()
    try:
        wait_for(lambda: writer.count() >= 50, 30, "writes before the stop")
        status = c.terminate(old, timeout=60)
        new = c.wait_primary(30, exclude=(old,))
        before = writer.by_member.get(new, 0)
        wait_for(
            lambda: writer.by_member.get(new, 0) >= before + 50, 30, "writes on the new primary"
        )
    finally:
        writer.stop()
    assert status == 0, f"the agent exited with {status}"
    rows = {r[0] for r in sql(c, new, "SELECT x FROM handover")}
    missing = sorted(set(writer.acked) - rows)
    assert missing == [], f"{len(missing)} acknowledged writes lost in the handover: {missing[:10]}"
    log = c.members[old].log.read_text(errors="replace")
    told = [ln for ln in log.splitlines() if "decision" in ln or "stopping" in ln][-20:]
    assert "handing the primary over" in log, "\n".join(told)


def test_sighup_reloads_tags_and_json_logs_parse(cluster: AgentCluster) -> None:
    c = cluster
    primary = c.wait_primary(30)
    replica = next(n for n in c.members if n != primary)
    config = c.members[replica].config
    data = yaml.safe_load(config.read_text())
    data["tags"] = {"nofailover": True}
    config.write_text(yaml.safe_dump(data))
    os.kill(c.agent_pid(replica), signal.SIGHUP)

    def tagged() -> bool:
        status, body = c.http(primary, "/cluster")
        members = {m["name"]: m for m in (body or {}).get("members", [])}
        return status == 200 and members.get(replica, {}).get("tags", {}).get("nofailover") is True

    wait_for(tagged, 30, f"{replica}'s nofailover tag after SIGHUP")
    lines = [ln for ln in c.members[replica].log.read_text(errors="replace").splitlines() if ln]
    records = []
    for line in lines:
        if line.startswith("{"):
            records.append(json.loads(line))  # every JSON-looking line must parse
    assert records, "no JSON log lines with --log-format json"
    assert any("reloaded" in r.get("message", r.get("msg", "")) for r in records)
