"""hamgr/agent/sdnotify.py and hamgr/agent/sdwatchdog.py against a real unix datagram socket
standing in for systemd's NOTIFY_SOCKET (a path, or an abstract name), and a real child process
that notifies the way the agent does under systemd.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hamgr.agent.sdnotify import Notifier, NotifyConfigError, socket_address, watchdog_timeout
from hamgr.agent.sdwatchdog import LoopWatchdog

ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """The service manager's end: a bound unix datagram socket; messages as lists of fields."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[list[str]] = []

    def _read(self, timeout: float) -> bool:
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return False
        self.messages.append(data.decode().split("\n"))
        return True

    def wait_for(self, pred: Callable[[list[list[str]]], bool], timeout: float, what: str) -> None:
        """Read messages until ``pred(messages)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not pred(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}: {self.messages}"
                )
            self._read(left)

    def drain(self, duration: float) -> list[list[str]]:
        """Every message that arrives within ``duration`` seconds from now."""
        start = len(self.messages)
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            self._read(left)
        return self.messages[start:]

    def count(self, field: str) -> int:
        return sum(field in m for m in self.messages)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Short: a unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="hamgr-sd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def receiver(sock_dir: Path) -> Iterator[tuple[Receiver, str]]:
    path = str(sock_dir / "notify")
    r = Receiver(path)
    yield r, path
    r.close()


def test_no_notify_socket_means_no_notifier() -> None:
    env = {"PATH": "/bin", "WATCHDOG_USEC": "1000000"}
    assert Notifier.from_env(env) is None
    assert "WATCHDOG_USEC" not in env  # unset also when there is nothing to notify


def test_ready_status_and_stopping_reach_the_socket(receiver: tuple[Receiver, str]) -> None:
    r, path = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "HOME": "/root"}
    n = Notifier.from_env(env)
    assert n is not None
    assert env == {"HOME": "/root"}  # children (fencer, PostgreSQL) must not inherit them
    assert n.watchdog_interval() == 2.0
    assert n.ready(status="replica,\nfollowing a")
    r.wait_for(lambda ms: len(ms) == 1, 2, "READY=1")
    assert r.messages[0] == ["READY=1", "STATUS=replica, following a"]
    # The same status again is not resent (the HA loop may call it every cycle) ...
    assert n.status("replica, following a")
    assert n.status("primary")
    assert n.status("primary", force=True)
    assert n.stopping("handing over")
    r.wait_for(lambda ms: len(ms) == 4, 2, "three more messages")
    assert r.messages[1:] == [
        ["STATUS=primary"],
        ["STATUS=primary"],
        ["STOPPING=1", "STATUS=handing over"],
    ]
    assert n.extend_timeout(1.5)
    r.wait_for(lambda ms: len(ms) == 5, 2, "extend")
    assert r.messages[4] == ["EXTEND_TIMEOUT_USEC=1500000"]
    n.close()


def test_abstract_socket_name() -> None:
    name = f"@hamgr-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    assert socket_address(name) == b"\0" + name[1:].encode()
    r = Receiver(b"\0" + name[1:].encode())
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": name})
        assert n is not None and n.watchdog_interval() is None
        assert n.watchdog()
        r.wait_for(lambda ms: ms == [["WATCHDOG=1"]], 2, "WATCHDOG=1 on the abstract socket")
    finally:
        r.close()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"NOTIFY_SOCKET": "relative/path"}, "NOTIFY_SOCKET='relative/path'"),
        ({"NOTIFY_SOCKET": "@"}, "NOTIFY_SOCKET='@'"),
        ({"NOTIFY_SOCKET": "vsock:2:1234"}, "NOTIFY_SOCKET='vsock:2:1234'"),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "soon"}, "WATCHDOG_USEC='soon'"),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"}, "WATCHDOG_USEC='0'"),
        (
            {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "10", "WATCHDOG_PID": "me"},
            "WATCHDOG_PID='me'",
        ),
    ],
)
def test_malformed_variables_are_named(env: dict[str, str], names: str) -> None:
    with pytest.raises(NotifyConfigError, match=names):
        Notifier.from_env(env)
    assert env == {}  # unset even when refused: nothing half-read leaks to children


def test_watchdog_of_another_process_is_not_ours() -> None:
    env = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_timeout(env) is None
    assert watchdog_timeout(env, pid=os.getpid() + 1) == 3.0
    assert watchdog_timeout({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 3.0


def test_field_must_be_one_key_value_line(receiver: tuple[Receiver, str]) -> None:
    _, path = receiver
    n = Notifier(path)
    for bad in ("READY", "=1", "A=1\nB=2"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            n.send(bad)
    with pytest.raises(ValueError, match="seconds"):
        n.extend_timeout(0)


def test_missing_manager_is_reported_not_raised(sock_dir: Path) -> None:
    path = str(sock_dir / "later")
    n = Notifier(path)
    assert n.ready() is False  # nobody listens yet: no exception, the agent goes on
    assert n.status("x") is False
    r = Receiver(path)
    try:
        assert n.status("x") is True  # not marked as sent while it failed
        r.wait_for(lambda ms: ms == [["STATUS=x"]], 2, "STATUS=x once the socket exists")
    finally:
        r.close()


def test_a_child_process_notifies_and_does_not_pass_the_socket_on(
    receiver: tuple[Receiver, str],
) -> None:
    """As under systemd: the variables in the environment of a separate process."""
    r, path = receiver
    program = (
        "import os, subprocess, sys\n"
        "from hamgr.agent.sdnotify import Notifier\n"
        "n = Notifier.from_env()\n"
        "inherited = subprocess.run(['env'], capture_output=True, text=True).stdout\n"
        "n.ready(status='grandchild sees NOTIFY_SOCKET: ' + str('NOTIFY_SOCKET' in inherited))\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NOTIFY_SOCKET": path}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    r.wait_for(lambda ms: len(ms) == 1, 5, "READY=1 from the child")
    assert r.messages[0] == ["READY=1", "STATUS=grandchild sees NOTIFY_SOCKET: False"]


# --- the watchdog feeder ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_feeder_pings_only_while_the_loop_beats(receiver: tuple[Receiver, str]) -> None:
    r, path = receiver
    clock = Clock()
    dog = LoopWatchdog(Notifier(path), period=1.0, stale_after=5.0, clock=clock)
    assert dog.tick()  # the first cycle gets stale_after from the start
    clock.now += 5.0
    assert dog.tick()
    clock.now += 0.5
    assert not dog.tick()  # 5.5 s without a cycle
    assert not dog.tick()
    dog.beat()
    assert dog.tick()
    r.wait_for(lambda ms: len(ms) == 4, 2, "three pings and one stall status")
    assert r.messages == [
        ["WATCHDOG=1"],
        ["WATCHDOG=1"],
        ["STATUS=HA loop stalled for 6 s: awaiting restart"],
        ["WATCHDOG=1"],
    ]
    assert dog.sent == 3


def test_allow_covers_a_long_bounded_step(receiver: tuple[Receiver, str]) -> None:
    _, path = receiver
    clock = Clock()
    dog = LoopWatchdog(Notifier(path), period=1.0, stale_after=2.0, clock=clock)
    with dog.allow(60.0):
        clock.now += 61.0
        assert dog.tick()  # inside its bound: 61 <= 60 + 2
        clock.now += 1.5
        assert not dog.tick()  # the step overran its own timeout: stuck
    assert dog.tick()  # leaving the block is progress
    clock.now += 2.5
    assert not dog.tick()
    with pytest.raises(ValueError, match="seconds"), dog.allow(-1):
        pass


def test_feeder_needs_a_watchdog(receiver: tuple[Receiver, str]) -> None:
    _, path = receiver
    assert LoopWatchdog.for_notifier(None, stale_after=6) is None
    assert LoopWatchdog.for_notifier(Notifier(path), stale_after=6) is None
    dog = LoopWatchdog.for_notifier(Notifier(path, watchdog_timeout=30), stale_after=6)
    assert dog is not None and dog.period == 15
    with pytest.raises(ValueError, match="stale_after"):
        LoopWatchdog(Notifier(path), period=1, stale_after=0)


async def test_watchdog_stops_when_the_loop_is_stuck(receiver: tuple[Receiver, str]) -> None:
    """READY=1, then WATCHDOG=1 every half timeout while a loop cycles; none once it hangs on
    an await that never returns; again once it moves."""
    r, path = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # 0.1 s
    assert n is not None
    dog = LoopWatchdog.for_notifier(n, stale_after=0.3)
    assert dog is not None and dog.period == 0.05
    stop = asyncio.Event()
    stuck = asyncio.Event()
    unstuck = asyncio.Event()

    async def ha_loop() -> None:
        while not stop.is_set():
            if stuck.is_set():
                await unstuck.wait()  # a hung await, as on a peer that never answers
                stuck.clear()
            dog.beat()
            await asyncio.sleep(0.02)

    loop_task = asyncio.create_task(ha_loop())
    feeder = asyncio.create_task(dog.run(stop))
    n.ready(status="replica")
    try:
        await asyncio.to_thread(
            r.wait_for, lambda ms: sum(m == ["WATCHDOG=1"] for m in ms) >= 5, 10, "pings"
        )
        assert r.messages[0] == ["READY=1", "STATUS=replica"]
        stuck.set()
        await asyncio.to_thread(
            r.wait_for, lambda ms: any("stalled" in f for m in ms for f in m), 10, "the stall"
        )
        quiet = await asyncio.to_thread(r.drain, 6 * dog.period)
        assert ["WATCHDOG=1"] not in quiet
        unstuck.set()
        before = r.count("WATCHDOG=1")
        await asyncio.to_thread(
            r.wait_for, lambda ms: r.count("WATCHDOG=1") >= before + 2, 10, "pings again"
        )
    finally:
        stop.set()
        unstuck.set()
        await asyncio.wait_for(asyncio.gather(loop_task, feeder), 5)
