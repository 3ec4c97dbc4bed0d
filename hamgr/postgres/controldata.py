"""pg_controldata: what the control file says, readable while the server is stopped.

Used where SQL is not available (stopped or crashed server) and for switchover checks: a
candidate must have received the old primary's shutdown checkpoint before it is promoted.
"""

from __future__ import annotations

from hamgr.postgres.errors import ControlDataError, StateError
from hamgr.postgres.parse import ControlData, parse_controldata
from hamgr.postgres.process import run
from hamgr.postgres.settings import PgSettings


async def controldata(settings: PgSettings, timeout: float = 10.0) -> ControlData:
    """Run pg_controldata on the data dir and parse its output."""
    if not (settings.data_dir / "global" / "pg_control").exists():
        raise StateError(f"{settings.data_dir} has no global/pg_control: not a data directory")
    done = await run(
        settings,
        "pg_controldata",
        ["-D", str(settings.data_dir)],
        timeout=timeout,
        what="reading the control file",
        error=ControlDataError,
    )
    return parse_controldata(done.stdout)


async def last_checkpoint_location(settings: PgSettings) -> int:
    """LSN of the latest checkpoint record (after a clean shutdown: the shutdown checkpoint)."""
    return (await controldata(settings)).checkpoint_lsn
