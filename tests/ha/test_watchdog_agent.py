"""The ``watchdog`` setting on a real agent (one member: its own store, its own PostgreSQL).

This machine has no watchdog device: these tests show what the agent does without one. With
``mode: required`` a start fails at once with a message naming the device and the problem; with
``mode: automatic`` the agent logs that once and serves as primary. The device protocol itself
is tested against a stand-in at the file-descriptor boundary in tests/test_watchdog.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import log_since
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HOST = "127.0.0.116"
MISSING = "/nonexistent/watchdog"


@pytest.fixture
def root(pg_bindir: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hamgr-wd-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def agent(root: Path, mode: str) -> AgentCluster:
    watchdog = {"mode": mode, "device": MISSING, "safety_margin": 1.0}
    return AgentCluster(root, [HOST], scope="wd", member_overrides={"m1": {"watchdog": watchdog}})


def keepalives(c: AgentCluster) -> float:
    with urllib.request.urlopen(c.members["m1"].api + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return next(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "hamgr_lease_keepalive_duration_seconds_count"
    )


def test_required_refuses_to_start_without_the_device(root: Path) -> None:
    c = agent(root, "required")
    try:
        c.start("m1")
        proc = c.members["m1"].proc
        assert proc is not None
        assert proc.wait(timeout=60) == 1
        text = log_since(c, "m1")
        assert (
            f"not starting: watchdog mode is required, but watchdog device {MISSING}: "
            "No such file or directory" in text
        ), text
        assert not (c.members["m1"].data_dir / "PG_VERSION").exists(), "it must start nothing"
    finally:
        c.close()


def test_automatic_logs_once_and_serves_as_primary(root: Path) -> None:
    c = agent(root, "automatic")
    try:
        c.start("m1")
        assert c.wait_primary(90) == "m1"
        first = keepalives(c)
        wait_for(lambda: keepalives(c) >= first + 6, 30, "six more lease keepalives")
        lines = [line for line in log_since(c, "m1").splitlines() if "without a watchdog" in line]
        assert len(lines) == 1, lines
        assert f"watchdog device {MISSING}: No such file or directory" in lines[0]
    finally:
        c.close()
