"""The garbage-collector policy of the long-running processes, checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from hamgr.agent.gcpolicy import GEN0_THRESHOLD

PROBE = """
import gc
from hamgr.agent.gcpolicy import tune_gc
default = gc.get_threshold()
tune_gc()
print(*default, *gc.get_threshold(), gc.get_freeze_count(), gc.isenabled())
"""


def test_tune_gc_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    d0, d1, d2, t0, t1, t2, frozen, enabled = out
    assert (int(t0), t1, t2) == (GEN0_THRESHOLD, d1, d2)
    assert int(d0) < GEN0_THRESHOLD
    assert int(frozen) > 1000  # the interpreter's and hamgr's startup objects
    assert enabled == "True"  # cycles are still collected
