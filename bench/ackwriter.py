"""The failover benchmark's client: one connection inserting sequence numbers, acks recorded.

    python bench/ackwriter.py --host H --port P --password PW --table T --out FILE
        [--rate R] [--seq-base B] [--cancel-after S] [--keep-connection]

Inserts B+1, B+2, ... into `T(seq)` with autocommit, each attempt with a new number (so a write
whose outcome is unknown is never retried under the same number), as fast as it can or at `R`
attempts per second. `--seq-base` keeps the numbers of several writers into one table apart.
`H` is a host name or address, or a directory holding the server's unix socket.

On an error it drops the connection and reconnects at once; only when connecting itself fails
does it pause 10 ms, so that a load balancer with no server up is not hammered by a busy loop
that would steal the CPU the cluster needs to recover. With `--keep-connection` a connection
that is still usable after an error the server answered (an insert refused by a read-only
standby, a cancelled insert) is kept: a writer aimed at one member then waits on that member
instead of connecting again and again, and writes on it as soon as it is promoted.

A commit whose synchronous replication wait was cancelled (PostgreSQL answers with a WARNING
"canceling wait for synchronous replication ..." / "The transaction has already committed
locally, but might not have been replicated to the standby", then success or a dropped
connection) is NOT an acknowledged write: the notice is caught with psycopg's notice handler
and the insert recorded as local-only. statement_timeout cannot bound that wait (PostgreSQL
disables it before the commit), so a watchdog thread cancels, as a client-side timeout would,
an insert in flight for `--cancel-after` seconds (0: never), and the insert in flight when
SIGTERM comes, so that the writer always stops.

Every outcome is recorded in FILE as (kind, seq, CLOCK_MONOTONIC seconds), 17 bytes each
('<Bqd'): ACK, LOCAL (committed locally only) or ERROR (the first error of each streak of
errors, seq 0). Records are written unbuffered, so the file holds every outcome up to the last
even if the writer is killed. The clock is system-wide on Linux, so the parent compares these
instants with its own. Every 0.1 s a line `hb <acks> <last_ack_time> <errors>` goes to stdout.
SIGTERM stops it after the current insert; it prints `done` when it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.errors import Diagnostic

RECORD = struct.Struct("<Bqd")
ACK, LOCAL, ERROR = 1, 2, 3
_CONNECT_PAUSE = 0.01
_WATCH_PERIOD = 0.05
_CANCEL_TIMEOUT = 2.0


def is_cancelled_sync_wait(message: str | None, detail: str | None) -> bool:
    """Whether a server notice says a commit's synchronous replication wait was cancelled (the
    transaction committed locally and may be missing on every standby)."""
    text = f"{message or ''} {detail or ''}".lower()
    return (
        "canceling" in text and "synchronous replication" in text
    ) or "committed locally" in text


@dataclass
class Records:
    """What a writer recorded: acks and local-only commits as (seq, time), first-error times."""

    acks: list[tuple[int, float]] = field(default_factory=list)
    local: list[tuple[int, float]] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)


def read_records(path: str) -> Records:
    """A writer's output file, decoded (a torn last record is ignored)."""
    with open(path, "rb") as f:
        data = f.read()
    found = Records()
    for kind, seq, t in RECORD.iter_unpack(data[: len(data) - len(data) % RECORD.size]):
        if kind == ACK:
            found.acks.append((seq, t))
        elif kind == LOCAL:
            found.local.append((seq, t))
        else:
            found.errors.append(t)
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", required=True, help="address, or a unix socket directory")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--password", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=float, default=0.0, help="attempts per second (0: no limit)")
    ap.add_argument("--seq-base", type=int, default=0, help="the first insert is seq-base + 1")
    ap.add_argument(
        "--cancel-after", type=float, default=0.0, help="cancel an insert after S s (0: never)"
    )
    ap.add_argument(
        "--keep-connection", action="store_true", help="keep a connection usable after an error"
    )
    return ap.parse_args(argv)


