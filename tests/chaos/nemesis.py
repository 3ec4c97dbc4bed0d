"""The nemesis's schedule: which faults, on whom, when and for how long, from a seed. Pure.

A schedule has two phases:

1. **gentle** (the first `GENTLE_SHARE` of the run): the default profile, faults a healthy
   cluster must ride out without a failover: every link delayed 0-200 ms (`GENTLE_LINK`: 100 ms
   with 100 ms jitter either way) with 200 ms spikes, and the fsyncs of one member's store
   stalled by 50-800 ms, changing every few seconds. A failover here is a false failover.
2. **nemesis**: steps of one or two faults at once, each held for `HOLD` seconds and then
   healed, with a quiet gap after: partitions (one member cut off, majority/minority split,
   one-way loss, a bridge member that sees both sides), kill -9 (agent, fencer, postmaster,
   whole host; a killed agent or host is started again at the heal), SIGSTOP/SIGCONT of the
   same, fsync stalls, a full store disk, delay/jitter/loss on every link.

Targets are roles (``primary``, ``replica``, ``any``) resolved when the step runs, so that a
schedule aims at the primary whoever it is by then. The same seed, duration and size always
give the same schedule (`schedule`), which `describe` prints for a replay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

GENTLE_SHARE = 0.3
GENTLE_LINK = {"delay": 0.1, "jitter": 0.1}
SPIKE_LINK = {"delay": 0.2, "jitter": 0.0}
GENTLE_STALL = (0.05, 0.8)
HOLD = (4.0, 15.0)
GAP = (3.0, 8.0)
ROLES = ("primary", "replica", "any")
PROCESSES = ("agent", "fencer", "postmaster", "host")
KINDS = (
    "isolate",
    "split",
    "oneway",
    "bridge",
    "kill9",
    "freeze",
    "fsync",
    "diskfull",
    "links",
)


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, the role it aims at and its parameters."""

    kind: str
    role: str = "any"
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.kind}({self.role}{', ' + args if args else ''})"


@dataclass(frozen=True)
class Step:
    """Faults injected together at `at` seconds into the run, healed `hold` seconds later."""

    at: float
    hold: float
    faults: tuple[Fault, ...]
    phase: str

    def __str__(self) -> str:
        return f"t={self.at:6.1f}s hold {self.hold:4.1f}s [{self.phase}] " + " + ".join(
            map(str, self.faults)
        )


def _fault(rng: random.Random, kind: str) -> Fault:
    role = rng.choice(ROLES)
    if kind in ("isolate", "split"):
        return Fault(kind, role, {"mode": rng.choice(("refuse", "blackhole"))})
    if kind == "oneway":
        return Fault(kind, role, {"direction": rng.choice(("out", "in"))})
    if kind == "bridge":
        return Fault(kind, role)  # `role` is the bridge: the others cannot reach each other
    if kind in ("kill9", "freeze"):
        return Fault(kind, role, {"process": rng.choice(PROCESSES)})
    if kind == "fsync":
        return Fault(kind, role, {"stall": round(rng.uniform(0.05, 2.0), 3)})
    if kind == "diskfull":
        return Fault(kind, role)
    if kind == "links":
        return Fault(
            kind,
            "any",
            {
                "delay": round(rng.uniform(0.0, 0.2), 3),
                "jitter": round(rng.uniform(0.0, 0.1), 3),
                "loss": round(rng.choice((0.0, 0.01, 0.05)), 3),
            },
        )
    raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")


def schedule(seed: int, seconds: float, *, gentle_share: float = GENTLE_SHARE) -> list[Step]:
    """The steps of a run of `seconds` from `seed` (module doc)."""
    if not seconds > 0:
        raise ValueError(f"a schedule needs a positive duration, got {seconds!r}")
    if not 0 <= gentle_share <= 1:
        raise ValueError(f"gentle_share must be in [0, 1], got {gentle_share!r}")
    rng = random.Random(seed)
    steps: list[Step] = []
    gentle_end = seconds * gentle_share
    t = 0.0
    while t < gentle_end:
        hold = min(rng.uniform(3.0, 8.0), gentle_end - t)
        faults = [Fault("fsync", "sticky", {"stall": round(rng.uniform(*GENTLE_STALL), 3)})]
        link = SPIKE_LINK if rng.random() < 0.2 else GENTLE_LINK
        faults.append(Fault("links", "any", dict(link)))
        steps.append(Step(round(t, 3), round(hold, 3), tuple(faults), "gentle"))
        t += hold
    t = gentle_end + (rng.uniform(*GAP) if gentle_end > 0 else 0.0)
    while t < seconds:
        hold = min(rng.uniform(*HOLD), seconds - t)
        kinds = rng.sample(KINDS, rng.choice((1, 1, 2)))
        steps.append(
            Step(round(t, 3), round(hold, 3), tuple(_fault(rng, k) for k in kinds), "nemesis")
        )
        t += hold + rng.uniform(*GAP)
    return steps


def describe(steps: list[Step]) -> str:
    return "\n".join(str(s) for s in steps)
