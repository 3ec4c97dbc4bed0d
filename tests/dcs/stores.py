"""Real stores for the Dcs contract tests: three RaftNode members with their rpc servers in the
test's event loop (127.0.0.91-93), and a three-member etcd cluster of real processes
(127.0.0.81-83, killed by PID afterwards). Each offers what `tests/dcs/contract.py` needs:
sessions, a raw write (to plant malformed values) and read (a key's mod revision and lease), and
the revisions at which keys were deleted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hamgr.dcs.common import MONOTONIC, Timer, prefix_end
from hamgr.dcs.etcd import EtcdDcs
from hamgr.dcs.raft import RaftDcs
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.kv.kvwatch import EventType
from hamgr.raft.server.node import RaftNode
from tests.raft.inloop import InLoopStore, free_port

TTL = 2.0
RETRY_TIMEOUT = 1.5


# --- the embedded Raft store ----------------------------------------------------------------------

RAFT_CLUSTER = "test-dcs"
RAFT_SECRET = b"d" * 32
RAFT_TICK = 0.05
RAFT_ELECTION_TICK = 8  # election timeout 0.4 s (randomized in [0.4, 0.8))


class RaftStore(InLoopStore):
    """Three RaftNodes, each with a StoreRpcServer, on 127.0.0.91-93."""

    def __init__(self, root: Path) -> None:
        hosts = {i: f"127.0.0.{90 + i}" for i in (1, 2, 3)}
        super().__init__(
            root,
            hosts,
            RAFT_CLUSTER,
            RAFT_SECRET,
            tick=RAFT_TICK,
            election_tick=RAFT_ELECTION_TICK,
        )
        self.ttl = TTL
        self.use_local_node = True
        self._next_node = 0

    async def start_all(self) -> None:
        await super().start_all()
        await self.leader()

    def _local(self) -> RaftNode | None:
        if not self.use_local_node:
            return None
        running = [self.nodes[i] for i in sorted(self.nodes)]
        self._next_node += 1
        return running[self._next_node % len(running)]

    def session(self, scope: str, name: str, *, retry_timeout: float = RETRY_TIMEOUT) -> RaftDcs:
        return RaftDcs(
            scope,
            name,
            self.client(),
            local_node=self._local(),
            ttl=self.ttl,
            retry_timeout=retry_timeout,
            poll_interval=0.05,
        )

    def unreachable(
        self, scope: str, name: str, retry_timeout: float, timer: Timer = MONOTONIC
    ) -> RaftDcs:
        host = "127.0.0.99"
        client = StoreClient([(host, free_port(host))], RAFT_CLUSTER, RAFT_SECRET)
        return RaftDcs(scope, name, client, ttl=self.ttl, retry_timeout=retry_timeout, timer=timer)

    async def raw_put(self, key: str, value: bytes) -> None:
        async with self.client() as client:
            await client.put(key.encode(), value)

    async def raw_get(self, key: str) -> tuple[bytes, int, int] | None:
        """The key's (value, mod revision, lease), read linearizably; None when absent."""
        async with self.client() as client:
            result = await client.get(key.encode())
        return next(((kv.value, kv.mod_revision, kv.lease) for kv in result.kvs), None)

    async def deletions(
        self, prefix: str, since: int, keys: set[str], timeout: float
    ) -> dict[str, int]:
        """The revision at which each of `keys` was last deleted at or after `since`."""
        node = next(iter(self.nodes.values()))
        stream = node.watch(prefix.encode(), prefix=True, from_revision=since)
        found: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        try:
            while not keys <= found.keys() and time.monotonic() < deadline:
                try:
                    events = await stream.next(max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
                for e in events:
                    if e.type is EventType.DELETE:
                        found[e.kv.key.decode()] = e.revision
        finally:
            stream.cancel()
        return found


# --- an etcd cluster of real processes ------------------------------------------------------------


def etcd_binary() -> str | None:
    """The etcd server binary (HAMGR_ETCD_BIN, else on PATH, else /usr/bin/etcd)."""
    for candidate in (os.environ.get("HAMGR_ETCD_BIN"), shutil.which("etcd"), "/usr/bin/etcd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def running_etcd(root: Path, first_host: int) -> Iterator[EtcdStore]:
    """A 3-member etcd on 127.0.0.<first_host>.. with data under `root`, ready to answer;
    stopped by PID on exit. Skips the test, saying why, when no etcd binary is installed."""
    binary = etcd_binary()
    if binary is None:
        pytest.skip("no etcd server binary (install etcd-server, or set HAMGR_ETCD_BIN)")
    etcd = EtcdStore(root, binary, first_host=first_host)
    try:
        etcd.start_all()
        asyncio.run(etcd.wait_ready())
        yield etcd
    finally:
        etcd.stop_all()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class EtcdStore:
    """`size` etcd members on 127.0.0.81.., data under `root`; stopped by PID in `stop_all`."""

    def __init__(
        self,
        root: Path,
        binary: str,
        size: int = 3,
        first_host: int = 81,
        tls_dir: Path | None = None,
    ) -> None:
        """With `tls_dir` (``hamgr certs`` output with a certificate per member name and one
        named ``client``) clients must speak https with a client certificate of that CA
        (etcd's --client-cert-auth); the peers still talk plain HTTP among themselves."""
        self.root = root
        self.binary = binary
        self.ttl = TTL
        self.names = [f"e{i}" for i in range(1, size + 1)]
        self.hosts = {n: f"127.0.0.{first_host + i}" for i, n in enumerate(self.names)}
        self.tls_dir = tls_dir
        scheme = "https" if tls_dir is not None else "http"
        self.client_urls = {n: f"{scheme}://{h}:{free_port(h)}" for n, h in self.hosts.items()}
        self.peer_urls = {n: f"http://{h}:{free_port(h)}" for n, h in self.hosts.items()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.username: str | None = None
        self.password: str | None = None

    @property
    def endpoints(self) -> list[str]:
        """host:port of every member."""
        return [url.partition("://")[2] for url in self.client_urls.values()]

    @property
    def tls_options(self) -> dict[str, Any]:
        """The EtcdDcs/EtcdConfig TLS keyword arguments of a client of this store."""
        if self.tls_dir is None:
            return {}
        return {
            "protocol": "https",
            "cacert": str(self.tls_dir / "ca.crt"),
            "cert": str(self.tls_dir / "client.crt"),
            "key": str(self.tls_dir / "client.key"),
        }

    def _tls_flags(self, name: str) -> list[str]:
        if self.tls_dir is None:
            return []
        return [
            "--cert-file", str(self.tls_dir / f"{name}.crt"),
            "--key-file", str(self.tls_dir / f"{name}.key"),
            "--trusted-ca-file", str(self.tls_dir / "ca.crt"),
            "--client-cert-auth",
        ]  # fmt: skip

    def start_all(self) -> None:
        cluster = ",".join(f"{n}={self.peer_urls[n]}" for n in self.names)
        for n in self.names:
            log = open(self.root / f"{n}.log", "wb")  # noqa: SIM115 - the child keeps it
            self.procs[n] = subprocess.Popen(
                [
                    self.binary,
                    "--name", n,
                    "--data-dir", str(self.root / n),
                    "--listen-client-urls", self.client_urls[n],
                    "--advertise-client-urls", self.client_urls[n],
                    "--listen-peer-urls", self.peer_urls[n],
                    "--initial-advertise-peer-urls", self.peer_urls[n],
                    "--initial-cluster", cluster,
                    "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"hamgr-test-{os.getpid()}",
                    "--heartbeat-interval", "50",
                    "--election-timeout", "500",
                    "--logger", "zap",
                    "--log-level", "warn",
                    *self._tls_flags(n),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            log.close()

    def stop(self, name: str, grace: float = 5.0) -> None:
        """SIGTERM the member by PID, SIGKILL it if it has not gone within `grace`."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)

    def stop_all(self) -> None:
        for n in list(self.procs):
            self.stop(n)

    async def post(self, path: str, body: dict[str, Any], url: str | None = None) -> Any:
        """One gateway call to the first member (as root when auth is on)."""
        headers: dict[str, str] = {}
        base = url or next(iter(self.client_urls.values()))
        ssl_ctx: ssl.SSLContext | bool = True
        if self.tls_dir is not None:
            ssl_ctx = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
            ssl_ctx.load_cert_chain(self.tls_dir / "client.crt", self.tls_dir / "client.key")
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5), connector=aiohttp.TCPConnector(ssl=ssl_ctx)
        ) as http:
            if self.username is not None:
                auth = {"name": self.username, "password": self.password}
                async with http.post(base + "/v3/auth/authenticate", json=auth) as resp:
                    headers["Authorization"] = (await resp.json(content_type=None))["token"]
            async with http.post(base + path, json=body, headers=headers) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise AssertionError(f"etcd {path}: {resp.status} {data}")
                return data

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every member answers a linearizable read (the cluster has a leader)."""
        deadline = time.monotonic() + timeout
        pending = set(self.names)
        last: object = None
        while pending:
            for n in list(pending):
                proc = self.procs[n]
                if proc.poll() is not None:
                    log = (self.root / f"{n}.log").read_text(errors="replace")[-2000:]
                    raise AssertionError(f"etcd {n} exited with {proc.returncode}:\n{log}")
                try:
                    await self.post("/v3/kv/range", {"key": _b64(b"ready")}, self.client_urls[n])
                    pending.discard(n)
                except (aiohttp.ClientError, AssertionError, TimeoutError, OSError) as exc:
                    last = exc
            if pending:
                if time.monotonic() > deadline:
                    raise AssertionError(f"etcd members {sorted(pending)} not ready: {last}")
                await asyncio.sleep(0.1)

    def session(self, scope: str, name: str, *, retry_timeout: float = RETRY_TIMEOUT) -> EtcdDcs:
        return EtcdDcs(
            scope,
            name,
            self.endpoints,
            username=self.username,
            password=self.password,
            ttl=self.ttl,
            retry_timeout=retry_timeout,
            attempt_timeout=0.5,
            **self.tls_options,
        )

    def unreachable(
        self, scope: str, name: str, retry_timeout: float, timer: Timer = MONOTONIC
    ) -> EtcdDcs:
        host = "127.0.0.89"
        return EtcdDcs(
            scope,
            name,
            [f"{host}:{free_port(host)}"],
            ttl=self.ttl,
            retry_timeout=retry_timeout,
            timer=timer,
        )

    async def raw_put(self, key: str, value: bytes) -> None:
        await self.post("/v3/kv/put", {"key": _b64(key.encode()), "value": _b64(value)})

    async def raw_get(self, key: str) -> tuple[bytes, int, int] | None:
        """The key's (value, mod revision, lease), read linearizably; None when absent."""
        data = await self.post("/v3/kv/range", {"key": _b64(key.encode())})
        kvs = data.get("kvs") or []
        if not kvs:
            return None
        kv = kvs[0]
        value = base64.b64decode(kv.get("value", ""))
        return value, int(kv["mod_revision"]), int(kv.get("lease", 0))

    async def deletions(
        self, prefix: str, since: int, keys: set[str], timeout: float
    ) -> dict[str, int]:
        """The revision at which each of `keys` was last deleted at or after `since` (a watch
        from `since` replays the history)."""
        raw = prefix.encode()
        body = {
            "create_request": {
                "key": _b64(raw),
                "range_end": _b64(prefix_end(raw)),
                "start_revision": str(since),
                "filters": ["NOPUT"],
            }
        }
        found: dict[str, int] = {}
        url = next(iter(self.client_urls.values()))
        try:
            async with (
                asyncio.timeout(timeout),
                aiohttp.ClientSession() as http,
                http.post(url + "/v3/watch", json=body) as resp,
            ):
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        result = json.loads(line).get("result", {})
                        for e in result.get("events", []):
                            key = base64.b64decode(e["kv"]["key"]).decode()
                            found[key] = int(e["kv"]["mod_revision"])
                    if keys <= found.keys():
                        break
        except TimeoutError:
            pass
        return found

    async def enable_auth(self, user: str, password: str, prefix: str) -> None:
        """Create root and `user` (read-write under `prefix`) and turn authentication on."""
        raw = prefix.encode()
        await self.post("/v3/auth/user/add", {"name": "root", "password": "root-pw"})
        await self.post("/v3/auth/user/grant", {"user": "root", "role": "root"})
        await self.post("/v3/auth/role/add", {"name": "hamgr"})
        perm = {"permType": "READWRITE", "key": _b64(raw), "range_end": _b64(prefix_end(raw))}
        await self.post("/v3/auth/role/grant", {"name": "hamgr", "perm": perm})
        await self.post("/v3/auth/user/add", {"name": user, "password": password})
        await self.post("/v3/auth/user/grant", {"user": user, "role": "hamgr"})
        await self.post("/v3/auth/enable", {})
        self.username, self.password = "root", "root-pw"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pids_alive(store: EtcdStore) -> list[int]:
    """PIDs of the store's members still running (for the cleanup check)."""
    return [p.pid for p in store.procs.values() if _alive(p.pid)]
