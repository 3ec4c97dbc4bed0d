"""Rule breakers for the simulator's mutation tests: a Raft core that breaks chosen rules.

They prove that the simulator's checkers have teeth: with one rule broken, a short hunt must
report a violation. They live here, with the simulator, and not in the core or its config: the
production core has no switch that turns a safety rule off. `RuleBreakingCore` overrides the
core's seams (`ready`, `_candidate_log_up_to_date`, `_may_commit_by_counting`) and its start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from hamgr.raft.core.config import RaftConfig
from hamgr.raft.core.machine import RaftCore
from hamgr.raft.core.types import NONE, Entry, HardState, Message, Ready, Role, Snapshot


@dataclass(frozen=True)
class RuleBreakers:
    """Each switch breaks one Raft rule."""

    forget_vote_on_restart: bool = False
    count_own_unpersisted: bool = False
    commit_old_term_by_counting: bool = False
    send_before_persist: bool = False
    skip_log_up_to_date_check: bool = False

    @classmethod
    def names(cls) -> list[str]:
        """The switches' names, for the command line."""
        return sorted(f.name for f in fields(cls))

    def any(self) -> bool:
        """Is at least one rule broken?"""
        return any(getattr(self, f.name) for f in fields(self))


class RuleBreakingCore(RaftCore):
    """A `RaftCore` that breaks the rules `breakers` name (and keeps every other one)."""

    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        breakers: RuleBreakers,
        *,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
    ) -> None:
        """Start like `RaftCore`; `forget_vote_on_restart` drops the recovered vote."""
        super().__init__(config, rng, hard_state=hard_state, snapshot=snapshot, entries=entries)
        self.breakers = breakers
        if breakers.forget_vote_on_restart:
            self.vote = NONE

    def ready(self, *, persist: bool = True) -> Ready:
        """`send_before_persist`: every message goes out before the batch is durable.
        `count_own_unpersisted`: a leader counts its own copy of every entry at once, before
        the driver reported it durable (`persisted`)."""
        if self.breakers.count_own_unpersisted and self.role == Role.LEADER:
            me = self.prs.get(self.id)
            if me is not None and me.maybe_update(self.log.last_index()) and self._maybe_commit():
                self._bcast_append()
        rd = super().ready(persist=persist)
        if self.breakers.send_before_persist:
            rd.messages_early = rd.messages_early + rd.messages
            rd.messages = []
        return rd

    def _candidate_log_up_to_date(self, m: Message) -> bool:
        if self.breakers.skip_log_up_to_date_check:
            return True
        return super()._candidate_log_up_to_date(m)

    def _may_commit_by_counting(self, index: int) -> bool:
        if self.breakers.commit_old_term_by_counting:
            return True
        return super()._may_commit_by_counting(index)


def make_core(
    config: RaftConfig,
    rng: random.Random,
    breakers: RuleBreakers | None = None,
    *,
    hard_state: HardState | None = None,
    snapshot: Snapshot | None = None,
    entries: list[Entry] | None = None,
) -> RaftCore:
    """A plain `RaftCore`, or a `RuleBreakingCore` when some rule is to be broken."""
    if breakers is None or not breakers.any():
        return RaftCore(config, rng, hard_state=hard_state, snapshot=snapshot, entries=entries)
    return RuleBreakingCore(
        config, rng, breakers, hard_state=hard_state, snapshot=snapshot, entries=entries
    )
