"""The faults the failover benchmark injects on a settled cluster, one class each.

The run loop drives every fault the same way: `prepare()` once the writers run, `inject()` at
the fault instant, `step()` on every turn of the loop (a fault that is healed during the run,
such as a freeze, heals itself there once another member serves as primary), `done()` to say
whether the fault has run its course, `finish()` once writes flow steadily again (its note and
figures), and `heal()` in a `finally`: idempotent, it undoes whatever is still in force
(SIGCONT, iptables rules removed, killed agents started again), whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fencemargin import FenceMarginSampler
from hacluster import Cluster
from partition import Partition


class FaultError(RuntimeError):
    """A fault could not be injected as asked; the message says why."""


@dataclass(frozen=True)
class Progress:
    """What the run loop knows at one turn, in seconds after the fault."""

    since_fault: float
    new_primary_after: float | None
    """When another member first answered GET /primary 200; None while none has."""


@dataclass(frozen=True)
class FaultOptions:
    """The knobs of the faults, from the command line."""

    ttl: float
    freeze_hold: float = 5.0
    margin_interval: float = 0.02


@dataclass
class Outcome:
    """What a fault reports once writes flow again."""

    note: str = ""
    fence_margin: float | None = None
    fence_margin_before: float | None = None


class Fault:
    """One fault on the member `primary` of a settled cluster (see the module docstring)."""

    expects_new_primary = True

    def __init__(
        self, cluster: Cluster, primary: str, store_leader: str | None, options: FaultOptions
    ) -> None:
        self.cluster = cluster
        self.primary = primary
        self.store_leader = store_leader
        self.options = options
        self.events: list[tuple[float, str]] = []
        """(CLOCK_MONOTONIC instant, what was done) for the timeline."""

    def event(self, text: str) -> None:
        self.events.append((time.monotonic(), text))

    def unsuitable(self) -> str | None:
        """Why this fault cannot be tried on the cluster as it settled, or None."""
        return None

    def prepare(self) -> None:
        """Called once the writers run, before the warm-up."""

    def inject(self) -> None:
        raise NotImplementedError

    def step(self, progress: Progress) -> None:
        """Called on every turn of the run loop."""

    def done(self, progress: Progress) -> bool:
        """Whether the fault has run its course (the run ends once writes also flow)."""
        return True

    def finish(self) -> Outcome:
        return Outcome()

    def heal(self) -> None:
        """Undo what is still in force; idempotent."""


class Kill9(Fault):
    """SIGKILL of the primary's agent and of its postmaster with every child (a host crash;
    the fencer, a separate process, is left alone). Healed by starting the agent again."""

    def inject(self) -> None:
        self.cluster.kill9(self.primary)
        self.event(f"kill -9 of {self.primary}'s agent and PostgreSQL")

    def heal(self) -> None:
        if not self.cluster.agent_running(self.primary):
            self.cluster.start(self.primary)
            self.event(f"{self.primary}'s agent started again")


class Switchover(Fault):
    """POST /switchover {"leader": <primary>} to the primary's REST API, with auth. A
    switchover the agents abort (the old primary serves again) is noted ABORTED."""

    ANSWER_WAIT = 10.0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.answer: list[tuple[int, Any]] = []
        self.aborted = False

    def inject(self) -> None:
        body = {"leader": self.primary}

        def post() -> None:
            self.answer.append(self.cluster.post(self.primary, "/switchover", body, 60))

        threading.Thread(target=post, daemon=True).start()
        self.event(f"POST /switchover to {self.primary}")

    def step(self, progress: Progress) -> None:
        refused = bool(self.answer) and self.answer[0][0] != 200
        waiting = refused and not self.aborted and progress.new_primary_after is None
        if waiting and self.cluster.primaries([self.primary]):
            self.aborted = True
            self.expects_new_primary = False

    def finish(self) -> Outcome:
        deadline = time.monotonic() + self.ANSWER_WAIT  # it answers once the outcome shows
        while not self.answer and time.monotonic() < deadline:
            time.sleep(0.1)
        status, reply = self.answer[0] if self.answer else (0, "no answer")
        if self.aborted:
            return Outcome(f"ABORTED: POST /switchover answered {status} {reply}; ")
        if status != 200:
            return Outcome(f"POST /switchover answered {status} {reply}; ")
        return Outcome()


class Freeze(Fault):
    """SIGSTOP of the primary's agent (`with_fencer`: and of its fencer, so that nothing
    fences its PostgreSQL, which keeps running), then SIGCONT `hold` seconds after another
    member serves as primary. Without the fencer frozen, the fencer stops PostgreSQL at the
    lease deadline."""

    def __init__(self, *args: Any, with_fencer: bool, hold: float) -> None:
        super().__init__(*args)
        self.with_fencer = with_fencer
        self.hold = hold
        self.stopped: list[tuple[str, int]] = []
        self.resumed = False

    def inject(self) -> None:
        targets = [("agent", self.cluster.agent_pid(self.primary))]
        if self.with_fencer:
            fencer = self.cluster.fencer_pid(self.primary)
            if fencer is None:
                raise FaultError(f"{self.primary} runs no fencer to freeze")
            targets.append(("fencer", fencer))
        for what, pid in targets:
            os.kill(pid, signal.SIGSTOP)
            self.stopped.append((what, pid))
        self.event(f"SIGSTOP of {self.primary}'s {' and '.join(w for w, _ in targets)}")

    def step(self, progress: Progress) -> None:
        after = progress.new_primary_after
        if after is not None and progress.since_fault >= after + self.hold:
            self.heal()

    def done(self, progress: Progress) -> bool:
        return self.resumed

    def heal(self) -> None:
        if not self.stopped:
            return
        resumed = []
        while self.stopped:  # the fencer (stopped last) resumes first
            what, pid = self.stopped.pop()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            resumed.append(what)
        self.resumed = True
        self.event(f"SIGCONT of {self.primary}'s {' and '.join(resumed)}")


class Cut(Fault):
    """The primary's address cut off from the others with iptables (its agent, fencer and
    PostgreSQL run on), healed once another member serves as primary."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.partition = Partition(self.cluster.members[self.primary].host)

    def inject(self) -> None:
        self.partition.cut()
        self.event(f"{self.primary} ({self.partition.host}) cut off")

    def step(self, progress: Progress) -> None:
        if progress.new_primary_after is not None:
            self.heal()

    def done(self, progress: Progress) -> bool:
        return not self.partition.active

    def heal(self) -> None:
        if self.partition.active:
            self.partition.heal()
            self.event(f"{self.primary} ({self.partition.host}) reconnected")


