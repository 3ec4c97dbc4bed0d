"""Pure parsers for PostgreSQL's text formats: postmaster.pid, pg_controldata, history files.

No I/O here, so each format is tested on literal text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from hamgr.lsn import parse_lsn
from hamgr.postgres.errors import PostgresError


def walfile_timeline(walfile_name: str) -> int:
    """Timeline of a WAL segment file name: its first 8 hex digits."""
    if len(walfile_name) < 24:
        raise ValueError(f"not a WAL file name: {walfile_name!r}")
    return int(walfile_name[:8], 16)


_SEGMENT = re.compile(r"^[0-9A-F]{24}$")


def newest_segment_timeline(names: Iterable[str]) -> int | None:
    """The highest timeline among WAL segment file names (``pg_wal`` entries; history files,
    ``.partial`` and ``.ready`` leftovers and anything else are ignored); None without one."""
    timelines = [int(n[:8], 16) for n in names if _SEGMENT.match(n)]
    return max(timelines, default=None)


@dataclass(frozen=True)
class PidFile:
    """The content of postmaster.pid (see PostgreSQL's pidfile.h for the line order)."""

    pid: int
    data_dir: str
    start_time: int | None = None
    port: int | None = None
    socket_dir: str | None = None
    listen_addr: str | None = None
    # 'starting', 'stopping', 'ready' or 'standby' (absent in very early startup).
    status: str | None = None


def parse_pid_file(text: str) -> PidFile:
    """Parse postmaster.pid; raises ValueError when even the PID line is unusable."""
    lines = text.split("\n")

    def line(index: int) -> str | None:
        return lines[index].strip() if len(lines) > index and lines[index].strip() else None

    pid_text = line(0)
    if pid_text is None or not pid_text.lstrip("-").isdigit():
        raise ValueError(f"postmaster.pid has no PID on its first line: {text[:80]!r}")
    start = line(2)
    port = line(3)
    return PidFile(
        pid=abs(int(pid_text)),
        data_dir=line(1) or "",
        start_time=int(start) if start and start.isdigit() else None,
        port=int(port) if port and port.isdigit() else None,
        socket_dir=line(4),
        listen_addr=line(5),
        status=line(7),
    )


@dataclass(frozen=True)
class ControlData:
    """The fields of pg_controldata that hamgr acts on, plus everything it printed in `raw`."""

    state: str
    system_identifier: int
    timeline: int
    checkpoint_lsn: int
    redo_lsn: int
    min_recovery_end_lsn: int
    min_recovery_end_timeline: int
    data_checksums: bool
    wal_log_hints: bool
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def clean_shutdown(self) -> bool:
        """True when the cluster was shut down cleanly (as a primary or a standby)."""
        return self.state in ("shut down", "shut down in recovery")


def parse_controldata(text: str) -> ControlData:
    """Parse `pg_controldata` output (run with LC_ALL=C so the labels are English)."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            raw[key.strip()] = value.strip()

    def need(key: str) -> str:
        try:
            return raw[key]
        except KeyError:
            raise PostgresError(f"pg_controldata output lacks {key!r}") from None

    try:
        return ControlData(
            state=need("Database cluster state"),
            system_identifier=int(need("Database system identifier")),
            timeline=int(need("Latest checkpoint's TimeLineID")),
            checkpoint_lsn=parse_lsn(need("Latest checkpoint location")),
            redo_lsn=parse_lsn(need("Latest checkpoint's REDO location")),
            min_recovery_end_lsn=parse_lsn(need("Minimum recovery ending location")),
            min_recovery_end_timeline=int(need("Min recovery ending loc's timeline")),
            data_checksums=need("Data page checksum version") != "0",
            wal_log_hints=need("wal_log_hints setting") == "on",
            raw=raw,
        )
    except ValueError as exc:
        raise PostgresError(f"cannot parse pg_controldata output: {exc}") from exc


@dataclass(frozen=True)
class TimelineSwitch:
    """One line of a timeline history file: `timeline` ended at `switch_lsn`."""

    timeline: int
    switch_lsn: int
    reason: str


def parse_timeline_history(text: str) -> list[TimelineSwitch]:
    """Parse a `0000000N.history` file: 'parentTLI<TAB>switchpoint<TAB>reason' lines."""
    switches = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(None, 2)
        if len(parts) < 2 or not parts[0].isdigit():
            raise PostgresError(f"timeline history line {number} is malformed: {line!r}")
        try:
            lsn = parse_lsn(parts[1])
        except ValueError as exc:
            raise PostgresError(f"timeline history line {number}: {exc}") from exc
        switches.append(TimelineSwitch(int(parts[0]), lsn, parts[2] if len(parts) > 2 else ""))
    return switches
