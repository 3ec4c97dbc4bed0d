"""The failover benchmark's client: one connection inserting sequence numbers, acks recorded.

    python bench/ackwriter.py --host H --port P --password PW --table T --out FILE [--rate R]

Inserts 1, 2, 3, ... into `T(seq)` with autocommit, each attempt with a new number (so a write
whose outcome is unknown is never retried under the same number), as fast as it can or at `R`
inserts per second. On any error it drops the connection and reconnects at once; only when
connecting itself fails does it pause 10 ms, so that a load balancer with no server up is not
hammered by a busy loop that would steal the CPU the cluster needs to recover.

Every acknowledged insert is recorded as (seq, CLOCK_MONOTONIC seconds) in FILE, 16 bytes each
('<qd'); the first error of each streak of errors is recorded as (-1, time). The clock is
system-wide on Linux, so the parent compares these instants with its own. Every 0.1 s a line
`hb <acks> <last_ack_time> <errors>` goes to stdout. SIGTERM stops it after the current insert;
the file is complete once the process has exited with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import struct
import sys
import time
from typing import Any

import psycopg

RECORD = struct.Struct("<qd")
ERROR_SEQ = -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--password", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=float, default=0.0, help="inserts per second (0: no limit)")
    args = ap.parse_args()

    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    query = f"INSERT INTO {args.table} (seq) VALUES (%s)".encode()
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    seq = acks = errors = 0
    last_ack = 0.0
    in_error = False
    conn: psycopg.Connection[Any] | None = None
    next_at = next_hb = time.monotonic()
    with open(args.out, "wb", buffering=1 << 16) as out:
        while not stop:
            now = time.monotonic()
            if now >= next_hb:
                print(f"hb {acks} {last_ack:.6f} {errors}", flush=True)
                next_hb = now + 0.1
            if period:
                if now < next_at:
                    time.sleep(min(next_at - now, 0.1))
                    continue
                next_at = max(next_at + period, now - 0.1)  # no burst after a stall
            try:
                if conn is None:
                    conn = psycopg.connect(
                        host=args.host,
                        port=args.port,
                        user=args.user,
                        password=args.password,
                        dbname="postgres",
                        connect_timeout=2,
                        autocommit=True,
                    )
                seq += 1
                conn.execute(query, (seq,))
            except (psycopg.Error, OSError):
                errors += 1
                if not in_error:
                    out.write(RECORD.pack(ERROR_SEQ, time.monotonic()))
                    in_error = True
                connected = conn is not None
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        conn.close()
                    conn = None
                if not connected:
                    time.sleep(0.01)
                continue
            last_ack = time.monotonic()
            out.write(RECORD.pack(seq, last_ack))
            acks += 1
            in_error = False
    if conn is not None:
        conn.close()
    print(f"hb {acks} {last_ack:.6f} {errors}", flush=True)
    print("done", flush=True)
    return 0


def read_records(path: str) -> tuple[list[tuple[int, float]], list[float]]:
    """(acks as (seq, time), first-error times) from a writer's output file."""
    with open(path, "rb") as f:
        data = f.read()
    acks: list[tuple[int, float]] = []
    errors: list[float] = []
    for seq, t in RECORD.iter_unpack(data[: len(data) - len(data) % RECORD.size]):
        if seq == ERROR_SEQ:
            errors.append(t)
        else:
            acks.append((seq, t))
    return acks, errors


if __name__ == "__main__":
    sys.exit(main())
