"""Log a repeated event once, then count its repeats, in bounded memory.

A member refuses a misconfigured peer (wrong secret, certificate of another CA) on every one of
its reconnect attempts, several a second: logging each would bury the log in one line repeated.
`RepeatLimiter` says to log the first occurrence of a key (e.g. the peer's host and the reason),
to stay quiet about its repeats for `interval` seconds, and then to log it again with the number
of repeats left unlogged. It remembers at most `max_keys` keys (the least recently seen are
forgotten first), so a flood of distinct addresses cannot grow it without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["RepeatLimiter"]


@dataclass
class _Seen:
    logged_at: float
    repeats: int = 0


class RepeatLimiter:
    """Decides which occurrences of a repeated event are logged (see the module)."""

    def __init__(
        self,
        *,
        interval: float = 600.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or max_keys < 1:
            raise ValueError("interval must be > 0 and max_keys >= 1")
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[Hashable, _Seen] = OrderedDict()

    def check(self, key: Hashable) -> int | None:
        """None: do not log this occurrence. Else log it; the number is how many repeats of
        `key` went unlogged since it was last logged (0 the first time)."""
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(now)
            if len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return 0
        self._seen.move_to_end(key)
        if now - seen.logged_at < self.interval:
            seen.repeats += 1
            return None
        repeats, seen.repeats, seen.logged_at = seen.repeats, 0, now
        return repeats

    def __len__(self) -> int:
        return len(self._seen)
