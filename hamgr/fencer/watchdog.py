"""The Linux watchdog (config ``watchdog``): a second line of fencing behind the fencer process.

The kernel's watchdog API (Documentation/watchdog/watchdog-api.rst): opening the device starts
the watchdog; ``WDIOC_SETTIMEOUT`` sets its timeout in seconds (the driver writes back the
timeout it really uses, and the call also pings); ``WDIOC_KEEPALIVE`` pings; if no ping comes
within the timeout the machine is reset. Closing stops it only after the magic character ``V``
was written (and never with ``nowayout``): a process that dies with the device open leaves it
counting.

How hamgr uses it, as Patroni does: the device is open only while this agent holds the leader
key (its PostgreSQL is or becomes primary). Its timeout is ``ttl - watchdog.safety_margin``,
rounded down to whole seconds, so that it fires that long before the lease ends. It is pinged
only after a successful lease keepalive and only while that lease is valid: ``now < fence_at``,
and the expiry a ping would set (``now + timeout``) does not lie past the lease's end (``sent +
ttl``), after which another member may take over. So when the agent and the fencer freeze
together (a stuck host, a swap storm) while PostgreSQL runs, the machine is reset before a new
primary can be elected. When PostgreSQL stops being primary (demotion, a clean stop), the device
is closed with the magic character.

Modes: ``off``; ``automatic``: used when the device works, otherwise logged once and the agent
goes on without it; ``required``: the agent refuses to start without a usable device, and gives
the leader key back rather than run PostgreSQL as primary when the device cannot be opened.

Every device operation goes through :class:`DeviceIO`, the file-descriptor boundary (``os.open``,
``fcntl.ioctl``, ``os.write``, ``os.close``). The tests drive this protocol against a stand-in at
that boundary: the machines hamgr is developed on have no watchdog device.
"""

from __future__ import annotations

import array
import fcntl
import logging
import math
import os
import stat
from collections.abc import Callable
from typing import Protocol

from hamgr import clock
from hamgr.config.schema import WatchdogConfig

log = logging.getLogger(__name__)


def _ioc(direction: int, number: int, size: int) -> int:
    """Linux's _IOC(dir, 'W', nr, size) for the watchdog ioctls."""
    return (direction << 30) | (size << 16) | (ord("W") << 8) | number


_READ, _WRITE = 2, 1
_INT = 4
WDIOC_KEEPALIVE = _ioc(_READ, 5, _INT)
WDIOC_SETTIMEOUT = _ioc(_READ | _WRITE, 6, _INT)
WDIOC_GETTIMEOUT = _ioc(_READ, 7, _INT)
MAGIC_CLOSE = b"V"


class WatchdogError(Exception):
    """The watchdog is required and the device is unusable (the message says why)."""


class DeviceIO(Protocol):
    """The file-descriptor boundary of a watchdog device."""

    def problem(self, path: str) -> str | None:
        """Why ``path`` cannot be a watchdog device (None: it may be one), without opening it
        (opening starts the countdown)."""
        ...

    def open(self, path: str) -> int:
        """Open the device for writing (starts the watchdog); raises OSError."""
        ...

    def ioctl(self, fd: int, request: int, value: int) -> int:
        """An ioctl with an int argument; returns the int the driver wrote back."""
        ...

    def write(self, fd: int, data: bytes) -> int: ...

    def close(self, fd: int) -> None: ...


