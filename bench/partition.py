"""Cut one loopback address off from the others with iptables, and always undo it.

The same rules as tests/ha/test_fencing_e2e.py's Partition: in INPUT, drop what reaches `host`
from any other address and what leaves `host` for any other address. Every member binds its
store, REST API and PostgreSQL to its own 127.0.0.x, so the member is cut off from its peers,
from HAProxy and from the benchmark's probes; a client on its unix socket still reaches it.
Each rule carries a comment tag, and `heal()` removes every rule added, also when adding the
next one failed.
"""

from __future__ import annotations

import shutil
import subprocess

RULE_TAG = "hamgr-bench-partition"


class PartitionError(RuntimeError):
    """iptables refused to add or remove a rule; the message names it."""


def iptables_unavailable() -> str | None:
    """Why iptables cannot be used here, or None."""
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    probe = subprocess.run(
        ["iptables", "-w", "5", "-S", "INPUT"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"iptables is not permitted here: {probe.stderr.strip()}"
    return None


class Partition:
    """iptables rules in INPUT that cut `host` off from every other loopback address."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.rules = [
            ["INPUT", "-d", host, "!", "-s", host],
            ["INPUT", "-s", host, "!", "-d", host],
        ]
        self.added: list[list[str]] = []

    def _iptables(self, op: str, rule: list[str]) -> subprocess.CompletedProcess[str]:
        chain, *match = rule
        command = ["iptables", "-w", "5", op, chain, *match]
        command += ["-m", "comment", "--comment", RULE_TAG, "-j", "DROP"]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    @property
    def active(self) -> bool:
        return bool(self.added)

    def cut(self) -> None:
        """Add the rules; on a refusal remove those already added and raise."""
        try:
            for rule in self.rules:
                done = self._iptables("-I", rule)
                if done.returncode != 0:
                    raise PartitionError(f"iptables refused {rule}: {done.stderr.strip()}")
                self.added.append(rule)
        except BaseException:
            self.heal()
            raise

    def heal(self) -> None:
        """Remove every rule this partition added (idempotent); raise if one stays."""
        failed = []
        while self.added:
            rule = self.added.pop()
            done = self._iptables("-D", rule)
            if done.returncode != 0:
                failed.append(f"{rule}: {done.stderr.strip()}")
        if failed:
            raise PartitionError(
                f"could not remove iptables rules (tag {RULE_TAG}): {failed}; "
                f"remove them by hand (iptables -S INPUT | grep {RULE_TAG})"
            )
