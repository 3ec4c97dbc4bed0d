"""The one clock of lease and fence deadlines: CLOCK_BOOTTIME on Linux, CLOCK_MONOTONIC elsewhere.

A fence deadline (``fence_at = sent + ttl - safety_margin``) is an instant on this clock
everywhere it is computed or checked: the keepalive's ``sent_at`` (hamgr/dcs/session.py), the
agent's lease bookkeeping and decide()'s ``now`` (hamgr/ha), ``GET /primary``'s margin
(hamgr/agent/apiread.py), the Linux watchdog's pings (hamgr/fencer/watchdog.py) and the fencer
process (hamgr/fencer/process.py), which receives deadlines from the agent and compares them with
its own reading. Both are system-wide clocks, so a deadline handed from one process to another means
the same instant; the fencer names its clock (``CLOCK`` command) and the agent checks that the name
is its own before it relies on the fencer.

Why not CLOCK_MONOTONIC: it stops while the machine is suspended. The other members' leases
run on (the store's leader counts them), so after a resume a deadline on CLOCK_MONOTONIC would
still lie ahead by the time slept, and the old primary would accept writes until its next
keepalive failed. CLOCK_BOOTTIME counts the suspended time, so the deadline has passed at once.

The embedded store (hamgr/raft) keeps its own monotonic clock: a lease counted by the Raft
leader that stops during a suspend only lasts longer, which is the safe side.

Imports only the standard library (the fencer imports it).
"""

from __future__ import annotations

import sys
import time

if sys.platform == "linux":
    NAME = "CLOCK_BOOTTIME"
    _CLOCK_ID = time.CLOCK_BOOTTIME

    def now() -> float:
        """Seconds on CLOCK_BOOTTIME: monotonic, and counting the time the machine slept."""
        return time.clock_gettime(_CLOCK_ID)

else:
    NAME = "CLOCK_MONOTONIC"

    def now() -> float:
        """Seconds on the monotonic clock (no boot-time clock on this platform)."""
        return time.monotonic()
