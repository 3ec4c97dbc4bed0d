"""A cluster of REAL `python -m hamgr store` processes, for fault tests.

Each member gets its own loopback address (e.g. 127.0.0.41..43), its own data directory and
configuration file under the test's tmp dir, and ports picked free on its own address, so
clusters of different test files do not meet. Processes are started with subprocess.Popen,
waited for by their ready line, and only ever signalled by their PID: `kill9`, `stop`/`cont`
(SIGSTOP/SIGCONT), `terminate` (SIGTERM), `restart`. `close()` kills whatever is left; call it
in a fixture's finally. Each member's stderr goes to a log file; `log_tail` shows it when a
test fails.

For network faults, `route_peers` (before the members start) makes each member dial its peers'
Raft ports at other addresses, e.g. those of a `tests.tools.faultproxy.Mesh` built on
`raft_addresses()`; client addresses stay direct.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from hamgr.agent.storemember import client_ssl_context
from hamgr.agent.storemembers import records_prefix
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import StoreError
from hamgr.raft.net.rpcresults import MemberStatus

REPO = Path(__file__).resolve().parent.parent.parent
SECRET = "proc-cluster-secret-0123456789"
READY = re.compile(r"hamgr store: member (\d+) serving raft on (\S+), clients on (\S+)")

Address = tuple[str, int]


def free_port(host: str, avoid: set[int] | None = None) -> int:
    """A port free on `host` now (bound and released; the member binds it again soon)."""
    for _ in range(20):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in (avoid or set()):
            return port
    raise RuntimeError(f"no free port found on {host}")


@dataclass
class Member:
    """One member: its addresses, files and (while running) its process."""

    node_id: int
    host: str
    raft_port: int
    client_port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False

    @property
    def client_address(self) -> Address:
        return (self.host, self.client_port)

    @property
    def raft_address(self) -> Address:
        return (self.host, self.raft_port)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ProcCluster:
    """N store processes, member i (1-based) on `hosts[i-1]`."""

    def __init__(
        self,
        root: Path,
        hosts: list[str],
        *,
        cluster_id: str = "proc-test",
        heartbeat: float = 0.05,
        election: float = 0.5,
        snapshot_entries: int = 10000,
        client_timeout: float = 10.0,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """`tls` is (certfile, keyfile, cafile) for every member (store.raft.tls)."""
        self.root = root
        self.cluster_id = cluster_id
        self.secret = SECRET.encode()
        self.client_timeout = client_timeout
        self.attempt_timeout = election
        secret_file = root / "secret"
        secret_file.write_text(SECRET + "\n")
        secret_file.chmod(0o600)
        self.members: dict[int, Member] = {}
        for i, host in enumerate(hosts, start=1):
            raft_port = free_port(host)
            client_port = free_port(host, {raft_port})
            self.members[i] = Member(
                i, host, raft_port, client_port, root / f"n{i}.yaml", root / f"n{i}.log"
            )
        self._heartbeat = heartbeat
        self._election = election
        self._snapshot_entries = snapshot_entries
        self._tls = tls
        self._secret_file = secret_file
        self._routes: dict[int, dict[int, Address]] = {}
        for m in self.members.values():
            self._write_config(m)
        self._status_client: StoreClient | None = None

    def _write_config(self, m: Member) -> None:
        """Write member `m`'s configuration file (its peers as routed by `route_peers`)."""
        routes = self._routes.get(m.node_id, {})

        def dial(p: Member) -> str:
            host, port = routes.get(p.node_id, p.raft_address)
            return f"{host}:{port}"

        peers = [
            {
                "node_id": p.node_id,
                "address": dial(p),
                "client_address": f"{p.host}:{p.client_port}",
            }
            for p in self.members.values()
            if p.node_id != m.node_id
        ]
        config = {
            "scope": self.cluster_id,
            "name": f"member{m.node_id}",
            "log": {"level": "INFO"},
            "store": {
                "raft": {
                    "data_dir": str(self.root / f"data{m.node_id}"),
                    "node_id": m.node_id,
                    "listen": f"{m.host}:{m.raft_port}",
                    "client_listen": f"{m.host}:{m.client_port}",
                    "secret_file": str(self._secret_file),
                    "peers": peers,
                    "heartbeat_interval": self._heartbeat,
                    "election_timeout": self._election,
                    "snapshot_entries": self._snapshot_entries,
                }
            },
            "postgresql": {"data_dir": str(self.root / f"pg{m.node_id}")},
        }
        if self._tls is not None:
            certfile, keyfile, cafile = (str(f) for f in self._tls)
            raft = config["store"]["raft"]  # type: ignore[index]
            raft["tls"] = {"certfile": certfile, "keyfile": keyfile, "cafile": cafile}
        m.config.write_text(yaml.safe_dump(config))

    # -- processes

    async def start(self, node_id: int, timeout: float = 20.0) -> None:
        """Start a member and wait (at most `timeout` s) for its ready line."""
        m = self.members[node_id]
        if m.proc is not None and m.proc.poll() is None:
            raise RuntimeError(f"member {node_id} is already running (pid {m.proc.pid})")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAMGR_")}
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(
                [sys.executable, "-m", "hamgr", "store", "--config", str(m.config)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        m.stopped = False
        assert m.proc.stdout is not None
        os.set_blocking(m.proc.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        out = b""
        while True:
            chunk = m.proc.stdout.read()
            if chunk:
                out += chunk
            match = READY.search(out.decode(errors="replace"))
            if match:
                assert int(match.group(1)) == node_id, out
                assert match.group(3) == f"{m.host}:{m.client_port}", out
                return
            if m.proc.poll() is not None:
                raise AssertionError(
                    f"member {node_id} exited with {m.proc.returncode} before it was ready:\n"
                    f"{self.log_tail(node_id)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"member {node_id} not ready within {timeout}s:\n{self.log_tail(node_id)}"
                )
            await asyncio.sleep(0.02)

    async def start_all(self, timeout: float = 30.0) -> None:
        """Start every member (concurrently) and wait until all are ready and each has written
        its name record (`hamgr store` writes it once the store takes writes): tests that
        compare store revisions must not see those writes land in the middle."""
        await asyncio.gather(*(self.start(i) for i in self.members))
        prefix = records_prefix(self.cluster_id).encode()
        deadline = time.monotonic() + timeout
        options: dict[str, object] = {}
        if self._tls is not None:
            certfile, keyfile, cafile = (str(f) for f in self._tls)
            options["ssl_context"] = client_ssl_context((certfile, keyfile, cafile))
        async with self.client(**options) as client:
            while True:
                with contextlib.suppress(StoreError):
                    got = await client.get(prefix, prefix=True, count_only=True)
                    if got.count >= len(self.members):
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the members' name records not all written in {timeout}s")
                await asyncio.sleep(0.1)

    def _pid(self, node_id: int) -> int:
        m = self.members[node_id]
        if m.proc is None or m.proc.poll() is not None:
            raise RuntimeError(f"member {node_id} is not running")
        return m.proc.pid

    def kill9(self, node_id: int) -> None:
        """SIGKILL the member and reap it."""
        m = self.members[node_id]
        os.kill(self._pid(node_id), signal.SIGKILL)
        assert m.proc is not None
        m.proc.wait(timeout=10)
        m.stopped = False

    def stop(self, node_id: int) -> None:
        """Freeze the member (SIGSTOP)."""
        os.kill(self._pid(node_id), signal.SIGSTOP)
        self.members[node_id].stopped = True

    def cont(self, node_id: int) -> None:
        """Thaw a frozen member (SIGCONT)."""
        os.kill(self._pid(node_id), signal.SIGCONT)
        self.members[node_id].stopped = False

    def terminate(self, node_id: int, timeout: float = 10.0) -> int:
        """SIGTERM the member; returns its exit status (it must exit within `timeout`)."""
        m = self.members[node_id]
        os.kill(self._pid(node_id), signal.SIGTERM)
        assert m.proc is not None
        return m.proc.wait(timeout=timeout)

    async def restart(self, node_id: int) -> None:
        """Kill the member if it runs (SIGKILL), then start it again on the same data."""
        if self.members[node_id].running:
            self.kill9(node_id)
        await self.start(node_id)

    def kill_all(self) -> None:
        """SIGKILL every member still running, by PID, and reap it."""
        for m in self.members.values():
            if m.proc is not None and m.proc.poll() is None:
                os.kill(m.proc.pid, signal.SIGKILL)
                m.proc.wait(timeout=10)
            if m.proc is not None and m.proc.stdout is not None:
                m.proc.stdout.close()
            m.stopped = False

    async def close(self) -> None:
        """Close clients and kill every process left."""
        try:
            if self._status_client is not None:
                await self._status_client.close()
        finally:
            self.kill_all()

    def raft_addresses(self) -> dict[int, Address]:
        """Where each member really listens for its peers (node id -> (host, port))."""
        return {i: m.raft_address for i, m in self.members.items()}

    def route_peers(self, routes: Mapping[int, Mapping[int, Address]]) -> None:
        """Make member a dial member b's Raft port at `routes[a][b]` (e.g. a proxy), for every
        pair given; pairs not given stay direct. Call before the members start (it rewrites
        their configuration files)."""
        running = [i for i, m in self.members.items() if m.running]
        if running:
            raise RuntimeError(f"route_peers: members {running} already run; call it before")
        for a, peers in routes.items():
            if a not in self.members:
                raise KeyError(f"route_peers: unknown member {a}; members are {list(self.members)}")
            for b, address in peers.items():
                if b not in self.members or b == a:
                    raise KeyError(f"route_peers: member {a} has no peer {b}")
                self._routes.setdefault(a, {})[b] = (address[0], int(address[1]))
        for m in self.members.values():
            self._write_config(m)

    # -- clients and state

    def client(self, ids: list[int] | None = None, **options: object) -> StoreClient:
        """A StoreClient to the given members' client addresses (default: all)."""
        chosen = ids if ids is not None else list(self.members)
        options.setdefault("timeout", self.client_timeout)
        options.setdefault("attempt_timeout", self.attempt_timeout)
        return StoreClient(
            [self.members[i].client_address for i in chosen],
            self.cluster_id,
            self.secret,
            **options,  # type: ignore[arg-type]
        )

    async def status(self, node_id: int) -> MemberStatus:
        """One member's own status (asked once)."""
        if self._status_client is None:
            self._status_client = self.client(timeout=1.0, connect_timeout=0.5)
        return await self._status_client.status(self.members[node_id].client_address)

    def live(self) -> list[int]:
        """Members running and not frozen."""
        return [i for i, m in self.members.items() if m.running and not m.stopped]

    async def leader(self, timeout: float = 15.0, among: list[int] | None = None) -> int:
        """Wait until exactly one live member leads and every live member agrees; its id.
        With `among`, only those members (the live ones of them) are asked and must agree:
        the majority side of a partition."""
        deadline = time.monotonic() + timeout
        seen: dict[int, str] = {}
        while True:
            live = [i for i in self.live() if among is None or i in among]
            answers = await asyncio.gather(*(self.status(i) for i in live), return_exceptions=True)
            statuses = {i: a for i, a in zip(live, answers, strict=True)}
            seen = {i: repr(a) for i, a in statuses.items()}
            leaders = [
                i for i, s in statuses.items() if isinstance(s, MemberStatus) and s.role == "leader"
            ]
            if len(leaders) == 1 and all(
                isinstance(s, MemberStatus) and s.leader == leaders[0] for s in statuses.values()
            ):
                return leaders[0]
            for s in statuses.values():
                if not isinstance(s, MemberStatus | StoreError):
                    raise s  # not a store error: a bug, show it
            if time.monotonic() > deadline:
                raise AssertionError(f"no agreed leader within {timeout}s: {seen}")
            await asyncio.sleep(0.05)

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        """The last lines of a member's log."""
        try:
            text = self.members[node_id].log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
