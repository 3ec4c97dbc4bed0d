"""One member of a 3-member hamgr store for bench/raft_kv.py's in-process measurement.

Every member runs a RaftNode; the one that is leader runs the load in its own process (callers
on the leader, as an embedding agent would) and prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from kvload import VALUE, run_async

from hamgr.agent.gcpolicy import tune_gc
from hamgr.raft.server.node import RaftNode


def _addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--members", required=True, help="id=host:port,...")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    members = {int(i): _addr(a) for i, a in (p.split("=") for p in args.members.split(","))}
    node = RaftNode(
        args.id, args.dir, "bench", b"bench-secret-0123456789", members[args.id], peers=members
    )
    await node.start()
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while not node.is_leader and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if node.status()["leader"] not in (0, args.id):
            await asyncio.Event().wait()  # a follower: serve until killed
    for callers in (1, 32):

        async def put(c: int, n: int) -> None:
            await node.put(b"k%d-%d" % (c, n % 1000), VALUE)

        fig = await run_async(put, callers, args.seconds)
        print("result " + fig.to_json(), flush=True)
    print("done", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    tune_gc()  # as `hamgr store` and `hamgr agent` do
    sys.exit(asyncio.run(main()))
