"""Fixtures shared by every test that runs real PostgreSQL servers (tests/postgres and others).

Plain helpers are in tests/postgres/pg_helpers.py (`find_pg_bindir()`, `free_port()`,
`kill_server()`; polling is tests/tools/poll.py). Fixtures:
- `pg_bindir`: PostgreSQL's bin dir (HAMGR_PG_BINDIR,
  `pg_config --bindir`, or the newest /usr/lib/postgresql/*/bin); skips when truly missing.
- `pg_os_user`: the OS user PostgreSQL runs as ('postgres' when we are root, else ourselves).
- `pg_tmp_dir`: a fresh directory under /tmp that the PostgreSQL user can traverse (pytest's
  tmp_path lives under a 0700 root directory), removed afterwards.
- `make_pg`: builds PgSettings for a named node under pg_tmp_dir and, at teardown, stops every
  server it handed out: SIGQUIT (immediate shutdown) to the postmaster by PID, then SIGKILL
  to it and its children if it has not gone within a deadline, even when the test failed.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from hamgr.postgres import PgSettings
from tests.postgres.pg_helpers import find_pg_bindir, free_port, kill_server

# Property tests: no per-example time limit (a loaded machine is not a failure; speed is measured
# by bench/, never asserted), and under CI (CI set) a fixed seed per test, so a run never fails on
# an example that the runs before it did not draw; locally they keep exploring new examples.
hypothesis_settings.register_profile(
    "hamgr", deadline=None, derandomize=bool(os.environ.get("CI")), print_blob=True
)
hypothesis_settings.load_profile("hamgr")

SUPERUSER_PASSWORD = "su-secret"
REPLICATION_PASSWORD = "repl'secret:with\\odd chars"
# Small servers: several run at once on a 2-core CI machine.
TEST_PARAMETERS = {
    "shared_buffers": "16MB",
    "max_connections": 20,
    "max_wal_senders": 5,
    "wal_keep_size": "64MB",
    # Tests simulate crashes of PostgreSQL, never of the OS: skip fsync to save disk time.
    "fsync": False,
}


@pytest.fixture(scope="session")
def pg_bindir() -> Path:
    """PostgreSQL's bin dir; skips the test when PostgreSQL is not installed."""
    found = find_pg_bindir()
    if found is None:
        pytest.skip("PostgreSQL server binaries not found (set HAMGR_PG_BINDIR)")
    return found


@pytest.fixture(scope="session")
def pg_os_user() -> str:
    """The OS user PostgreSQL runs as in tests."""
    if os.geteuid() != 0:
        return getpass.getuser()
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root but OS user 'postgres' is missing (deploy/dev.sh creates it)")
    return "postgres"


@pytest.fixture
def pg_tmp_dir() -> Iterator[Path]:
    """A fresh directory under /tmp the PostgreSQL user can traverse; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="hamgr-pg-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_pg(
    pg_bindir: Path, pg_os_user: str, pg_tmp_dir: Path
) -> Iterator[Callable[..., PgSettings]]:
    """Factory: make_pg('a', **overrides) -> PgSettings for node 'a' on a free port.

    Every server of the settings handed out is stopped at teardown (see kill_server).
    """
    made: list[PgSettings] = []

    def factory(name: str, **overrides: Any) -> PgSettings:
        params: dict[str, Any] = {
            "bin_dir": pg_bindir,
            "data_dir": pg_tmp_dir / name / "data",
            "os_user": pg_os_user,
            "name": name,
            "host": "127.0.0.1",
            "port": free_port(),
            "superuser_password": SUPERUSER_PASSWORD,
            "replication_password": REPLICATION_PASSWORD,
            "parameters": dict(TEST_PARAMETERS),
        }
        params.update(overrides)
        settings = PgSettings(**params)
        made.append(settings)
        return settings

    yield factory
    for settings in made:
        kill_server(settings)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--run-slow`` includes the tests marked ``slow`` (left out of a plain run and of CI)."""
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (the long simulator sweep); with -m slow: only them",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``slow`` tests unless ``--run-slow`` is given (reported as deselected)."""
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
