"""A real hamgr cluster for integration tests: N `hamgr agent` processes, real PostgreSQL.

Each member gets its own loopback address (all its listeners: store, store clients, REST and
PostgreSQL bind it), its own directories under one root, and the `fast` timing profile unless
told otherwise. The files are written and the processes run by `hamgr.cli.localcluster` (the
builder the demo and the benchmarks use too); what is here is for tests: their defaults, and
observation (`wait_primary`, `wait_streaming`, SQL). `close()` stops everything it started, by
PID (SIGKILL: agents, then any postmaster and fencer left behind), whatever happened in the
test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hamgr.cli.localcluster import API_USER, LocalCluster, LocalMember, MemberSpec, one_per_host
from tests.postgres.pg_helpers import find_pg_bindir

PASSWORD = "it-password"
API_AUTH = (API_USER, PASSWORD)
SMALL_PG = {"shared_buffers": "16MB"}
"""Each member's own parameters: small servers, several run at once on a 2-core machine."""
SMALL_PG_CLUSTER = {"max_connections": 30, "max_wal_senders": 6, "wal_keep_size": "64MB"}
"""Cluster-wide parameters (bootstrap.dcs): those that must be the same on every member."""


class AgentCluster(LocalCluster):
    """Agents on `hosts` (one member each, named m1..mN), configured under `root` by
    `hamgr.cli.localcluster`; its files are written at once."""

    def __init__(
        self,
        root: Path,
        hosts: list[str],
        *,
        scope: str = "it",
        profile: str = "fast",
        member_overrides: dict[str, dict[str, Any]] | None = None,
        etcd_hosts: list[str] | None = None,
        tls: bool = False,
        witnesses: tuple[str, ...] = (),
    ) -> None:
        """With `etcd_hosts` the agents use that etcd (``store.backend: etcd``) instead of their
        embedded store members. With `tls` the REST API and the store run over TLS, with
        certificates made like ``hamgr certs init`` does in ``root/tls`` (one for a client on
        127.0.0.1 too; `ssl_context`: a client's). Members named in `witnesses` get no
        ``postgresql`` section: their agents run a store member only. `member_overrides`:
        top-level keys that replace the written ones, per member."""
        specs = [replace(spec, witness=spec.name in witnesses) for spec in one_per_host(hosts, "m")]
        super().__init__(
            root,
            specs,
            scope=scope,
            password=PASSWORD,
            profile=profile,
            pg_parameters=SMALL_PG,
            bootstrap_dcs={"postgresql": {"parameters": SMALL_PG_CLUSTER}},
            etcd_hosts=etcd_hosts,
            tls=tls,
            tls_clients={"client": "127.0.0.1"},
            overrides=member_overrides,
        )
        self.write_configs()

    def add_host(self, name: str, host: str, node_id: int, *, witness: bool = False) -> LocalMember:
        """A new host for a running cluster (not started): its configuration names every
        current member as a peer and sets ``store.raft.join`` (it is sent the store once added
        with ``hactl members add``); its directories are empty."""
        return self.add_member(MemberSpec(name, node_id, host, witness=witness))

    def destroy(self, name: str) -> None:
        """A host lost for good: SIGKILL its agent and PostgreSQL, remove every file it had,
        and stop counting it as a member (close() still checks its processes)."""
        self.kill9_agent(name)
        self.kill9_postgres(name)
        self.kill9_fencer(name)  # its fencer's PID file goes with the files below
        m = self.retire(name)
        for path in (m.data_dir, m.store_dir, m.run_dir):
            shutil.rmtree(path, ignore_errors=True)

    # -- processes --------------------------------------------------------------------------

    def sigstop_agent(self, name: str) -> None:
        os.kill(self.agent_pid(name), signal.SIGSTOP)

    def sigcont_agent(self, name: str) -> None:
        os.kill(self.agent_pid(name), signal.SIGCONT)

    def close(self) -> None:
        """Stop everything this cluster started, by PID, as a host crash would (SIGKILL, see
        `LocalCluster.close`): a test's end needs no orderly handover, and a SIGTERM'ed primary
        would wait to hand over to replicas that are stopping too. Tests of an orderly stop call
        `terminate`. Then anything else whose command line names the cluster's directory."""
        super().close()
        for pid in _pids_naming(self.root):
            _kill_tree(pid)  # anything else this cluster started (a retired member's helper)

    # -- observation --------------------------------------------------------------------------

    def primaries(self) -> list[str]:
        """Members whose GET /primary answers 200 right now."""
        return [n for n in self.members if self.http(n, "/primary", 1.0)[0] == 200]

    def wait_primary(self, timeout: float, exclude: tuple[str, ...] = ()) -> str:
        """The single member answering GET /primary with 200 (not in `exclude`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [n for n in self.primaries() if n not in exclude]
            if len(found) == 1:
                return found[0]
            time.sleep(0.2)
        raise TimeoutError(f"no primary within {timeout} s; logs:\n{self.log_tails()}")

    def wait_streaming(self, names: list[str], timeout: float, upstream: str | None = None) -> None:
        """Until each of `names` answers GET /replica with 200 (a streaming standby) and, with
        `upstream`, is listed as streaming in that member's pg_stat_replication.

        GET /replica reports the member's last observation: right after its upstream restarted
        it may still say "streaming" while its WAL receiver waits to reconnect. A step that needs
        the WAL to reach it now (a switchover's shutdown checkpoint) passes `upstream`.
        """
        deadline = time.monotonic() + timeout
        left = set(names)
        while left and time.monotonic() < deadline:
            left = {n for n in left if self.http(n, "/replica", 1.0)[0] != 200}
            if not left and upstream is not None:
                left = set(names) - self._streaming_from(upstream)
            time.sleep(0.2)
        if left:
            raise TimeoutError(f"not streaming within {timeout} s: {sorted(left)}")

    def _streaming_from(self, upstream: str) -> set[str]:
        """The members that `upstream`'s walsenders serve in state streaming (empty when it
        cannot be asked)."""
        try:
            with self.connect(upstream) as conn:
                rows = conn.execute(
                    "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchall()
        except psycopg.Error:
            return set()
        return {r[0] for r in rows}

    def connect(self, name: str, **kwargs: Any) -> psycopg.Connection[Any]:
        """A superuser connection to member `name`'s PostgreSQL over TCP."""
        m = self.members[name]
        return psycopg.connect(
            host=m.host,
            port=m.pg_port,
            user="postgres",
            password=PASSWORD,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
            **kwargs,
        )


