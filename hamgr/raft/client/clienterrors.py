"""How a member's error answer maps to the `hamgr.raft.errors` class the client raises."""

from __future__ import annotations

from hamgr.raft.errors import (
    InvalidRequestError,
    LeaseExpiredError,
    LeaseNotFoundError,
    NotLeaderError,
    StoreError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from hamgr.raft.net.rpc import ErrorCode, ErrorInfo
from hamgr.raft.net.rpcbase import RpcOp

__all__ = ["store_error"]

_ERRORS: dict[ErrorCode, type[StoreError]] = {
    ErrorCode.NOT_LEADER: NotLeaderError,
    ErrorCode.UNAVAILABLE: StoreUnavailableError,
    ErrorCode.DROPPED: StoreUnavailableError,
    ErrorCode.OUTCOME_UNKNOWN: StoreOutcomeUnknownError,
    ErrorCode.BAD_REQUEST: InvalidRequestError,
    ErrorCode.LEASE_NOT_FOUND: LeaseNotFoundError,
    ErrorCode.LEASE_EXPIRED: LeaseExpiredError,
}


def store_error(op: RpcOp, error: ErrorInfo) -> StoreError:
    """The exception a member's error answer to an `op` call raises."""
    cls = _ERRORS.get(error.code, StoreError)
    return cls.from_wire(
        f"{op.value}: {error.message}", error.code.value, error.leader, error.leader_address
    )
