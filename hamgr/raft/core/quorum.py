"""Majority arithmetic over a set of voters: elections, commit indexes, reads and liveness.

Pure functions, so every rule that counts votes or acknowledgements counts them the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import Enum


class VoteResult(Enum):
    """Outcome of an election so far."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voters: Collection[int]) -> int:
    """How many of `voters` make a quorum."""
    return len(voters) // 2 + 1


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Tally granted and refused votes of the current voters (others' votes do not count)."""
    granted = sum(1 for v in voters if votes.get(v) is True)
    refused = sum(1 for v in voters if votes.get(v) is False)
    if granted >= majority(voters):
        return VoteResult.WON
    if refused >= majority(voters):
        return VoteResult.LOST
    return VoteResult.PENDING


def committed_index(voters: Collection[int], match: Mapping[int, int]) -> int:
    """The highest index that a quorum of voters holds (0 when unknown)."""
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return acked[majority(voters) - 1] if acked else 0


def has_quorum(voters: Collection[int], members: Collection[int]) -> bool:
    """Do `members` include a quorum of `voters`?"""
    return sum(1 for v in voters if v in members) >= majority(voters)
