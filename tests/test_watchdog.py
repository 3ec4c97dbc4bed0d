"""hamgr/fencer/watchdog.py: the Linux watchdog protocol, against a stand-in device.

This machine has no watchdog device (and opening a real one would arm a machine reset), so the
tests drive :class:`Watchdog` against :class:`StandInDevice`, which plays the kernel's side at
the file-descriptor boundary (:class:`~hamgr.fencer.watchdog.DeviceIO`): open starts the countdown,
WDIOC_SETTIMEOUT sets it (answering the timeout really used) and pings, WDIOC_KEEPALIVE pings,
and close stops it only right after the magic character 'V'. A clock of the test's own says
when the stand-in would have reset the machine. The wiring into the agent (start refused in
``required`` mode, ``automatic`` going on) is tested on real agents in
tests/ha/test_watchdog_agent.py.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from hamgr.config.schema import WatchdogConfig
from hamgr.dcs.model import LeaderKey
from hamgr.fencer.watchdog import (
    MAGIC_CLOSE,
    WDIOC_KEEPALIVE,
    WDIOC_SETTIMEOUT,
    OsDeviceIO,
    Watchdog,
    WatchdogError,
    timeout_for,
)
from hamgr.ha.execute import ActionRunner
from hamgr.ha.inputs import LocalPostgres
from hamgr.postgres import PgSettings

DEVICE = "/dev/watchdog-stand-in"
TTL = 6.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class StandInDevice:
    """The kernel's side of one watchdog device, on the test's clock."""

    clock: Clock
    present: bool = True
    busy: bool = False
    default_timeout: int = 60
    rounds_up_to: int | None = None  # a driver with a coarser resolution
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    running: bool = False
    timeout: int = 0
    expires_at: float = 0.0
    reset_at: float | None = None
    _magic: bool = False

    def _check_reset(self) -> None:
        if self.running and self.reset_at is None and self.clock.now >= self.expires_at:
            self.reset_at = self.expires_at

    def fired(self) -> bool:
        """Would the machine have been reset by now?"""
        self._check_reset()
        return self.reset_at is not None

    def problem(self, path: str) -> str | None:
        return None if self.present else "No such file or directory"

    def open(self, path: str) -> int:
        self.calls.append(("open", path))
        if not self.present:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if self.busy:
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        self._check_reset()
        self.running, self.timeout = True, self.default_timeout
        self.expires_at = self.clock.now + self.timeout
        self._magic = False
        return 7

    def ioctl(self, fd: int, request: int, value: int) -> int:
        assert fd == 7 and self.running
        self._check_reset()
        self._magic = False
        if request == WDIOC_SETTIMEOUT:
            self.calls.append(("settimeout", value))
            self.timeout = max(value, self.rounds_up_to or 0)
        elif request == WDIOC_KEEPALIVE:
            self.calls.append(("keepalive",))
        else:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        self.expires_at = self.clock.now + self.timeout  # both ping
        return self.timeout

    def write(self, fd: int, data: bytes) -> int:
        assert fd == 7
        self.calls.append(("write", data))
        self._check_reset()
        self._magic = MAGIC_CLOSE in data
        if not self._magic:
            self.expires_at = self.clock.now + self.timeout  # any write pings
        return len(data)

    def close(self, fd: int) -> None:
        assert fd == 7
        self.calls.append(("close",))
        self._check_reset()
        if self._magic:
            self.running = False  # a clean stop; otherwise it goes on counting


def make(mode: str = "required", margin: float = 2.0, **device: Any) -> tuple[Watchdog, Any]:
    clock = Clock()
    dev = StandInDevice(clock, **device)
    config = WatchdogConfig(mode=mode, device=DEVICE, safety_margin=margin)  # type: ignore[arg-type]
    return Watchdog(config, io=dev, now=clock), dev


def renewed(wd: Watchdog, dev: StandInDevice, latency: float = 0.01, fence: float = 2.0) -> bool:
    """A keepalive sent now that succeeded `latency` later: feed the watchdog as the agent does
    (fence_at = sent + ttl - fence margin, lease end = sent + ttl)."""
    sent = dev.clock.now
    dev.clock.now += latency
    return wd.feed(sent + TTL - fence, sent + TTL, TTL)


def test_protocol_open_set_timeout_ping_and_magic_close() -> None:
    wd, dev = make()
    wd.check_at_start(TTL, 2.0, 1.0)
    assert dev.calls == [], "the start check must not open (that would arm the watchdog)"
    assert not wd.ready_for_primary()
    assert renewed(wd, dev)
    assert wd.active and wd.ready_for_primary()
    assert dev.calls == [("open", DEVICE), ("settimeout", 4)]  # ttl 6 - margin 2
    for _ in range(3):
        dev.clock.now += TTL / 3
        assert renewed(wd, dev)
    assert dev.calls[2:] == [("keepalive",)] * 3
    assert wd.pings == 4
    wd.disable()
    assert dev.calls[-2:] == [("write", b"V"), ("close",)]
    assert not dev.running and not wd.active
    dev.clock.now += 3600
    assert not dev.fired()
    wd.disable()  # closed already: nothing more
    assert dev.calls[-1] == ("close",)


def test_no_ping_after_the_lease_deadline_and_the_reset_comes_before_the_lease_ends() -> None:
    wd, dev = make()
    sent = dev.clock.now
    assert renewed(wd, dev)
    lease_end = sent + TTL
    # The agent is alive but its keepalives fail: it feeds nothing. Asked to feed with a
    # deadline already passed (a late call), it does not ping either.
    dev.clock.now = sent + TTL - 2.0
    assert not wd.feed(sent + TTL - 2.0, lease_end, TTL)
    assert dev.calls[-1] == ("settimeout", 4), "pinged after the lease deadline"
    dev.clock.now = lease_end
    assert dev.fired() and dev.reset_at is not None
    assert dev.reset_at <= lease_end - 2.0 + 0.01  # the watchdog margin, give or take latency


def test_a_ping_that_would_outlast_the_lease_is_skipped() -> None:
    wd, dev = make(margin=2.0)
    assert renewed(wd, dev)
    # A keepalive that took 2.5 s: now + 4 s would lie past sent + 6 s.
    dev.clock.now += 1.0
    assert not renewed(wd, dev, latency=2.5)
    assert dev.calls[-1] == ("settimeout", 4)


def test_a_new_ttl_sets_a_new_timeout() -> None:
    wd, dev = make()
    assert renewed(wd, dev)
    sent = dev.clock.now
    assert wd.feed(sent + 10 - 2, sent + 10, 10.0)
    assert dev.calls[-1] == ("settimeout", 8)


def test_a_driver_that_keeps_a_longer_timeout_than_the_lease_allows_is_closed() -> None:
    wd, dev = make(rounds_up_to=10)
    assert not renewed(wd, dev)
    assert not wd.active and not wd.ready_for_primary()
    assert dev.calls[-2:] == [("write", b"V"), ("close",)] and not dev.running


def test_off_never_touches_a_device() -> None:
    wd, dev = make(mode="off", present=False)
    wd.check_at_start(TTL, 2.0, 1.0)
    assert not renewed(wd, dev)
    assert wd.ready_for_primary() and dev.calls == []


def test_required_refuses_a_missing_device_at_start() -> None:
    wd, _ = make(present=False)
    with pytest.raises(WatchdogError, match=rf"required, but watchdog device {DEVICE}: No such"):
        wd.check_at_start(TTL, 2.0, 1.0)


def test_required_refuses_a_margin_that_leaves_no_whole_second() -> None:
    wd, _ = make(margin=1.5)
    with pytest.raises(WatchdogError, match="less than the watchdog's one-second resolution"):
        wd.check_at_start(2.0, 0.5, 0.5)


def test_required_without_an_openable_device_is_not_ready_for_primary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wd, dev = make(busy=True)
    wd.check_at_start(TTL, 2.0, 1.0)
    assert not renewed(wd, dev)
    assert not wd.active and not wd.ready_for_primary()
    assert "Device or resource busy" in caplog.text


def test_automatic_logs_once_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    wd, dev = make(mode="automatic", present=False)
    caplog.set_level(logging.WARNING, logger="hamgr.fencer.watchdog")
    wd.check_at_start(TTL, 2.0, 1.0)
    for _ in range(5):
        assert not renewed(wd, dev)
        dev.clock.now += 2
    assert wd.ready_for_primary()
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    assert "going on without a watchdog (mode automatic)" in caplog.records[0].getMessage()


def test_automatic_uses_a_working_device() -> None:
    wd, dev = make(mode="automatic")
    wd.check_at_start(TTL, 2.0, 1.0)
    assert renewed(wd, dev) and wd.active


def test_timeout_is_ttl_minus_margin_rounded_down() -> None:
    assert timeout_for(6.0, 2.0) == 4
    assert timeout_for(6.0, 1.5) == 4
    assert timeout_for(2.0, 1.0) == 1
    with pytest.raises(WatchdogError):
        timeout_for(2.0, 1.2)


def test_the_real_device_io_checks_without_opening(tmp_path: Path) -> None:
    io = OsDeviceIO()
    assert io.problem(str(tmp_path / "missing")) == "No such file or directory"
    plain = tmp_path / "plain"
    plain.write_text("")
    assert io.problem(str(plain)) == "not a character device"
    assert io.problem("/dev/null") is None  # a character device we may write


# -- the agent's side: the runner feeds, gates and closes it ----------------------------------


class Store:
    """The runner's store, as far as these tests need it."""

    def __init__(self) -> None:
        self.released: list[LeaderKey] = []

    async def release_leader(self, key: LeaderKey) -> bool:
        self.released.append(key)
        return True


