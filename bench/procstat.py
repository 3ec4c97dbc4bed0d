"""What a process costs, from /proc, and counters from Prometheus text: pure parsing, no I/O
except the two readers at the bottom.

CPU time is `utime + stime + cutime + cstime` of /proc/<pid>/stat (all threads, plus the
children it has reaped, such as pg_ctl or pg_controldata runs), in clock ticks; RSS is
`VmRSS` of /proc/<pid>/status.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def cpu_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime from the text of /proc/<pid>/stat. The command name
    (field 2) may hold spaces and parentheses, so fields are counted after its last ')'."""
    after = stat.rsplit(")", 1)[1].split()
    # after[0] is field 3 (state); utime is field 14, so after[11] .. cstime after[14].
    return sum(int(x) for x in after[11:15])


def parent_pid(stat: str) -> int:
    """Field 4 (ppid) of /proc/<pid>/stat."""
    return int(stat.rsplit(")", 1)[1].split()[1])


def command_name(stat: str) -> str:
    """Field 2 (comm) of /proc/<pid>/stat, without its parentheses."""
    return stat[stat.index("(") + 1 : stat.rindex(")")]


def rss_kb(status: str) -> int:
    """VmRSS of /proc/<pid>/status in kB (0 for a zombie, which has none)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_percent(ticks: int, seconds: float, clk_tck: int = CLK_TCK) -> float:
    """CPU time `ticks` spent over `seconds` of wall time, in percent of one core."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    return 100.0 * ticks / clk_tck / seconds


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of metric `name` (all label sets) in Prometheus text format;
    nan when there is none."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m[1] == name:
            total += float(m[3])
            found = True
    return total if found else math.nan


def descendants(pid: int, parents: dict[int, int]) -> list[int]:
    """Every process below `pid` in the tree given as child -> parent."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def ratio(a: float, b: float) -> float:
    """a / b, nan when either is unknown or b is 0."""
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def mean(values: Iterable[float]) -> float:
    """The mean, nan for no values."""
    got = list(values)
    return sum(got) / len(got) if got else math.nan


# -- readers --------------------------------------------------------------------------------


def read_stat(pid: int) -> str | None:
    """/proc/<pid>/stat, or None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None


def process_tree() -> dict[int, tuple[int, str]]:
    """Every process now: pid -> (parent pid, command name)."""
    tree = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is not None:
            tree[int(entry.name)] = (parent_pid(stat), command_name(stat))
    return tree
