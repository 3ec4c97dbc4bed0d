"""An asyncio event loop on virtual time, for running real asyncio code deterministically.

`VirtualLoop` is asyncio's own `BaseEventLoop` (the same ready queue, timers, tasks, futures,
`wait_for`, `sleep`) with two things replaced: the clock and the executor.

- Time: `time()` is a number the loop owns. When nothing is ready, instead of waiting on a
  selector the loop jumps its clock to the next timer, so a run of simulated minutes takes as
  long as its callbacks do, and the same inputs give the same order of events.
- Executor work (`run_in_executor`, `asyncio.to_thread`): no thread runs it. The call runs on the
  loop itself, `io_delay(fn, args)` virtual seconds later (a simulated disk), and calls on the same
  executor finish in the order they were submitted, as on a single worker thread.

There is no I/O: sockets, subprocesses and signal handlers are not supported (nothing polls
them). If nothing is ready and no timer is due, the loop raises `VirtualLoopStalled` instead of
sleeping forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from asyncio import base_events
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["VirtualLoop", "VirtualLoopStalled"]

T = TypeVar("T")

IODelay = Callable[[Callable[..., Any], tuple[Any, ...]], float]
"""(function, arguments) of an executor call -> its simulated duration in seconds."""


class VirtualLoopStalled(RuntimeError):
    """Nothing is ready and no timer is scheduled: the run can never make progress."""


class _Clockwork:
    """Stands in for the selector: 'waiting' `timeout` seconds moves the virtual clock."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None) -> list[Any]:
        if timeout is None:
            raise VirtualLoopStalled("nothing ready and no timer scheduled")
        if timeout > 0:
            self._loop.advance(timeout)
        return []

    def close(self) -> None:
        """Nothing to release."""


class VirtualLoop(base_events.BaseEventLoop):
    """asyncio's base loop with a virtual clock and simulated executor calls (see module doc).

    `io_delay(fn, args)` gives the virtual seconds an executor call takes (0 by default); it
    sees every call when it is submitted (a simulated disk notes what is in flight).
    """

    def __init__(self, io_delay: IODelay | None = None) -> None:
        super().__init__()
        self._now = 0.0
        self._selector = _Clockwork(self)
        self._io_delay: IODelay = io_delay or (lambda _fn, _args: 0.0)
        self._io_busy_until: dict[int, float] = {}
        self._clock_resolution = 1e-9

    def time(self) -> float:
        """The virtual clock, in seconds from the loop's start."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (only the loop itself does, when idle)."""
        self._now += seconds

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run `func(*args)` on the loop after its simulated latency; calls on one executor
        complete in submission order."""
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        fut: asyncio.Future[T] = self.create_future()
        lane = id(executor) if executor is not None else 0
        delay = max(0.0, float(self._io_delay(func, args)))
        start = self._now
        if executor is not None:
            start = max(start, self._io_busy_until.get(lane, 0.0))
        done_at = start + delay
        if executor is not None:
            self._io_busy_until[lane] = done_at

        def finish() -> None:
            if fut.cancelled():
                return
            try:
                result = func(*args)
            except BaseException as exc:  # handed to the awaiting task, as a thread would
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        self.call_at(done_at, finish)
        return fut

    # -- what BaseEventLoop leaves to a subclass ------------------------------------------

    def _process_events(self, event_list: list[Any]) -> None:
        """No I/O events exist on this loop."""

    def _write_to_self(self) -> None:
        """No other thread wakes this loop (call_soon_threadsafe just queues)."""

    def close(self) -> None:
        """Close the loop (the executor map holds no resources)."""
        self._io_busy_until.clear()
        super().close()
