"""What one failover run cost, and the tables and last line bench/failover.py prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MARGIN_SCENARIO = "replica-store-leader-kill"


@dataclass
class Run:
    """What one fault cost; times are seconds after the fault."""

    scenario: str
    index: int
    old_primary: str
    store_leader: str | None
    new_primary: str | None = None
    skipped: bool = False
    outage: float = float("nan")
    first_error: float | None = None
    new_primary_200: float | None = None
    lb_up: float | None = None
    acked: int = 0
    """Acknowledged writes of every writer (through HAProxy and direct)."""
    lost: int = 0
    """Acknowledged writes (any writer) missing on the final primary."""
    lost_by: dict[str, int] = field(default_factory=dict)
    """Lost writes by writer label (`lb` through HAProxy, else the member written to)."""
    lost_sample: list[int] = field(default_factory=list)
    local_only: int = 0
    """Commits whose synchronous wait was cancelled: not acknowledged, not counted as lost."""
    overlap: float = 0.0
    """Seconds during which two members both acknowledged direct writes."""
    direct_acks: dict[str, int] = field(default_factory=dict)
    fence_margin: float | None = None
    fence_margin_before: float | None = None
    write_rate: float = 0.0
    note: str = ""


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measured(runs: list[Run]) -> list[Run]:
    """The runs that injected their fault (not SKIPPED)."""
    return [r for r in runs if not r.skipped]


def table(scenario: str, runs: list[Run], profile: str, ttl: float, sync: str) -> str:
    margins = scenario == MARGIN_SCENARIO
    head = (
        f"{'run':>3}  {'old->new':<9}  {'raft_ldr':<8}  {'outage_s':>8}  {'first_err_s':>11}  "
        f"{'new_200_s':>9}  {'lb_up_s':>7}  {'acked':>6}  {'w/s':>5}  {'lost':>4}  "
        f"{'local':>5}  {'overlap_s':>9}  " + (f"{'margin_s':>8}  " if margins else "") + "note"
    )
    rows = [f"{scenario} (profile {profile}, ttl {ttl:g} s, sync {sync})", head]
    for r in runs:
        rows.append(
            f"{r.index:>3}  {r.old_primary + '->' + (r.new_primary or '?'):<9}  "
            f"{r.store_leader or '?':<8}  {fmt(r.outage):>8}  {fmt(r.first_error):>11}  "
            f"{fmt(r.new_primary_200):>9}  {fmt(r.lb_up):>7}  {r.acked:>6}  "
            f"{r.write_rate:>5.0f}  {r.lost:>4}  {r.local_only:>5}  {fmt(r.overlap):>9}  "
            + (f"{fmt(r.fence_margin, 3):>8}  " if margins else "")
            + r.note
            + (f"lost by writer {r.lost_by}, seqs {r.lost_sample}" if r.lost else "")
        )
    rows.append(summary(runs, margins))
    return "\n".join(rows)


def summary(runs: list[Run], margins: bool) -> str:
    done = measured(runs)
    if not done:
        return f"no run measured ({len(runs)} skipped)"
    outages = [r.outage for r in done]
    new200 = [r.new_primary_200 for r in done if r.new_primary_200 is not None]
    parts = [
        f"outage median {fmt(median(outages))} s, max {fmt(max(outages))} s",
        f"new primary 200 median {fmt(median(new200))} s, "
        f"max {fmt(max(new200) if new200 else None)} s",
        f"lost {sum(r.lost for r in done)} of {sum(r.acked for r in done)} acknowledged",
        f"local-only {sum(r.local_only for r in done)}",
        f"two members acknowledging: max {fmt(max(r.overlap for r in done))} s",
    ]
    if margins:
        parts.append(f"smallest fence margin {fmt(smallest_margin(done), 3)} s")
    if aborted := sum(1 for r in done if r.note.startswith("ABORTED")):
        parts.append(f"ABORTED {aborted} of {len(done)}")
    if skipped := len(runs) - len(done):
        parts.append(f"SKIPPED {skipped}")
    return "; ".join(parts)


def smallest_margin(runs: list[Run]) -> float | None:
    found = [r.fence_margin for r in runs if r.fence_margin is not None]
    return min(found) if found else None


def last_line(results: dict[str, list[Run]], sync: str) -> str:
    """The machine-readable last line. `lost_writes` counts the switchovers' losses and
    `kill9_lost_writes` the kills' (every writer, summed over the runs); `sync_lost_writes`
    sums every scenario's losses with --sync on or quorum and is NA with --sync off (where
    losses are expected and printed per scenario instead)."""

    def number(value: float | None, digits: int = 2) -> str:
        return "nan" if value is None or value != value else f"{value:.{digits}f}"

    kill9 = measured(results.get("kill9", []))
    switch = measured(results.get("switchover", []))
    every = [r for runs in results.values() for r in measured(runs)]
    sync_lost = "NA" if sync == "off" else str(sum(r.lost for r in every))
    margin = smallest_margin(measured(results.get(MARGIN_SCENARIO, [])))
    return (
        f"kill9_outage_median_s={number(median([r.outage for r in kill9]))} "
        f"switchover_outage_median_s={number(median([r.outage for r in switch]))} "
        f"lost_writes={sum(r.lost for r in switch)} "
        f"kill9_lost_writes={sum(r.lost for r in kill9)} "
        f"sync_lost_writes={sync_lost} "
        f"store_leader_kill_min_fence_margin_s={number(margin, 3)}"
    )
