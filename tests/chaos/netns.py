"""Hosts of their own: one network namespace per member, wired through a hub namespace.

Layout (every name starts with `PREFIX`, so leftovers of a failed run are found and removed):

- ``hchaos-hub``: a bridge ``br0`` with ``HUB_IP`` (10.77.0.1/24), one veth into each member's
  namespace, and ``up0``, a veth to the root namespace (``UPLINK_ROOT_IP`` there,
  ``UPLINK_HUB_IP`` in the hub). IP forwarding is switched on in the hub namespace only.
- ``hchaos-mN``: ``eth0`` with the member's address as a /32 and a default route via the hub.
  With a /32 and no on-link subnet, a member never reaches another member on layer 2: every
  packet to a peer goes to the hub, where a REDIRECT rule (iptables in the hub namespace)
  hands every TCP connection between members to the relay (`tests.chaos.relay`). So store,
  replication and REST traffic between two hosts all cross the relay, whatever port.
- The root namespace gets one route, ``SUBNET`` via the hub's uplink: the test driver's own
  probes and writers reach each member directly, forwarded by the hub, not relayed (a client
  on a cut-off primary's side keeps writing to it, which is what the checkers must see).

The addresses exist only on these interfaces. Nothing outside the namespaces made here is
changed except that one route and the root end of the uplink, both gone with the hub.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "hchaos-"
HUB = f"{PREFIX}hub"
SUBNET = "10.77.0.0/24"
HUB_IP = "10.77.0.1"
UPLINK_ROOT = f"{PREFIX}up"
UPLINK_ROOT_IP = "10.77.1.1"
UPLINK_HUB_IP = "10.77.1.2"
RELAY_PORT = 9900
"""The relay's port on HUB_IP, where the REDIRECT rule sends member-to-member TCP."""
FIRST_HOST = 11


class NetnsError(RuntimeError):
    """A command that builds or removes the network failed; the message names it."""


def member_ns(index: int) -> str:
    """The namespace of member number `index` (1-based)."""
    return f"{PREFIX}m{index}"


def member_ip(index: int) -> str:
    """The address of member number `index` (1-based)."""
    return f"10.77.0.{FIRST_HOST + index - 1}"


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip`/`iptables`), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root to get the chaos tests)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install -y iproute2 iptables)"
    probe = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def run(*argv: str, ns: str | None = None, check: bool = True) -> str:
    """Run a command (inside namespace `ns` when given); its stdout. Raises NetnsError naming
    the command and its stderr when it fails and `check` is set."""
    command = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def our_namespaces() -> list[str]:
    """The namespaces with our prefix that exist now."""
    names = [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def kill_namespace_processes(ns: str, deadline: float = 10.0) -> list[int]:
    """SIGKILL every process running in namespace `ns` (by PID, from `ip netns pids`), waiting
    at most `deadline` seconds until none is left; the PIDs killed."""
    killed: list[int] = []
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.1)
    return killed


def unmount_ours() -> list[str]:
    """Unmount every mount point whose path holds a directory with our prefix (the store's
    small data-dir filesystems); the paths unmounted."""
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1]
        if f"/{PREFIX}" in target:
            found.append(target)
    for target in sorted(found, reverse=True):
        run("umount", "-l", target, check=False)
    return found


def remove_leftovers() -> list[str]:
    """Remove what a previous run with our prefix left: processes in our namespaces, the
    namespaces (their veths and bridge go with them), the root end of the uplink and our
    mounts. What was removed, for the log."""
    removed = []
    for ns in our_namespaces():
        kill_namespace_processes(ns)
        run("ip", "netns", "del", ns, check=False)
        removed.append(f"netns {ns}")
    if Path(f"/sys/class/net/{UPLINK_ROOT}").exists():
        run("ip", "link", "del", UPLINK_ROOT, check=False)
        removed.append(f"link {UPLINK_ROOT}")
    removed += [f"mount {m}" for m in unmount_ours()]
    return removed


class Network:
    """The hub and `size` member namespaces; `up()` builds them, `down()` removes them."""

    def __init__(self, size: int) -> None:
        if not 1 <= size <= 9:
            raise ValueError(f"a chaos network has 1..9 members, got {size}")
        self.size = size
        self.built = False

    @property
    def namespaces(self) -> list[str]:
        return [member_ns(i) for i in range(1, self.size + 1)]

    @property
    def hosts(self) -> list[str]:
        return [member_ip(i) for i in range(1, self.size + 1)]

    def up(self) -> None:
        """Build the network (after removing leftovers of an earlier run)."""
        remove_leftovers()
        self.built = True
        run("ip", "netns", "add", HUB)
        run("ip", "link", "set", "lo", "up", ns=HUB)
        run("ip", "link", "add", "br0", "type", "bridge", ns=HUB)
        run("ip", "addr", "add", f"{HUB_IP}/24", "dev", "br0", ns=HUB)
        run("ip", "link", "set", "br0", "up", ns=HUB)
        run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", ns=HUB)
        run("ip", "link", "add", UPLINK_ROOT, "type", "veth", "peer", "name", "up0", "netns", HUB)
        run("ip", "addr", "add", f"{UPLINK_ROOT_IP}/30", "dev", UPLINK_ROOT)
        run("ip", "link", "set", UPLINK_ROOT, "up")
        run("ip", "addr", "add", f"{UPLINK_HUB_IP}/30", "dev", "up0", ns=HUB)
        run("ip", "link", "set", "up0", "up", ns=HUB)
        run("ip", "route", "add", SUBNET, "via", UPLINK_HUB_IP, "dev", UPLINK_ROOT)
        for i in range(1, self.size + 1):
            self._member(i)
        run(
            *("iptables", "-w", "5", "-t", "nat", "-A", "PREROUTING", "-i", "br0", "-p", "tcp"),
            *("-d", SUBNET, "!", "--dport", str(RELAY_PORT)),
            *("-j", "REDIRECT", "--to-ports", str(RELAY_PORT)),
            ns=HUB,
        )

    def _member(self, i: int) -> None:
        ns, ip, hub_end = member_ns(i), member_ip(i), f"v{i}"
        run("ip", "netns", "add", ns)
        run("ip", "link", "set", "lo", "up", ns=ns)
        run("ip", "link", "add", hub_end, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ns=HUB)  # fmt: skip
        run("ip", "link", "set", hub_end, "master", "br0", ns=HUB)
        run("ip", "link", "set", hub_end, "up", ns=HUB)
        run("ip", "addr", "add", f"{ip}/32", "dev", "eth0", ns=ns)
        run("ip", "link", "set", "eth0", "up", ns=ns)
        run("ip", "route", "add", HUB_IP, "dev", "eth0", ns=ns)
        run("ip", "route", "add", "default", "via", HUB_IP, "dev", "eth0", ns=ns)

    def down(self) -> None:
        """Remove everything `up()` made (processes still inside are killed first)."""
        if self.built:
            remove_leftovers()
            self.built = False

    def exec_prefix(self, index: int) -> list[str]:
        """The argv prefix that runs a command inside member `index`'s namespace."""
        return ["ip", "netns", "exec", member_ns(index)]

    def hub_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", HUB]

    def __enter__(self) -> Network:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def ping_tcp(ns: str, host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connect from inside `ns` to host:port succeeds (for the harness's
    self-check)."""
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(({host!r},{port}),timeout={timeout})\n"
        "s.close()\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", code],
        capture_output=True,
        timeout=timeout + 10,
        check=False,
    )
    return done.returncode == 0
