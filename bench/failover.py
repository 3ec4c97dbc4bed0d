"""Client-visible failover: writes through HAProxy and to each member while the primary fails.

    .venv/bin/python bench/failover.py [--sync off|on|quorum] [--runs N]
        [--scenarios kill9,switchover,freeze,freeze-all,partition,replica-store-leader-kill]
        [--profile default|fast] [--timeline] [--tls off|on|both]

A local 3-member cluster (agents pg1..pg3 on 127.0.0.141-143, each with its own PostgreSQL)
behind HAProxy on 127.0.0.149:5000, configured by deploy/haproxy/haproxy.cfg (GET /primary
every 500 ms, fall 1, rise 1, retries 0, on-marked-down shutdown-sessions) and run in the
foreground as a child. `--sync on|quorum` writes `bootstrap.dcs.synchronous_mode` (that
string), `synchronous_node_count: 1` and `synchronous_mode_strict: false` into every member's
configuration; `--sync off` (the default) writes nothing. The configurations are checked with
`hamgr validate-config` first, so an agent that does not know a setting stops the benchmark
with its own message. `--tls on` runs the REST API and the store over TLS (certificates from
`hamgr certs init`, HAProxy's checks over check-ssl); `--tls both` runs the whole benchmark on a
plain cluster, then on a TLS one, and prints the median outage of each scenario side by side.

Writers (bench/ackwriter.py processes, bench/writers.py), all into one table with their sequence
numbers kept apart, each recording every acknowledged insert with its CLOCK_MONOTONIC instant:
- one through HAProxy, as fast as it can (`--rate`), reconnecting at once on any error;
- one per member straight to THAT member's PostgreSQL over its unix socket (`--direct-rate`
  attempts/s each; an insert still in flight after 2 s is cancelled, as a client-side timeout
  would), so that which member acknowledged each write is known; a standby refuses
  (read-only), which is fine, and the writer keeps its connection so that it writes as soon
  as that member is promoted. `--direct-rate 0`: no direct writers.
A commit whose synchronous replication wait was cancelled (PostgreSQL's WARNING "canceling wait
for synchronous replication ... The transaction has already committed locally, but might not
have been replicated to the standby", on success or before the connection dies) is caught by
the writer's notice handler and recorded as local-only: reported apart, never counted as an
acknowledged write.

Scenarios (bench/faults.py), `--runs` times each, all by default:
- kill9: SIGKILL of the primary's agent and of its postmaster with every child (a host crash;
  the fencer is left alone); the agent is started again afterwards.
- switchover: POST /switchover {"leader": <primary>} to the primary's REST API, with auth.
  One the agents abort (the old primary serves again) is kept, marked ABORTED.
- freeze: SIGSTOP of the primary's agent; its fencer runs on and stops PostgreSQL at the lease
  deadline. SIGCONT once another member answers GET /primary 200.
- freeze-all: SIGSTOP of the primary's agent AND its fencer: PostgreSQL runs on unfenced and a
  direct writer can keep getting acks from it. SIGCONT of both `--freeze-hold` seconds after
  another member answers GET /primary 200.
- partition: the primary's address cut off from the others (iptables INPUT rules on its
  loopback address, tagged; every rule removed in a finally); healed once another member
  answers GET /primary 200. Its direct writer still reaches it through the unix socket.
- replica-store-leader-kill: SIGKILL of the replica whose agent leads the store (agent with its
  embedded store member, and its PostgreSQL). The primary must keep serving unfenced: its
  fence margin (GET /patroni `fence_remaining`: its lease deadline minus now) is sampled every
  `--margin-interval` s and the smallest in the ttl + 1 s after the kill is reported; a
  failover or a FENCE line in its fencer's log is noted. The killed agent is started again.

Each run: wait until the cluster has settled (one primary, both others streaming and replaying
its writes, and the Raft
leadership off the primary, as the agents arrange, for at most 3 ttl); with sync on, print the
primary's `synchronous_standby_names`; a fresh table; writers start; warm up; fault; wait until
writes through HAProxy have succeeded without a pause for `--steady` seconds (and the fault has
run its course: healed, or observed long enough); heal whatever is left; keep writing until
every member streams again (at most `--rejoin-timeout`, so that writes a healed old primary
still acknowledges are seen); stop the writers, then read the table on the final primary.

Per run: the outage (the longest gap between two consecutive acknowledged writes through
HAProxy spanning the fault, up to the moment writes flowed steadily; a later stall over 1 s is
noted), the time until another member's GET /primary answers 200, when HAProxy marked it UP,
acknowledged writes of every writer missing on the final primary (lost), local-only commits,
and the seconds during which two members both acknowledged writes (each member's direct acks
merged into windows wherever consecutive acks lie less than 1 s apart; the time covered by
windows of two members or more). Asynchronous replication may lose writes acknowledged by a
failed primary: they are counted and reported, not hidden. The last line printed is exactly

    kill9_outage_median_s=A switchover_outage_median_s=B lost_writes=C kill9_lost_writes=D \
sync_lost_writes=E store_leader_kill_min_fence_margin_s=F

with C the writes lost by switchovers and D those lost by kills, E the writes lost by every
scenario with --sync on or quorum (NA with --sync off: asynchronous losses are printed per
scenario), F the smallest fence margin of replica-store-leader-kill; all summed (or the
minimum) over the runs, nan when not measured. A SKIPPED run (replica-store-leader-kill when
the store's leader stayed on the primary) counts nowhere.

A member that does not stream again within `--rejoin-timeout` (by GET /replica, and by
replaying a row written on the primary: /replica can answer 200 for a standby that diverged and
cannot follow) is marked REJOIN FAILED (with the agents' log tails printed) and is cloned afresh
(data dir deleted, agent restarted), so that the next run has a full cluster.

`--restartpoints` is a diagnostic workaround, off by default: before each run it CHECKPOINTs
the primary and then each standby (a restartpoint there). A standby whose WAL receiver is
disconnected reports the timeline of its last restartpoint, which can be older than the one it
follows; when the primary stops for a switchover, the standbys then see their "timeline
diverged" and stop for a pg_rewind against a stopped primary, and the switchover aborts. With
the flag the switchover's own timing can be measured while that is being fixed.

Everything started here is killed by PID on exit; the cluster's directory is removed unless
`--keep` is given or something failed (its path is printed, with the agents' logs in it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ackstats import longest_gap, missing, overlap_of_members  # noqa: E402
from ackwriter import Records  # noqa: E402
from failover_report import Run, fmt, last_line, measured, median, table  # noqa: E402
from faults import SCENARIOS, Fault, FaultError, FaultOptions, Progress  # noqa: E402
from hacluster import PASSWORD, PG_PORT, Cluster, wait_for  # noqa: E402
from haproxy import HaproxyError, ensure_haproxy, server_event, start_haproxy  # noqa: E402
from partition import PartitionError, iptables_unavailable  # noqa: E402
from procs import Child, Procs, exit_on_sigterm  # noqa: E402
from writers import LB, SEQ_STRIDE, WriterSet, WriterSpec  # noqa: E402

HOSTS = ["127.0.0.141", "127.0.0.142", "127.0.0.143"]
LB_HOST, LB_PORT = "127.0.0.149", 5000
TTL = {"default": 6.0, "fast": 2.0}
SYNC_MODES = ("off", "on", "quorum")
DIRECT_CANCEL_AFTER = 2.0
"""A direct writer cancels an insert in flight this long (a client-side timeout)."""
ACK_WINDOW_GAP = 1.0
"""Direct acks of one member closer than this belong to one window of it taking writes."""
STALL_NOTE = 1.0
"""A gap in the HAProxy writer's acks after the recovery longer than this is noted."""
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+): (.*)")


