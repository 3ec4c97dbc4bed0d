"""What decoding the cluster view costs an agent per HA loop (pure CPU, no I/O, no lock needed).

    .venv/bin/python bench/viewdecode.py [--members 3] [--history 3] [--rounds 5000]

Builds the RangeSnapshot an idle 3-member cluster holds under its scope (initialize, config,
leader, one member key per member, history, sync, position; values encoded as the agents
encode them) and times :func:`hamgr.dcs.common.build_view` on it, the work the agent does on
every ``get_cluster`` after the range arrives. Prints microseconds per decode and what that is
as CPU % of one core at one read per second (loop_wait 1 s). The range's own cost (the request,
the Raft leader's read round to its followers, the reply's decoding in the client) is not in
this figure: compare with bench/footprint.py run with and without a reuse of the view.
"""

from __future__ import annotations

import argparse
import time

from hamgr.dcs.base import scope_keys
from hamgr.dcs.common import (
    RangeSnapshot,
    StoredKey,
    build_view,
    encode_history,
    encode_json,
    encode_value,
)
from hamgr.dcs.model import (
    MemberState,
    PrimaryPosition,
    SyncState,
    TimelineEntry,
)
from hamgr.dcs.settings import DynamicSettings


def snapshot(members: int, history: int) -> RangeSnapshot:
    """The scope of an idle cluster of ``members`` members, pg1 primary, at one revision."""
    keys = scope_keys("bench")
    rev = 100
    kvs: list[StoredKey] = []

    def put(key: str, value: bytes, lease: int = 0) -> None:
        nonlocal rev
        rev += 1
        kvs.append(StoredKey(key, value, rev, rev, lease))

    put(keys.initialize, b"7300000000000000001")
    put(keys.config, encode_json(DynamicSettings().to_dict()))
    put(keys.leader, b"pg1", 7)
    for i in range(1, members + 1):
        primary = i == 1
        state = MemberState(
            name=f"pg{i}",
            api_url=f"http://127.0.0.{150 + i}:8008",
            conn_url=f"127.0.0.{150 + i}:5432",
            role="primary" if primary else "replica",
            state="running",
            timeline=history + 1,
            received_lsn=0x3000060,
            replayed_lsn=0x3000060,
            fence_token=103 if primary else 0,
            reason="I hold the leader key" if primary else "following pg1",
            store_id=i,
            fencer="armed" if primary else "",
        )
        put(keys.member(f"pg{i}"), encode_value(state), 7 + i)
    entries = tuple(
        TimelineEntry(t, 0x3000000 + t, "failover", 1.8e9 + t, "pg1") for t in range(1, history + 1)
    )
    put(keys.history, encode_history(entries))
    put(keys.sync, encode_value(SyncState("pg1", ("pg2",), 1)))
    put(keys.position, encode_value(PrimaryPosition("pg1", history + 1, 0x3000060)))
    return RangeSnapshot(rev, tuple(sorted(kvs, key=lambda kv: kv.key)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=3, help="member keys (default 3)")
    ap.add_argument("--history", type=int, default=3, help="timeline history entries")
    ap.add_argument("--rounds", type=int, default=5000, help="decodes timed (default 5000)")
    args = ap.parse_args()
    if args.members < 1 or args.rounds < 1 or args.history < 0:
        ap.error("--members and --rounds must be >= 1, --history >= 0")
    keys = scope_keys("bench")
    snap = snapshot(args.members, args.history)
    build_view(keys, snap)  # warm up (and fail loudly if the snapshot does not decode)
    started = time.process_time()
    for _ in range(args.rounds):
        build_view(keys, snap)
    per = (time.process_time() - started) / args.rounds
    size = sum(len(kv.value) + len(kv.key) for kv in snap.kvs)
    print(f"keys={len(snap.kvs)} bytes={size} rounds={args.rounds}")
    print(f"build_view_us={per * 1e6:.1f} cpu_pct_at_1_per_s={per * 100:.3f}")


if __name__ == "__main__":
    main()