def runner_with(wd: Watchdog) -> tuple[ActionRunner, Store]:
    store = Store()
    pg = PgSettings(bin_dir=Path("/nonexistent/bin"), data_dir=Path("/nonexistent/data"))
    return ActionRunner("m1", cast(Any, store), pg, watchdog=wd), store


async def test_required_and_unarmed_gives_the_key_back_instead_of_promoting() -> None:
    wd, _ = make(busy=True)
    runner, store = runner_with(wd)
    runner.lease.key = LeaderKey("m1", 9)
    assert not await runner._watchdog_allows_primary("promoting")
    assert store.released == [LeaderKey("m1", 9)] and runner.lease.key is None


def test_the_watchdog_closes_once_it_guards_nothing() -> None:
    wd, dev = make()
    runner, _ = runner_with(wd)
    runner.lease.key = LeaderKey("m1", 9)
    assert renewed(wd, dev)
    runner.lease.fence_at = dev.clock.now + 3
    stopped = LocalPostgres(initialized=True, data_dir_empty=False, timeline=1)
    primary = LocalPostgres(
        initialized=True, data_dir_empty=False, running=True, role="primary", timeline=1
    )
    runner.settle_watchdog(stopped, dev.clock.now)  # a key holder starting PostgreSQL: kept
    assert wd.active
    runner.lease.fence_at = 0.0  # the lease ran out (no keepalive succeeded)
    runner.settle_watchdog(primary, dev.clock.now)  # PostgreSQL still primary: kept until it stops
    assert wd.active
    runner.settle_watchdog(stopped, dev.clock.now)
    assert not wd.active and not dev.running
