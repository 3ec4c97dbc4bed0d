"""Callbacks: operators' commands run on PostgreSQL's events, as Patroni runs them.

``postgresql.callbacks`` names a command per action (``on_start``, ``on_stop``, ``on_restart``,
``on_reload``, ``on_role_change``); it is called as ``COMMAND ACTION ROLE SCOPE`` with the role
named as Patroni names it (``primary``, ``replica``, ``standby_leader``; ``demoted`` for a
primary stopped on its way to become a replica). :class:`CallbackRunner` starts it and returns
at once (the HA loop never waits for it), runs it as the OS user PostgreSQL runs as, kills it
(its whole process group) when it runs past its timeout, and runs one at a time: a newer
callback kills the one still running, as Patroni's CallbackExecutor does.

Which action a start is (:func:`start_action`) is pure: a member that was primary (or was
being demoted) and starts as something else changes role; otherwise it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from collections.abc import Callable, Mapping

from hamgr.postgres.process import child_env, resolve_run_as, spawn_kwargs
from hamgr.postgres.settings import PgSettings

log = logging.getLogger(__name__)

ACTIONS = ("on_start", "on_stop", "on_restart", "on_reload", "on_role_change")
PRIMARY = "primary"
REPLICA = "replica"
DEMOTED = "demoted"

_REAP_GRACE = 5.0
"""Seconds to wait for a killed callback's exit to be reaped before giving up on it."""


def callback_argv(command: str, action: str, role: str, scope: str) -> list[str]:
    """The command line of one callback, as Patroni builds it."""
    return [*shlex.split(command), action, role, scope]


def start_action(previous_role: str | None, role: str) -> str:
    """The callback of a start as ``role`` after the last role a callback reported: a role
    change when the member was primary (or demoted) or switches between replica and standby
    leader, else a plain start (as Patroni decides it)."""
    if previous_role is None or previous_role == role:
        return "on_start"
    return "on_role_change"


class CallbackRunner:
    """Runs one member's callbacks, one at a time, each bounded by ``timeout`` seconds."""

    def __init__(
        self,
        commands: Mapping[str, str],
        scope: str,
        pg: PgSettings,
        timeout: float,
        *,
        on_done: Callable[[list[str], int | None], None] | None = None,
    ) -> None:
        unknown = set(commands) - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown callback actions {sorted(unknown)}")
        self.commands = dict(commands)
        self.scope = scope
        self.pg = pg
        self.timeout = timeout
        self.on_done = on_done
        """Told each finished callback's argv and exit code (None: killed)."""
        self.role: str | None = None
        """The role the last start or role change reported (None: PostgreSQL is stopped, or
        nothing was reported since the agent started)."""
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._generation = 0

    def started(self, role: str) -> None:
        """PostgreSQL was started (or restarted into) ``role``: on_start or on_role_change."""
        action = start_action(self.role, role)
        self.role = role
        self.fire(action, role)

    def restarted(self, observed_role: str) -> None:
        """PostgreSQL was restarted (same role): on_restart."""
        role = self.role or (observed_role if observed_role in (PRIMARY, REPLICA) else REPLICA)
        self.fire("on_restart", role)

    def role_changed(self, role: str) -> None:
        """PostgreSQL changed role while running (a promotion)."""
        self.role = role
        self.fire("on_role_change", role)

    def stopped(self, role: str | None = None, *, demoting: bool = False) -> None:
        """PostgreSQL was stopped; ``demoting``: a primary on its way to become a replica (its
        next start then reports a role change, as Patroni)."""
        reported = role or self.role or REPLICA
        self.role = DEMOTED if demoting else None
        self.fire("on_stop", reported)

    def fire(self, action: str, role: str) -> None:
        """Start ``action``'s callback (if one is configured) without waiting for it; kills the
        callback still running, if any."""
        command = self.commands.get(action)
        if command is None:
            return
        self._generation += 1
        previous = self._task
        self._kill_running()
        argv = callback_argv(command, action, role, self.scope)
        log.info("callback %s: %s", action, shlex.join(argv))
        self._task = asyncio.ensure_future(self._run(argv, self._generation, previous))

    def _kill_running(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            log.warning("killing the callback still running (pid %d): a newer one starts", proc.pid)
            _kill_group(proc.pid)

    async def _run(
        self, argv: list[str], generation: int, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None and not previous.done():
            # Killed already, or about to kill itself once started (see below): never two
            # at once.
            await asyncio.wait([previous])
        if generation != self._generation:
            return  # a newer callback was fired meanwhile: it runs instead
        run_as = resolve_run_as(self.pg.os_user)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd="/",
                env=child_env(self.pg, run_as, None),
                start_new_session=True,
                **spawn_kwargs(run_as),  # type: ignore[arg-type]
            )
        except OSError as exc:
            log.error("callback %s could not start: %s", shlex.join(argv), exc)
            return
        self._proc = proc
        if generation != self._generation:
            _kill_group(proc.pid)  # a newer one was fired while this one was starting
        code: int | None = None
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
            code = proc.returncode
            if code == 0:
                log.info("callback %s finished", argv[-3])
            elif code is not None and code < 0:
                log.warning("callback %s was killed (signal %d)", argv[-3], -code)
            else:
                tail = err.decode(errors="replace").strip()[-500:]
                log.warning("callback %s exited with code %s: %s", argv[-3], code, tail)
        except TimeoutError:
            log.error("callback %s ran past %g s: killing it", shlex.join(argv), self.timeout)
            _kill_group(proc.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), _REAP_GRACE)
            code = None
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            raise
        finally:
            if self._proc is proc:
                self._proc = None
        if code is not None and code < 0:
            code = None
        if self.on_done is not None:
            self.on_done(argv, code)

    async def close(self, grace: float = _REAP_GRACE) -> None:
        """Give the running callback ``grace`` seconds to finish, then kill it (agent exit)."""
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            self._kill_running()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, _REAP_GRACE)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
