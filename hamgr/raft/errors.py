"""The store's errors, one class per meaning, shared by the Raft core, the store server and the
store client.

A member raises these (the core refuses a leader-only request with `NotLeaderError`, the lease
clock reports `LeaseNotFoundError`), the server turns them into an `ErrorCode` on the wire, and
the client reconstructs the same class from that code (`StoreError.from_wire`), so a caller
catches one class whether it talks to a member in-process or over the network. The wire codes
and messages are unchanged by this sharing. Imports nothing: every part of `hamgr.raft` may
import it.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

__all__ = [
    "InvalidRequestError",
    "LeaseExpiredError",
    "LeaseNotFoundError",
    "NotLeaderError",
    "StoreAuthError",
    "StoreError",
    "StoreOutcomeUnknownError",
    "StoreUnavailableError",
]

Address = tuple[str, int]
E = TypeVar("E", bound="StoreError")

_NO_LEADER = 0  # hamgr.raft.core.types.NONE: no node has this id


class StoreError(Exception):
    """A store call failed. `code` is the wire's `ErrorCode` value (or a client-side reason:
    "auth", "unavailable", "closed"); `leader` (0 if unknown) and `leader_address` (its client
    address) are set when the answering member knew them."""

    CODE: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        leader: int = 0,
        leader_address: Address | None = None,
    ) -> None:
        super().__init__(message)
        self.code = self.CODE if code is None else code
        self.leader = leader
        self.leader_address = leader_address

    @classmethod
    def from_wire(
        cls: type[E], message: str, code: str, leader: int, leader_address: Address | None
    ) -> E:
        """The error a member's error answer means, as the client raises it: the wire's message,
        code and leader, whatever arguments the class's constructor takes on a member."""
        exc = cls.__new__(cls)
        StoreError.__init__(exc, message, code, leader, leader_address)
        return exc


class StoreAuthError(StoreError):
    """A member refused our handshake, or failed to prove the secret: wrong secret or cluster."""

    CODE = "auth"


class InvalidRequestError(StoreError):
    """The member found the request malformed or its arguments invalid."""

    CODE = "bad_request"


class NotLeaderError(StoreError):
    """Only the leader serves this request: `leader` (0 if unknown) and its client `address` if
    known. The core raises it with the leader's id, the server adds the address and why; a
    client made with ``redirect=False`` raises it instead of following the leader."""

    CODE = "not_leader"

    def __init__(self, leader: int, address: Address | None = None, why: str = "") -> None:
        hint = f"leader is {leader}" if leader != _NO_LEADER else "no leader known"
        parts = [f"not leader, {hint}"]
        if address is not None:
            parts.append(f"at {address[0]}:{address[1]}")
        if why:
            parts.append(f"({why})")
        super().__init__(" ".join(parts), None, leader, address)

    @property
    def address(self) -> Address | None:
        """The leader's client address, when known."""
        return self.leader_address


class StoreUnavailableError(StoreError):
    """No member answered the call before its deadline (or the member asked is unreachable)."""

    CODE = "unavailable"


class StoreOutcomeUnknownError(StoreUnavailableError):
    """A write was sent but no answer says whether it applied: it may or may not have."""

    CODE = "outcome_unknown"


class LeaseNotFoundError(StoreError, LookupError):
    """The lease does not exist (never granted, revoked, or expired and revoked)."""

    CODE = "lease_not_found"


class LeaseExpiredError(LeaseNotFoundError):
    """The lease's deadline has passed on the leader: it can no longer be kept alive, only
    revoked."""

    CODE = "lease_expired"
