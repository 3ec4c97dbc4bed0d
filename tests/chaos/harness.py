"""A hamgr cluster whose members are hosts of their own, and the faults a nemesis can inject.

``with chaos_cluster(3, seed=1) as c: ...`` builds the network (`tests.chaos.netns`), starts the
relay in the hub namespace (`tests.chaos.relay`), writes the members' configuration with the
local-cluster builder (`hamgr.cli.localcluster`, through `tests.ha.agentcluster.AgentCluster`:
default timing profile, synchronous mode strict so that an acknowledged write is on two
members) and starts each agent inside its namespace through `tests.chaos.slowfsync`, with its
store's data directory on a small tmpfs of its own. On exit, whatever happened: every process
is resumed and stopped, the network and the mounts are removed, and the directory is deleted.
At start, leftovers of an earlier run (our namespaces, processes in them, our mounts) are
removed first.

Faults, each undone by `heal_all()` (and on exit):
- the network: `network(default=..., cuts=...)` (delay, jitter, loss for every link; per
  directed pair of members a cut, `refuse` or `blackhole`, or other figures);
- processes: `kill9(name, what)` and `freeze(name, what)` / `thaw(name)`, where `what` is
  agent, fencer, postmaster or host (every process in the member's namespace); `start(name)`
  brings a killed agent back (it restarts its PostgreSQL and fencer itself);
- the disk: `fsync_stall(name, seconds)` (every fsync of the member's store), `fill_disk(name)`
  / `free_disk(name)` (the store's filesystem full).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hamgr.cli.localcluster import LocalMember
from hamgr.raft.client.storeclient import StoreClient
from tests.chaos import netns
from tests.ha.agentcluster import AgentCluster

REPO = Path(__file__).resolve().parents[2]
STORE_FS_MB = 32
"""Size of each member's store filesystem (tmpfs): small, so that filling it is quick."""
RELAY_READY = 20.0
APPLY_WAIT = 5.0
PROCESS_KINDS = ("agent", "fencer", "postmaster", "host")


class ChaosError(RuntimeError):
    """The harness could not do what it was asked; the message says why."""


