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
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from hamgr.cli.demostop import DemoMember, answers_200, stop_cluster
from hamgr.cli.localcluster import Layout, LocalCluster, Ports, all_on_host

HOST = "127.0.0.1"
NAMES = ("pg1", "pg2", "pg3")
PASSWORD = "demo-password"


DEMO_PORTS = Ports(store=7440, client=7540, api=8040, pg=5440)
"""Member i (1-based) listens on these plus i: all three share one address."""
DEMO_LAYOUT = Layout(data="data{node_id}", store="store{node_id}")


def demo_cluster(root: Path, host: str = HOST, tls: bool = True) -> LocalCluster:
    """The demo's three members on `host` under `root` (`hamgr.cli.localcluster` writes and runs
    them), over TLS unless `tls` is False."""
    return LocalCluster(
        root,
        all_on_host(host, NAMES, DEMO_PORTS),
        scope="demo",
        password=PASSWORD,
        layout=DEMO_LAYOUT,
        tls=tls,
    )


def write_configs(root: Path, host: str = HOST, tls: bool = True) -> list[Path]:
    """Fresh configuration files (and the store's shared secret, and with `tls` the
    certificates, made on the first start and kept, reissued when ``--host`` changed) under
    `root`."""
    return demo_cluster(root, host, tls).write_configs()


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


def start_agent(cluster: LocalCluster, name: str) -> DemoMember:
    """`hamgr agent` for member `name` in a session of its own, logging to <name>.log."""
    m = cluster.members[name]
    return DemoMember(name, cluster.start(name), m.data_dir, m.api, cluster.ssl_context)


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
    cluster = demo_cluster(root, host, tls)
    configs = cluster.write_configs()
    members: list[DemoMember] = []
    try:
        for name in cluster.members:
            members.append(start_agent(cluster, name))
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
            f"  PGPASSWORD={PASSWORD} psql -h {host} -p {cluster.members[primary].pg_port} "
            "-U postgres\n"
            f"  hactl -c {configs[0]} list      (also: switchover, failover, pause, resume)\n"
            f"  status page: {members[0].api}/ui{ui_note}\n"
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
