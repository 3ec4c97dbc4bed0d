"""`python -m hamgr.demo`: a real 3-member cluster on this machine, until Ctrl-C.

Three `hamgr agent` processes, each with its embedded store member and its own PostgreSQL on
127.0.0.1 (ports 5441-5443, REST 8041-8043), under one directory (default /var/tmp/hamgr-demo;
PostgreSQL runs as the `postgres` OS user, which must be able to reach it). Prints `hactl list`
once a primary serves and how to connect, then waits; Ctrl-C stops every agent cleanly (each
stops its PostgreSQL) and then kills whatever is left, by PID.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

HOST = "127.0.0.1"
NAMES = ("pg1", "pg2", "pg3")
PASSWORD = "demo-password"


def member_config(root: Path, i: int, secret_file: Path) -> dict[str, object]:
    """The agent configuration of member i (1-based)."""
    peers = [
        {
            "node_id": j,
            "address": f"{HOST}:{7440 + j}",
            "client_address": f"{HOST}:{7540 + j}",
        }
        for j in range(1, len(NAMES) + 1)
        if j != i
    ]
    return {
        "scope": "demo",
        "name": NAMES[i - 1],
        "restapi": {
            "listen": f"{HOST}:{8040 + i}",
            "authentication": {"username": "admin", "password": PASSWORD},
        },
        "store": {
            "raft": {
                "data_dir": str(root / f"store{i}"),
                "node_id": i,
                "listen": f"{HOST}:{7440 + i}",
                "client_listen": f"{HOST}:{7540 + i}",
                "secret_file": str(secret_file),
                "peers": peers,
            }
        },
        "postgresql": {
            "data_dir": str(root / f"data{i}"),
            "listen": f"{HOST}:{5440 + i}",
            "authentication": {
                "superuser": {"username": "postgres", "password": PASSWORD},
                "replication": {"username": "replicator", "password": PASSWORD},
            },
        },
    }


def write_configs(root: Path) -> list[Path]:
    """Fresh configuration files (and the store's shared secret) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    secret_file = root / "store-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(24))
        os.chmod(secret_file, 0o600)
    paths = []
    for i in range(1, len(NAMES) + 1):
        path = root / f"{NAMES[i - 1]}.yaml"
        path.write_text(yaml.safe_dump(member_config(root, i, secret_file), sort_keys=False))
        paths.append(path)
    return paths


def wait_primary(timeout: float) -> str | None:
    """The name of the member whose GET /primary answers 200, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, name in enumerate(NAMES, start=1):
            try:
                with urllib.request.urlopen(f"http://{HOST}:{8040 + i}/primary", timeout=1):
                    return name
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.5)
    return None


def wait_replicas(primary: str, timeout: float) -> None:
    """Give the other members up to `timeout` seconds to clone and stream (GET /replica)."""
    deadline = time.monotonic() + timeout
    others = [i for i, name in enumerate(NAMES, start=1) if name != primary]
    while others and time.monotonic() < deadline:
        for i in list(others):
            try:
                with urllib.request.urlopen(f"http://{HOST}:{8040 + i}/replica", timeout=1):
                    others.remove(i)
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Run the demo cluster until Ctrl-C."""
    ap = argparse.ArgumentParser(prog="python -m hamgr.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/var/tmp/hamgr-demo", help="where everything lives")
    ap.add_argument("--fresh", action="store_true", help="delete the directory first")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for a primary")
    args = ap.parse_args(argv)
    root = Path(args.dir)
    if args.fresh and root.exists():
        shutil.rmtree(root)
    configs = write_configs(root)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for path in configs:
            log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115 - lives as long as the child
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hamgr", "agent", "--config", str(path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        print(f"started 3 agents; logs in {root}/pg*.log")
        primary = wait_primary(args.timeout)
        if primary is None:
            print(f"no primary within {args.timeout:g} s; see the logs in {root}", file=sys.stderr)
            return 1
        wait_replicas(primary, min(60.0, args.timeout))
        subprocess.run([sys.executable, "-m", "hamgr.ctl", "-c", str(configs[0]), "list"])
        print(
            f"\nprimary: {primary}. Connect with:\n"
            f"  PGPASSWORD={PASSWORD} psql -h {HOST} -p {5440 + NAMES.index(primary) + 1} "
            "-U postgres\n"
            f"  hactl -c {configs[0]} list      (also: switchover, failover, pause, resume)\n"
            "Ctrl-C stops the cluster."
        )
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        print("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
