"""A real agent started from config.example.yaml: it passes validate-config and it serves.

The example is taken as it is, with only what must differ on a test machine changed: its
directories moved under a /tmp directory, every address moved to one loopback address of its
own (127.0.0.171; ports as in AgentCluster), and its two store peers left out, so that the
member is a cluster of one that bootstraps and becomes primary by itself. Everything else
(timing, parameters, pg_hba, initdb options, credentials) is the example's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.ha.agentcluster import AgentCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"
HOST = "127.0.0.171"
BOOT = 90.0  # initdb and the first start on a shared 2-core machine, with margin


def example_on(c: AgentCluster, name: str) -> dict[str, Any]:
    """config.example.yaml with member `name`'s directories and address, and no peers."""
    m = c.members[name]
    data = yaml.safe_load(EXAMPLE.read_text())
    data["restapi"]["listen"] = data["restapi"]["connect_address"] = f"{m.host}:8008"
    raft = data["store"]["raft"]
    raft["data_dir"] = str(c.root / f"{name}-store")
    raft["listen"] = raft["advertise"] = f"{m.host}:7000"
    raft["client_listen"] = f"{m.host}:7100"
    raft["peers"] = []
    pg = data["postgresql"]
    pg["data_dir"] = str(m.data_dir)
    pg["listen"] = pg["connect_address"] = f"{m.host}:{m.pg_port}"
    return data


@pytest.fixture
def cluster() -> Iterator[AgentCluster]:
    root = Path(tempfile.mkdtemp(prefix="hamgr-example-", dir="/tmp"))
    os.chmod(root, 0o755)
    c = AgentCluster(root, [HOST], scope="demo")
    try:
        yield c
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


def local_sql(c: AgentCluster, name: str, query: str) -> Any:
    """One value, over the member's unix socket, as the example's superuser."""
    example = yaml.safe_load(EXAMPLE.read_text())["postgresql"]["authentication"]["superuser"]
    m = c.members[name]
    with psycopg.connect(
        host=str(m.root / f"{name}-data.run"),
        port=m.pg_port,
        user=example["username"],
        password=example["password"],
        dbname="postgres",
        connect_timeout=3,
    ) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_an_agent_starts_from_the_example_and_serves(cluster: AgentCluster) -> None:
    c = cluster
    m = c.members["m1"]
    m.config.write_text(yaml.safe_dump(example_on(c, "m1"), sort_keys=False))
    checked = subprocess.run(
        [sys.executable, "-m", "hamgr", "validate-config", str(m.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "ok\n", "")

    c.start("m1")
    assert c.wait_primary(BOOT) == "m1"
    assert m.proc is not None and m.proc.poll() is None, c.log_tails()
    status, health = c.http("m1", "/patroni")
    assert status == 200 and health["role"] == "primary", health
    # The example's cluster-wide parameters and initdb options reached PostgreSQL.
    assert local_sql(c, "m1", "SHOW max_connections") == "100"
    assert local_sql(c, "m1", "SHOW data_checksums") == "on"
    assert local_sql(c, "m1", "SHOW server_encoding") == "UTF8"
    assert "Traceback" not in m.log.read_text(errors="replace")
