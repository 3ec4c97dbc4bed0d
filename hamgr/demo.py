"""`python -m hamgr.demo`: a real 3-member cluster on this machine, until Ctrl-C.

Three `hamgr agent` processes, each with its embedded store member and its own PostgreSQL on
127.0.0.1 (`--host`; ports 5441-5443, REST 8041-8043, store 7441-7443 and 7541-7543), under one
directory (default /var/tmp/hamgr-demo; PostgreSQL runs as the `postgres` OS user, which must be
able to reach it). Prints `hactl list` once a primary serves and how to connect, then waits.
Ctrl-C (or SIGTERM) stops the whole cluster in a few seconds (see `hamgr.demostop`: replicas
first, then the primary, so nobody hands over to a member that is stopping too).
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hamgr.demostop import DemoMember, answers_200, stop_cluster

HOST = "127.0.0.1"
NAMES = ("pg1", "pg2", "pg3")
PASSWORD = "demo-password"


def member_config(root: Path, i: int, secret_file: Path, host: str = HOST) -> dict[str, object]:
    """The agent configuration of member i (1-based)."""
    peers = [
        {
            "node_id": j,
            "address": f"{host}:{7440 + j}",
            "client_address": f"{host}:{7540 + j}",
        }
        for j in range(1, len(NAMES) + 1)
        if j != i
    ]
    return {
        "scope": "demo",
        "name": NAMES[i - 1],
        "restapi": {
            "listen": f"{host}:{8040 + i}",
            "authentication": {"username": "admin", "password": PASSWORD},
        },
        "store": {
            "raft": {
                "data_dir": str(root / f"store{i}"),
                "node_id": i,
                "listen": f"{host}:{7440 + i}",
                "client_listen": f"{host}:{7540 + i}",
                "secret_file": str(secret_file),
                "peers": peers,
            }
        },
        "postgresql": {
            "data_dir": str(root / f"data{i}"),
            "listen": f"{host}:{5440 + i}",
            "authentication": {
                "superuser": {"username": "postgres", "password": PASSWORD},
                "replication": {"username": "replicator", "password": PASSWORD},
            },
        },
    }


def write_configs(root: Path, host: str = HOST) -> list[Path]:
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
        path.write_text(yaml.safe_dump(member_config(root, i, secret_file, host), sort_keys=False))
        paths.append(path)
    return paths


def api_url(host: str, i: int) -> str:
    """The REST API of member i (1-based)."""
    return f"http://{host}:{8040 + i}"


def wait_primary(host: str, timeout: float) -> str | None:
    """The name of the member whose GET /primary answers 200, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, name in enumerate(NAMES, start=1):
            if answers_200(api_url(host, i) + "/primary"):
                return name
        time.sleep(0.5)
    return None


def wait_replicas(host: str, primary: str, timeout: float) -> None:
    """Give the other members up to `timeout` seconds to clone and stream (GET /replica)."""
    deadline = time.monotonic() + timeout
    others = [i for i, name in enumerate(NAMES, start=1) if name != primary]
    while others and time.monotonic() < deadline:
        others = [i for i in others if not answers_200(api_url(host, i) + "/replica")]
        if others:
            time.sleep(0.5)


def loopback(text: str) -> str:
    """`--host`: an IPv4 loopback address (the demo serves this machine only)."""
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None
    if not addr.is_loopback:
        raise argparse.ArgumentTypeError(f"{text} is not a loopback address (127.x.y.z)")
    return text


def start_agent(root: Path, config: Path, i: int, host: str) -> DemoMember:
    """`hamgr agent` for member i (1-based) in a session of its own, logging to <name>.log."""
    with open(config.with_suffix(".log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hamgr", "agent", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return DemoMember(NAMES[i - 1], proc, root / f"data{i}", api_url(host, i))


def main(argv: list[str] | None = None) -> int:
    """Run the demo cluster until Ctrl-C."""
    ap = argparse.ArgumentParser(prog="python -m hamgr.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/var/tmp/hamgr-demo", help="where everything lives")
    ap.add_argument("--fresh", action="store_true", help="delete the directory first")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for a primary")
    ap.add_argument(
        "--host", type=loopback, default=HOST, help="loopback address to serve on (127.0.0.1)"
    )
    args = ap.parse_args(argv)
    # Line by line even into a pipe, a file or a CI log, and in order with hactl's output.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    root, host = Path(args.dir), args.host
    if args.fresh and root.exists():
        shutil.rmtree(root)
    configs = write_configs(root, host)
    members: list[DemoMember] = []
    try:
        for i, config in enumerate(configs, start=1):
            members.append(start_agent(root, config, i, host))
        print(f"started 3 agents; logs in {root}/pg*.log")
        primary = wait_primary(host, args.timeout)
        if primary is None:
            print(f"no primary within {args.timeout:g} s; see the logs in {root}", file=sys.stderr)
            return 1
        wait_replicas(host, primary, min(60.0, args.timeout))
        subprocess.run([sys.executable, "-m", "hamgr.ctl", "-c", str(configs[0]), "list"])
        print(
            f"\nprimary: {primary}. Connect with:\n"
            f"  PGPASSWORD={PASSWORD} psql -h {host} -p {5440 + NAMES.index(primary) + 1} "
            "-U postgres\n"
            f"  hactl -c {configs[0]} list      (also: switchover, failover, pause, resume)\n"
            f"  status page: {api_url(host, 1)}/ui\n"
            "Ctrl-C stops the cluster."
        )
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_cluster(members)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