class ReplicaStoreLeaderKill(Fault):
    """kill -9 of the replica whose agent leads the store (agent with its embedded store
    member, and its PostgreSQL). The primary must keep serving unfenced: its fence margin
    (GET /patroni `fence_remaining`) is sampled from the warm-up on, and the smallest seen in
    the `ttl` + 1 s after the kill is reported (past a whole ttl without a keepalive it would
    have been fenced). A failover or a FENCE line in the primary's fencer log is noted."""

    expects_new_primary = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        probe: Callable[[], tuple[int, Any]] = lambda: self.cluster.http(  # noqa: E731
            self.primary, "/patroni", 0.5
        )
        self.sampler = FenceMarginSampler(probe, self.options.margin_interval)
        self.killed_at: float | None = None
        self.sampling_from = 0.0

    @property
    def victim(self) -> str:
        assert self.store_leader is not None
        return self.store_leader

    def unsuitable(self) -> str | None:
        if self.store_leader is None:
            return "the store's leader is unknown"
        if self.store_leader == self.primary:
            return "the store's leader is the primary (the agents did not move it within 3 ttl)"
        return None

    def prepare(self) -> None:
        self.sampling_from = time.monotonic()
        self.sampler.start()

    def inject(self) -> None:
        self.killed_at = time.monotonic()
        self.cluster.kill9(self.victim)
        self.event(f"kill -9 of {self.victim} (store leader, replica): agent and PostgreSQL")

    def done(self, progress: Progress) -> bool:
        return progress.since_fault >= self.options.ttl + 1.0

    def finish(self) -> Outcome:
        self.sampler.stop()
        assert self.killed_at is not None
        out = Outcome(
            fence_margin=self.sampler.smallest(self.killed_at),
            fence_margin_before=self.sampler.smallest(self.sampling_from, self.killed_at),
        )
        missed = self.sampler.unanswered(self.killed_at)
        if missed:
            out.note += f"{missed} margin samples unanswered; "
        fences = self.cluster.fence_lines(self.primary, self.killed_at)
        if fences:
            out.note += f"FENCED: {fences[0][-160:]}; "
        return out

    def heal(self) -> None:
        self.sampler.stop()
        if self.killed_at is not None and not self.cluster.agent_running(self.victim):
            self.cluster.start(self.victim)
            self.event(f"{self.victim}'s agent started again")


@dataclass(frozen=True)
class Scenario:
    """A scenario's name, what it does (for --help) and how its fault is made."""

    name: str
    summary: str
    make: Callable[[Cluster, str, str | None, FaultOptions], Fault] = field(repr=False)


def _freeze(with_fencer: bool) -> Callable[[Cluster, str, str | None, FaultOptions], Fault]:
    def make(c: Cluster, p: str, s: str | None, o: FaultOptions) -> Fault:
        return Freeze(c, p, s, o, with_fencer=with_fencer, hold=o.freeze_hold if with_fencer else 0)

    return make


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("kill9", "SIGKILL of the primary's agent and PostgreSQL", Kill9),
        Scenario("switchover", "POST /switchover to the primary", Switchover),
        Scenario("freeze", "SIGSTOP of the primary's agent past ttl", _freeze(False)),
        Scenario("freeze-all", "SIGSTOP of the primary's agent and fencer", _freeze(True)),
        Scenario("partition", "the primary's address cut off (iptables)", Cut),
        Scenario(
            "replica-store-leader-kill",
            "SIGKILL of the replica leading the store",
            ReplicaStoreLeaderKill,
        ),
    )
}
