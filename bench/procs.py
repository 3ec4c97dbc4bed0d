"""Child processes for benchmarks: started with their output read line by line, always killed.

Every process started here is killed by PID (SIGKILL) when the `Procs` context exits, whatever
happened, so a benchmark never leaves members running.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable


def exit_on_sigterm() -> None:
    """From now on SIGTERM raises SystemExit(143) in the main thread, so that every `with`
    block and `finally` between it and the benchmark's main (Procs, a cluster's close) stops
    and cleans up what it started, as on any error. Without it SIGTERM ends the interpreter at
    once and leaves members running; and a benchmark started in the background by a
    non-interactive shell ignores SIGINT, so SIGTERM is how one stops it."""

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)


class Child:
    """A started process and a queue of its stdout lines."""

    def __init__(self, name: str, popen: subprocess.Popen[str]) -> None:
        self.name = name
        self.popen = popen
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, match: Callable[[str], bool], timeout: float) -> str:
        """The first line satisfying `match` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no matching line within {timeout}s")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.popen.returncode}") from None
                continue
            if match(line):
                return line


class Procs:
    """A set of children killed together on exit."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        """Start `argv` with stdout captured (stderr goes to a log file next to nothing)."""
        popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        child = Child(name, popen)
        self.children.append(child)
        return child

    def kill(self, child: Child) -> None:
        """SIGKILL one child by PID and reap it."""
        if child.popen.poll() is None:
            os.kill(child.popen.pid, signal.SIGKILL)
        child.popen.wait(timeout=10)

    def kill_all(self) -> None:
        """SIGKILL every child still running."""
        for child in self.children:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                self.kill(child)
