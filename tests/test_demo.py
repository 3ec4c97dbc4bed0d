"""The local demo (`deploy/dev.sh cluster`, `python -m hamgr.cli.demo`) as a newcomer runs it.

The integration test runs the real demo on 127.0.0.181 with its output in a pipe (no terminal:
each line must arrive as it is printed), interrupts it like Ctrl-C once it says it serves, and
checks the stop: the demo reports its duration (printed here, never asserted on), the agents
log nothing at ERROR or CRITICAL while stopping and hand nothing over, and no agent, fencer or
PostgreSQL process is left running. The pure parts (--host, killing leftovers) need no cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hamgr.agent.setup import load_agent_setup
from hamgr.cli.certs import existing_members
from hamgr.cli.demo import loopback, write_configs
from hamgr.cli.demostop import DemoMember, kill_leftovers
from hamgr.fencer.postmasterproc import kill_postmaster, postmaster_identity, proc_stat
from hamgr.fencer.process import pid_file_for

HOST = "127.0.0.181"
NAMES = ("pg1", "pg2", "pg3")


def processes_under(root: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every live process that names `root` on its command line or
    works inside it (agents, fencers, postmasters, and PostgreSQL's backends by their cwd)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        stat = proc_stat(pid)
        if stat is not None and stat.alive and (str(root) in cmd or cwd.startswith(f"{root}/")):
            found.append((pid, cmd.strip()))
    return found


def kill_everything_under(root: Path) -> None:
    """Teardown after a failed test: postmasters with their backends, then the rest, by PID."""
    for name_dir in root.glob("data*"):
        ident = postmaster_identity(name_dir)
        if ident is not None:
            kill_postmaster(*ident)
    for pid, _ in processes_under(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Lines:
    """A child's stdout read line by line on a thread, each line stamped on arrival."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line (from now on) matching `pattern`; fails after `timeout` seconds or
        when the output ends without one."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout:g} s; output so far:\n"
                    + "\n".join(self.seen)
                ) from None
            if line is None:
                raise AssertionError(
                    f"the demo's output ended without {pattern!r}:\n" + "\n".join(self.seen)
                )
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found


@pytest.fixture
def demo_root(pg_bindir: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the demo runs PostgreSQL as the postgres OS user: run as root")
    root = Path(tempfile.mkdtemp(prefix="hamgr-demo-", dir="/tmp"))
    os.chmod(root, 0o755)
    ok = False
    try:
        yield root
        ok = True
    finally:
        kill_everything_under(root)
        if ok:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_ctrl_c_stops_the_whole_cluster_quickly_and_cleanly(demo_root: Path) -> None:
    root = demo_root
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hamgr.cli.demo",
            "--dir",
            str(root),
            "--host",
            HOST,
            "--timeout",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = Lines(proc)
        # Seen while the demo still runs: its output reaches a pipe line by line.
        started = out.wait_for(r"^started 3 agents (over TLS|in plain text)", 60)
        assert started.group(1) == "over TLS", "TLS is the demo's default"
        out.wait_for(rf"psql -h {re.escape(HOST)} -p 544[123]", 150)
        out.wait_for(r"^Ctrl-C stops the cluster\.$", 10)
        assert proc.poll() is None, "the demo exited on its own"
        logs = {name: root / f"{name}.log" for name in NAMES}
        offsets = {name: path.stat().st_size for name, path in logs.items()}
        proc.send_signal(signal.SIGINT)
        stopped = out.wait_for(r"^stopped in ([0-9.]+) s$", 120)
        assert proc.wait(timeout=30) == 0, "\n".join(out.seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"\ndemo stop: {stopped.group(1)} s (as the demo printed it)")
    stop_logs = {}
    for name, path in logs.items():
        with open(path, errors="replace") as handle:
            handle.seek(offsets[name])
            stop_logs[name] = handle.read()
    bad = [
        f"{name}: {line}"
        for name, text in stop_logs.items()
        for line in text.splitlines()
        if re.match(r"\S+ \S+ (ERROR|CRITICAL) ", line)
    ]
    assert not bad, "error-level lines while stopping:\n" + "\n".join(bad)
    everything = "\n".join(stop_logs.values())
    assert "handing the primary over" not in everything, everything
    assert "no majority: no handover" in everything, everything
    assert not [line for line in out.seen if line.startswith("killed ")], "\n".join(out.seen)
    left = processes_under(root)
    assert not left, f"left running: {left}"
    for i in range(1, len(NAMES) + 1):
        assert not (root / f"data{i}" / "postmaster.pid").exists()


def test_demo_configs_use_tls_by_default_with_certificates_made_once(tmp_path: Path) -> None:
    configs = write_configs(tmp_path, "127.0.0.1")
    ca = (tmp_path / "tls" / "ca.crt").read_bytes()
    for path in configs:
        setup = load_agent_setup(path, env={})
        assert setup.me.api_url.startswith("https://127.0.0.1:")
        assert setup.config.restapi.cafile == str(tmp_path / "tls" / "ca.crt")
        assert setup.store is not None and setup.store.tls is not None
    key = (tmp_path / "tls" / "pg1.key").read_bytes()
    write_configs(tmp_path, "127.0.0.1")  # the next start keeps the certificates
    assert (tmp_path / "tls" / "pg1.key").read_bytes() == key
    write_configs(tmp_path, "127.0.0.2")  # another --host: renewed from the same CA
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == ca
    assert existing_members(tmp_path / "tls")[0].hosts == ("pg1", "127.0.0.2")
    plain = write_configs(tmp_path / "plain", "127.0.0.1", tls=False)
    setup = load_agent_setup(plain[0], env={})
    assert setup.me.api_url.startswith("http://") and setup.store is not None
    assert setup.store.tls is None and not (tmp_path / "plain" / "tls").exists()


def test_host_must_be_an_ipv4_loopback_address() -> None:
    assert loopback("127.0.0.181") == "127.0.0.181"
    with pytest.raises(argparse.ArgumentTypeError, match="not a loopback address"):
        loopback("10.1.2.3")
    with pytest.raises(argparse.ArgumentTypeError, match="not an IPv4 address"):
        loopback("localhost")


def test_leftover_fencers_are_killed_by_pid_and_only_their_own(tmp_path: Path) -> None:
    """A process that names the fencer's socket is stopped; a pid file naming an unrelated
    process (a reused PID) leaves that process alone."""
    socket = tmp_path / "data1.run" / "hamgr-fencer.sock"
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(socket)])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = DemoMember("pg1", fake, tmp_path / "data1", "http://127.0.0.1:1")
        other = DemoMember("pg2", bystander, tmp_path / "data2", "http://127.0.0.1:1")
        assert mine.fencer_socket == socket
        for m in (mine, other):
            m.fencer_socket.parent.mkdir(parents=True)
        pid_file_for(mine.fencer_socket).write_text(f"{fake.pid}\n")
        pid_file_for(other.fencer_socket).write_text(f"{bystander.pid}\n")
        killed = kill_leftovers([mine, other])
        assert killed == [f"pg1's fencer (pid {fake.pid})"]
        assert fake.wait(timeout=10) == -signal.SIGTERM
        assert bystander.poll() is None
    finally:
        for p in (fake, bystander):
            p.kill()
            p.wait()
