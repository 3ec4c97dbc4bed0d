"""`python -m hamgr.cli.demo`: a real 3-member cluster on this machine, until Ctrl-C.

Three `hamgr agent` processes, each with its embedded store member and its own PostgreSQL on
127.0.0.1 (`--host`; ports 5441-5443, REST 8041-8043, store 7441-7443 and 7541-7543), under one
directory (default /var/tmp/hamgr-demo; PostgreSQL runs as the `postgres` OS user, which must be
able to reach it). Prints `hactl list` once a primary serves and how to connect, then waits.
The REST API and the store speak TLS: the certificates are made on the first start
(`hamgr certs init` into <dir>/tls) and kept; ``--insecure`` runs everything in plain text.
Ctrl-C (or SIGTERM) stops the whole cluster in a few seconds (see `hamgr.cli.demostop`: replicas
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
import ssl
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hamgr.cli.certs import Member, existing_members, init, renew
from hamgr.cli.demostop import DemoMember, answers_200, stop_cluster

HOST = "127.0.0.1"
NAMES = ("pg1", "pg2", "pg3")
PASSWORD = "demo-password"


def member_config(
    root: Path, i: int, secret_file: Path, host: str = HOST, tls_dir: Path | None = None
) -> dict[str, object]:
    """The agent configuration of member i (1-based); over TLS with `tls_dir`'s certificates."""
    peers = [
        {
            "node_id": j,
            "address": f"{host}:{7440 + j}",
            "client_address": f"{host}:{7540 + j}",
        }
        for j in range(1, len(NAMES) + 1)
        if j != i
    ]
    raft: dict[str, object] = {
        "data_dir": str(root / f"store{i}"),
        "node_id": i,
        "listen": f"{host}:{7440 + i}",
        "client_listen": f"{host}:{7540 + i}",
        "secret_file": str(secret_file),
        "peers": peers,
    }
    restapi: dict[str, object] = {
        "listen": f"{host}:{8040 + i}",
        "authentication": {"username": "admin", "password": PASSWORD},
    }
    if tls_dir is not None:
        files = {
            "certfile": str(tls_dir / f"{NAMES[i - 1]}.crt"),
            "keyfile": str(tls_dir / f"{NAMES[i - 1]}.key"),
            "cafile": str(tls_dir / "ca.crt"),
        }
        restapi.update(files)
        raft["tls"] = dict(files)
    return {
        "scope": "demo",
        "name": NAMES[i - 1],
        "restapi": restapi,
        "store": {"raft": raft},
        "postgresql": {
            "data_dir": str(root / f"data{i}"),
            "listen": f"{host}:{5440 + i}",
            "authentication": {
                "superuser": {"username": "postgres", "password": PASSWORD},
                "replication": {"username": "replicator", "password": PASSWORD},
            },
        },
    }


def ensure_certs(tls_dir: Path, host: str) -> None:
    """The demo's CA and member certificates: made on the first start, kept afterwards, and
    renewed from the same CA when the members' address (``--host``) changed."""
    members = [Member(name, (name, host)) for name in NAMES]
    if not (tls_dir / "ca.key").exists():
        init(tls_dir, "demo", members)
    elif existing_members(tls_dir) != members:
        renew(tls_dir, members)


def write_configs(root: Path, host: str = HOST, tls: bool = True) -> list[Path]:
    """Fresh configuration files (and the store's shared secret, and with `tls` the
    certificates) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    secret_file = root / "store-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(24))
        os.chmod(secret_file, 0o600)
    tls_dir = root / "tls" if tls else None
    if tls_dir is not None:
        ensure_certs(tls_dir, host)
    paths = []
    for i in range(1, len(NAMES) + 1):
        path = root / f"{NAMES[i - 1]}.yaml"
        config = member_config(root, i, secret_file, host, tls_dir)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths.append(path)
    return paths


def api_url(host: str, i: int, tls: bool = False) -> str:
    """The REST API of member i (1-based)."""
    return f"{'https' if tls else 'http'}://{host}:{8040 + i}"


def client_context(root: Path, tls: bool) -> ssl.SSLContext | None:
    """A context trusting the demo's CA (None for --insecure)."""
    return ssl.create_default_context(cafile=str(root / "tls" / "ca.crt")) if tls else None


def wait_primary(members: list[DemoMember], timeout: float) -> str | None:
    """The name of the member whose GET /primary answers 200, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            if answers_200(m.api + "/primary", m.ssl_context):
                return m.name
        time.sleep(0.5)
    return None


def wait_replicas(members: list[DemoMember], primary: str, timeout: float) -> None:
    """Give the other members up to `timeout` seconds to clone and stream (GET /replica)."""
    deadline = time.monotonic() + timeout
    others = [m for m in members if m.name != primary]
    while others and time.monotonic() < deadline:
        others = [m for m in others if not answers_200(m.api + "/replica", m.ssl_context)]
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


def start_agent(root: Path, config: Path, i: int, host: str, tls: bool = True) -> DemoMember:
    """`hamgr agent` for member i (1-based) in a session of its own, logging to <name>.log."""
    with open(config.with_suffix(".log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hamgr", "agent", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = api_url(host, i, tls)
    return DemoMember(NAMES[i - 1], proc, root / f"data{i}", api, client_context(root, tls))


def main(argv: list[str] | None = None) -> int:
    """Run the demo cluster until Ctrl-C."""
    ap = argparse.ArgumentParser(
        prog="python -m hamgr.cli.demo", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--dir", default="/var/tmp/hamgr-demo", help="where everything lives")
    ap.add_argument("--fresh", action="store_true", help="delete the directory first")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for a primary")
    ap.add_argument(
        "--host", type=loopback, default=HOST, help="loopback address to serve on (127.0.0.1)"
    )
    ap.add_argument(
        "--insecure", action="store_true", help="plain HTTP and store traffic, no certificates"
    )
    args = ap.parse_args(argv)
    tls = not args.insecure
    # Line by line even into a pipe, a file or a CI log, and in order with hactl's output.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    root, host = Path(args.dir), args.host
    if args.fresh and root.exists():
        shutil.rmtree(root)
    configs = write_configs(root, host, tls)
    members: list[DemoMember] = []
    try:
        for i, config in enumerate(configs, start=1):
            members.append(start_agent(root, config, i, host, tls))
        how = f"over TLS (certificates in {root}/tls)" if tls else "in plain text (--insecure)"
        print(f"started 3 agents {how}; logs in {root}/pg*.log")
        primary = wait_primary(members, args.timeout)
        if primary is None:
            print(f"no primary within {args.timeout:g} s; see the logs in {root}", file=sys.stderr)
            return 1
        wait_replicas(members, primary, min(60.0, args.timeout))
        subprocess.run([sys.executable, "-m", "hamgr.cli.hactl", "-c", str(configs[0]), "list"])
        ui_note = f"  (a browser trusts {root}/tls/ca.crt once imported)" if tls else ""
        print(
            f"\nprimary: {primary}. Connect with:\n"
            f"  PGPASSWORD={PASSWORD} psql -h {host} -p {5440 + NAMES.index(primary) + 1} "
            "-U postgres\n"
            f"  hactl -c {configs[0]} list      (also: switchover, failover, pause, resume)\n"
            f"  status page: {api_url(host, 1, tls)}/ui{ui_note}\n"
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
