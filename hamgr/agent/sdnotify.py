"""systemd's notify protocol (``sd_notify``) over ``$NOTIFY_SOCKET``, without libsystemd.

Under ``Type=notify`` systemd hands the service a unix datagram socket in ``NOTIFY_SOCKET`` (a
path, or an abstract name written with a leading ``@``) and waits for ``READY=1`` before it
counts the service as started; ``STATUS=`` lines show in ``systemctl status``; with
``WatchdogSec=`` it sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) and restarts the service when
``WATCHDOG=1`` stops arriving. Each message is one datagram of ``KEY=VALUE`` lines.

Sending never blocks and never raises: a notification is advice to the service manager, and an
agent that keeps a primary alive must not fail because nobody reads the socket (a failed send
is logged and reported as False). A malformed ``NOTIFY_SOCKET`` or ``WATCHDOG_USEC``, on the
other hand, is a configuration mistake and raises :class:`NotifyConfigError` at
:meth:`Notifier.from_env`, naming the variable.

Typical use by the agent::

    notifier = Notifier.from_env()          # None outside systemd (NOTIFY_SOCKET unset)
    ...                                     # store member joined, REST API serving
    if notifier:
        notifier.ready(status="replica, following member1")
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

ENV_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"
_ENV_ALL = (ENV_SOCKET, ENV_WATCHDOG_USEC, ENV_WATCHDOG_PID)


class NotifyConfigError(ValueError):
    """A systemd notify variable in the environment is malformed; the message names it."""


def socket_address(value: str) -> str | bytes:
    """The address to send to for a ``NOTIFY_SOCKET`` value.

    ``/run/systemd/notify`` (a filesystem path) is used as it is; ``@name`` is the abstract
    socket ``\\0name``. Anything else (an empty value, a relative path, ``vsock:``) raises
    NotifyConfigError.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    raise NotifyConfigError(
        f"{ENV_SOCKET}={value!r}: expected an absolute socket path or an abstract name "
        'starting with "@"'
    )


def watchdog_timeout(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """systemd's watchdog timeout in seconds, from ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

    None when no watchdog is configured, or when ``WATCHDOG_PID`` names another process than
    ``pid`` (default: this one): the watchdog is then meant for that process, not for us.
    Raises NotifyConfigError for a value that is not a positive integer.
    """
    raw = env.get(ENV_WATCHDOG_USEC, "")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        usec = 0
    if usec <= 0:
        raise NotifyConfigError(
            f"{ENV_WATCHDOG_USEC}={raw!r}: expected a positive number of microseconds"
        )
    owner = env.get(ENV_WATCHDOG_PID, "")
    if owner:
        try:
            owner_pid = int(owner)
        except ValueError:
            owner_pid = 0
        if owner_pid <= 0:
            raise NotifyConfigError(f"{ENV_WATCHDOG_PID}={owner!r}: expected a process id")
        if owner_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 1_000_000


def _one_line(text: str) -> str:
    """A field value on one line (a newline would start a new field)."""
    return " ".join(text.splitlines()).strip()


class Notifier:
    """Sends notifications to the service manager at ``address`` (see :func:`socket_address`).

    ``watchdog_timeout`` is systemd's watchdog timeout in seconds (None: no watchdog).
    """

    def __init__(self, address: str | bytes, *, watchdog_timeout: float | None = None) -> None:
        if watchdog_timeout is not None and not watchdog_timeout > 0:
            raise ValueError(f"watchdog_timeout must be > 0 seconds, got {watchdog_timeout!r}")
        self.address = address
        self.watchdog_timeout = watchdog_timeout
        self._sock: socket.socket | None = None
        self._last_status: str | None = None
        self._failing = False

    @classmethod
    def from_env(
        cls,
        env: MutableMapping[str, str] | None = None,
        *,
        unset: bool = True,
        pid: int | None = None,
    ) -> Notifier | None:
        """The notifier systemd set up for this process; None when ``NOTIFY_SOCKET`` is unset.

        ``env`` defaults to ``os.environ``. With ``unset`` (the default, like sd_notify's
        ``unset_environment``) the three variables are removed from ``env`` so that child
        processes (the fencer, PostgreSQL's programs) do not inherit them: PostgreSQL built
        with systemd support would otherwise send its own READY=1 to our socket. Raises
        NotifyConfigError when a variable is malformed.
        """
        env = os.environ if env is None else env
        raw = env.get(ENV_SOCKET, "")
        try:
            if not raw:
                return None
            address = socket_address(raw)
            timeout = watchdog_timeout(env, pid)
        finally:
            if unset:
                for name in _ENV_ALL:
                    env.pop(name, None)
        return cls(address, watchdog_timeout=timeout)

    # -- the messages -----------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete (with a STATUS line when ``status`` is given)."""
        fields = ["READY=1"]
        if status is not None:
            self._last_status = _one_line(status)
            fields.append(f"STATUS={self._last_status}")
        return self.send(*fields)

    def status(self, text: str, *, force: bool = False) -> bool:
        """``STATUS=text``, shown by ``systemctl status``. The same text as last time is not
        sent again unless ``force`` (so the HA loop may call this every cycle); True when it
        was sent or needed no sending."""
        line = _one_line(text)
        if line == self._last_status and not force:
            return True
        ok = self.send(f"STATUS={line}")
        if ok:
            self._last_status = line
        return ok

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: keep systemd's watchdog from firing for another timeout."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the service is shutting down (a primary may be handing over)."""
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append(f"STATUS={_one_line(status)}")
        return self.send(*fields)

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: the start (or stop) needs ``seconds`` more from now."""
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        return self.send(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    def watchdog_interval(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the watchdog timeout (as sd_watchdog_enabled
        advises); None when systemd set no watchdog."""
        return None if self.watchdog_timeout is None else self.watchdog_timeout / 2

    # -- the socket -------------------------------------------------------------------------

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; False (and a log line) when it failed."""
        for f in fields:
            key, sep, _ = f.partition("=")
            if not sep or not key or "\n" in f:
                raise ValueError(f"a notify field is one KEY=VALUE line, got {f!r}")
        data = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(data, self.address)
        except OSError as exc:
            # Logged once per run of failures: a missing manager must not flood the log.
            if not self._failing:
                log.warning("cannot notify the service manager (%s): %s", fields[0], exc)
            self._failing = True
            return False
        if self._failing:
            log.info("notifying the service manager works again")
            self._failing = False
        return True

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
