"""HAProxy for the failover benchmark: deploy/haproxy/haproxy.cfg run as a foreground child.

Its server UP/DOWN events are read from its output, each stamped with the CLOCK_MONOTONIC
instant it was read at, so that they line up with the writers' acks. HAProxy (Debian package
`haproxy`) is installed with apt-get when missing and we are root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from hacluster import API_PORT, Cluster
from procs import Child, Procs

HAPROXY_CFG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy" / "haproxy.cfg"
_LB_EVENT = re.compile(r"Server \S+/(\S+) is (UP|DOWN)")


class HaproxyError(RuntimeError):
    """HAProxy is missing or refuses its configuration; the message says what to do."""


class StampedChild(Child):
    """A child whose output lines carry the CLOCK_MONOTONIC instant they were read at."""

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(f"{time.monotonic():.6f} {line.rstrip()}")


def server_event(line: str) -> tuple[float, str, str] | None:
    """(instant, server, UP|DOWN) from one stamped HAProxy line, or None for other lines."""
    stamp, _, text = line.partition(" ")
    found = _LB_EVENT.search(text)
    return (float(stamp), found.group(1), found.group(2)) if found else None


def ensure_haproxy() -> str:
    """The haproxy binary; installed from Debian's package when missing and we are root."""
    found = shutil.which("haproxy")
    if found:
        return found
    if os.geteuid() != 0:
        raise HaproxyError(
            "haproxy is not installed and we are not root: install it "
            "(apt-get install haproxy) and run again"
        )
    print("haproxy is missing: installing the Debian package ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "haproxy"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    found = shutil.which("haproxy")
    if not found:
        raise HaproxyError("installing haproxy with apt-get failed: run `apt-get install haproxy`")
    return found


def haproxy_env(cluster: Cluster, listen: str) -> dict[str, str]:
    """The environment that deploy/haproxy/haproxy.cfg reads its addresses from."""
    env = {"HAMGR_LISTEN": listen, "HAMGR_API_PORT": str(API_PORT)}
    if cluster.tls_dir is not None:  # checks over TLS (check-ssl), the cluster CA verified
        env["HAMGR_API_CAFILE"] = str(cluster.tls_dir / "ca.crt")
    for m in cluster.members.values():
        env[f"HAMGR_{m.name.upper()}"] = m.pg_address
    return env


def start_haproxy(procs: Procs, binary: str, cluster: Cluster, listen: str) -> StampedChild:
    """HAProxy in the foreground (-db) listening on `listen`, a child of `procs` (killed by PID
    with them)."""
    env = {**os.environ, **haproxy_env(cluster, listen)}
    check = subprocess.run(
        [binary, "-c", "-f", str(HAPROXY_CFG)], env=env, capture_output=True, text=True
    )
    if check.returncode != 0:
        raise HaproxyError(f"{HAPROXY_CFG} is refused by haproxy -c:\n{check.stdout}{check.stderr}")
    popen = subprocess.Popen(
        [binary, "-db", "-f", str(HAPROXY_CFG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    child = StampedChild("haproxy", popen)
    procs.children.append(child)
    return child
