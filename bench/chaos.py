"""Chaos on hosts of their own: one nemesis schedule per run, checked (issue 12).

    python bench/chaos.py --minutes N --seed S [--runs R] [--size 3] [--async]
    python bench/chaos.py --stall-sweep 0.8,1.5,3,6 [--stall-target primary|replica|store-leader]
        [--sweep-seconds 60]
    python bench/chaos.py --delay-sweep 0.05,0.1,0.2,0.4 [--sweep-seconds 60]

Needs root (network namespaces, tmpfs mounts); run it under the shared lock
(``flock /tmp/hamgr-it.lock``): it uses fixed names (hchaos-*) and addresses (10.77.0.0/24).

A run builds a fresh cluster (`tests/chaos/harness.py`: each member in its own network
namespace, every connection between members through the relay), plays the schedule of seed S
(`tests/chaos/nemesis.py`: a gentle phase with 0-200 ms link jitter and 50-800 ms fsync stalls
on the primary's member, then partitions, kills, freezes, slow and full disks), and prints
the schedule, the events and what each checker found (`tests/chaos/checkers.py`). R runs use
seeds S, S+1, ... The last line is::

    chaos_runs=R violations=V false_failovers=F

The stall sweep instead holds one member's fsync stall at each value in turn (with the gentle
link jitter), for --sweep-seconds each, and prints whether and when the leader changed, the
primary's smallest fence margin (GET /patroni `fence_remaining`: how close its fencer came to
stopping it) and who led the store every 5 s, to find the stall that first causes a failover.
The delay sweep does the same with every link between members delayed by each value in turn
(one way, so a round trip takes twice that; no jitter, no stall): the network's side of the
store's sensitivity.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.procs import exit_on_sigterm  # noqa: E402
from tests.chaos import nemesis  # noqa: E402
from tests.chaos.checkers import leader_changes  # noqa: E402
from tests.chaos.harness import ChaosCluster, chaos_cluster, unavailable  # noqa: E402
from tests.chaos.runner import SETTLE, Sampler, run_schedule, settle  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="length of each schedule")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1, help="runs, with seeds S, S+1, ...")
    ap.add_argument("--size", type=int, default=3, help="members (3..5)")
    ap.add_argument("--async", dest="sync", action="store_false", help="asynchronous replication")
    ap.add_argument("--stall-sweep", default="", help="comma-separated fsync stalls (s)")
    ap.add_argument(
        "--stall-target", choices=("primary", "replica", "store-leader"), default="primary"
    )
    ap.add_argument("--delay-sweep", default="", help="comma-separated one-way link delays (s)")
    ap.add_argument("--sweep-seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    if not args.minutes > 0:
        ap.error(f"--minutes must be positive, got {args.minutes}")
    if args.runs < 1:
        ap.error(f"--runs must be at least 1, got {args.runs}")
    if not 3 <= args.size <= 5:
        ap.error(f"--size must be 3..5, got {args.size}")
    try:
        args.stalls = [float(v) for v in args.stall_sweep.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--stall-sweep: expected numbers separated by commas, got {args.stall_sweep!r}")
    if any(not 0 <= s < 60 for s in args.stalls):
        ap.error("--stall-sweep: each stall must be in [0, 60) s")
    try:
        args.delays = [float(v) for v in args.delay_sweep.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--delay-sweep: expected numbers separated by commas, got {args.delay_sweep!r}")
    if any(not 0 <= d < 10 for d in args.delays):
        ap.error("--delay-sweep: each delay must be in [0, 10) s")
    if args.stalls and args.delays:
        ap.error("--stall-sweep and --delay-sweep: one sweep at a time")
    return args


def one_run(seed: int, args: argparse.Namespace) -> tuple[int, int]:
    """Play seed's schedule on a fresh cluster; (violations, false failovers)."""
    seconds = args.minutes * 60
    steps = nemesis.schedule(seed, seconds)
    print(f"== run seed={seed} minutes={args.minutes:g} size={args.size} sync={args.sync}")
    print(nemesis.describe(steps), flush=True)
    with chaos_cluster(args.size, seed=seed, sync=args.sync) as cluster:
        report = run_schedule(cluster, steps, seed=seed, seconds=seconds)
    for finding in report.findings:
        print(f"  {finding}")
    print(f"  run seed={seed}: violations={report.violations} "
          f"false_failovers={report.false_failovers}", flush=True)  # fmt: skip
    return report.violations, report.false_failovers


