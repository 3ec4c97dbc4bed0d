"""A real hamgr cluster for integration tests: N `hamgr agent` processes, real PostgreSQL.

Each member gets its own loopback address (all its listeners: store, store clients, REST and
PostgreSQL bind it), its own directories under one root, and the `fast` timing profile unless
told otherwise. `close()` stops everything it started, by PID (SIGKILL: agents, then any
postmaster and fencer left behind), whatever happened in the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.postgres.pg_helpers import find_pg_bindir

PASSWORD = "it-password"
API_AUTH = ("admin", PASSWORD)
SMALL_PG = {"shared_buffers": "16MB"}
"""Each member's own parameters: small servers, several run at once on a 2-core machine."""
SMALL_PG_CLUSTER = {"max_connections": 30, "max_wal_senders": 6, "wal_keep_size": "64MB"}
"""Cluster-wide parameters (bootstrap.dcs): those that must be the same on every member."""


@dataclass
class Member:
    """One member's names, addresses and files."""

    name: str
    node_id: int
    host: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def config(self) -> Path:
        return self.root / f"{self.name}.yaml"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def data_dir(self) -> Path:
        return self.root / f"{self.name}-data"

    @property
    def api(self) -> str:
        return f"{self.scheme}://{self.host}:8008"

    @property
    def pg_port(self) -> int:
        return 5432


