"""What must hold over a chaos run, judged from what was recorded. Pure: no I/O.

- `split_brain`: never two members acknowledging writes at the same time. Each member's own
  direct writer records when each insert was acknowledged (CLOCK_MONOTONIC, one clock for every
  namespace); acks closer than `max_gap` form a window, and any instant inside windows of two
  members counts (`bench/ackstats.py`, the failover benchmark's rule).
- `lost_writes`: every acknowledged write is on the final primary. With synchronous mode
  strict an ack means two members had it, so each missing one is a violation; without it the
  losses are counted and reported, not violations.
- `failovers`: changes of the leader seen by the sampler; in the gentle phase each is a false
  failover.
- `liveness`: after the nemesis stopped, one primary and every replica streaming within the
  bound.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from ackstats import ack_windows, missing, overlap_seconds

ACK_GAP = 1.0
"""Acks of one member closer than this belong to one window of taking writes."""


@dataclass(frozen=True)
class Finding:
    """One checker's verdict: violations (0: it held) and what it saw."""

    checker: str
    violations: int
    detail: str

    def __str__(self) -> str:
        verdict = "ok" if self.violations == 0 else f"VIOLATED x{self.violations}"
        return f"{self.checker}: {verdict}: {self.detail}"


def split_brain(acks: Mapping[str, Iterable[float]], max_gap: float = ACK_GAP) -> Finding:
    """Two members acknowledging writes at once (see the module doc)."""
    windows = {name: ack_windows(times, max_gap) for name, times in acks.items()}
    total = overlap_seconds(windows)
    pairs = []
    names = sorted(windows)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = overlap_seconds({a: windows[a], b: windows[b]})
            if both > 0:
                pairs.append(f"{a}+{b} {both:.3f}s")
    counts = ", ".join(f"{n}={sum(1 for _ in windows[n])} windows" for n in names)
    detail = f"overlap {total:.3f} s" + (f" ({'; '.join(pairs)})" if pairs else "")
    return Finding("two writers", 1 if total > 0 else 0, f"{detail}; {counts}")


def lost_writes(acked: Iterable[int], present: set[int], *, synchronous: bool) -> Finding:
    """Acknowledged writes missing on the final primary."""
    acked = list(acked)
    gone = missing(acked, present)
    sample = f" e.g. {gone[:5]}" if gone else ""
    mode = "synchronous strict" if synchronous else "asynchronous (counted, not violations)"
    detail = f"{len(gone)} of {len(acked)} acknowledged writes missing{sample}; {mode}"
    return Finding("acknowledged writes", len(gone) if synchronous else 0, detail)


def leader_changes(samples: Sequence[tuple[float, str | None]]) -> list[tuple[float, str, str]]:
    """(instant, old, new) each time the sampled leader changed to another member (samples
    with no leader are skipped: an election in progress is not a change by itself)."""
    changes: list[tuple[float, str, str]] = []
    last: str | None = None
    for t, leader in samples:
        if leader is None:
            continue
        if last is not None and leader != last:
            changes.append((t, last, leader))
        last = leader
    return changes


def not_serving_spells(serving: Sequence[tuple[float, bool]], min_samples: int = 2) -> list[float]:
    """The instants at which the leader began a spell of at least `min_samples` consecutive
    samples saying it does not serve as primary (fenced or demoted while it holds the key)."""
    spells: list[float] = []
    run: list[float] = []
    for t, ok in [*serving, (float("inf"), True)]:
        if not ok:
            run.append(t)
            continue
        if len(run) >= min_samples:
            spells.append(run[0])
        run = []
    return spells


def failovers(
    samples: Sequence[tuple[float, str | None]],
    gentle_until: float,
    serving: Sequence[tuple[float, bool]] = (),
) -> tuple[Finding, int]:
    """The leader changes and the spells in which the leader did not serve as primary (its
    fencer stopped it while it kept the key); those in the gentle phase are false failovers:
    in both the primary did not stay primary."""
    changes = leader_changes(samples)
    spells = not_serving_spells(serving)
    false = [c for c in changes if c[0] <= gentle_until]
    false_spells = [t for t in spells if t <= gentle_until]
    listed = ", ".join(f"t={t:.1f}s {a}->{b}" for t, a, b in changes[:8])
    detail = (
        f"{len(changes)} leader changes ({listed or 'none'}), {len(spells)} spells of the "
        f"leader not serving; in the gentle phase {len(false)} changes, {len(false_spells)} "
        f"spells"
    )
    count = len(false) + len(false_spells)
    return Finding("no false failover", count, detail), count


def liveness(settled_after: float | None, bound: float, primary: str | None) -> Finding:
    """One primary and every replica streaming within `bound` s after the nemesis stopped."""
    if settled_after is None or settled_after > bound:
        return Finding("liveness", 1, f"not settled within {bound:g} s after the nemesis")
    return Finding("liveness", 0, f"settled in {settled_after:.1f} s (primary {primary})")