def sweep_one(
    c: ChaosCluster, args: argparse.Namespace, stall: float | None, delay: float | None = None
) -> str:
    what = f"stall {stall:g}s" if stall is not None else f"link delay {(delay or 0) * 1000:g} ms"
    primary = settle(c, SETTLE)
    if primary is None:
        return f"{what}: cluster did not settle before the step"
    others = [n for n in c.members if n != primary]
    if stall is None:
        target, role = "every link", "one way"
    else:
        role = args.stall_target
        target = {"primary": primary, "replica": others[0]}.get(args.stall_target) or ""
        if not target:
            target = c.store_leader() or ""
            if not target:
                return f"{what}: the store's leader is unknown"
    margins: list[float] = []
    not_serving = 0
    store_leaders: list[str] = []
    start = time.monotonic()
    sampler = Sampler(c, start)
    sampler.thread.start()
    try:
        if stall is None:
            c.network({"delay": delay or 0.0, "jitter": 0.0})
        else:
            c.network(dict(nemesis.GENTLE_LINK))
            c.fsync_stall(target, stall)
        next_store_probe = 0.0
        while time.monotonic() - start < args.sweep_seconds:
            status, body = c.http(primary, "/patroni", 1.0)
            if status == 200 and isinstance(body, dict) and body.get("fence_remaining"):
                margins.append(float(body["fence_remaining"]))
            if status == 200 and isinstance(body, dict) and body.get("primary_serving") is False:
                not_serving += 1
            if time.monotonic() >= next_store_probe:
                store_leaders.append(c.store_leader() or "?")
                next_store_probe = time.monotonic() + 5.0
            time.sleep(0.5)
    finally:
        sampler.stop.set()
        sampler.thread.join(timeout=10)
        c.heal_all()
    changes = leader_changes([(t, leader) for t, leader, _ in sampler.samples])
    tokens = {token for _, _, token in sampler.samples if token >= 0}
    verdict = (
        f"FAILOVER at t={changes[0][0]:.1f}s {changes[0][1]}->{changes[0][2]}"
        if changes
        else "primary stayed"
    )
    return (
        f"{what} on {target} ({role}, primary {primary}) for "
        f"{args.sweep_seconds:g}s: {verdict}; {len(changes)} leader changes, "
        f"fence tokens seen {sorted(tokens)}; primary's smallest fence margin "
        f"{min(margins, default=float('nan')):.2f}s; primary not serving in {not_serving} of "
        f"{len(margins)} samples; store leader every 5 s: "
        f"{','.join(store_leaders)}"
    )


def sweep(args: argparse.Namespace) -> int:
    with chaos_cluster(args.size, seed=args.seed, sync=args.sync) as c:
        for stall in args.stalls:
            print(sweep_one(c, args, stall), flush=True)
        for delay in args.delays:
            print(sweep_one(c, args, None, delay), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    reason = unavailable()
    if reason:
        print(f"bench/chaos.py: {reason}", file=sys.stderr)
        return 2
    if args.stalls or args.delays:
        return sweep(args)
    violations = false_failovers = 0
    for seed in range(args.seed, args.seed + args.runs):
        v, f = one_run(seed, args)
        violations += v
        false_failovers += f
    print(f"chaos_runs={args.runs} violations={violations} false_failovers={false_failovers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