class AgentCluster:
    """Agents on `hosts` (one member each), configured under `root`."""

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
        certificates from ``hamgr certs init`` in ``root/tls`` (`ssl_context`: a client's).
        Members named in `witnesses` get no ``postgresql`` section: their agents run a store
        member only."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        self.scope = scope
        self.profile = profile
        self.etcd_hosts = etcd_hosts
        self.backend = "etcd" if etcd_hosts else "raft"
        self.witnesses = set(witnesses)
        self.members = {
            f"m{i}": Member(f"m{i}", i, host, root, scheme="https" if tls else "http")
            for i, host in enumerate(hosts, start=1)
        }
        self.tls_dir: Path | None = None
        self.ssl_context: ssl.SSLContext | None = None
        if tls:
            self.tls_dir = root / "tls"
            members = ",".join(f"{m.name}={m.host}" for m in self.members.values())
            made = subprocess.run(
                [sys.executable, "-m", "hamgr", "certs", "init", "--cluster", scope,
                 "--members", f"{members},client=127.0.0.1", "--out", str(self.tls_dir)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            self.ssl_context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        self.retired: list[Member] = []
        self.secret = root / "store-secret"
        self.secret.write_text(secrets.token_hex(24))
        os.chmod(self.secret, 0o600)
        for m in self.members.values():
            config = self._config(m, self.secret, profile)
            if self.tls_dir is not None:
                self._add_tls(config, m, self.tls_dir)
            for key, value in (member_overrides or {}).get(m.name, {}).items():
                config[key] = value
            m.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def add_host(self, name: str, host: str, node_id: int, *, witness: bool = False) -> Member:
        """A new host for a running cluster (not started): its configuration names every
        current member as a peer and sets ``store.raft.join`` (it is sent the store once added
        with ``hactl members add``); its directories are empty."""
        m = Member(name, node_id, host, self.root)
        self.members[name] = m
        if witness:
            self.witnesses.add(name)
        config = self._config(m, self.secret, self.profile)
        config["store"]["raft"]["join"] = True
        m.config.write_text(yaml.safe_dump(config, sort_keys=False))
        return m

    def destroy(self, name: str) -> None:
        """A host lost for good: SIGKILL its agent and PostgreSQL, remove every file it had,
        and stop counting it as a member (close() still checks its processes)."""
        self.kill9_agent(name)
        self.kill9_postgres(name)
        self._kill_helpers(name)  # its fencer's PID file goes with the files below
        m = self.members.pop(name)
        self.retired.append(m)
        for path in (m.data_dir, self.root / f"{name}-store", self.root / f"{name}-data.run"):
            shutil.rmtree(path, ignore_errors=True)

    def _config(self, m: Member, secret: Path, profile: str) -> dict[str, Any]:
        peers = [
            {"node_id": p.node_id, "address": f"{p.host}:7000", "client_address": f"{p.host}:7100"}
            for p in self.members.values()
            if p is not m
        ]
        config: dict[str, Any] = {
            "scope": self.scope,
            "name": m.name,
            "timing_profile": profile,
            "store": self._store(m, peers, secret),
        }
        if m.name in self.witnesses:
            return config  # a store member only: no REST API, no PostgreSQL
        return {
            **config,
            "restapi": {
                "listen": f"{m.host}:8008",
                "authentication": {"username": API_AUTH[0], "password": API_AUTH[1]},
            },
            "postgresql": {
                "data_dir": str(m.data_dir),
                "listen": f"{m.host}:{m.pg_port}",
                "authentication": {
                    "superuser": {"username": "postgres", "password": PASSWORD},
                    "replication": {"username": "replicator", "password": PASSWORD},
                },
                "parameters": dict(SMALL_PG),
            },
            "bootstrap": {"dcs": {"postgresql": {"parameters": dict(SMALL_PG_CLUSTER)}}},
        }

    @staticmethod
    def _add_tls(config: dict[str, Any], m: Member, tls_dir: Path) -> None:
        files = {
            "certfile": str(tls_dir / f"{m.name}.crt"),
            "keyfile": str(tls_dir / f"{m.name}.key"),
            "cafile": str(tls_dir / "ca.crt"),
        }
        if "restapi" in config:
            config["restapi"].update(files)
        if "raft" in config["store"]:
            config["store"]["raft"]["tls"] = dict(files)

    def _store(self, m: Member, peers: list[dict[str, Any]], secret: Path) -> dict[str, Any]:
        if self.etcd_hosts:
            return {"backend": "etcd", "etcd": {"hosts": list(self.etcd_hosts)}}
        return {
            "raft": {
                "data_dir": str(self.root / f"{m.name}-store"),
                "node_id": m.node_id,
                "listen": f"{m.host}:7000",
                "client_listen": f"{m.host}:7100",
                "secret_file": str(secret),
                "peers": peers,
            }
        }

    # -- processes --------------------------------------------------------------------------

    def start(
        self, name: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        """Start member `name`'s agent (it starts its PostgreSQL itself)."""
        m = self.members[name]
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(
                [*self.launcher(m), "agent", "--config", str(m.config), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def launcher(self, m: Member) -> list[str]:
        """The command that runs `hamgr` for member `m` (a subclass may wrap it, e.g. to run
        the member in a network namespace of its own)."""
        return [sys.executable, "-m", "hamgr"]

    def start_all(self) -> None:
        for name in self.members:
            self.start(name)

    def agent_pid(self, name: str) -> int:
        proc = self.members[name].proc
        assert proc is not None and proc.poll() is None, f"agent {name} is not running"
        return proc.pid

    def postmaster_pid(self, name: str) -> int | None:
        pid_file = self.members[name].data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill9_agent(self, name: str) -> None:
        os.kill(self.agent_pid(name), signal.SIGKILL)
        proc = self.members[name].proc
        assert proc is not None
        proc.wait(timeout=10)

    def kill9_postgres(self, name: str) -> None:
        """SIGKILL the postmaster and every process of its data dir."""
        pid = self.postmaster_pid(name)
        if pid is not None:
            _kill_tree(pid)

    def sigstop_agent(self, name: str) -> None:
        os.kill(self.agent_pid(name), signal.SIGSTOP)

    def sigcont_agent(self, name: str) -> None:
        os.kill(self.agent_pid(name), signal.SIGCONT)

    def terminate(self, name: str, timeout: float = 40.0) -> int:
        """SIGTERM an agent and wait for it to exit; returns its exit status."""
        proc = self.members[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def close(self) -> None:
        """Stop everything this cluster started, by PID, as a host crash would (SIGKILL): a
        test's end needs no orderly handover, and a SIGTERM'ed primary would wait to hand over
        to replicas that are stopping too. Tests of an orderly stop call `stop_agent`."""
        everyone = [*self.members.values(), *self.retired]
        for m in everyone:
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.kill()
        for m in everyone:
            if m.proc is not None:
                m.proc.wait(timeout=10)
        for m in self.members.values():
            pid = self.postmaster_pid(m.name)
            if pid is not None:
                _kill_tree(pid)
            self._kill_helpers(m.name)
        for pid in _pids_naming(self.root):
            _kill_tree(pid)  # anything else this cluster started (a retired member's fencer)

    def _kill_helpers(self, name: str) -> None:
        """SIGKILL the processes whose PID files lie in member `name`'s run directory (its
        fencer, which outlives the agent by design)."""
        for pid_file in self.root.glob(f"{name}-data.run/*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    # -- observation --------------------------------------------------------------------------

    def http(self, name: str, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        """GET a member's REST path: (status, JSON body or None); (0, None) when unreachable."""
        url = self.members[name].api + path
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=self.ssl_context) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError):
            return 0, None

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

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for m in self.members.values():
            try:
                text = m.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = []
            out.append(f"--- {m.name}\n" + "\n".join(text))
        return "\n".join(out)


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


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


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
