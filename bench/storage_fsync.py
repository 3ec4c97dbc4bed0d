"""How fast the Raft storage makes a batch durable: saves/s and p50/p99 latency of save().

Each save carries a batch of 256-byte entries and a hard state (as a leader's Ready does) and ends
in one fsync. Runs 1-entry and 64-entry batches for about a second each, in a fresh directory
(by default under the system temp dir: pass --dir to measure another disk).

    .venv/bin/python bench/storage_fsync.py [--seconds 1.0] [--dir PATH]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from hamgr.raft.core.types import Entry, HardState
from hamgr.raft.wal.storage import RaftStorage

ENTRY_BYTES = 256
MAX_SAVES = 20_000


def measure(path: str, batch: int, seconds: float) -> list[float]:
    """Latencies (seconds) of back-to-back saves of `batch` entries for about `seconds`."""
    payload = bytes(range(256)) * (ENTRY_BYTES // 256)
    latencies: list[float] = []
    with RaftStorage.open(path) as storage:
        index = storage.last_index
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(latencies) < MAX_SAVES:
            entries = [Entry(1, index + k + 1, data=payload) for k in range(batch)]
            index += batch
            started = time.perf_counter()
            storage.save(HardState(1, 1, index), entries, None)
            latencies.append(time.perf_counter() - started)
    return latencies


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per batch size")
    parser.add_argument("--dir", default=None, help="parent directory of the data directory")
    args = parser.parse_args()
    print(f"{'batch':>5} {'saves':>7} {'saves/s':>9} {'entries/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for batch in (1, 64):
        parent = tempfile.mkdtemp(prefix="hamgr-bench-", dir=args.dir)
        try:
            lat = measure(parent + "/raft", batch, args.seconds)
        finally:
            shutil.rmtree(parent)
        total = sum(lat)
        lat.sort()
        print(
            f"{batch:>5} {len(lat):>7} {len(lat) / total:>9.0f} {len(lat) * batch / total:>10.0f} "
            f"{percentile(lat, 0.50) * 1e3:>8.3f} {percentile(lat, 0.99) * 1e3:>8.3f}"
        )


if __name__ == "__main__":
    main()
