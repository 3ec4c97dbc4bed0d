"""Client-visible failover: continuous writes through HAProxy while the primary dies or hands over.

    .venv/bin/python bench/failover.py [--runs N] [--profile default|fast] [--timeline]

A local 3-member cluster (agents pg1..pg3 on 127.0.0.141-143, each with its own PostgreSQL)
behind HAProxy on 127.0.0.149:5000, configured by deploy/haproxy/haproxy.cfg (GET /primary
every 500 ms, fall 1, rise 1, retries 0, on-marked-down shutdown-sessions) and run in the
foreground as a child. One writer process (bench/ackwriter.py) inserts sequence numbers through
HAProxy as fast as it can, reconnecting at once on any error, and records every acknowledged
insert with its CLOCK_MONOTONIC time. Two scenarios, `--runs` times each:

- kill9: SIGKILL of the primary's agent and of its postmaster with every child (a host crash;
  the agent's fencer process is left alone). Afterwards the killed agent is restarted and must
  stream again before the next run.
- switchover: POST /switchover {"leader": <primary>} to the primary's REST API, with auth.

Each run: wait until the cluster has settled (one primary, both others streaming, and the Raft
leadership off the primary, as the agents arrange, for at most 3 ttl), a fresh table, warm up,
fault, wait until writes have succeeded without a pause for `--steady` seconds, stop the writer,
let the cluster settle again (the old primary rejoined), then read the table on the primary.
Measured: the outage (the longest gap between two consecutive acknowledged writes spanning the
fault; a longer one before writes flowed steadily, if they flapped, counts instead), the time
until another member's GET /primary answers 200, when HAProxy marked it UP, and the
acknowledged writes missing from the final primary's table (lost). Asynchronous replication may
lose the last writes acknowledged by a killed primary: they are counted and reported, not hidden.
The last line printed is exactly

    kill9_outage_median_s=A switchover_outage_median_s=B lost_writes=C kill9_lost_writes=D

with C the writes lost by switchovers and D those lost by kills, summed over the runs.
A switchover that the agents abort (the old primary serves again) is kept in the figures, its
outage included, and marked ABORTED with the API's answer. A member that does not stream again
within `--rejoin-timeout` is marked REJOIN FAILED (with the agents' log tails printed) and is
cloned afresh (data dir deleted, agent restarted), so that the next run has a full cluster.

`--restartpoints` is a diagnostic workaround, off by default: before each run it CHECKPOINTs
the primary and then each standby (a restartpoint there). A standby whose WAL receiver is
disconnected reports the timeline of its last restartpoint, which can be older than the one it
follows; when the primary stops for a switchover, the standbys then see their "timeline
diverged" and stop for a pg_rewind against a stopped primary, and the switchover aborts. With
the flag the switchover's own timing can be measured while that is being fixed.

HAProxy (Debian package `haproxy`) is installed with apt-get when missing and we are root.
Everything started here is killed by PID on exit; the cluster's directory is removed unless
`--keep` is given or something failed (its path is printed, with the agents' logs in it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ackwriter import read_records  # noqa: E402
from hacluster import API_PORT, PASSWORD, Cluster, wait_for  # noqa: E402
from procs import Child, Procs  # noqa: E402

HOSTS = ["127.0.0.141", "127.0.0.142", "127.0.0.143"]
LB_HOST, LB_PORT = "127.0.0.149", 5000
HAPROXY_CFG = HERE.parent / "deploy" / "haproxy" / "haproxy.cfg"
TTL = {"default": 6.0, "fast": 2.0}
SCENARIOS = ("kill9", "switchover")
_LB_EVENT = re.compile(r"Server \S+/(\S+) is (UP|DOWN)")
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+): (.*)")


class BenchError(Exception):
    """The benchmark could not go on; the message says why."""


# -- HAProxy ------------------------------------------------------------------------------------


class StampedChild(Child):
    """A child whose output lines carry the CLOCK_MONOTONIC instant they were read at."""

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(f"{time.monotonic():.6f} {line.rstrip()}")


def ensure_haproxy() -> str:
    """The haproxy binary; installed from Debian's package when missing and we are root."""
    found = shutil.which("haproxy")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError(
            "haproxy is not installed and we are not root: install it "
            "(apt-get install haproxy) and run again"
        )
    print("haproxy is missing: installing the Debian package ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "haproxy"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    found = shutil.which("haproxy")
    if not found:
        raise BenchError("installing haproxy with apt-get failed: run `apt-get install haproxy`")
    return found


def haproxy_env(cluster: Cluster) -> dict[str, str]:
    """The environment that deploy/haproxy/haproxy.cfg reads its addresses from."""
    env = {"HAMGR_LISTEN": f"{LB_HOST}:{LB_PORT}", "HAMGR_API_PORT": str(API_PORT)}
    for m in cluster.members.values():
        env[f"HAMGR_{m.name.upper()}"] = m.pg_address
    return env


def start_haproxy(procs: Procs, binary: str, cluster: Cluster) -> StampedChild:
    """HAProxy in the foreground (-db) as a child of `procs`, killed by PID with them."""
    env = {**os.environ, **haproxy_env(cluster)}
    check = subprocess.run(
        [binary, "-c", "-f", str(HAPROXY_CFG)], env=env, capture_output=True, text=True
    )
    if check.returncode != 0:
        raise BenchError(f"{HAPROXY_CFG} is refused by haproxy -c:\n{check.stdout}{check.stderr}")
    popen = subprocess.Popen(
        [binary, "-db", "-f", str(HAPROXY_CFG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    child = StampedChild("haproxy", popen)
    procs.children.append(child)
    return child


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """What one fault cost; times are seconds after the fault."""

    scenario: str
    index: int
    old_primary: str
    store_leader: str | None
    new_primary: str | None = None
    outage: float = float("nan")
    first_error: float | None = None
    new_primary_200: float | None = None
    lb_up: float | None = None
    acked: int = 0
    lost: int = 0
    lost_sample: list[int] = field(default_factory=list)
    write_rate: float = 0.0
    note: str = ""


@dataclass
class Feed:
    """The latest heartbeat of the writer and the HAProxy server events seen so far."""

    writer: Child
    haproxy: Child
    last_ack: float = 0.0
    acks: int = 0
    lb_events: list[tuple[float, str, str]] = field(default_factory=list)

    def drain(self) -> None:
        while not self.writer.lines.empty():
            parts = self.writer.lines.get().split()
            if len(parts) == 4 and parts[0] == "hb":
                self.acks, self.last_ack = int(parts[1]), float(parts[2])
        while not self.haproxy.lines.empty():
            line = self.haproxy.lines.get()
            stamp, _, text = line.partition(" ")
            found = _LB_EVENT.search(text)
            if found:
                self.lb_events.append((float(stamp), found.group(1), found.group(2)))


class Bench:
    """The cluster, HAProxy and the knobs of one benchmark invocation."""

    def __init__(self, args: argparse.Namespace, cluster: Cluster, procs: Procs, lb: Child):
        self.args = args
        self.cluster = cluster
        self.procs = procs
        self.lb = lb
        self.ttl = TTL[args.profile]
        self.feed: Feed | None = None
        self.t_fault = self.wall_fault = self.gap_end = 0.0

    def settle(self) -> tuple[str, str | None]:
        """Wait for one primary with both others streaming and the Raft leadership elsewhere
        (for at most 3 ttl: if the agents do not move it, the run goes on and says so)."""
        primary = self.cluster.wait_settled(self.args.settle_timeout)
        leader = wait_for(
            lambda: lead if (lead := self.cluster.store_leader()) != primary else None,
            3 * self.ttl,
            0.5,
        )
        if leader is None:
            leader = self.cluster.store_leader()
        primary = self.cluster.wait_settled(self.args.settle_timeout)
        if self.args.restartpoints:
            self.restartpoints(primary)
        return primary, leader

    def restartpoints(self, primary: str) -> None:
        """CHECKPOINT the primary, then each standby once it has replayed that far (which makes
        it a restartpoint), so that every standby's control file names its current timeline."""
        with self.cluster.connect(primary) as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
            assert row is not None
            target = row[0]
        for name in self.cluster.members:
            if name == primary:
                continue
            with self.cluster.connect(name) as conn:

                def replayed(c: Any = conn) -> bool | None:
                    sql = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
                    row = c.execute(sql, (target,)).fetchone()
                    return True if row and row[0] else None

                if not wait_for(replayed, 30, 0.1):
                    raise BenchError(f"{name} did not replay the primary's checkpoint in 30 s")
                conn.execute("CHECKPOINT")

    def run(self, scenario: str, index: int) -> Run:
        primary, leader = self.settle()
        run = Run(scenario, index, primary, leader)
        table = f"failover_{scenario}_{index}"
        with self.cluster.connect(primary) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (seq bigint PRIMARY KEY)")
        out = self.cluster.root / f"{table}.acks"
        writer = self.procs.start(
            f"writer-{table}",
            [
                sys.executable,
                str(HERE / "ackwriter.py"),
                *("--host", LB_HOST, "--port", str(LB_PORT), "--password", PASSWORD),
                *("--table", table, "--out", str(out), "--rate", str(self.args.rate)),
            ],
        )
        feed = self.feed = Feed(writer, self.lb)
        try:
            self._fault_and_recover(run, feed)
        finally:
            os.kill(writer.popen.pid, signal.SIGTERM)
            try:
                writer.wait_line(lambda line: line == "done", 15)
            except (TimeoutError, RuntimeError):
                run.note += "writer did not stop cleanly; "
            self.procs.kill(writer)
        acks, errors = read_records(str(out))
        self._measure(run, acks, errors)
        self._rejoin(run)
        self._count_lost(run, table, acks)
        return run

    def _fault_and_recover(self, run: Run, feed: Feed) -> None:
        args = self.args

        def started() -> bool | None:
            feed.drain()
            return True if feed.acks > 0 else None

        if not wait_for(started, 30, 0.1):
            raise BenchError(f"no write succeeded through HAProxy within 30 s ({run.scenario})")
        feed.drain()
        warm_acks, warm_at = feed.acks, time.monotonic()
        time.sleep(args.warmup)
        others = [n for n in self.cluster.members if n != run.old_primary]
        answer: list[tuple[int, Any]] = []
        self.t_fault = time.monotonic()
        self.wall_fault = time.time()
        feed.drain()
        run.write_rate = (feed.acks - warm_acks) / max(1e-3, self.t_fault - warm_at)
        if run.scenario == "kill9":
            self.cluster.kill9(run.old_primary)
        else:
            body = {"leader": run.old_primary}
            threading.Thread(
                target=lambda: answer.append(
                    self.cluster.post(run.old_primary, "/switchover", body, 60)
                ),
                daemon=True,
            ).start()
        recovered_since: float | None = None
        deadline = self.t_fault + args.fault_timeout
        while True:
            now = time.monotonic()
            feed.drain()
            if run.new_primary_200 is None:
                for name in self.cluster.primaries(others):
                    run.new_primary, run.new_primary_200 = name, time.monotonic() - self.t_fault
                    break
            flowing = feed.last_ack > self.t_fault and now - feed.last_ack < 0.5
            if not flowing:
                recovered_since = None
            elif recovered_since is None:
                recovered_since = now
            refused = bool(answer) and answer[0][0] != 200 and not run.note
            if (
                refused
                and run.new_primary_200 is None
                and self.cluster.primaries([run.old_primary])
            ):
                run.note = f"ABORTED: POST /switchover answered {answer[0][0]} {answer[0][1]}; "
            came_back = run.new_primary_200 is not None or run.note.startswith("ABORTED")
            if came_back and recovered_since is not None and now - recovered_since >= args.steady:
                break
            if now > deadline:
                raise BenchError(
                    f"{run.scenario} run {run.index}: writes did not flow steadily again within "
                    f"{args.fault_timeout:g} s (new primary: {run.new_primary})\n"
                    + self.cluster.log_tails()
                )
            time.sleep(0.05)
        feed.drain()
        for at, server, state in feed.lb_events:
            if at > self.t_fault and server == run.new_primary and state == "UP":
                run.lb_up = at - self.t_fault
                break
        if run.scenario == "switchover":
            for _ in range(100):  # the API answers once the outcome shows; a moment at most
                if answer:
                    break
                time.sleep(0.1)
            status, reply = answer[0] if answer else (0, "no answer")
            if status != 200 and not run.note.startswith("ABORTED"):
                run.note += f"POST /switchover answered {status} {reply}; "

    def _measure(self, run: Run, acks: list[tuple[int, float]], errors: list[float]) -> None:
        run.acked = len(acks)
        run.outage, _, self.gap_end = longest_gap(acks, self.t_fault)
        later = [t for t in errors if t >= self.t_fault]
        run.first_error = later[0] - self.t_fault if later else None

    def _rejoin(self, run: Run) -> None:
        """Until every member streams again; one that cannot within --rejoin-timeout is noted,
        then cloned afresh (data dir deleted, agent restarted) so that the next run has a
        full cluster."""
        if run.scenario == "kill9":
            self.cluster.start(run.old_primary)
        if wait_for(self.cluster.settled, self.args.rejoin_timeout, 0.3) is not None:
            return

        def single() -> str | None:
            found = self.cluster.primaries()
            return found[0] if len(found) == 1 else None

        primary = wait_for(single, 30, 0.5)
        if primary is None:
            raise BenchError(
                f"{run.scenario} run {run.index}: no single primary after the fault\n"
                + self.cluster.log_tails()
            )
        stuck = [n for n in self.cluster.members if n != primary and not self.cluster.streaming(n)]
        run.note += f"REJOIN FAILED ({', '.join(stuck)}; cloned afresh); "
        print(
            f"  {run.scenario} {run.index}: {', '.join(stuck)} did not stream again within "
            f"{self.args.rejoin_timeout:g} s; cloning afresh. Log tails:\n"
            + self.cluster.log_tails(),
            flush=True,
        )
        for name in stuck:
            self.cluster.reclone(name)
        self.cluster.wait_settled(self.args.settle_timeout)

    def _count_lost(self, run: Run, table: str, acks: list[tuple[int, float]]) -> None:
        primary = self.cluster.wait_settled(self.args.settle_timeout)
        with self.cluster.connect(primary) as conn:
            present = {row[0] for row in conn.execute(f"SELECT seq FROM {table}")}
            conn.execute(f"DROP TABLE {table}")
        missing = sorted(seq for seq, _ in acks if seq not in present)
        run.lost = len(missing)
        run.lost_sample = missing[:10]

    def timeline(self, run: Run, before: float = 0.5, after: float = 1.5) -> list[str]:
        """Agent log lines and HAProxy events from just before the fault to just after the
        writes came back, each with its time relative to the fault."""
        horizon = (run.new_primary_200 or 0.0) + after
        if run.outage == run.outage:  # not NaN
            horizon = max(horizon, run.outage + after)
        lines: list[tuple[float, str]] = []
        for m in self.cluster.members.values():
            try:
                text = m.log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in text:
                found = _LOG_TIME.match(line)
                if not found:
                    continue
                stamp = dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                rel = stamp - self.wall_fault
                if -before <= rel <= horizon:
                    lines.append((rel, f"{m.name} {found.group(3)}: {found.group(4)}"))
        for at, server, state in self.feed.lb_events if self.feed else []:
            if -before <= at - self.t_fault <= horizon:
                lines.append((at - self.t_fault, f"haproxy: {server} is {state}"))
        if run.first_error is not None:
            lines.append((run.first_error, "writer: first failed write"))
        if self.gap_end:
            lines.append((self.gap_end - self.t_fault, "writer: writes acknowledged again"))
        return [f"{rel:+8.3f}  {text[:200]}" for rel, text in sorted(lines)]


def longest_gap(acks: list[tuple[int, float]], t_fault: float) -> tuple[float, float, float]:
    """The longest gap between consecutive acknowledged writes that ends after `t_fault`:
    (gap, its start, its end); NaN when no write was acknowledged after the fault."""
    times = sorted(t for _, t in acks)
    best = (float("nan"), 0.0, 0.0)
    for a, b in itertools.pairwise(times):
        if b > t_fault and not b - a <= best[0]:
            best = (b - a, a, b)
    return best


# -- reporting ----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"


def table(scenario: str, runs: list[Run], profile: str) -> str:
    head = (
        f"{'run':>3}  {'old->new':<9}  {'raft_ldr':<8}  {'outage_s':>8}  {'first_err_s':>11}  "
        f"{'new_200_s':>9}  {'lb_up_s':>7}  {'acked':>6}  {'w/s':>5}  {'lost':>4}  note"
    )
    rows = [f"{scenario} (profile {profile}, ttl {TTL[profile]:g} s)", head]
    for r in runs:
        rows.append(
            f"{r.index:>3}  {r.old_primary + '->' + (r.new_primary or '?'):<9}  "
            f"{r.store_leader or '?':<8}  {_fmt(r.outage):>8}  {_fmt(r.first_error):>11}  "
            f"{_fmt(r.new_primary_200):>9}  {_fmt(r.lb_up):>7}  {r.acked:>6}  "
            f"{r.write_rate:>5.0f}  {r.lost:>4}  {r.note}"
            + (f"lost seqs {r.lost_sample}" if r.lost else "")
        )
    outages = [r.outage for r in runs]
    new200 = [r.new_primary_200 for r in runs if r.new_primary_200 is not None]
    if runs:
        rows.append(
            f"outage median {_fmt(median(outages))} s, max {_fmt(max(outages))} s; "
            f"new primary 200 median {_fmt(median(new200))} s, "
            f"max {_fmt(max(new200) if new200 else None)} s; "
            f"lost {sum(r.lost for r in runs)} of {sum(r.acked for r in runs)} acknowledged"
            + (f"; ABORTED {aborted} of {len(runs)}" if (aborted := _aborted(runs)) else "")
        )
    return "\n".join(rows)


def _aborted(runs: list[Run]) -> int:
    return sum(1 for r in runs if r.note.startswith("ABORTED"))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each scenario (default 3)")
    ap.add_argument("--profile", choices=sorted(TTL), default="default", help="timing profile")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="kill9,switchover")
    ap.add_argument("--rate", type=float, default=0, help="writes/s (default 0: no limit)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of writes before a fault")
    ap.add_argument("--steady", type=float, default=3.0, help="seconds of flowing writes after")
    ap.add_argument("--fault-timeout", type=float, default=90.0, help="give up a run after this")
    ap.add_argument(
        "--rejoin-timeout", type=float, default=60.0, help="seconds for the old primary to stream"
    )
    ap.add_argument("--settle-timeout", type=float, default=180.0, help="seconds to settle")
    ap.add_argument("--dir", help="where the cluster lives (default: a new temporary dir)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    ap.add_argument("--timeline", action="store_true", help="print log lines around each fault")
    ap.add_argument(
        "--restartpoints",
        action="store_true",
        help="before each run, CHECKPOINT the primary and then each standby (a workaround: "
        "see the note in the module docstring)",
    )
    args = ap.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad or not args.scenarios:
        ap.error(f"--scenarios: expected some of {', '.join(SCENARIOS)}, got {bad or 'none'}")
    if args.runs < 1:
        ap.error(f"--runs must be at least 1, got {args.runs}")
    if args.rate < 0:
        ap.error(f"--rate must be >= 0, got {args.rate:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        binary = ensure_haproxy()
    except BenchError as exc:
        print(f"bench/failover.py: {exc}", file=sys.stderr)
        return 2
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hamgr-failover-"))
    if args.dir and root.exists() and any(root.iterdir()):
        print(f"bench/failover.py: --dir {root} is not empty", file=sys.stderr)
        return 2
    results: dict[str, list[Run]] = {s: [] for s in args.scenarios}
    failed = True
    cluster = Cluster(root, HOSTS, profile=args.profile)
    try:
        with Procs() as procs:
            try:
                ok = run_all(args, cluster, procs, binary, results)
            finally:
                cluster.close()
        failed = not ok
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        if failed or args.keep:
            print(f"cluster directory (agent logs pg*.log) kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    for scenario, runs in results.items():
        print(table(scenario, runs, args.profile) + "\n")

    def final(value: float) -> str:
        return "nan" if value != value else f"{value:.2f}"

    kill9 = results.get("kill9", [])
    switch = results.get("switchover", [])
    print(
        f"kill9_outage_median_s={final(median([r.outage for r in kill9]))} "
        f"switchover_outage_median_s={final(median([r.outage for r in switch]))} "
        f"lost_writes={sum(r.lost for r in switch)} "
        f"kill9_lost_writes={sum(r.lost for r in kill9)}"
    )
    return 1 if failed else 0


def run_all(
    args: argparse.Namespace,
    cluster: Cluster,
    procs: Procs,
    binary: str,
    results: dict[str, list[Run]],
) -> bool:
    """Start everything and run every scenario; False when a run failed (reported)."""
    started = time.monotonic()
    cluster.start_all()
    lb = start_haproxy(procs, binary, cluster)
    primary = cluster.wait_settled(args.settle_timeout)
    print(
        f"cluster up in {time.monotonic() - started:.1f} s (primary {primary}, profile "
        f"{args.profile}); HAProxy on {LB_HOST}:{LB_PORT}; logs in {cluster.root}",
        flush=True,
    )
    bench = Bench(args, cluster, procs, lb)
    report: Callable[[Run], None] = lambda r: print(  # noqa: E731
        f"  {r.scenario} {r.index}: {r.old_primary}->{r.new_primary} outage {_fmt(r.outage)} s, "
        f"new primary 200 after {_fmt(r.new_primary_200)} s, lost {r.lost} {r.note}",
        flush=True,
    )
    try:
        for scenario in args.scenarios:
            for i in range(1, args.runs + 1):
                run = bench.run(scenario, i)
                results[scenario].append(run)
                report(run)
                if args.timeline:
                    print("\n".join("    " + line for line in bench.timeline(run)), flush=True)
    except (BenchError, TimeoutError) as exc:
        print(f"bench/failover.py: {exc}", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
