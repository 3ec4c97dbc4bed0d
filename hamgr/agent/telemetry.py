"""What the running agent tells the outside: Prometheus metrics, recent events (the status
page's strip, ``GET /events``), and systemd's notify socket.

`AgentTelemetry` turns the HA loop's hooks (a completed cycle, a timed keepalive) into metric
updates, events, STATUS= lines and watchdog beats, so the loop itself knows nothing of them.
"""

from __future__ import annotations

import asyncio
import logging

from hamgr.agent.events import EventLog
from hamgr.agent.metrics import Metrics
from hamgr.agent.sdnotify import Notifier, NotifyConfigError
from hamgr.agent.sdwatchdog import LoopWatchdog
from hamgr.dcs.model import ClusterView
from hamgr.ha.actions import Decision
from hamgr.ha.inputs import LocalPostgres

log = logging.getLogger(__name__)


class AgentTelemetry:
    """Metrics and systemd notifications of one agent."""

    def __init__(self, stale_after: float, name: str = "") -> None:
        """``name``: this member's, as its events name the agent that saw them."""
        try:
            # Read (and removed from the environment) before any child process starts.
            self.notifier = Notifier.from_env()
        except NotifyConfigError as exc:
            log.error("ignoring systemd's notify socket: %s", exc)
            self.notifier = None
        self.metrics = Metrics()
        self.events = EventLog(name)
        self.watchdog = LoopWatchdog.for_notifier(self.notifier, stale_after=stale_after)

    def on_cycle(
        self, view: ClusterView, pg: LocalPostgres, decision: Decision, seconds: float
    ) -> None:
        """After every completed HA loop cycle."""
        role = "uninitialized"
        if pg.initialized:
            role = pg.role if pg.running and pg.role in ("primary", "replica") else "stopped"
        self.metrics.observe_loop(seconds)
        self.metrics.observe_view(view)
        self.metrics.set_member(role, pg.timeline, view.settings.pause)
        self.events.observe(view, decision)
        if self.watchdog is not None:
            self.watchdog.beat()
        if self.notifier is not None:
            paused = " (paused)" if view.settings.pause else ""
            self.notifier.status(f"{role}{paused}: {decision.reason}")

    def on_keepalive(self, latency: float, ok: bool, sent_at: float) -> None:
        """After every timed lease keepalive."""
        self.metrics.observe_keepalive(latency, ok, at=sent_at)

    def on_store_error(self, error: str, stopped: bool) -> None:
        """After a cycle that could not read the store (``stopped``: this primary stopped
        PostgreSQL because its lease deadline had passed)."""
        self.events.store_unreachable(error, stopped)

    def ready(self, text: str) -> None:
        """The REST API serves and the store member runs."""
        if self.notifier is not None:
            self.notifier.ready(status=text)

    def waiting(self, text: str, seconds: float) -> None:
        """Start-up is held back (a joining store member catching up): say why in STATUS=
        and ask systemd for `seconds` more of start timeout."""
        if self.notifier is not None:
            self.notifier.status(text)
            self.notifier.extend_timeout(seconds)

    def stopping(self) -> None:
        """The agent begins its shutdown."""
        if self.notifier is not None:
            self.notifier.stopping()

    def start_watchdog(self, stop: asyncio.Event) -> asyncio.Task[None] | None:
        """Feed systemd's watchdog while the loop beats (None when systemd set none)."""
        if self.watchdog is None:
            return None
        return asyncio.create_task(self.watchdog.run(stop), name="hamgr-watchdog")