class OsDeviceIO:
    """The real device, through os and fcntl."""

    def problem(self, path: str) -> str | None:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return exc.strerror or str(exc)
        if not stat.S_ISCHR(mode):
            return "not a character device"
        if not os.access(path, os.W_OK):
            return "not writable by this process"
        return None

    def open(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def ioctl(self, fd: int, request: int, value: int) -> int:
        buf = array.array("i", [value])
        fcntl.ioctl(fd, request, buf, True)
        return buf[0]

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def close(self, fd: int) -> None:
        os.close(fd)


def timeout_for(ttl: float, safety_margin: float) -> int:
    """The device timeout, in whole seconds: ``ttl - safety_margin`` rounded down (>= 1)."""
    seconds = math.floor(ttl - safety_margin + 1e-9)
    if seconds < 1:
        raise WatchdogError(
            f"ttl {ttl:g} s - watchdog.safety_margin {safety_margin:g} s leaves less than the "
            "watchdog's one-second resolution"
        )
    return seconds


class Watchdog:
    """One agent's watchdog device, open while it holds the leader key (see the module doc)."""

    def __init__(
        self,
        config: WatchdogConfig,
        io: DeviceIO | None = None,
        now: Callable[[], float] = clock.now,
    ) -> None:
        self.mode = config.mode
        self.device = config.device
        self.safety_margin = config.safety_margin
        self.io: DeviceIO = io or OsDeviceIO()
        self._now = now
        self.fd: int | None = None
        self.requested: int | None = None
        """The timeout last asked for while open."""
        self.timeout: int | None = None
        """The timeout the driver really uses while open."""
        self.pings = 0
        self._warned = False

    @property
    def active(self) -> bool:
        """The device is open (the machine resets unless it is pinged or closed cleanly)."""
        return self.fd is not None

    def check_at_start(self, ttl: float, fence_margin: float, loop_wait: float) -> None:
        """Before the agent starts: ``required`` raises WatchdogError for an unusable device (or
        a timeout the settings cannot give), ``automatic`` logs it once and goes on."""
        if self.mode == "off":
            return
        try:
            timeout_for(ttl, self.safety_margin)
            problem = self.io.problem(self.device)
            if problem is not None:
                raise WatchdogError(f"watchdog device {self.device}: {problem}")
        except WatchdogError as exc:
            if self.mode == "required":
                raise WatchdogError(f"watchdog mode is required, but {exc}") from None
            self._warn(f"{exc}; going on without a watchdog (mode automatic)")
            return
        if self.safety_margin > fence_margin - loop_wait:
            log.warning(
                "watchdog.safety_margin %g s > safety_margin %g s - loop_wait %g s: when a store "
                "outage fences this primary, the watchdog may reset the machine before the loop "
                "closes it",
                self.safety_margin,
                fence_margin,
                loop_wait,
            )

    def ready_for_primary(self) -> bool:
        """May PostgreSQL run as primary now? Only with an open device when it is required."""
        return self.mode != "required" or self.active

    def feed(self, fence_at: float, lease_end: float, ttl: float) -> bool:
        """After a successful keepalive of the leader's lease: open the device if needed, and
        ping it if the lease is valid (``now < fence_at``) and the ping's expiry does not lie
        past ``lease_end``. True when the watchdog was pinged (or opened, which starts it)."""
        if self.mode == "off":
            return False
        now = self._now()
        if not now < fence_at:
            return False
        try:
            want = timeout_for(ttl, self.safety_margin)
        except WatchdogError as exc:
            self._warn(str(exc))
            return False
        if now + want > lease_end:
            log.warning(
                "not pinging the watchdog: its %d s from now would end %.3f s after the lease",
                want,
                now + want - lease_end,
            )
            return False
        if self.fd is None:
            return self._open(want, now, lease_end)
        try:
            if want != self.requested:
                self._set_timeout(want)
                if now + (self.timeout or want) > lease_end:
                    log.error("the watchdog's new timeout outlasts the lease; closing it")
                    self.disable()
                    return False
            else:
                self.io.ioctl(self.fd, WDIOC_KEEPALIVE, 0)
        except OSError as exc:
            log.error("pinging the watchdog %s failed: %s", self.device, exc)
            return False
        self.pings += 1
        return True

    def _open(self, want: int, now: float, lease_end: float) -> bool:
        try:
            self.fd = self.io.open(self.device)
        except OSError as exc:
            self._warn(f"cannot open the watchdog {self.device}: {exc}")
            return False
        try:
            self._set_timeout(want)
        except OSError as exc:
            self._warn(f"cannot set the timeout of the watchdog {self.device}: {exc}")
            self.disable()
            return False
        if now + (self.timeout or want) > lease_end:
            self._warn(
                f"the watchdog {self.device} keeps a timeout of {self.timeout} s, longer than "
                f"the lease allows ({want} s)"
            )
            self.disable()
            return False
        log.info("watchdog %s armed: timeout %d s", self.device, self.timeout)
        self.pings += 1
        return True

    def _set_timeout(self, want: int) -> None:
        assert self.fd is not None
        actual = self.io.ioctl(self.fd, WDIOC_SETTIMEOUT, want)
        self.requested = want
        self.timeout = actual if actual > 0 else want
        if self.timeout != want:
            log.warning(
                "the watchdog %s uses a timeout of %d s, not %d s", self.device, actual, want
            )

    def disable(self) -> None:
        """Stop the watchdog: the magic character, then close. Nothing to do when closed."""
        fd, self.fd = self.fd, None
        self.requested = self.timeout = None
        if fd is None:
            return
        try:
            self.io.write(fd, MAGIC_CLOSE)
        except OSError as exc:
            log.critical(
                "could not write the magic close character to the watchdog %s (%s): it keeps "
                "counting and will reset this machine",
                self.device,
                exc,
            )
        try:
            self.io.close(fd)
        except OSError as exc:
            log.error("closing the watchdog %s failed: %s", self.device, exc)
        log.info("watchdog %s disarmed (magic close)", self.device)

    def _warn(self, message: str) -> None:
        """Log a device problem: once in ``automatic`` mode, every time in ``required``."""
        if self.mode == "required":
            log.error("%s", message)
        elif not self._warned:
            self._warned = True
            log.warning("%s", message)
