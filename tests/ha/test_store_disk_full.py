"""An agent whose embedded store member fails (its disk full) exits 1, and rejoins (issue 12).

A real 3-member cluster (fast profile) on 127.0.0.221-223; member m3's store data directory is a
small tmpfs of its own, filled from this test. The member's storage refuses all further use
after "No space left on device"; the agent must not live on beside it (the store a member short
for good) but stop as on SIGTERM and exit 1, the reason logged, so that systemd
(Restart=on-failure) starts it again. Started again once space is back, it recovers its store
from its log, rejoins, and the cluster is whole: one primary, both replicas streaming, every
store member answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import StoreOutcomeUnknownError
from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import sql
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

HOSTS = ["127.0.0.221", "127.0.0.222", "127.0.0.223"]
FULL = "m3"
STORE_FS_MB = 16


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={STORE_FS_MB}m,mode=0700", "hamgr-it-store",
         str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def _fill(path: Path) -> int:
    """Write `path` until its filesystem is full to the last byte; the bytes written."""
    written = 0
    with open(path, "ab", buffering=0) as f:
        for _ in range(STORE_FS_MB * 4):  # bounded: the filesystem is STORE_FS_MB
            try:
                written += f.write(b"\0" * (1 << 20))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                for size in (4096, 512, 1):  # the last partial blocks
                    with contextlib.suppress(OSError):
                        for _ in range(1 << 12):
                            written += f.write(b"\0" * size)
                break
    return written


PROBE_BYTES = 8192
"""The probe write's value: larger than a page, so that appending it to the log needs a new
page of the full filesystem (a small record can still fit in the slack of the log file's last
page, and then the full disk is only found some writes later)."""


def _put(c: AgentCluster, key: bytes) -> None:
    """One write to the store through the other members (the cluster is quiet when healthy:
    without one, the full disk would only be found at the next change of a key). When the full
    member leads the store, it fails while the write is in flight and the write's outcome is
    unknown: that is the failure this write is for, not an error of the test."""
    secret = c.secret.read_text().strip().encode()

    async def put() -> None:
        hosts = [(m.host, 7100) for m in c.members.values() if m.name != FULL]
        async with StoreClient(hosts, c.scope, secret) as client:
            with contextlib.suppress(StoreOutcomeUnknownError):
                await client.put(key, b"x" * PROBE_BYTES, timeout=10.0)

    asyncio.run(put())


@pytest.fixture
def cluster(pg_bindir: Path) -> Iterator[AgentCluster]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the store needs root")
    root = Path(tempfile.mkdtemp(prefix="hamgr-full-", dir="/tmp"))
    os.chmod(root, 0o755)
    c = AgentCluster(root, HOSTS, scope="full")
    store = root / f"{FULL}-store"
    failed = True
    try:
        _mount_tmpfs(store)
        c.start_all()
        primary = c.wait_primary(90)
        c.wait_streaming([n for n in c.members if n != primary], 90)
        yield c
        failed = False
    finally:
        c.close()
        subprocess.run(["umount", "-l", str(store)], check=False, capture_output=True, timeout=30)
        if not failed:
            shutil.rmtree(root, ignore_errors=True)


def _store_whole(c: AgentCluster, name: str) -> object:
    status, body = c.http(name, "/store/members")
    if status != 200 or not isinstance(body, dict):
        return None
    members = body.get("members", [])
    if len(members) != 3 or any(m.get("error") for m in members):
        return None
    return body


def test_a_full_store_disk_makes_the_agent_exit_and_it_rejoins_after(
    cluster: AgentCluster,
) -> None:
    c = cluster
    primary = c.wait_primary(30)
    sql(c, primary, "CREATE TABLE before_full (x int)")
    filler = c.root / f"{FULL}-store" / "zz-filler"
    _fill(filler)
    _put(c, b"/disk-full-probe")
    proc = c.members[FULL].proc
    assert proc is not None
    try:
        status = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the agent of {FULL} lives on with a full store disk:\n{c.log_tails(30)}")
    log = c.members[FULL].log.read_text(errors="replace")
    assert status == 1, f"the agent exited with {status}:\n{c.log_tails(30)}"
    assert "store member 3 failed" in log, log[-3000:]
    assert "No space left on device" in log, log[-3000:]
    gone_by = time.monotonic() + 15.0  # the postmaster may still be finishing its shutdown
    while (pid := c.postmaster_pid(FULL)) is not None and Path(f"/proc/{pid}").exists():
        assert time.monotonic() < gone_by, f"{FULL}'s PostgreSQL outlives its agent (pid {pid})"
        time.sleep(0.2)

    filler.unlink()
    c.start(FULL)  # as systemd would (Restart=on-failure)
    new = c.wait_primary(120)
    c.wait_streaming([n for n in c.members if n != new], 120)
    body = wait_for(lambda: _store_whole(c, FULL), 60, "every store member answering")
    sql(c, new, "INSERT INTO before_full VALUES (1)")
    again = c.members[FULL].proc
    assert again is not None and again.poll() is None, f"{FULL} stopped again:\n{body}"
