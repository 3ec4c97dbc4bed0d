"""The whole test suite as two pytest processes at once: `deploy/dev.sh test` with no arguments.

The integration tests (real PostgreSQL, agents and store members on fixed 127.0.x.y addresses)
spend most of their time waiting on processes and timers; the pure tests (simulators, fuzzers,
hypothesis properties) spend theirs computing. Run one after the other they took 27 of CI's
30 minutes on 2 cores; run side by side the suite takes about as long as its integration half.

The pure half runs:
- in a network namespace of its own (a fresh loopback only), so no pure test can reach or
  collide with an address an integration test uses, whatever ports either picks;
- at nice 10, so the integration half's agents and servers keep the CPU when both want it;
- with its own --basetemp and without the cache plugin, so the two pytest processes share no
  files.
Where no namespace can be made (not root, no `ip`), the suite runs as one pytest process, as
before. Either half failing, or collecting no test, fails the run (pytest's exit code 5).

    python tests/tools/suite.py [--print-plan]
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest"]
PURE_WAIT_S = 1800.0
"""How long the pure half may still run once the integration half has ended."""


def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def make_namespace(name: str) -> bool:
    """A network namespace ``name`` with its loopback up; False where none can be made."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    if not _run("ip", "netns", "add", name):
        return False
    if not _run("ip", "-n", name, "link", "set", "lo", "up"):
        _run("ip", "netns", "delete", name)
        return False
    return True


def pure_command(namespace: str, basetemp: str) -> list[str]:
    """The pure half: every test not marked integration, in ``namespace``, at nice 10."""
    return [
        "ip", "netns", "exec", namespace, "nice", "-n", "10", *PYTEST,
        "-m", "not integration", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
    ]  # fmt: skip


def integration_command() -> list[str]:
    """The integration half, in this process's own network namespace."""
    return [*PYTEST, "-m", "integration"]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the pure half's process group, SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_split(namespace: str) -> int:
    """Both halves at once; the pure half's output follows the integration half's."""
    basetemp = tempfile.mkdtemp(prefix="hamgr-pure-tests-")
    log_path = Path(basetemp + ".log")
    started = time.monotonic()
    with log_path.open("wb") as log:
        pure = subprocess.Popen(
            pure_command(namespace, basetemp),
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            print(f"suite: pure tests run beside these in network namespace {namespace} "
                  f"(pid {pure.pid}, output at the end)", flush=True)  # fmt: skip
            integration_rc = subprocess.run(integration_command(), cwd=REPO, check=False).returncode
            integration_s = time.monotonic() - started
            try:
                pure_rc = pure.wait(timeout=PURE_WAIT_S)
            except subprocess.TimeoutExpired:
                print(f"suite: the pure tests still ran {PURE_WAIT_S:.0f} s after the "
                      "integration tests ended: stopped", flush=True)  # fmt: skip
                _stop(pure)
                pure_rc = -1
        finally:
            _stop(pure)
    print("\n===== pure tests (not marked integration), run beside the above =====", flush=True)
    sys.stdout.buffer.write(log_path.read_bytes())
    sys.stdout.flush()
    log_path.unlink(missing_ok=True)
    shutil.rmtree(basetemp, ignore_errors=True)
    total_s = time.monotonic() - started
    print(f"suite: integration exit {integration_rc} ({integration_s:.0f} s), pure exit {pure_rc}, "
          f"both done in {total_s:.0f} s")  # fmt: skip
    return 0 if integration_rc == 0 and pure_rc == 0 else (integration_rc or 1)


def main(argv: list[str]) -> int:
    """Split when this machine can make a network namespace; else one pytest process."""
    signal.signal(signal.SIGTERM, _on_term)
    namespace = f"hamgr-pure-{os.getpid()}"
    if "--print-plan" in argv:
        print(" ".join(pure_command(namespace, "BASETEMP")))
        print(" ".join(integration_command()))
        return 0
    if not make_namespace(namespace):
        print("suite: no network namespace here (needs root and `ip`): one pytest process",
              flush=True)  # fmt: skip
        return subprocess.run(PYTEST, cwd=REPO, check=False).returncode
    try:
        return run_split(namespace)
    finally:
        _run("ip", "netns", "delete", namespace)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
