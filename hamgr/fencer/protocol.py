"""The fencer's protocol, pure: parsing the agent's command lines and answering them from the
deadline state (:class:`FenceStatus`, also what the agent reads from a reply).
hamgr/fencer/process.py runs it on its socket and enforces the deadline; hamgr/fencer/client.py
is the agent's side. Standard library and hamgr.clock only (it runs in the fencer process).

Protocol: one unix stream socket (mode 0600), one agent connection at a time (a new connection
replaces the old one: that is how a restarted agent takes over). ASCII lines, each at most
MAX_LINE bytes, ending in a newline; every command gets one reply line:

    ARM <fence_at> <postmaster_pid> <start_time>  -> ARMED <fence_at> <pid> <start_time>
                                                     | REFUSED <reason>   (older deadline)
    CAP <fence_at>                                -> ARMED <fence_at'> <pid> <start_time>
                                                     | DISARMED           (nothing to cap)
    DISARM                                        -> DISARMED
    QUERY                                         -> ARMED <fence_at> <pid> <start_time>
                                                     | DISARMED
    EXIT                                          -> BYE (then the fencer exits)
                                                     | REFUSED <reason>   (while armed)
    CLOCK                                         -> CLOCK <clock name> <now>
    anything malformed                            -> ERR <reason>, and the connection is closed

`fence_at` is seconds on `hamgr.clock` (`clock.now()`; CLOCK names it, and the agent checks
that name against its own before relying on the fencer); `start_time` is the postmaster's
start time in clock ticks after boot (field 22 of /proc/<pid>/stat), so a reused PID is never
killed. ARM only moves a deadline forward (an arm computed from an older keepalive must not
shorten the lease's fence by accident); CAP moves it back, to min(armed, fence_at), when the
agent's lease now grants less (a shorter ttl, a larger safety_margin: see
hamgr/ha/leaseclock.py). A deadline that has already passed fires at once, one more than
MAX_AHEAD seconds away is refused as a likely wall-clock time. DISARM is for when the agent
stopped PostgreSQL itself or demoted it cleanly. A closed connection changes nothing: the deadline
stays. The fencer exits only on EXIT or SIGTERM/SIGINT while disarmed: the agent must DISARM
first, because stopping an armed fencer would drop the fence (EXIT while armed is REFUSED, a
SIGTERM while armed is refused with a log line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hamgr import clock

MAX_LINE = 128
# A fence_at further ahead than this is almost surely a wall-clock time (time.time()) passed by
# mistake: refused with a message that says so.
MAX_AHEAD = 3600.0
# The longest poll() while armed. poll's timeout runs on CLOCK_MONOTONIC, which stops while the
# machine is suspended: a deadline that passed during a suspend (on hamgr.clock, which counts
# it) is noticed within this long after the resume, not after the rest of the old sleep.
MAX_SLEEP_MS = 100


class ProtocolError(ValueError):
    """A malformed command: answered `ERR <reason>`, then the connection is closed."""


@dataclass(frozen=True)
class Arm:
    fence_at: float
    pid: int
    start_time: int


@dataclass(frozen=True)
class Cap:
    fence_at: float


@dataclass(frozen=True)
class Simple:
    verb: str  # DISARM, QUERY, EXIT or CLOCK


Command = Arm | Cap | Simple


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ProtocolError(f"{what} must be a non-negative integer, got {text[:40]!r}")
    return int(text)


def _fence_at(text: str) -> float:
    try:
        fence_at = float(text)
    except ValueError:
        raise ProtocolError(f"fence_at {text[:40]!r} is not a number") from None
    if not math.isfinite(fence_at) or fence_at <= 0:
        raise ProtocolError(f"fence_at must be a positive finite number, got {text!r}")
    return fence_at


def parse_command(line: bytes) -> Command:
    """One command line (without its newline) -> Command; raises ProtocolError naming the fault."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ProtocolError(f"command is not ASCII: {line[:40]!r}") from None
    if not text.isprintable():
        raise ProtocolError(f"command holds control characters: {text[:40]!r}")
    words = text.split()
    if not words:
        raise ProtocolError("empty command")
    verb, args = words[0], words[1:]
    if verb == "ARM":
        if len(args) != 3:
            raise ProtocolError(
                f"ARM takes 3 arguments (fence_at postmaster_pid start_time), got {len(args)}"
            )
        fence_at = _fence_at(args[0])
        pid = _number(args[1], "postmaster_pid")
        if pid <= 1:
            raise ProtocolError(f"postmaster_pid {pid} cannot be a postmaster")
        return Arm(fence_at, pid, _number(args[2], "start_time"))
    if verb == "CAP":
        if len(args) != 1:
            raise ProtocolError(f"CAP takes 1 argument (fence_at), got {len(args)}")
        return Cap(_fence_at(args[0]))
    if verb in ("DISARM", "QUERY", "EXIT", "CLOCK"):
        if args:
            raise ProtocolError(f"{verb} takes no arguments, got {len(args)}")
        return Simple(verb)
    raise ProtocolError(
        f"unknown command {verb[:40]!r} (expected ARM, CAP, DISARM, QUERY, EXIT or CLOCK)"
    )


