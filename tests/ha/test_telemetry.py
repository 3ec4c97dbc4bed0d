"""A real agent tells systemd and Prometheus the truth: READY=1, WATCHDOG=1, STATUS=, /metrics.

One agent (a single-member cluster: its embedded store alone, its own PostgreSQL) started with
a fake NOTIFY_SOCKET (a unix datagram socket of this test) and a systemd watchdog timeout.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ha.agentcluster import AgentCluster
from tests.tools.poll import wait_for

pytestmark = pytest.mark.integration

HOST = "127.0.0.118"
WATCHDOG_USEC = 2_000_000  # pings expected every second (half the timeout)


@pytest.fixture
def agent_with_notify(pg_bindir: Path) -> Iterator[tuple[AgentCluster, socket.socket]]:
    root = Path(tempfile.mkdtemp(prefix="hamgr-tele-", dir="/tmp"))
    os.chmod(root, 0o755)
    sock_path = root / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    cluster = AgentCluster(root, [HOST], scope="tele")
    try:
        cluster.start(
            "m1", env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        )
        yield cluster, sock
    finally:
        cluster.close()
        sock.close()
        shutil.rmtree(root, ignore_errors=True)


def _stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (state T in /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1][0] == "T"


def _datagrams(sock: socket.socket, seconds: float) -> list[tuple[float, dict[str, str]]]:
    """Every notification received within `seconds`, with its arrival time."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            raw = sock.recv(4096).decode()
        except TimeoutError:
            continue
        fields = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
        out.append((time.monotonic(), fields))
    return out


def _metrics(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        fam.name: [(s.labels, s.value) for s in fam.samples]
        for fam in text_string_to_metric_families(text)
    }


def test_ready_watchdog_status_and_metrics_follow_the_agent(
    agent_with_notify: tuple[AgentCluster, socket.socket],
) -> None:
    cluster, sock = agent_with_notify
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + 90
    while not any(f.get("READY") == "1" for f in seen) and time.monotonic() < deadline:
        seen += [fields for _, fields in _datagrams(sock, 1.0)]
    assert any(f.get("READY") == "1" for f in seen), "no READY=1:\n" + cluster.log_tails()
    assert cluster.http("m1", "/health")[0] in (200, 503), "READY=1 before the REST API served"
    assert cluster.wait_primary(60) == "m1"

    window = [fields for _, fields in _datagrams(sock, 4.0)]
    seen += window
    pings = [f for f in window if f.get("WATCHDOG") == "1"]
    assert len(pings) >= 2, f"expected a WATCHDOG=1 about every second, got {len(pings)} in 4 s"
    statuses = [f["STATUS"] for f in seen if "STATUS" in f]
    assert any(s.startswith("primary") for s in statuses), statuses

    # A frozen agent sends nothing: systemd's watchdog would restart it. A ping sent just
    # before the stop took effect may still wait in the socket: drain it once the agent is
    # seen stopped, then listen.
    pid = cluster.agent_pid("m1")
    cluster.sigstop_agent("m1")
    try:
        wait_for(lambda: _stopped(pid), 10, "the agent stopped by SIGSTOP")
        _datagrams(sock, 0.3)
        frozen = _datagrams(sock, 3.0)
    finally:
        cluster.sigcont_agent("m1")
    assert not [f for _, f in frozen if f.get("WATCHDOG") == "1"]

    m = _metrics(cluster.members["m1"].api + "/metrics")
    role = {labels["role"]: value for labels, value in m["hamgr_postgres_role"]}
    assert role["primary"] == 1 and role["replica"] == 0
    assert m["hamgr_postgres_timeline"][0][1] == 1
    assert m["hamgr_cluster_paused"][0][1] == 0
    assert m["hamgr_store_term"][0][1] >= 1
    commit = m["hamgr_store_commit_index"][0][1]
    applied = m["hamgr_store_applied_index"][0][1]
    assert commit >= 1 and applied <= commit
    assert m["hamgr_lease_keepalive_age_seconds"][0][1] < 10
    loops = dict((s[0].get("le", ""), s[1]) for s in m.get("hamgr_ha_loop_duration_seconds", []))
    assert any(v > 0 for v in loops.values()), "no HA loop observed"
    fsync = m.get("hamgr_store_fsync_duration_seconds", [])
    assert any(labels.get("le") == "+Inf" and value > 0 for labels, value in fsync)
