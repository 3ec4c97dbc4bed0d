"""Idle footprint: what each database host pays for its HA agent while nothing happens.

    flock /tmp/hamgr-it.lock .venv/bin/python bench/footprint.py [--window 30] [--warmup 10]
        [--no-patroni] [--patroni-venv DIR] [--keep]

Starts, in one run and side by side on the same machine:
- hamgr: the local 3-member cluster of bench/hacluster.py (agents pg1..pg3 on 127.0.0.151-153,
  default timing profile: loop_wait 1 s, ttl 6 s), each agent with its embedded store member
  and its fencer, PostgreSQL started by the agents as the `postgres` user;
- Patroni + etcd: three etcd members (Debian's `etcd-server`, on 127.0.0.161-163:2379/2380)
  and three Patroni members (PyPI `patroni[etcd3]`, installed into `--patroni-venv` when it
  is not there yet; Patroni's defaults: loop_wait 10 s, ttl 30 s) on the same addresses, each
  running its PostgreSQL 15 (/usr/lib/postgresql/15/bin) as `postgres`, with the same small
  server parameters as the hamgr members. Without an etcd binary or without Patroni (no
  network to PyPI), this half is skipped and the reason printed.

Once both clusters have one primary and two streaming standbys, and `--warmup` seconds more
have passed, every figure is taken over the same `--window` seconds, per host:
- CPU % of one core: utime + stime (all threads, and children it reaped) from
  /proc/<pid>/stat of the agent and the fencer (with the fencer's guard), versus the Patroni
  process (with any non-PostgreSQL child) and the etcd member; by PID;
- RSS (VmRSS) at the end of the window, the same processes;
- new PostgreSQL sessions per second on that host's server (pg_stat_database.sessions, summed
  over databases, read through one connection held open for the window, so it counts others');
- store fsyncs per second: the hamgr agent's `hamgr_store_fsync_duration_seconds_count`
  (GET /metrics: one per durable save of the Raft log), etcd's
  `etcd_disk_wal_fsync_duration_seconds_count`.

The last line printed is exactly `hamgr_vs_patroni_cpu=R hamgr_rss_mb=M`: R is the mean per-host
CPU of hamgr (agent + fencer) over the mean per-host CPU of Patroni + etcd (nan without the
Patroni half), M the mean per-host RSS of hamgr's agent + fencer in MB. Run it under the shared
lock: other tests running at once skew every figure. Everything started here is killed by PID on
exit (Patroni first gets SIGTERM and a few seconds to stop its PostgreSQL); the work directory is
removed unless `--keep` is given or something failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
import yaml  # noqa: E402
from hacluster import PASSWORD, SMALL_PG, Cluster, _children, _is_postmaster_of  # noqa: E402
from procs import exit_on_sigterm  # noqa: E402
from procstat import (  # noqa: E402
    cpu_percent,
    cpu_ticks,
    descendants,
    mean,
    metric_sum,
    process_tree,
    ratio,
    read_stat,
    rss_kb,
)

HAMGR_HOSTS = ["127.0.0.151", "127.0.0.152", "127.0.0.153"]
PATRONI_HOSTS = ["127.0.0.161", "127.0.0.162", "127.0.0.163"]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PATRONI_SPEC = "patroni[etcd3]"
SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_PATRONI_VENV = Path(tempfile.gettempdir()) / "hamgr-footprint-patroni"
HAMGR_FSYNCS = "hamgr_store_fsync_duration_seconds_count"
ETCD_FSYNCS = "etcd_disk_wal_fsync_duration_seconds_count"
SESSIONS_SQL = "SELECT coalesce(sum(sessions), 0)::bigint FROM pg_stat_database"
STOP_GRACE = 15.0
"""Seconds Patroni gets after SIGTERM to stop its PostgreSQL before everything is killed."""


class SkipHalf(Exception):
    """The Patroni half cannot run here; the message says why."""


@dataclass
class Host:
    """One database host of either system: the processes charged to it and where to read."""

    system: str
    name: str
    roots: dict[str, int]
    """label -> PID of each process charged to the host (with its non-PostgreSQL children)."""
    pg: Callable[[], psycopg.Connection[Any]]
    metrics_url: str
    fsync_metric: str
    role: str = "?"
    conn: psycopg.Connection[Any] | None = None
    start: dict[str, dict[int, int]] = field(default_factory=dict)
    sessions0: float = math.nan
    fsyncs0: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    sessions_per_s: float = math.nan
    fsyncs_per_s: float = math.nan


def group_ticks(roots: dict[str, int]) -> dict[str, dict[int, int]]:
    """CPU ticks of each labelled process and of its descendants that are not PostgreSQL."""
    tree = process_tree()
    parents = {pid: ppid for pid, (ppid, _) in tree.items()}
    out: dict[str, dict[int, int]] = {}
    for label, root in roots.items():
        pids = [root] + [p for p in descendants(root, parents) if tree[p][1] != "postgres"]
        out[label] = {}
        for pid in pids:
            stat = read_stat(pid)
            if stat is not None:
                out[label][pid] = cpu_ticks(stat)
    return out


def group_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += rss_kb(Path(f"/proc/{pid}/status").read_text())
    return total / 1024


def http_text(url: str, timeout: float = 3.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def counter(host: Host) -> float:
    text = http_text(host.metrics_url)
    return math.nan if text is None else metric_sum(text, host.fsync_metric)


def sessions(host: Host) -> float:
    assert host.conn is not None
    row = host.conn.execute(SESSIONS_SQL).fetchone()
    return float(row[0]) if row else math.nan


def measure(hosts: list[Host], window: float) -> None:
    """Take every figure of every host over the same `window` seconds."""
    for h in hosts:
        h.conn = h.pg()
    try:
        for h in hosts:
            h.sessions0, h.fsyncs0 = sessions(h), counter(h)
            h.start = group_ticks(h.roots)
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        for h in hosts:
            end = group_ticks(h.roots)
            for label, pids in end.items():
                before = h.start.get(label, {})
                ticks = sum(t - before.get(pid, 0) for pid, t in pids.items())
                h.cpu[label] = cpu_percent(ticks, elapsed)
                h.rss_mb[label] = group_rss_mb(list(pids))
            h.sessions_per_s = (sessions(h) - h.sessions0) / elapsed
            h.fsyncs_per_s = (counter(h) - h.fsyncs0) / elapsed
    finally:
        for h in hosts:
            if h.conn is not None:
                h.conn.close()


def host_line(h: Host) -> str:
    parts = ", ".join(f"{k} {h.cpu[k]:.2f}% {h.rss_mb[k]:.1f} MB" for k in h.cpu)
    return (
        f"{h.system:8} {h.name} ({h.role}): {parts}; total {sum(h.cpu.values()):.2f}% "
        f"{sum(h.rss_mb.values()):.1f} MB; new PG sessions/s {h.sessions_per_s:.2f}; "
        f"store fsyncs/s {h.fsyncs_per_s:.2f}"
    )


def summary(system: str, hosts: list[Host]) -> tuple[float, float]:
    """Print the per-host means of one system; (mean CPU %, mean RSS MB)."""
    cpu = mean(sum(h.cpu.values()) for h in hosts)
    rss = mean(sum(h.rss_mb.values()) for h in hosts)
    sess = mean(h.sessions_per_s for h in hosts)
    fsyncs = mean(h.fsyncs_per_s for h in hosts)
    print(
        f"{system:8} per host (mean of {len(hosts)}): CPU {cpu:.2f}% of one core, RSS "
        f"{rss:.1f} MB, new PG sessions/s {sess:.2f}, store fsyncs/s {fsyncs:.2f}"
    )
    return cpu, rss


# -- hamgr ----------------------------------------------------------------------------------


def hamgr_hosts(cluster: Cluster) -> list[Host]:
    hosts = []
    for name, m in cluster.members.items():
        roots = {"agent": cluster.agent_pid(name)}
        fencer = cluster.fencer_pid(name)
        if fencer is not None:
            roots["fencer"] = fencer
        _, body = cluster.http(name, "/patroni")
        hosts.append(
            Host(
                "hamgr",
                name,
                roots,
                pg=lambda n=name: cluster.connect(n),  # type: ignore[misc]
                metrics_url=f"{m.api}/metrics",
                fsync_metric=HAMGR_FSYNCS,
                role=str(body.get("role")) if isinstance(body, dict) else "?",
            )
        )
    return hosts


# -- Patroni + etcd -------------------------------------------------------------------------


def ensure_patroni(venv: Path) -> Path:
    """The `patroni` executable of `venv`, installed there from PyPI if it is missing, and
    checked to run as `postgres` (a venv made from an interpreter under /root would not)."""
    exe = venv / "bin" / "patroni"
    if not exe.exists():
        install_patroni(venv)
    if not exe.exists():
        raise SkipHalf(f"{exe} is missing after pip install {PATRONI_SPEC}")
    user = pwd.getpwnam("postgres")
    try:
        done = subprocess.run(
            [str(exe), "--version"],
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SkipHalf(f"{exe} does not run as postgres: {exc}") from exc
    if done.returncode != 0:
        raise SkipHalf(f"{exe} --version as postgres failed: {done.stderr.strip()[-300:]}")
    print(f"{done.stdout.strip()} from {venv}", flush=True)
    return exe


def install_patroni(venv: Path) -> None:
    """A new venv at `venv` with Patroni from PyPI, made from the system's Python (which the
    postgres user can run)."""
    python = SYSTEM_PYTHON if Path(SYSTEM_PYTHON).exists() else sys.executable
    try:
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", PATRONI_SPEC, "psycopg[binary]"],
            check=True,
            timeout=600,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise SkipHalf(f"pip install {PATRONI_SPEC} failed: {exc.stderr.strip()[-500:]}") from exc
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise SkipHalf(f"could not install {PATRONI_SPEC} into {venv}: {exc}") from exc


class PatroniCluster:
    """Three etcd members and three Patroni members, each with its PostgreSQL, under `root`."""

    def __init__(self, root: Path, patroni: Path, etcd: str) -> None:
        self.root = root
        self.patroni = patroni
        self.etcd = etcd
        self.user = pwd.getpwnam("postgres")
        self.etcd_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.patroni_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.names = {f"p{i}": host for i, host in enumerate(PATRONI_HOSTS, start=1)}

    def data_dir(self, name: str) -> Path:
        return self.root / f"{name}-data"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)  # Patroni's initdb makes dirs
        initial = ",".join(f"{n}=http://{h}:2380" for n, h in self.names.items())
        for name, host in self.names.items():
            with open(self.root / f"etcd-{name}.log", "ab") as log:
                self.etcd_procs[name] = subprocess.Popen(
                    [
                        self.etcd,
                        *("--name", name, "--data-dir", str(self.root / f"etcd-{name}")),
                        *("--listen-client-urls", f"http://{host}:2379"),
                        *("--advertise-client-urls", f"http://{host}:2379"),
                        *("--listen-peer-urls", f"http://{host}:2380"),
                        *("--initial-advertise-peer-urls", f"http://{host}:2380"),
                        *("--initial-cluster", initial, "--initial-cluster-state", "new"),
                        *("--log-level", "warn"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for name, host in self.names.items():
            config = self.root / f"{name}.yaml"
            config.write_text(yaml.safe_dump(self._config(name, host), sort_keys=False))
            for sub in (f"{name}-log", f"{name}-sock"):
                (self.root / sub).mkdir(exist_ok=True)
                os.chown(self.root / sub, self.user.pw_uid, self.user.pw_gid)
            with open(self.root / f"{name}.out", "ab") as out:
                self.patroni_procs[name] = subprocess.Popen(
                    [str(self.patroni), str(config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    user=self.user.pw_uid,
                    group=self.user.pw_gid,
                    extra_groups=[],
                    cwd=str(self.root),
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root)},
                    start_new_session=True,
                )

    def _config(self, name: str, host: str) -> dict[str, Any]:
        return {
            "scope": "footprint",
            "name": name,
            "log": {"dir": str(self.root / f"{name}-log"), "level": "INFO"},
            "restapi": {"listen": f"{host}:8008", "connect_address": f"{host}:8008"},
            "etcd3": {"hosts": [f"{h}:2379" for h in self.names.values()]},
            "bootstrap": {
                "dcs": {"postgresql": {"use_pg_rewind": True, "parameters": dict(SMALL_PG)}},
                "initdb": [{"encoding": "UTF8"}],
            },
            "postgresql": {
                "listen": f"{host}:5432",
                "connect_address": f"{host}:5432",
                "data_dir": str(self.data_dir(name)),
                "bin_dir": str(PG_BIN),
                "pgpass": str(self.root / f"{name}-log" / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": PASSWORD},
                    "replication": {"username": "replicator", "password": PASSWORD},
                    "rewind": {"username": "rewinder", "password": PASSWORD},
                },
                "parameters": {"unix_socket_directories": str(self.root / f"{name}-sock")},
                "pg_hba": [
                    "local all all scram-sha-256",
                    "host all all 127.0.0.1/8 scram-sha-256",
                    "host replication replicator 127.0.0.1/8 scram-sha-256",
                ],
            },
        }

    def connect(self, name: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.names[name],
            port=5432,
            user="postgres",
            password=PASSWORD,
            dbname="postgres",
            connect_timeout=3,
            autocommit=True,
        )

    def role(self, name: str) -> str:
        text = http_text(f"http://{self.names[name]}:8008/patroni", 2.0)
        try:
            return str(json.loads(text or "{}").get("role", "?"))
        except ValueError:
            return "?"

    def settled(self) -> bool:
        """One primary whose pg_stat_replication shows both others streaming."""
        primaries = [n for n in self.names if self.role(n) in ("primary", "master")]
        if len(primaries) != 1:
            return False
        try:
            with self.connect(primaries[0]) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0] == len(self.names) - 1)

    def hosts(self) -> list[Host]:
        out = []
        for name, host in self.names.items():
            out.append(
                Host(
                    "patroni",
                    name,
                    {"patroni": self.patroni_procs[name].pid, "etcd": self.etcd_procs[name].pid},
                    pg=lambda n=name: self.connect(n),  # type: ignore[misc]
                    metrics_url=f"http://{host}:2379/metrics",
                    fsync_metric=ETCD_FSYNCS,
                    role=self.role(name),
                )
            )
        return out

    def log_tails(self, lines: int = 10) -> str:
        out = []
        for name in self.names:
            for f in (self.root / f"{name}-log" / "patroni.log", self.root / f"{name}.out"):
                with contextlib.suppress(OSError):
                    tail = f.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"--- {f}\n" + "\n".join(tail))
        return "\n".join(out)

    def close(self) -> None:
        """SIGTERM Patroni (it stops its PostgreSQL), bounded; then kill by PID whatever is
        left: Patroni, each member's postmaster with its children, etcd."""
        for p in self.patroni_procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for p in self.patroni_procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
        for p in [*self.patroni_procs.values(), *self.etcd_procs.values()]:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)
        for name in self.names:
            data_dir = self.data_dir(name)
            try:
                pm = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            except (OSError, ValueError):
                continue
            if _is_postmaster_of(pm, data_dir):
                for pid in [pm, *_children(pm)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def wait_until(probe: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--window", type=float, default=30.0, help="seconds measured (default 30)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds idle before (default 10)")
    ap.add_argument("--settle-timeout", type=float, default=180.0, help="seconds to come up")
    ap.add_argument("--no-patroni", action="store_true", help="measure hamgr alone")
    ap.add_argument(
        "--patroni-venv",
        default=str(DEFAULT_PATRONI_VENV),
        help=f"venv with Patroni, made there if missing (default {DEFAULT_PATRONI_VENV})",
    )
    ap.add_argument("--dir", help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    for name in ("window", "warmup", "settle_timeout"):
        if not getattr(args, name) > 0 and not (name == "warmup" and args.warmup == 0):
            ap.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    return args


def patroni_half(args: argparse.Namespace, root: Path) -> PatroniCluster:
    if args.no_patroni:
        raise SkipHalf("--no-patroni")
    etcd = shutil.which("etcd")
    if etcd is None:
        raise SkipHalf("no etcd binary (Debian: apt-get install etcd-server)")
    if not (PG_BIN / "postgres").exists():
        raise SkipHalf(f"no PostgreSQL 15 in {PG_BIN}")
    return PatroniCluster(root / "patroni", ensure_patroni(Path(args.patroni_venv)), etcd)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hamgr-footprint-"))
    os.chmod(root, 0o755)
    cluster = Cluster(root / "hamgr", HAMGR_HOSTS, profile="default", scope="footprint")
    patroni: PatroniCluster | None = None
    failed = True
    cpu_h = rss_h = cpu_p = math.nan
    try:
        try:
            patroni = patroni_half(args, root)
        except SkipHalf as exc:
            print(f"Patroni + etcd half skipped: {exc}", flush=True)
        started = time.monotonic()
        cluster.start_all()
        if patroni is not None:
            patroni.start()
        primary = cluster.wait_settled(args.settle_timeout)
        print(f"hamgr up in {time.monotonic() - started:.1f} s (primary {primary})", flush=True)
        if patroni is not None:
            left = max(1.0, args.settle_timeout - (time.monotonic() - started))
            if not wait_until(patroni.settled, left):
                print(f"Patroni did not settle; logs:\n{patroni.log_tails()}", file=sys.stderr)
                return 1
            print(f"Patroni up in {time.monotonic() - started:.1f} s", flush=True)
        time.sleep(args.warmup)
        hosts = hamgr_hosts(cluster) + (patroni.hosts() if patroni is not None else [])
        print(f"measuring {args.window:g} s idle ...", flush=True)
        measure(hosts, args.window)
        for h in hosts:
            print(host_line(h))
        cpu_h, rss_h = summary("hamgr", [h for h in hosts if h.system == "hamgr"])
        if patroni is not None:
            cpu_p, _ = summary("patroni", [h for h in hosts if h.system == "patroni"])
        failed = False
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        cluster.close()
        if patroni is not None:
            patroni.close()
        if failed or args.keep:
            print(f"work directory kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"hamgr_vs_patroni_cpu={ratio(cpu_h, cpu_p):.2f} hamgr_rss_mb={rss_h:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
