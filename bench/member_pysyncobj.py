"""One member of a 3-node pysyncobj ReplDict for bench/raft_kv.py (the peer we compare with).

The member that is leader runs the load in its own process and prints one JSON line per
measurement. `--fast` uses appendEntriesUseBatch=False, pysyncobj's lowest-latency setting; it
never fsyncs in either configuration.
"""

from __future__ import annotations

import argparse
import sys
import time

from kvload import VALUE, run_threads
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.batteries import ReplDict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--self", required=True)
    ap.add_argument("--partners", required=True)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    conf = SyncObjConf(appendEntriesUseBatch=False) if args.fast else SyncObjConf()
    d = ReplDict()
    obj = SyncObj(args.self, args.partners.split(","), consumers=[d], conf=conf)
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leader = obj._getLeader()
        if leader is not None:
            break
        time.sleep(0.05)
    if str(obj._getLeader()) != args.self:
        while True:
            time.sleep(3600)  # a follower: serve until killed
    for callers in (1, 32):

        def put(c: int, n: int) -> None:
            d.set(f"k{c}-{n % 1000}", VALUE, sync=True, timeout=10)

        fig = run_threads(put, callers, args.seconds)
        print("result " + fig.to_json(), flush=True)
    print("done", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
