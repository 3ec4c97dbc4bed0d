"""The failover benchmark's writers: one through HAProxy, one straight to each member.

Each writer is a `bench/ackwriter.py` process (its own interpreter, so that recording acks does
not compete with the benchmark's probes for one GIL) inserting into one shared table. Their
sequence numbers are kept apart by a base per writer (`SEQ_STRIDE` times its index), so every
acknowledged row can be looked up on the final primary whoever took it. A direct writer talks to
its member's PostgreSQL over the unix socket in `<data>.run`, which no firewall rule on the
member's address reaches (a client on the old primary's side of a partition), and keeps its
connection when a read-only standby refuses the insert, so that it writes the moment that
member is promoted. Everything is killed by PID through `Procs`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from ackwriter import Records, read_records
from procs import Child, Procs

HERE = Path(__file__).resolve().parent
SEQ_STRIDE = 10**12
LB = "lb"
"""The label of the writer through HAProxy; direct writers are labelled by member name."""


@dataclass(frozen=True)
class WriterSpec:
    """Where one writer connects and how fast it tries."""

    label: str
    host: str
    port: int
    seq_base: int
    rate: float = 0.0
    cancel_after: float = 0.0
    keep_connection: bool = False

    def argv(self, table: str, out: Path, password: str) -> list[str]:
        argv = [
            sys.executable,
            str(HERE / "ackwriter.py"),
            *("--host", self.host, "--port", str(self.port), "--password", password),
            *("--table", table, "--out", str(out), "--rate", str(self.rate)),
            *("--seq-base", str(self.seq_base)),
            *("--cancel-after", str(self.cancel_after)),
        ]
        return argv + (["--keep-connection"] if self.keep_connection else [])


class WriterSet:
    """Writers into `table`, started together and stopped together."""

    def __init__(
        self, procs: Procs, specs: list[WriterSpec], table: str, out_dir: Path, password: str
    ) -> None:
        self.procs = procs
        self.specs = specs
        self.table = table
        self.out_dir = out_dir
        self.password = password
        self.children: dict[str, Child] = {}

    def out(self, label: str) -> Path:
        return self.out_dir / f"{self.table}.{label}.acks"

    def start(self) -> None:
        for spec in self.specs:
            argv = spec.argv(self.table, self.out(spec.label), self.password)
            self.children[spec.label] = self.procs.start(f"writer-{spec.label}", argv)

    def child(self, label: str) -> Child:
        return self.children[label]

    def stop(self, timeout: float = 15.0) -> list[str]:
        """SIGTERM every writer, wait for each to say `done`, then kill it by PID anyway; the
        labels of the writers that did not stop cleanly (their last records may be torn)."""
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.popen.pid, signal.SIGTERM)
        unclean = []
        for label, child in self.children.items():
            try:
                child.wait_line(lambda line: line == "done", timeout)
            except (TimeoutError, RuntimeError):
                unclean.append(label)
            self.procs.kill(child)
        return unclean

    def records(self) -> dict[str, Records]:
        """Each writer's records by label (empty when its file is missing)."""
        found = {}
        for spec in self.specs:
            try:
                found[spec.label] = read_records(str(self.out(spec.label)))
            except OSError:
                found[spec.label] = Records()
        return found