class ChaosCluster(AgentCluster):
    """AgentCluster whose members run in their own namespaces, with faults (module doc)."""

    def __init__(self, root: Path, net: netns.Network, *, seed: int, sync: bool = True) -> None:
        overrides: dict[str, dict[str, Any]] = {}
        if sync:
            dcs = {
                "synchronous_mode": "on",
                "synchronous_node_count": 1,
                "synchronous_mode_strict": True,
            }
            overrides = {f"m{i}": {"bootstrap": {"dcs": dcs}} for i in range(1, net.size + 1)}
        super().__init__(
            root, net.hosts, scope="chaos", profile="default", member_overrides=overrides
        )
        self.net = net
        self.seed = seed
        self.sync = sync
        self.index = {name: i for i, name in enumerate(self.members, start=1)}
        self.control = root / "relay.json"
        self.version = 0
        self.relay: subprocess.Popen[str] | None = None
        self.frozen: dict[str, list[int]] = {}
        self.fillers: dict[str, Path] = {}

    # -- where things are

    def store_dir(self, name: str) -> Path:
        return self.members[name].store_dir

    def fsync_file(self, name: str) -> Path:
        return self.root / f"{name}.fsync-stall"

    def run_dir(self, name: str) -> Path:
        return self.members[name].run_dir

    def host_of(self, name: str) -> str:
        return self.members[name].host

    # -- lifecycle

    def launcher(self, m: LocalMember) -> list[str]:
        return [
            *self.net.exec_prefix(self.index[m.name]),
            *(sys.executable, "-m", "tests.chaos.slowfsync"),
            *("--dir", str(self.store_dir(m.name)), "--control", str(self.fsync_file(m.name))),
            "--",
        ]

    def start(
        self, name: str, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """Start member `name`'s agent inside its namespace (with tests importable)."""
        return super().start(name, {"PYTHONPATH": str(REPO), **(env or {})}, args)

    def prepare(self) -> None:
        """Mount each member's store filesystem and start the relay (before any agent)."""
        for name in self.members:
            path = self.store_dir(name)
            path.mkdir(exist_ok=True)
            netns.run("mount", "-t", "tmpfs", "-o", f"size={STORE_FS_MB}m,mode=0700",
                      f"{netns.PREFIX}store", str(path))  # fmt: skip
            self.fsync_file(name).write_text("0")
        self._write_control({}, {})
        self.relay = subprocess.Popen(
            [
                *self.net.hub_prefix(),
                *(sys.executable, "-m", "tests.chaos.relay"),
                *("--listen", f"{netns.HUB_IP}:{netns.RELAY_PORT}"),
                *("--control", str(self.control), "--seed", str(self.seed)),
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.root / "relay.log", "ab"),  # noqa: SIM115 (closed with the process)
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )
        assert self.relay.stdout is not None
        line = self.relay.stdout.readline()  # bounded: the relay prints it or exits
        if line.strip() != "relay ready":
            raise ChaosError(f"the relay did not start (said {line!r}); see {self.root}/relay.log")

    def close(self) -> None:
        """Resume everything frozen, stop the agents, stop the relay (all by PID)."""
        for name in list(self.frozen):
            self.thaw(name)
        self.free_all_disks()
        try:
            super().close()
        finally:
            if self.relay is not None and self.relay.poll() is None:
                self.relay.terminate()
                try:
                    self.relay.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.relay.kill()
                    self.relay.wait(timeout=10)

    # -- the network

    def _write_control(
        self, default: dict[str, Any], links: dict[tuple[str, str], dict[str, Any]]
    ) -> int:
        self.version += 1
        body = {
            "version": self.version,
            "default": default,
            "links": {
                f"{self.host_of(a)}>{self.host_of(b)}": rule for (a, b), rule in links.items()
            },
        }
        tmp = self.control.with_name("relay.json.tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.control)
        return self.version

    def network(
        self,
        default: dict[str, Any] | None = None,
        links: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        """Put these link faults in force (replacing the previous ones) and wait until the
        relay applied them. `default` holds delay/jitter/loss for every link; `links` maps
        (from member, to member) to what differs for bytes flowing that way (a `cut`, or
        other figures)."""
        for a, b in links or {}:
            if a not in self.members or b not in self.members or a == b:
                raise ChaosError(f"no link {a!r}->{b!r}; members are {list(self.members)}")
        version = self._write_control(default or {}, links or {})
        applied = self.control.with_name("relay.json.applied")
        deadline = time.monotonic() + APPLY_WAIT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if int(applied.read_text()) >= version:
                    return
            if self.relay is None or self.relay.poll() is not None:
                raise ChaosError("the relay is not running")
            time.sleep(0.02)
        raise ChaosError(f"the relay did not apply control version {version} in {APPLY_WAIT} s")

    # -- processes

    def pids(self, name: str, what: str) -> list[int]:
        """The PIDs of member `name`'s `what` (agent, fencer, postmaster, host) running now."""
        if what not in PROCESS_KINDS:
            raise ChaosError(f"unknown process kind {what!r}; expected one of {PROCESS_KINDS}")
        if what == "host":
            ns = netns.member_ns(self.index[name])
            return [int(p) for p in netns.run("ip", "netns", "pids", ns, check=False).split()]
        if what == "agent":
            proc = self.members[name].proc
            return [proc.pid] if proc is not None and proc.poll() is None else []
        if what == "postmaster":
            pid = self.postmaster_pid(name)
            return [pid] if pid is not None and _alive(pid) else []
        return [p for p in [self.fencer_pid(name)] if p is not None]

    def kill9(self, name: str, what: str) -> list[int]:
        """SIGKILL member `name`'s `what` (a postmaster with its children); the PIDs killed.
        A killed agent is reaped; `start(name)` brings it back."""
        victims = self.pids(name, what)
        if what == "postmaster":
            victims += [c for v in victims for c in _children(v)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc = self.members[name].proc
        if proc is not None and proc.pid in victims:
            proc.wait(timeout=10)
        return victims

    def freeze(self, name: str, what: str) -> list[int]:
        """SIGSTOP member `name`'s `what`; `thaw(name)` resumes it."""
        victims = self.pids(name, what)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.frozen.setdefault(name, []).extend(victims)
        return victims

    def thaw(self, name: str) -> None:
        """SIGCONT whatever `freeze` stopped on member `name`."""
        for pid in reversed(self.frozen.pop(name, [])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def client(self, ids: list[int] | None = None, **options: object) -> StoreClient:
        """A StoreClient to the store members' client addresses (default: every member), from
        the root namespace (not through the relay)."""
        chosen = [m for m in self.members.values() if ids is None or m.node_id in ids]
        secret = (self.root / "store-secret").read_text().strip().encode()
        return StoreClient(
            [(m.host, 7100) for m in chosen],
            self.scope,
            secret,
            **options,  # type: ignore[arg-type]
        )

    def store_leader(self) -> str | None:
        """The member leading the Raft store now, by `hamgr store-ctl status` (None: unknown)."""
        for m in self.members.values():
            try:
                out = subprocess.run(
                    [
                        *(sys.executable, "-m", "hamgr", "store-ctl"),
                        *("--config", str(m.config), "--timeout", "2", "status"),
                    ],
                    capture_output=True, text=True, timeout=15, check=False,
                ).stdout  # fmt: skip
            except subprocess.TimeoutExpired:
                continue
            for line in out.splitlines():
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    leader = int(json.loads(line).get("leader") or 0)
                    for other in self.members.values():
                        if other.node_id == leader:
                            return other.name
        return None

    def agent_running(self, name: str) -> bool:
        return bool(self.pids(name, "agent"))

    # -- the disk

    def fsync_stall(self, name: str, seconds: float) -> None:
        """Delay every fsync of member `name`'s store by `seconds` (0: none) from now on."""
        if not 0 <= seconds < 60:
            raise ChaosError(f"fsync stall must be in [0, 60) s, got {seconds!r}")
        tmp = self.fsync_file(name).with_suffix(".tmp")
        tmp.write_text(f"{seconds:g}")
        os.replace(tmp, self.fsync_file(name))

    def fill_disk(self, name: str) -> int:
        """Fill member `name`'s store filesystem to the last byte; the bytes written."""
        filler = self.store_dir(name) / "zz-chaos-filler"
        self.fillers[name] = filler
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(filler, "ab", buffering=0) as f:
            for _ in range(STORE_FS_MB * 4):  # bounded: the filesystem is STORE_FS_MB
                try:
                    written += f.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    for size in (4096, 512, 1):  # the last partial blocks
                        with contextlib.suppress(OSError):
                            while True:
                                written += f.write(b"\0" * size)
                    break
        return written

    def free_disk(self, name: str) -> None:
        filler = self.fillers.pop(name, None)
        if filler is not None:
            filler.unlink(missing_ok=True)

    def free_all_disks(self) -> None:
        for name in list(self.fillers):
            self.free_disk(name)

    def heal_all(self) -> list[str]:
        """Undo every fault in force: network, frozen processes, fsync stalls, full disks, and
        start every agent that is not running (once each, as systemd's Restart=on-failure
        would, e.g. after an agent whose store member failed on the full disk exited 1). The
        agents started again, each with how its last run ended."""
        self.network()
        for name in list(self.frozen):
            self.thaw(name)
        self.free_all_disks()
        started = []
        for name in self.members:
            self.fsync_stall(name, 0)
            if not self.agent_running(name):
                proc = self.members[name].proc
                code = proc.poll() if proc is not None else None
                started.append(f"{name} (exit status {code})")
                self.start(name)
        return started


def unavailable() -> str | None:
    """Why the chaos harness cannot run here, or None."""
    return netns.unavailable()


@contextlib.contextmanager
def chaos_cluster(size: int = 3, *, seed: int = 0, sync: bool = True) -> Iterator[ChaosCluster]:
    """A started chaos cluster (module doc); everything removed on exit."""
    root = Path(tempfile.mkdtemp(prefix=netns.PREFIX))
    os.chmod(root, 0o755)
    net = netns.Network(size)
    cluster: ChaosCluster | None = None
    try:
        net.up()
        cluster = ChaosCluster(root, net, seed=seed, sync=sync)
        cluster.prepare()
        cluster.start_all()
        yield cluster
    finally:
        try:
            if cluster is not None:
                cluster.close()
        finally:
            net.down()
            if os.environ.get("HCHAOS_KEEP"):
                print(f"chaos: kept {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found
