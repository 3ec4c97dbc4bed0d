"""The network half of bench/raft_kv.py for hamgr: three `hamgr store` processes and a
StoreClient in this process; also the lease keepalive latency and the time to a new leader
after kill -9 of the leader.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import yaml
from kvload import VALUE, Figures, figures, run_async
from procs import Child, Procs

from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import StoreError

HOSTS = {1: "127.0.0.101", 2: "127.0.0.102", 3: "127.0.0.103"}
RAFT_PORT, CLIENT_PORT = 7601, 7701
SECRET = "bench-secret-0123456789abcdef"


def _write_configs(tmp: Path) -> dict[int, Path]:
    secret_file = tmp / "secret"
    secret_file.write_text(SECRET)
    os.chmod(secret_file, 0o600)
    paths = {}
    for i, host in HOSTS.items():
        peers = [
            {"node_id": j, "address": f"{h}:{RAFT_PORT}", "client_address": f"{h}:{CLIENT_PORT}"}
            for j, h in HOSTS.items()
            if j != i
        ]
        config = {
            "scope": "bench",
            "name": f"member{i}",
            "log": {"level": "WARNING"},
            "store": {
                "raft": {
                    "data_dir": str(tmp / f"store{i}"),
                    "node_id": i,
                    "listen": f"{host}:{RAFT_PORT}",
                    "client_listen": f"{host}:{CLIENT_PORT}",
                    "secret_file": str(secret_file),
                    "peers": peers,
                }
            },
            "postgresql": {"data_dir": str(tmp / f"pg{i}")},
        }
        paths[i] = tmp / f"store{i}.yaml"
        paths[i].write_text(yaml.safe_dump(config))
    return paths


async def _leader(client: StoreClient, deadline: float) -> int:
    while time.monotonic() < deadline:
        for st in (await client.statuses()).values():
            if not isinstance(st, StoreError) and st.role == "leader":
                return st.id
        await asyncio.sleep(0.05)
    raise TimeoutError("no leader")


async def _measure(
    seconds: float, procs: Procs, kids: dict[int, Child]
) -> tuple[dict[int, Figures], dict[str, float]]:
    endpoints = [(h, CLIENT_PORT) for h in HOSTS.values()]
    async with StoreClient(endpoints, "bench", SECRET.encode()) as client:
        await _leader(client, time.monotonic() + 30)
        out = {}
        for callers in (1, 32):

            async def put(c: int, n: int) -> None:
                await client.put(b"k%d-%d" % (c, n % 1000), VALUE)

            out[callers] = await run_async(put, callers, seconds)
        lease = await client.lease_grant(10.0)
        latencies = []
        stop_at = time.monotonic() + max(1.0, seconds / 2)
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            await client.lease_keepalive(lease.lease_id)
            latencies.append(time.monotonic() - t0)
        keepalive = figures(1, latencies, seconds / 2)
        leader = await _leader(client, time.monotonic() + 10)
        killed_at = time.monotonic()
        procs.kill(kids[leader])
        while True:
            try:
                await client.put(b"after-failover", VALUE, timeout=2.0)
                break
            except StoreError:
                if time.monotonic() - killed_at > 60:
                    raise
        election = time.monotonic() - killed_at
    return out, {"keepalive_p99_ms": keepalive.p99_ms, "election_s": election}


def network_hamgr(seconds: float, tmp: Path) -> tuple[dict[int, Figures], dict[str, float]]:
    """Put figures for 1 and 32 callers, plus keepalive p99 and re-election time."""
    configs = _write_configs(tmp)
    with Procs() as procs:
        kids = {
            i: procs.start(
                f"store-{i}", [sys.executable, "-m", "hamgr", "store", "--config", str(p)]
            )
            for i, p in configs.items()
        }
        for child in kids.values():
            child.wait_line(lambda line: line.startswith("hamgr store:"), 30)
        return asyncio.run(_measure(seconds, procs, kids))
