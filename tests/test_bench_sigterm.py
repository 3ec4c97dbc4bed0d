"""A benchmark stopped with SIGTERM stops what it started (bench/procs.py `exit_on_sigterm`).

A real parent process, as a benchmark's main: it turns SIGTERM into SystemExit, starts a child
through `Procs` and waits. SIGTERM to the parent must end it with 143 and kill the child by
PID on the way out; without the hook the interpreter dies at once and the child runs on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.tools.poll import wait_for

BENCH = Path(__file__).resolve().parent.parent / "bench"

PARENT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from procs import Procs, exit_on_sigterm
    if sys.argv[2] == "hooked":
        exit_on_sigterm()
    with Procs() as procs:
        child = procs.start("sleeper", ["sleep", "60"])
        print(child.popen.pid, flush=True)
        for _ in range(600):  # bounded: 60 s at most
            time.sleep(0.1)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.parametrize("hooked", [True, False])
def test_sigterm_stops_the_children_only_with_the_hook(hooked: bool) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(BENCH), "hooked" if hooked else "bare"],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.terminate()
        assert parent.wait(timeout=20) == (143 if hooked else -15)
        if hooked:
            wait_for(lambda: not _alive(child), 10, "the child killed by its parent")
        else:
            assert _alive(child), "the control case: the child outlives a bare parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if child and _alive(child):
            os.kill(child, 9)