@contextlib.contextmanager
def cluster_of_test(
    request: pytest.FixtureRequest,
    prefix: str,
    hosts: list[str],
    **options: Any,
) -> Iterator[AgentCluster]:
    """A new `AgentCluster` (not started) in its own /tmp directory, for a test or fixture.

    Skips without PostgreSQL or root. Whatever happens, everything it started is stopped by PID
    (killed as by a host crash, see `AgentCluster.close`); its directory is
    removed unless a test failed meanwhile or IT_KEEP_CLUSTER is set (then it is kept and the
    logs' tails are printed). `options` go to `AgentCluster`.
    """
    if find_pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found (set HAMGR_PG_BINDIR)")
    if os.geteuid() != 0:
        pytest.skip("the agents run PostgreSQL as another OS user: run as root")
    root = Path(tempfile.mkdtemp(prefix=f"hamgr-{prefix}-", dir="/tmp"))
    os.chmod(root, 0o755)
    failed_before = request.session.testsfailed
    c = AgentCluster(root, hosts, **options)
    try:
        yield c
    finally:
        c.close()
        if request.session.testsfailed > failed_before or os.environ.get("IT_KEEP_CLUSTER"):
            print(f"cluster directory kept: {root}\n{c.log_tails(40)}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _pids_naming(root: Path) -> list[int]:
    """PIDs of the processes whose command line names a path under `root` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if f"{root}/".encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its direct children (a postmaster and its backends)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    for p in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
