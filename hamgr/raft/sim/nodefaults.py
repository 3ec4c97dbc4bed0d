"""The node simulator's nemesis: one fault per call, drawn from the run's seeded random source.

Crashes (the leader half of the time) with a restart from the disk later, cold restarts of every
member, partitions (a leader alone half of the time, else a random split) and one-way link cuts
that heal later, fsync stalls on one member's disk (the leader's half of the time), stalls of a
member's clock (its lease clock stands still and its ticks slow down, as in a paused VM), pauses
of the leader (cut off with its clock stalled), and leadership transfers through the node's own
`transfer_leadership`. The mix of kinds is a weighted table in the run's configuration.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from hamgr.raft.errors import NotLeaderError
from hamgr.raft.server.pending import NodeFailedError

if TYPE_CHECKING:
    from hamgr.raft.sim.node import NodeSim

__all__ = ["FAULTS", "HUNT_FAULTS", "inject_fault"]


FAULTS = (
    ("crash", 0.25),
    ("partition", 0.20),
    ("cut_link", 0.13),
    ("cold_restart", 0.05),
    ("slow_disk", 0.15),
    ("clock_stall", 0.08),
    ("pause_leader", 0.07),
    ("transfer", 0.05),
    ("nothing", 0.02),
)
"""The default mix: fault kinds and their weights."""

HUNT_FAULTS = (
    ("crash", 0.15),
    ("partition", 0.15),
    ("slow_disk", 0.05),
    ("clock_stall", 0.10),
    ("pause_leader", 0.25),
    ("transfer", 0.30),
)
"""The bug-hunting mix: aimed at moments when two members believe they lead, and at
leadership moving back and forth (a lease clock must restart each time)."""


async def inject_fault(sim: NodeSim) -> None:
    """Inject one fault into the run, of a kind drawn from `sim.cfg.faults`."""
    rng = sim.rng
    kinds = sim.cfg.faults
    kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
    ids = list(sim.ids)
    leaders = sim.leaders()
    if kind == "crash":
        victim = rng.choice(leaders if leaders and rng.random() < 0.5 else ids)
        await sim.crash(victim, rng.uniform(0.02, 1.5))
    elif kind == "partition":
        rng.shuffle(ids)
        cut = rng.randrange(1, len(ids))
        if leaders and rng.random() < 0.5:  # isolate a leader alone
            ids.remove(leaders[0])
            ids.insert(0, leaders[0])
            cut = 1
        left, right = ids[:cut], ids[cut:]
        links = [(a, b) for a in left for b in right] + [(b, a) for a in left for b in right]
        sim.net.cut(links)
        sim.log(f"partition {left} | {right}")
        sim.loop.call_later(rng.uniform(0.05, 2.0), _uncut, sim, links, "partition healed")
    elif kind == "cut_link":
        a, b = rng.sample(ids, 2)
        sim.net.cut([(a, b)])
        sim.log(f"cut link {a}->{b}")
        sim.loop.call_later(rng.uniform(0.05, 2.0), _uncut, sim, [(a, b)], f"link {a}->{b} back")
    elif kind == "cold_restart":
        sim.log("cold restart of every member")
        for i in ids:
            await sim.crash(i, rng.uniform(0.01, 0.4))
    elif kind == "slow_disk":
        victim = rng.choice(leaders if leaders and rng.random() < 0.5 else ids)
        until = sim.loop.time() + rng.uniform(0.3, 2.5)
        sim.slow_disk[victim] = until
        sim.log(f"slow disk on {victim} until {until * 1000:.0f} ms")
    elif kind == "clock_stall":
        victim = rng.choice(leaders if leaders and rng.random() < 0.6 else ids)
        sim.clocks[victim].stall()
        stall = rng.uniform(0.3, 2.0)
        sim.log(f"clock of {victim} stalls for {stall * 1000:.0f} ms")
        sim.loop.call_later(stall, sim.clocks[victim].resume)
    elif kind == "pause_leader" and leaders:
        _pause(sim, leaders[0], rng.uniform(0.5, 2.5))
    elif kind == "transfer" and leaders:
        to = rng.choice([i for i in ids if i != leaders[0]])
        sim.log(f"transfer leadership {leaders[0]} -> {to}")
        sim.loop.create_task(_transfer(sim, leaders[0], to))


def _pause(sim: NodeSim, victim: int, seconds: float) -> None:
    """Cut `victim` off and stall its clock: it keeps believing it leads (its ticks slow down,
    so no timely check-quorum step-down) while the others elect a new leader and take writes.
    Only ReadIndex keeps its reads and keepalives from going stale meanwhile."""
    links = [(victim, i) for i in sim.ids if i != victim]
    links += [(b, a) for a, b in links]
    sim.net.cut(links)
    sim.clocks[victim].stall()
    sim.log(f"pause {victim} for {seconds * 1000:.0f} ms (cut off, clock stalled)")

    def resume() -> None:
        _uncut(sim, links, f"{victim} resumed")
        sim.clocks[victim].resume()

    sim.loop.call_later(seconds, resume)


def _uncut(sim: NodeSim, links: list[tuple[int, int]], what: str) -> None:
    sim.net.uncut(links)
    sim.log(what)


async def _transfer(sim: NodeSim, frm: int, to: int) -> None:
    node = sim.nodes[frm]
    with contextlib.suppress(NotLeaderError, TimeoutError, NodeFailedError):
        await node.transfer_leadership(to, 1.0)
