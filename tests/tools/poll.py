"""The one way tests wait for a condition: poll it, with a deadline, and fail naming what.

`wait_for` polls from synchronous code (tests driving processes), `wait_for_async` from a
coroutine (its probe may be a plain function or a coroutine function). Both return the first
value of the probe that `done` accepts (by default: the first truthy one), so a test both waits
and gets what it waited for; on timeout they raise AssertionError with `what` and the last value
seen. No test sleeps a fixed time instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["wait_for", "wait_for_async"]

T = TypeVar("T")


def _failed(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"{what}: not within {timeout:g} s (last seen: {last!r})")


def wait_for(
    probe: Callable[[], T],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.1,
    *,
    done: Callable[[T], Any] = bool,
) -> T:
    """The first value of `probe()` that `done` accepts within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise _failed(what, timeout, last)
        time.sleep(interval)


async def wait_for_async(
    probe: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.02,
    *,
    done: Callable[[T], Any] = bool,
) -> T:
    """`wait_for` inside a coroutine: the probe's awaitable results are awaited."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        last: T = await got if inspect.isawaitable(got) else got  # type: ignore[assignment]
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise _failed(what, timeout, last)
        await asyncio.sleep(interval)