@dataclass(frozen=True)
class FenceStatus:
    """The deadline and the postmaster it guards; None fields mean disarmed. The fencer holds
    one and replaces it with what each command makes of it (`apply`); the agent reads one from
    each reply (hamgr/fencer/client.py `parse_status`)."""

    fence_at: float | None = None
    pid: int | None = None
    start_time: int | None = None

    @property
    def armed(self) -> bool:
        return self.fence_at is not None

    def describe(self) -> str:
        """The reply line for the current state."""
        if self.fence_at is None:
            return "DISARMED"
        return f"ARMED {self.fence_at!r} {self.pid} {self.start_time}"

    def due(self, now: float) -> bool:
        return self.fence_at is not None and now >= self.fence_at

    def timeout_ms(self, now: float) -> int | None:
        """How long poll may sleep: until the deadline (rounded up, at most MAX_SLEEP_MS),
        forever when disarmed."""
        if self.fence_at is None:
            return None
        return max(0, min(MAX_SLEEP_MS, math.ceil((self.fence_at - now) * 1000)))

    def apply(self, command: Command, now: float) -> tuple[FenceStatus, str, bool]:
        """What `command` makes of this state: (the new state, the reply line, whether the
        fencer should now exit)."""
        if isinstance(command, Arm):
            if command.fence_at > now + MAX_AHEAD:
                raise ProtocolError(
                    f"fence_at {command.fence_at!r} is {command.fence_at - now:.0f}s ahead of "
                    f"{clock.NAME} now ({now:.3f}); pass a hamgr.clock.now() instant"
                )
            if self.fence_at is not None and command.fence_at < self.fence_at:
                return (
                    self,
                    f"REFUSED fence_at {command.fence_at!r} is older than the armed "
                    f"{self.fence_at!r}: a deadline only moves forward",
                    False,
                )
            armed = FenceStatus(command.fence_at, command.pid, command.start_time)
            return armed, armed.describe(), False
        if isinstance(command, Cap):
            capped = self
            if self.fence_at is not None and command.fence_at < self.fence_at:
                capped = replace(self, fence_at=command.fence_at)
            return capped, capped.describe(), False
        if command.verb == "DISARM":
            return FenceStatus(), FenceStatus().describe(), False
        if command.verb == "QUERY":
            return self, self.describe(), False
        if command.verb == "CLOCK":
            return self, f"CLOCK {clock.NAME} {now!r}", False
        if self.fence_at is not None:
            return (
                self,
                f"REFUSED armed until {self.fence_at!r}: DISARM first (exiting would drop the "
                "fence)",
                False,
            )
        return self, "BYE", True