class BenchError(Exception):
    """The benchmark could not go on; the message says why."""


@dataclass
class Feed:
    """The latest heartbeat of the writer through HAProxy and the HAProxy events seen so far."""

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
            event = server_event(self.haproxy.lines.get())
            if event is not None:
                self.lb_events.append(event)


class Bench:
    """The cluster, HAProxy and the knobs of one benchmark invocation."""

    def __init__(self, args: argparse.Namespace, cluster: Cluster, procs: Procs, lb: Child):
        self.args = args
        self.cluster = cluster
        self.procs = procs
        self.lb = lb
        self.ttl = TTL[args.profile]
        self.fault_options = FaultOptions(self.ttl, args.freeze_hold, args.margin_interval)
        self.feed: Feed | None = None
        self.fault: Fault | None = None
        self.records: dict[str, Records] = {}
        self.t_fault = self.wall_fault = self.t_steady = self.gap_end = 0.0

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

    def writer_specs(self) -> list[WriterSpec]:
        """The writer through HAProxy, then one per member over its unix socket."""
        specs = [WriterSpec(LB, LB_HOST, LB_PORT, 0, rate=self.args.rate)]
        if self.args.direct_rate <= 0:
            return specs
        for i, m in enumerate(self.cluster.members.values(), start=1):
            specs.append(
                WriterSpec(
                    m.name,
                    str(m.run_dir),
                    PG_PORT,
                    i * SEQ_STRIDE,
                    rate=self.args.direct_rate,
                    cancel_after=DIRECT_CANCEL_AFTER,
                    keep_connection=True,
                )
            )
        return specs

    def run(self, scenario: str, index: int) -> Run:
        primary, leader = self.settle()
        run = Run(scenario, index, primary, leader)
        if self.args.sync != "off":
            names = self.cluster.sync_standby_names(primary)
            line = f"  {scenario} {index}: {primary} synchronous_standby_names={names!r}"
            print(line, flush=True)
        fault = self.fault = SCENARIOS[scenario].make(
            self.cluster, primary, leader, self.fault_options
        )
        why = fault.unsuitable()
        if why is not None:
            run.skipped, run.note = True, f"SKIPPED: {why}; "
            return run
        table_name = f"failover_{scenario.replace('-', '_')}_{index}"
        with self.cluster.connect(primary) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table_name}")
            conn.execute(f"CREATE TABLE {table_name} (seq bigint PRIMARY KEY)")
        writers = WriterSet(
            self.procs, self.writer_specs(), table_name, self.cluster.root, PASSWORD
        )
        writers.start()
        try:
            feed = self.feed = Feed(writers.child(LB), self.lb)
            try:
                self._fault_and_recover(run, fault, feed)
            finally:
                fault.heal()
            # Writing on until every member streams shows what a healed old primary still
            # acknowledges; a member that cannot is repaired below, once the writers stopped.
            rejoined = self.cluster.healthy(self.args.rejoin_timeout)
        finally:
            unclean = writers.stop()
        if unclean:
            run.note += f"writers {','.join(unclean)} did not stop cleanly; "
        self.records = writers.records()
        self._measure(run, self.records)
        if rejoined is None:
            self._repair(run)
        self._count_lost(run, table_name, self.records)
        return run

    def _fault_and_recover(self, run: Run, fault: Fault, feed: Feed) -> None:
        args = self.args

        def started() -> bool | None:
            feed.drain()
            return True if feed.acks > 0 else None

        if not wait_for(started, 30, 0.1):
            raise BenchError(f"no write succeeded through HAProxy within 30 s ({run.scenario})")
        fault.prepare()
        feed.drain()
        warm_acks, warm_at = feed.acks, time.monotonic()
        time.sleep(args.warmup)
        others = [n for n in self.cluster.members if n != run.old_primary]
        self.t_fault = time.monotonic()
        self.wall_fault = time.time()
        feed.drain()
        run.write_rate = (feed.acks - warm_acks) / max(1e-3, self.t_fault - warm_at)
        fault.inject()
        recovered_since: float | None = None
        deadline = self.t_fault + args.fault_timeout
        while True:
            now = time.monotonic()
            feed.drain()
            if run.new_primary_200 is None:
                for name in self.cluster.primaries(others):
                    run.new_primary, run.new_primary_200 = name, time.monotonic() - self.t_fault
                    break
            progress = Progress(now - self.t_fault, run.new_primary_200)
            fault.step(progress)
            flowing = feed.last_ack > self.t_fault and now - feed.last_ack < 0.5
            if not flowing:
                recovered_since = None
            elif recovered_since is None:
                recovered_since = now
            served = run.new_primary_200 is not None or not fault.expects_new_primary
            steady = recovered_since is not None and now - recovered_since >= args.steady
            if served and steady and fault.done(progress):
                break
            if now > deadline:
                raise BenchError(
                    f"{run.scenario} run {run.index}: writes did not flow steadily again within "
                    f"{args.fault_timeout:g} s (new primary: {run.new_primary})\n"
                    + self.cluster.log_tails()
                )
            time.sleep(0.05)
        self.t_steady = time.monotonic()
        feed.drain()
        for at, server, state in feed.lb_events:
            if at > self.t_fault and server == run.new_primary and state == "UP":
                run.lb_up = at - self.t_fault
                break
        outcome = fault.finish()
        run.note += outcome.note
        run.fence_margin = outcome.fence_margin
        run.fence_margin_before = outcome.fence_margin_before
        if not fault.expects_new_primary and run.new_primary is not None:
            run.note += f"FAILOVER to {run.new_primary}; "

    def _measure(self, run: Run, records: dict[str, Records]) -> None:
        lb = records[LB]
        times = [t for _, t in lb.acks]
        start, self.gap_end = longest_gap(times, self.t_fault, self.t_steady)
        run.outage = self.gap_end - start
        stall_start, stall_end = longest_gap(times, self.t_steady)
        if stall_end - stall_start > STALL_NOTE:
            run.note += f"stall {stall_end - stall_start:.2f} s after the recovery; "
        later = [t for t in lb.errors if t >= self.t_fault]
        run.first_error = later[0] - self.t_fault if later else None
        run.acked = sum(len(r.acks) for r in records.values())
        run.local_only = sum(len(r.local) for r in records.values())
        direct = {label: r for label, r in records.items() if label != LB}
        run.direct_acks = {label: len(r.acks) for label, r in direct.items()}
        run.overlap = overlap_of_members(
            {label: [t for _, t in r.acks] for label, r in direct.items()}, ACK_WINDOW_GAP
        )

    def _repair(self, run: Run) -> None:
        """Some member did not stream again within --rejoin-timeout: note it, then clone it
        afresh (data dir deleted, agent restarted) so that the next run has a full cluster."""

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
        stuck += [n for n in self.cluster.behind(primary, 5.0) if n not in stuck]
        if not stuck:
            return
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

    def _count_lost(self, run: Run, table_name: str, records: dict[str, Records]) -> None:
        primary = self.cluster.wait_settled(self.args.settle_timeout)
        with self.cluster.connect(primary) as conn:
            present = {row[0] for row in conn.execute(f"SELECT seq FROM {table_name}")}
            conn.execute(f"DROP TABLE {table_name}")
        for label, rec in records.items():
            lost = missing((seq for seq, _ in rec.acks), present)
            if lost:
                run.lost_by[label] = len(lost)
                run.lost_sample += lost[: 10 - len(run.lost_sample)]
        run.lost = sum(run.lost_by.values())

    def timeline(self, run: Run, before: float = 0.5, after: float = 1.5) -> list[str]:
        """Agent and fencer log lines, HAProxy events, the fault's own steps and each direct
        writer's first and last ack after the fault, from just before the fault to just after the
        writes came back, each with its time relative to the fault."""
        horizon = max(run.new_primary_200 or 0.0, self.t_steady - self.t_fault) + after
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
        for name in self.cluster.members:
            for mono, message in self.cluster.fencer_log(name):
                lines.append((mono - self.t_fault, f"{name} fencer: {message}"))
        for at, server, state in self.feed.lb_events if self.feed else []:
            lines.append((at - self.t_fault, f"haproxy: {server} is {state}"))
        for at, what in self.fault.events if self.fault else []:
            lines.append((at - self.t_fault, f"fault: {what}"))
        for label, rec in self.records.items():
            after_fault = [t for _, t in rec.acks if t >= self.t_fault]
            if label != LB and after_fault:
                lines.append((after_fault[0] - self.t_fault, f"writer {label}: first direct ack"))
                lines.append((after_fault[-1] - self.t_fault, f"writer {label}: last direct ack"))
        if run.first_error is not None:
            lines.append((run.first_error, "writer lb: first failed write"))
        if self.gap_end == self.gap_end and self.gap_end:
            lines.append(
                (self.gap_end - self.t_fault, "writer lb: end of the longest gap (outage)")
            )
        shown = [(rel, text) for rel, text in lines if -before <= rel <= horizon]
        return [f"{rel:+8.3f}  {text[:200]}" for rel, text in sorted(shown)]


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each scenario (default 3)")
    ap.add_argument("--profile", choices=sorted(TTL), default="default", help="timing profile")
    ap.add_argument("--sync", choices=SYNC_MODES, default="off", help="synchronous_mode")
    ap.add_argument(
        "--tls",
        choices=("off", "on", "both"),
        default="off",
        help="REST API and store over TLS (certificates from hamgr certs); both: the whole "
        "benchmark with TLS off, then on, on fresh clusters, and the two compared",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, of: "
        + "; ".join(f"{s.name} ({s.summary})" for s in SCENARIOS.values()),
    )
    ap.add_argument("--rate", type=float, default=0, help="writes/s via HAProxy (0: no limit)")
    ap.add_argument(
        "--direct-rate", type=float, default=100, help="attempts/s per direct writer (0: none)"
    )
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of writes before a fault")
    ap.add_argument("--steady", type=float, default=3.0, help="seconds of flowing writes after")
    ap.add_argument(
        "--freeze-hold",
        type=float,
        default=5.0,
        help="freeze-all: seconds agent and fencer stay stopped after a new primary serves",
    )
    ap.add_argument(
        "--margin-interval", type=float, default=0.02, help="fence margin sampling period (s)"
    )
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
    for name in ("rate", "direct_rate", "warmup", "steady", "freeze_hold"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name):g}")
    if not 0.001 <= args.margin_interval <= 1:
        ap.error(f"--margin-interval must lie in [0.001, 1] s, got {args.margin_interval:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        binary = ensure_haproxy()
    except HaproxyError as exc:
        print(f"bench/failover.py: {exc}", file=sys.stderr)
        return 2
    if "partition" in args.scenarios and (why := iptables_unavailable()):
        print(f"bench/failover.py: partition needs iptables: {why}", file=sys.stderr)
        return 2
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hamgr-failover-"))
    if args.dir and root.exists() and any(root.iterdir()):
        print(f"bench/failover.py: --dir {root} is not empty", file=sys.stderr)
        return 2
    modes = ["off", "on"] if args.tls == "both" else [args.tls]
    if len(modes) > 1:  # each cluster in a subdirectory the postgres OS user must traverse
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
    by_mode: dict[str, dict[str, list[Run]]] = {}
    status = 0
    for mode in modes:
        results: dict[str, list[Run]] = {s: [] for s in args.scenarios}
        by_mode[mode] = results
        where = root / f"tls-{mode}" if len(modes) > 1 else root
        status = max(status, run_cluster(args, where, binary, results, tls=mode == "on"))
        if status:
            break
    if len(modes) > 1 and not args.dir and not any(root.iterdir()):
        root.rmdir()  # both clusters' directories are gone: nothing kept, nothing left
    for mode, results in by_mode.items():
        for scenario, runs in results.items():
            label = f"{scenario}, TLS {mode}" if len(modes) > 1 else scenario
            print(table(label, runs, args.profile, TTL[args.profile], args.sync) + "\n")
    if len(by_mode) > 1:
        print(tls_comparison(by_mode["off"], by_mode["on"]) + "\n")
    print(last_line(by_mode.get(modes[-1], {}), args.sync))
    return status


def tls_comparison(plain: dict[str, list[Run]], tls: dict[str, list[Run]]) -> str:
    """Median outage per scenario with TLS off and on, and the difference (the issue's bar:
    TLS must not slow a failover by more than 10 %). Printed, never asserted."""
    rows = ["TLS off vs on: median outage (s) per scenario"]
    for scenario in plain:
        off = median([r.outage for r in measured(plain[scenario]) if r.outage is not None])
        on = median([r.outage for r in measured(tls.get(scenario, [])) if r.outage is not None])
        change = f"{(on - off) / off * 100:+.1f} %" if off == off and on == on and off else "-"
        rows.append(f"  {scenario:<28} off {fmt(off):>6}  on {fmt(on):>6}  change {change}")
    return "\n".join(rows)


def run_cluster(
    args: argparse.Namespace,
    root: Path,
    binary: str,
    results: dict[str, list[Run]],
    *,
    tls: bool,
) -> int:
    """The benchmark on one fresh cluster (TLS on or off) under `root`: 0 done, 1 a run
    failed, 2 the configuration was refused."""
    failed = True
    cluster = Cluster(root, HOSTS, profile=args.profile, sync=args.sync, tls=tls)
    problems = cluster.config_problems()
    if problems:
        shutil.rmtree(root, ignore_errors=True)
        print(
            f"bench/failover.py: --sync {args.sync}: hamgr validate-config refuses the member "
            f"configuration:\n{problems}",
            file=sys.stderr,
        )
        return 2
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
    lb = start_haproxy(procs, binary, cluster, f"{LB_HOST}:{LB_PORT}")
    primary = cluster.wait_settled(args.settle_timeout)
    print(
        f"cluster up in {time.monotonic() - started:.1f} s (primary {primary}, profile "
        f"{args.profile}, sync {args.sync}, TLS {'on' if cluster.tls_dir else 'off'}); "
        f"HAProxy on {LB_HOST}:{LB_PORT}; logs in {cluster.root}",
        flush=True,
    )
    bench = Bench(args, cluster, procs, lb)
    report: Callable[[Run], None] = lambda r: print(  # noqa: E731
        f"  {r.scenario} {r.index}: {r.old_primary}->{r.new_primary} outage {fmt(r.outage)} s, "
        f"new primary 200 after {fmt(r.new_primary_200)} s, lost {r.lost}, local-only "
        f"{r.local_only}, overlap {fmt(r.overlap)} s, direct acks {r.direct_acks}"
        + (f", fence margin {fmt(r.fence_margin, 3)} s" if r.fence_margin is not None else "")
        + (f" (before {fmt(r.fence_margin_before, 3)} s)" if r.fence_margin_before else "")
        + f" {r.note}",
        flush=True,
    )
    try:
        for scenario in args.scenarios:
            for i in range(1, args.runs + 1):
                run = bench.run(scenario, i)
                results[scenario].append(run)
                report(run)
                if args.timeline and not run.skipped:
                    print("\n".join("    " + line for line in bench.timeline(run)), flush=True)
    except (BenchError, FaultError, HaproxyError, PartitionError, TimeoutError) as exc:
        print(f"bench/failover.py: {exc}", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
