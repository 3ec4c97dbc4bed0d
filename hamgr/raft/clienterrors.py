"""The exceptions of `hamgr.raft.client.StoreClient` (re-exported there), and how a member's
error answer maps to one."""

from __future__ import annotations

from hamgr.raft.rpc import Address, ErrorCode, ErrorInfo, RpcOp

__all__ = [
    "InvalidRequestError",
    "LeaseExpiredError",
    "LeaseNotFoundError",
    "NotLeaderError",
    "StoreAuthError",
    "StoreError",
    "StoreOutcomeUnknownError",
    "StoreUnavailableError",
    "store_error",
]


class StoreError(Exception):
    """A store call failed. `code` is the server's `ErrorCode` value (or a client-side reason:
    "auth", "unavailable", "closed"); `leader` (0 if unknown) and `leader_address` (its client
    address) are set when the answering member knew them."""

    def __init__(
        self,
        message: str,
        code: str = "error",
        leader: int = 0,
        leader_address: Address | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.leader = leader
        self.leader_address = leader_address


class StoreAuthError(StoreError):
    """A member refused our handshake, or failed to prove the secret: wrong secret or cluster."""


class InvalidRequestError(StoreError):
    """The member found the request malformed or its arguments invalid."""


class NotLeaderError(StoreError):
    """Only the leader serves this (raised only by a client made with ``redirect=False``)."""

    @property
    def address(self) -> Address | None:
        """The leader's client address, when known."""
        return self.leader_address


class StoreUnavailableError(StoreError):
    """No member answered the call before its deadline (or the member asked is unreachable)."""


class StoreOutcomeUnknownError(StoreUnavailableError):
    """A write was sent but no answer says whether it applied: it may or may not have."""


class LeaseNotFoundError(StoreError):
    """The lease does not exist (never granted, revoked, or expired and revoked)."""


class LeaseExpiredError(LeaseNotFoundError):
    """The lease's deadline has passed on the leader: it can no longer be kept alive."""


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
    return cls(f"{op.value}: {error.message}", error.code.value, error.leader, error.leader_address)
