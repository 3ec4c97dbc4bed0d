"""Command line of the node simulator (`python -m hamgr.raft.sim.node`).

`--seeds N` runs seeds `--first`.. and prints each failure with the command that replays it,
then `seeds=N violations=V liveness_failures=L` (exit 1 if V or L > 0). `--hunt` uses the
bug-hunting fault mix; `--bug NAME` runs a node with a planted bug (`hamgr.raft.sim.nodebugs`,
test only); `--bug-report` prints, per planted bug, in how many of the seeds the checks caught it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hamgr.raft.sim.nodebugs import BUGS
from hamgr.raft.sim.simcli import add_seed_options, chosen_seeds, run_seeds

if TYPE_CHECKING:
    from hamgr.raft.sim.node import NodeSim, NodeSimConfig

__all__ = ["cli", "run_seed"]

PROG = "python -m hamgr.raft.sim.node"


def run_seed(
    seed: int,
    sim_class: type[NodeSim],
    profile: Callable[[int], NodeSimConfig],
    bug: str | None = None,
    trace: Callable[[str], None] | None = None,
) -> str | None:
    """One seed with its profile (and a planted bug); None when every check passed."""
    cls = sim_class
    if bug is not None:
        cls = type(f"{sim_class.__name__}_{bug}", (sim_class,), {"node_class": BUGS[bug]})
    return cls(seed, profile(seed), trace).run()


def cli(
    argv: list[str] | None,
    sim_class: type[NodeSim],
    profile: Callable[[int], NodeSimConfig],
    hunt: Callable[[int], NodeSimConfig],
) -> int:
    """Parse `argv`, run the seeds, print the summary; the exit status."""
    ap = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n")[0])
    add_seed_options(ap, 50, "use the bug-hunting fault mix")
    ap.add_argument("--bug", choices=sorted(BUGS), help="test only: plant this bug in every node")
    ap.add_argument(
        "--bug-report", action="store_true", help="per planted bug, in how many seeds it is caught"
    )
    args = ap.parse_args(argv)
    if args.hunt:
        profile = hunt
    seeds = chosen_seeds(ap, args)
    # A node failing is reported as a violation; its own log line would only repeat it.
    logging.getLogger("hamgr.raft").setLevel(logging.DEBUG if args.trace else logging.CRITICAL + 1)
    if args.bug_report:
        for bug in sorted(BUGS):
            results = [run_seed(s, sim_class, profile, bug) for s in seeds]
            caught = [r for r in results if r is not None and r.startswith("violation")]
            kinds = sorted({r.split(":")[1].strip() for r in caught})
            print(f"{bug}: caught in {len(caught)}/{len(seeds)} seeds ({', '.join(kinds)})")
        return 0
    extra = f" --bug {args.bug}" if args.bug else ""
    extra += " --hunt" if args.hunt else ""
    trace = print if args.trace else None
    return run_seeds(
        seeds, lambda seed: run_seed(seed, sim_class, profile, args.bug, trace), PROG, extra
    )
