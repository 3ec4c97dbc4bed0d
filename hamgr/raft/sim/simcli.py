"""The command line the simulators share: which seeds to run, and running them.

`python -m hamgr.raft.sim` (cores), `python -m hamgr.raft.sim.kv` and
`python -m hamgr.raft.sim.node` take the same seed options (`--seeds N`, `--first`, `--seed`,
`--trace`, `--hunt`) and end the same way: each failing seed with the command that replays it,
then one line `seeds=N violations=V liveness_failures=L` (exit 1 when V or L > 0), and the
elapsed time on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable


def add_seed_options(ap: argparse.ArgumentParser, seeds: int, hunt: str) -> None:
    """`--seeds` (default `seeds`), `--first`, `--seed`, `--trace` and `--hunt` (help `hunt`)."""
    ap.add_argument("--seeds", type=int, default=seeds, help="how many seeds to run")
    ap.add_argument("--first", type=int, default=1, help="first seed")
    ap.add_argument("--seed", type=int, help="run only this seed")
    ap.add_argument("--trace", action="store_true", help="print every event of the run")
    ap.add_argument("--hunt", action="store_true", help=hunt)


def chosen_seeds(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """`--seed`, else `--seeds` seeds from `--first` (a usage error unless positive)."""
    if args.seed is not None:
        return [args.seed]
    if args.seeds <= 0:
        ap.error("--seeds must be positive")
    return list(range(args.first, args.first + args.seeds))


def run_seeds(seeds: list[int], run: Callable[[int], str | None], prog: str, flags: str) -> int:
    """Run each seed (`run` gives None or what went wrong: "violation: ..." or a liveness
    failure), print the failures with their replay command (`prog --seed N --trace` and the
    run's other `flags`), the timing and the summary; the exit status."""
    violations = liveness = 0
    started = time.monotonic()
    for seed in seeds:
        result = run(seed)
        if result is None:
            continue
        if result.startswith("violation"):
            violations += 1
        else:
            liveness += 1
        print(f"seed {seed}: {result}")
        print(f"  replay: {prog} --seed {seed} --trace{flags}")
    elapsed = time.monotonic() - started
    sys.stdout.flush()
    print(f"elapsed={elapsed:.1f}s seeds_per_second={len(seeds) / elapsed:.2f}", file=sys.stderr)
    print(f"seeds={len(seeds)} violations={violations} liveness_failures={liveness}")
    return 1 if violations or liveness else 0
