"""Pure figures from the writers' records: outage, lost writes, and two members writing at once.

No I/O here: each function takes what the writers recorded (CLOCK_MONOTONIC instants, sequence
numbers) and returns numbers, so the rules are tested without a cluster.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

Window = tuple[float, float]


def longest_gap(times: Iterable[float], after: float, until: float = float("inf")) -> Window:
    """The longest gap between consecutive acknowledged writes whose end lies in (after, until]:
    (start, end); (nan, nan) when no write was acknowledged in that span. A gap that straddles
    `after` counts: it is the outage that began before the first failed write was seen."""
    best: Window = (float("nan"), float("nan"))
    longest = -1.0
    for a, b in itertools.pairwise(sorted(times)):
        if after < b <= until and b - a > longest:
            best, longest = (a, b), b - a
    return best


def missing(acked: Iterable[int], present: set[int]) -> list[int]:
    """The acknowledged sequence numbers absent from `present` (the final primary's rows)."""
    return sorted(seq for seq in acked if seq not in present)


def ack_windows(times: Iterable[float], max_gap: float) -> list[Window]:
    """One member's acknowledged writes merged into windows: consecutive acks closer than
    `max_gap` belong to one window (the member was taking writes through it). A lone ack is a
    window of length zero."""
    windows: list[Window] = []
    for t in sorted(times):
        if windows and t - windows[-1][1] < max_gap:
            windows[-1] = (windows[-1][0], t)
        else:
            windows.append((t, t))
    return windows


def overlap_seconds(windows: Mapping[str, list[Window]]) -> float:
    """The seconds during which at least two members each had an ack window open: the time
    two members both acknowledged writes. A member's own windows never overlap each other (see
    `ack_windows`), so counting open windows over all members is enough."""
    events = sorted(
        (t, step) for spans in windows.values() for a, b in spans for t, step in ((a, 1), (b, -1))
    )
    total, open_count, since = 0.0, 0, 0.0
    for t, step in events:  # at equal instants a close (-1) sorts before an open (+1)
        if open_count >= 2:
            total += t - since
        open_count += step
        since = t
    return total


def overlap_of_members(acks: Mapping[str, Iterable[float]], max_gap: float) -> float:
    """`overlap_seconds` of each member's acks merged with `ack_windows`."""
    return overlap_seconds({name: ack_windows(times, max_gap) for name, times in acks.items()})
