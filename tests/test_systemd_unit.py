"""deploy/systemd/hamgr.service: `systemd-analyze verify` where the tool exists, and a static
check of the directives the agent's behaviour depends on (notify, watchdog, restart, kill mode,
the user, hardening that must leave PostgreSQL working and its data writable).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from hamgr.config import DcsConfig

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "hamgr.service"
HAMGR = Path(sys.executable).parent / "hamgr"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every value given (systemd allows repeating a key)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section is not None, f"line {number}: not KEY=VALUE in a section: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def seconds(span: str) -> float:
    """A systemd time span such as 20s, 5min, 180 (seconds), 1min 30s."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), span
    for number, unit in parts:
        total += float(number) * units[unit or "s"]
    return total


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values is not None, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= is given {len(values)} times"
    return values[0]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart's program exists on this machine: point it at this
    # checkout's hamgr, the same program /opt/hamgr/bin/hamgr is once installed.
    assert HAMGR.is_file(), f"{HAMGR} missing: install the package into the venv"
    text = UNIT.read_text().replace("/opt/hamgr/bin/hamgr", str(HAMGR))
    copy = tmp_path / "hamgr.service"
    copy.write_text(text)
    out = subprocess.run(
        [tool, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 even for unknown keys or bad values; it names them on stderr.
    complaints = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert out.returncode == 0 and complaints == [], "\n".join(complaints)


def test_notify_and_watchdog(unit: Unit) -> None:
    assert one(unit, "Service", "Type") == "notify"
    # Only the agent itself may notify: PostgreSQL, built with systemd support, would
    # otherwise report READY=1 for it.
    assert one(unit, "Service", "NotifyAccess") == "main"
    watchdog = seconds(one(unit, "Service", "WatchdogSec"))
    assert 5 <= watchdog <= 120, watchdog
    assert seconds(one(unit, "Service", "TimeoutStartSec")) >= 60
    # A stopping primary hands over (up to 2 ttl) before PostgreSQL's fast shutdown.
    assert seconds(one(unit, "Service", "TimeoutStopSec")) >= 2 * DcsConfig().ttl + 60


def test_restart_policy(unit: Unit) -> None:
    assert one(unit, "Service", "Restart") in ("on-failure", "always")
    assert seconds(one(unit, "Service", "RestartSec")) >= 1
    # The agent leaves PostgreSQL and the fencer running when it is restarted.
    assert one(unit, "Service", "KillMode") == "process"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    prevent = one(unit, "Service", "RestartPreventExitStatus").split()
    assert "2" in prevent


def test_config_error_exit_status_is_the_one_not_restarted(tmp_path: Path, unit: Unit) -> None:
    """The real agent exits with the status the unit refuses to restart on."""
    bad = tmp_path / "hamgr.yaml"
    # No postgresql section (a witness's file) and no store.raft section: nothing to run.
    bad.write_text("scope: demo\nname: a\n")
    out = subprocess.run(
        [str(HAMGR), "agent", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "store.raft: required" in out.stderr
    assert str(out.returncode) in one(unit, "Service", "RestartPreventExitStatus").split()


def test_runs_as_postgres_the_agent(unit: Unit) -> None:
    assert one(unit, "Service", "User") == "postgres"
    assert one(unit, "Service", "Group") == "postgres"
    argv = one(unit, "Service", "ExecStart").split()
    assert PurePosixPath(argv[0]).is_absolute() and argv[0].endswith("/hamgr")
    assert argv[1:] == ["agent", "--config", "/etc/hamgr/hamgr.yaml"]
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""


def _writable(unit: Unit) -> list[PurePosixPath]:
    service = unit["Service"]
    paths = [
        PurePosixPath("/var/lib") / d for v in service.get("StateDirectory", []) for d in v.split()
    ]
    paths += [
        PurePosixPath(p.lstrip("-")) for v in service.get("ReadWritePaths", []) for p in v.split()
    ]
    return paths


def test_hardening_keeps_postgres_working(unit: Unit) -> None:
    service = unit["Service"]
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "PrivateTmp") == "yes"
    # Each of these breaks PostgreSQL or the watchdog device (see the unit's comments).
    for key, bad in {
        "RemoveIPC": "yes",
        "PrivateDevices": "yes",
        "MemoryDenyWriteExecute": "yes",
        "ProtectClock": "yes",
        "DynamicUser": "yes",
    }.items():
        assert bad not in service.get(key, []), f"{key}={bad} breaks PostgreSQL"
    families = one(unit, "Service", "RestrictAddressFamilies").split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert one(unit, "Service", "TasksMax") == "infinity"


@pytest.mark.parametrize(
    "config", [ROOT / "config.example.yaml", ROOT / "deploy" / "docker" / "hamgr.yaml"]
)
def test_data_dirs_are_writable_under_protect_system(unit: Unit, config: Path) -> None:
    """The shipped configurations put every directory the agent writes where the unit lets it
    write: the store's log, PGDATA and the run dir beside it."""
    data = yaml.safe_load(config.read_text())
    pgdata = PurePosixPath(data["postgresql"]["data_dir"])
    wanted = [
        PurePosixPath(data["store"]["raft"]["data_dir"]),
        pgdata,
        pgdata.with_name(pgdata.name + ".run"),
    ]
    writable = _writable(unit)
    assert writable
    for path in wanted:
        assert any(path.is_relative_to(w) for w in writable), f"{path} is read-only in the unit"


def test_installs_into_multi_user(unit: Unit) -> None:
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert one(unit, "Unit", "After") == "network-online.target"
    assert one(unit, "Unit", "Wants") == "network-online.target"
