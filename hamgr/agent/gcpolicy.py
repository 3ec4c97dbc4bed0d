"""Garbage-collector settings for the long-running processes (`hamgr store`, `hamgr agent`).

CPython's cyclic collector stops the process while it scans. With the default thresholds a store
member under a steady write load ran a full collection about once a second, 15 to 35 ms each, and
those pauses were the whole tail of its put latency (bench/raft_kv.py: network p99 at 32
clients 25 ms, against 9 to 12 ms with this policy). Two settings:

- Once startup is done, everything alive (modules, classes, functions, the configuration) is
  frozen: it is never garbage, so collections stop rescanning it.
- The youngest generation is collected every `GEN0_THRESHOLD` allocations instead of 700. The
  objects of requests in flight then die by reference counting before a collection can promote
  them, so the older generations fill, and get scanned, far less often.

Reference cycles are still collected; the young garbage waiting for a collection stays bounded
by the threshold (a few MB at most).
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "tune_gc"]

GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Apply the policy; call once, when startup is done and before serving."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