class Writer:
    """The insert loop of one writer process, and the watchdog that cancels overdue inserts."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop = False
        self.query = f"INSERT INTO {args.table} (seq) VALUES (%s)".encode()
        self.conn: psycopg.Connection[Any] | None = None
        self.cancelled_wait = False
        self.seq = args.seq_base
        self.acks = self.errors = 0
        self.last_ack = 0.0
        self.in_flight: tuple[int, float] | None = None
        """(seq, start) of the insert running now, read by the watchdog thread."""
        self.finished = threading.Event()

    def _on_notice(self, diag: Diagnostic) -> None:
        if is_cancelled_sync_wait(diag.message_primary, diag.message_detail):
            self.cancelled_wait = True

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            host=self.args.host,
            port=self.args.port,
            user=self.args.user,
            password=self.args.password,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
        )
        conn.add_notice_handler(self._on_notice)
        return conn

    def _drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                self.conn.close()
            self.conn = None

    def watchdog(self) -> None:
        """Cancel (once each) the insert in flight for --cancel-after seconds, or at all once
        SIGTERM came; until the insert loop has finished."""
        cancelled = -1
        while not self.finished.wait(_WATCH_PERIOD):
            flight, conn = self.in_flight, self.conn
            if flight is None or conn is None or flight[0] == cancelled:
                continue
            seq, started = flight
            limit = self.args.cancel_after
            if self.stop or (limit > 0 and time.monotonic() - started >= limit):
                cancelled = seq
                with contextlib.suppress(psycopg.Error, OSError):
                    conn.cancel_safe(timeout=_CANCEL_TIMEOUT)

    def attempt(self) -> tuple[int, int]:
        """One insert: (record kind, seq); ERROR with seq 0 when connecting failed."""
        try:
            if self.conn is None:
                self.conn = self._connect()
        except (psycopg.Error, OSError):
            time.sleep(_CONNECT_PAUSE)
            return ERROR, 0
        self.seq += 1
        self.cancelled_wait = False
        self.in_flight = (self.seq, time.monotonic())
        try:
            self.conn.execute(self.query, (self.seq,))
        except (psycopg.Error, OSError):
            if self.cancelled_wait:  # the warning came, then the connection died
                self._drop()
                return LOCAL, self.seq
            if not (self.args.keep_connection and not self.conn.broken and not self.conn.closed):
                self._drop()
            return ERROR, self.seq
        finally:
            self.in_flight = None
        return (LOCAL if self.cancelled_wait else ACK), self.seq

    def run(self, out: Any) -> None:
        period = 1.0 / self.args.rate if self.args.rate > 0 else 0.0
        in_error = False
        next_at = next_hb = time.monotonic()
        while not self.stop:
            now = time.monotonic()
            if now >= next_hb:
                print(f"hb {self.acks} {self.last_ack:.6f} {self.errors}", flush=True)
                next_hb = now + 0.1
            if period:
                if now < next_at:
                    time.sleep(min(next_at - now, 0.1))
                    continue
                next_at = max(next_at + period, now - 0.1)  # no burst after a stall
            kind, seq = self.attempt()
            at = time.monotonic()
            if kind == ERROR:
                self.errors += 1
                if not in_error:
                    out.write(RECORD.pack(ERROR, 0, at))
                    in_error = True
                continue
            in_error = False
            out.write(RECORD.pack(kind, seq, at))
            if kind == ACK:
                self.acks += 1
                self.last_ack = at
        self._drop()
        print(f"hb {self.acks} {self.last_ack:.6f} {self.errors}", flush=True)


def main() -> int:
    writer = Writer(parse_args())

    def on_term(signum: int, frame: object) -> None:
        writer.stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    watchdog = threading.Thread(target=writer.watchdog, name="watchdog", daemon=True)
    watchdog.start()
    with open(writer.args.out, "wb", buffering=0) as out:
        try:
            writer.run(out)
        finally:
            writer.finished.set()
    watchdog.join(timeout=_CANCEL_TIMEOUT + 1)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
