"""One clock for lease and fence deadlines (hamgr/clock.py): CLOCK_BOOTTIME on Linux, and no
module that computes or checks a fence deadline reads another clock.

(That the fencer process reads the same clock as the agent, to the instant, is shown against a
real fencer in tests/test_fencer.py.)
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import pytest

from hamgr import clock

ROOT = Path(__file__).resolve().parent.parent / "hamgr"

#: Every module that computes or checks a lease or fence deadline, or hands one on.
FENCE_CODE = sorted(
    {
        *(ROOT / "ha").glob("*.py"),
        *(ROOT / "fencer").glob("*.py"),
        ROOT / "dcs" / "base.py",
        ROOT / "dcs" / "session.py",
        ROOT / "agent" / "api.py",
        ROOT / "apiview.py",
        ROOT / "agent" / "metrics.py",
    }
)


def other_clocks(path: Path, root: Path = ROOT) -> list[str]:
    """Where `path` reads a monotonic clock other than hamgr.clock (``file:line``)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        bad = (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
            and node.attr in ("monotonic", "monotonic_ns", "perf_counter", "clock_gettime")
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "time"
            and any(a.name in ("monotonic", "monotonic_ns", "clock_gettime") for a in node.names)
        )
        if bad:
            found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return sorted(found)


def test_fence_code_reads_no_clock_but_hamgr_clock() -> None:
    assert all(p.exists() for p in FENCE_CODE), [p for p in FENCE_CODE if not p.exists()]
    mixed = [hit for path in FENCE_CODE for hit in other_clocks(path)]
    assert mixed == [], f"use hamgr.clock.now() for deadlines, not: {mixed}"


def test_the_check_finds_a_planted_monotonic_call(tmp_path: Path) -> None:
    sample = tmp_path / "hamgr" / "ha" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("import time\nfrom time import monotonic\n\nx = time.monotonic()\n")
    hits = other_clocks(sample, tmp_path / "hamgr")
    assert hits == ["hamgr/ha/sample.py:2", "hamgr/ha/sample.py:4"]


@pytest.mark.skipif(sys.platform != "linux", reason="CLOCK_BOOTTIME is Linux's")
def test_on_linux_the_deadline_clock_is_boottime() -> None:
    assert clock.NAME == "CLOCK_BOOTTIME"
    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    now = clock.now()
    after = time.clock_gettime(time.CLOCK_BOOTTIME)
    assert before <= now <= after


def test_the_clock_imports_only_the_standard_library() -> None:
    """The fencer imports it: nothing there may pull in the rest of hamgr."""
    tree = ast.parse((ROOT / "clock.py").read_text())
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in (n.names if isinstance(n, ast.Import) else [n])
    }
    assert imported <= {"__future__", "sys", "time"}, imported
