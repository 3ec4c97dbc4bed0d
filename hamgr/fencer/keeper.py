"""The fencer supervised: started again when it dies, and a primary that stays unfenced gives up.

The fencer (hamgr/fencer/process.py) is what stops a primary whose agent froze or died; a fencer
that died itself (kill -9, the OOM killer, a bug) leaves every arming failing. Without supervision
the agent then stopped PostgreSQL, started it again the next loop, stopped it again, while its
keepalive kept the leader key, so no replica took over either: no primary at all, for good.

`FencerKeeper` wraps the agent's `FencerClient`:

- `revive()` starts a new fencer when the old one does not answer (the client remembers how it
  launched the first). The attempts are bounded: each by a timeout, and spaced by a backoff that
  doubles from `BACKOFF_MIN` to `BACKOFF_MAX` seconds while they keep failing; every attempt and
  its outcome is logged, and `restarts` counts the successful ones.
- `failing_since` is when arming (or reaching) the fencer first failed with no success since.
  The agent never runs PostgreSQL as primary meanwhile (it stops it, and does not start or
  promote it), and once that has lasted `unfenced_too_long` (one lease ttl), it releases the
  leader key so that a replica takes over (see ActionRunner): a member that cannot be fenced must
  not hold the primary's place either.
"""

from __future__ import annotations

import asyncio
import logging

from hamgr import clock
from hamgr.fencer.client import FencerClient, FencerError

log = logging.getLogger(__name__)

BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
RESTART_TIMEOUT_MAX = 10.0
"""The longest one restart attempt may take (python's start-up on a loaded host)."""


class FencerKeeper:
    """Keeps the agent's fencer running and says how long the fence has been failing."""

    def __init__(self, client: FencerClient) -> None:
        self.client = client
        self.restarts = 0
        """Fencers started again after the first one died."""
        self.failing_since: float | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._lock = asyncio.Lock()

    def armed_ok(self) -> None:
        """The fencer took a command: the fence holds again."""
        if self.failing_since is not None:
            log.warning(
                "the fencer answers again after %.1f s without a fence",
                clock.now() - self.failing_since,
            )
        self.failing_since = None

    def failed(self, now: float) -> None:
        """Arming or reaching the fencer failed now."""
        if self.failing_since is None:
            self.failing_since = now

    def unfenced_too_long(self, now: float, bound: float) -> bool:
        """Whether the fence has been failing for at least `bound` seconds."""
        return self.failing_since is not None and now - self.failing_since >= bound

    async def alive(self, timeout: float) -> bool:
        """Whether a fencer answers, starting a new one (see `revive`) when none does."""
        try:
            await self.client.query()
        except FencerError:
            return await self.revive(timeout)
        return True

    async def revive(self, timeout: float) -> bool:
        """Start a new fencer if none answers; False when none could be started (or the backoff
        after failed attempts has not passed yet)."""
        async with self._lock:
            try:
                await self.client.query()
                return True  # another task revived it meanwhile, or it was a passing failure
            except FencerError:
                pass
            now = clock.now()
            if now < self._next_attempt:
                return False
            old = self.client.fencer_pid()
            attempt = self._failures + 1
            log.error(
                "the fencer (pid %s) does not answer: starting a new one (attempt %d)",
                old,
                attempt,
            )
            try:
                pid = await self.client.restart(min(max(timeout, 1.0), RESTART_TIMEOUT_MAX))
            except FencerError as exc:
                self._failures += 1
                wait = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (self._failures - 1))
                self._next_attempt = clock.now() + wait
                log.critical(
                    "could not start a new fencer (attempt %d): %s; next attempt in %.1f s",
                    attempt,
                    exc,
                    wait,
                )
                return False
            self._failures = 0
            self._next_attempt = 0.0
            self.restarts += 1
            log.warning(
                "started a new fencer (pid %d, restart %d since the agent started)",
                pid,
                self.restarts,
            )
            return True
