"""Benchmark of hamgr's Raft KV store against pysyncobj and etcd, side by side, in one run.

    .venv/bin/python bench/raft_kv.py [--seconds S]

Three members on loopback, 256-byte values:
- in-process callers on the leader's process: hamgr's RaftNode (fsync on) against a 3-node
  pysyncobj ReplDict in its fastest configuration (appendEntriesUseBatch=False) and its default
  one (pysyncobj never fsyncs); pysyncobj is installed from PyPI into this venv when missing;
- callers through the network: hamgr's store processes through its client against a 3-member
  etcd through its HTTP/JSON API (POST /v3/kv/put, as Patroni talks to it), both from aiohttp-
  based asyncio clients in this process; the etcd column reads "na" without an etcd binary.
Prints put ops/s with 1 and 32 concurrent callers and p50/p99 latency for each; for hamgr also
the lease keepalive p99 and the time to elect a new leader after kill -9 of the leader. The last
line is `hamgr_vs_pysyncobj=R1 hamgr_vs_etcd=R2 hamgr_p99_ms=P`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kvload import VALUE, Figures, run_async  # noqa: E402
from netbench import network_hamgr  # noqa: E402
from procs import Child, Procs, exit_on_sigterm  # noqa: E402

PY = sys.executable


def _collect_results(children: list[Child], want: int, timeout: float) -> dict[int, Figures]:
    """Read `result {json}` lines from whichever child runs the load."""
    out: dict[int, Figures] = {}
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for child in children:
            while not child.lines.empty():
                line = child.lines.get()
                if line.startswith("result "):
                    fig = Figures(**json.loads(line[len("result ") :]))
                    out[fig.callers] = fig
        time.sleep(0.05)
    if len(out) < want:
        raise TimeoutError(f"only {len(out)} of {want} measurements arrived")
    return out


def inprocess_hamgr(seconds: float, tmp: Path) -> dict[int, Figures]:
    members = {i: f"127.0.0.6{i}:{7400 + i}" for i in (1, 2, 3)}
    spec = ",".join(f"{i}={a}" for i, a in members.items())
    with Procs() as procs:
        kids = [
            procs.start(
                f"hamgr-{i}",
                [
                    PY,
                    str(HERE / "member_hamgr.py"),
                    "--id",
                    str(i),
                    "--dir",
                    str(tmp / f"h{i}"),
                    "--members",
                    spec,
                    "--seconds",
                    str(seconds),
                ],
                env={"PYTHONPATH": f"{HERE.parent}:{HERE}"},
            )
            for i in members
        ]
        return _collect_results(kids, 2, 2 * seconds + 60)


def ensure_pysyncobj() -> None:
    if importlib.util.find_spec("pysyncobj") is None:
        print("installing pysyncobj from PyPI into this venv ...", flush=True)
        subprocess.run([PY, "-m", "pip", "install", "-q", "pysyncobj"], check=True)


def inprocess_pysyncobj(seconds: float, fast: bool) -> dict[int, Figures]:
    addrs = [f"127.0.0.6{4 + n}:{7500 + n + (10 if fast else 0)}" for n in range(3)]
    with Procs() as procs:
        kids = []
        for n, me in enumerate(addrs):
            argv = [
                PY,
                str(HERE / "member_pysyncobj.py"),
                "--self",
                me,
                "--partners",
                ",".join(a for a in addrs if a != me),
                "--seconds",
                str(seconds),
            ]
            kids.append(
                procs.start(
                    f"pso-{n}", argv + (["--fast"] if fast else []), env={"PYTHONPATH": str(HERE)}
                )
            )
        return _collect_results(kids, 2, 2 * seconds + 60)


async def _etcd_load(seconds: float, endpoints: list[str]) -> dict[int, Figures]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        leader_url = endpoints[0]
        for url in endpoints:
            async with http.post(f"{url}/v3/maintenance/status", json={}) as r:
                st = await r.json()
            if st.get("leader") == st.get("header", {}).get("member_id"):
                leader_url = url
        value = base64.b64encode(VALUE).decode()
        out = {}
        for callers in (1, 32):

            async def put(c: int, n: int) -> None:
                key = base64.b64encode(b"k%d-%d" % (c, n % 1000)).decode()
                async with http.post(
                    f"{leader_url}/v3/kv/put", json={"key": key, "value": value}
                ) as r:
                    r.raise_for_status()
                    await r.read()

            out[callers] = await run_async(put, callers, seconds)
        return out


def network_etcd(seconds: float, tmp: Path) -> dict[int, Figures] | None:
    etcd = shutil.which("etcd")
    if etcd is None:
        return None
    names = {n: f"127.0.0.7{n}" for n in (1, 2, 3)}
    cluster = ",".join(f"e{n}=http://{h}:2380" for n, h in names.items())
    with Procs() as procs:
        for n, host in names.items():
            procs.start(
                f"etcd-{n}",
                [
                    etcd,
                    "--name",
                    f"e{n}",
                    "--data-dir",
                    str(tmp / f"etcd{n}"),
                    "--listen-client-urls",
                    f"http://{host}:2379",
                    "--advertise-client-urls",
                    f"http://{host}:2379",
                    "--listen-peer-urls",
                    f"http://{host}:2380",
                    "--initial-advertise-peer-urls",
                    f"http://{host}:2380",
                    "--initial-cluster",
                    cluster,
                    "--initial-cluster-state",
                    "new",
                    "--log-level",
                    "error",
                ],
            )
        endpoints = [f"http://{h}:2379" for h in names.values()]
        _wait_etcd(endpoints, 60)
        return asyncio.run(_etcd_load(seconds, endpoints))


def _wait_etcd(endpoints: list[str], timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{endpoints[0]}/health", timeout=1) as r:
                if json.loads(r.read()).get("health") == "true":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("etcd did not become healthy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    args = ap.parse_args()
    if args.seconds <= 0:
        ap.error("--seconds must be positive")
    ensure_pysyncobj()
    exit_on_sigterm()

    with tempfile.TemporaryDirectory(prefix="hamgr-bench-") as tmpname:
        tmp = Path(tmpname)
        print(f"3 members on loopback, 256-byte values, {args.seconds:g} s per measurement")
        print("-- in-process callers on the leader's process")
        ham = inprocess_hamgr(args.seconds, tmp)
        pso_fast = inprocess_pysyncobj(args.seconds, fast=True)
        pso_def = inprocess_pysyncobj(args.seconds, fast=False)
        for label, figs in (
            ("hamgr RaftNode (fsync on)", ham),
            ("pysyncobj fastest (no fsync)", pso_fast),
            ("pysyncobj default (no fsync)", pso_def),
        ):
            for callers in (1, 32):
                print(figs[callers].line(label))
        print("-- callers through the network")
        net, extras = network_hamgr(args.seconds, tmp)
        etcd = network_etcd(args.seconds, tmp)
        for callers in (1, 32):
            print(net[callers].line("hamgr store (client)"))
        if etcd is None:
            print("etcd                               na (no etcd binary; Debian: etcd-server)")
        else:
            for callers in (1, 32):
                print(etcd[callers].line("etcd 3 members (HTTP/JSON)"))
        print(f"hamgr lease keepalive p99={extras['keepalive_p99_ms']:.2f}ms")
        print(f"hamgr new leader after kill -9 of the leader: {extras['election_s']:.2f}s")
    r1 = ham[32].ops_per_s / pso_fast[32].ops_per_s
    r2 = "na" if etcd is None else f"{net[32].ops_per_s / etcd[32].ops_per_s:.2f}"
    print(f"hamgr_vs_pysyncobj={r1:.2f} hamgr_vs_etcd={r2} hamgr_p99_ms={net[32].p99_ms:.2f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
