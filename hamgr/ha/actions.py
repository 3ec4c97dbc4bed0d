"""What decide() asks the HA loop to do: small typed actions, and the Decision that bundles them.

Contract with the loop: the actions of one Decision run in order, and the first one that fails
or loses a race (a create or compare-and-swap that finds the key taken, a promote that errors)
ends the run; the next cycle observes again and decides again. So ``(AcquireLeader(),
Promote())`` never promotes without the key. An empty tuple means: nothing to do, wait.

Independently of the actions, the loop publishes its MemberState (with the decision's reason)
every cycle, and the primary's keepalive runs on its own timer (at least every ttl/3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hamgr.dcs.model import (
    LeaderKey,
    ParameterValue,
    PrimaryPosition,
    SwitchoverRequest,
    SyncState,
    TimelineEntry,
)

StopMode = Literal["fast", "immediate"]


@dataclass(frozen=True)
class TakeInitialize:
    """Create the initialize key if absent: ``""`` races to bootstrap, a sysid adopts data."""

    sysid: str = ""


@dataclass(frozen=True)
class SetInitialize:
    """Overwrite the initialize key with the system identifier (the leader, after bootstrap)."""

    sysid: str


@dataclass(frozen=True)
class DropBootstrapClaim:
    """Delete the initialize key if it still is the ``""`` claim written at ``revision``.

    Its claimant never took the leader key: it died before or while bootstrapping. Giving the
    race back lets another member bootstrap instead of every member waiting forever.
    """

    revision: int


@dataclass(frozen=True)
class Bootstrap:
    """initdb, start as primary, create the users and write the cluster's settings.

    A marker in the run directory says a bootstrap is under way until it succeeded; a failed
    or interrupted one (the agent killed halfway) leaves the marker, and the next cycle
    abandons what it made (AbandonBootstrap), so that the race can start again.
    """


@dataclass(frozen=True)
class AbandonBootstrap:
    """Undo a bootstrap of this agent's that did not finish, in this order: stop PostgreSQL
    at once (it may run as a primary no fencer guards), release the leader key if held, delete
    the ``""`` initialize claim written at ``claim_revision`` (when it is this agent's, given
    while it holds the key), empty the data directory and remove the marker.

    Without this, the data directory of another system stays behind when a different member
    then bootstraps the cluster, and this member refuses to join for good.
    """

    claim_revision: int | None = None


@dataclass(frozen=True)
class AcquireLeader:
    """Take the free leader key (create_revision == 0 txn); a fresh lease deadline follows."""


@dataclass(frozen=True)
class RenewLease:
    """Send a keepalive now and hand the new fence deadline to the fencer."""


@dataclass(frozen=True)
class ReleaseLeader:
    """Delete the leader key if it still is ``key`` (same create revision)."""

    key: LeaderKey


@dataclass(frozen=True)
class CloneFrom:
    """Fill the empty data directory with a copy of ``source`` (not started), by the first
    replica method that succeeds; ``source`` None: no leader runs, only methods that need none
    (``no_leader``, a restore from a backup) are tried."""

    source: str | None


@dataclass(frozen=True)
class StartReplica:
    """Start PostgreSQL as a standby of ``leader``; None: a standby with no upstream yet."""

    leader: str | None


@dataclass(frozen=True)
class Follow:
    """Re-point a running standby at ``leader`` (new primary_conninfo, reload)."""

    leader: str


@dataclass(frozen=True)
class Rewind:
    """pg_rewind the stopped data directory from ``leader``; it stays stopped afterwards."""

    leader: str


@dataclass(frozen=True)
class CloneRemote:
    """Bootstrap a standby cluster: pg_basebackup from ``standby_cluster``'s remote primary
    into the empty data directory, write the cluster's settings, start as the standby leader.
    On failure the loop cleans up as after a failed Bootstrap."""


@dataclass(frozen=True)
class FollowRemote:
    """Make this standby the standby leader: replicate from ``standby_cluster``'s remote
    primary (and/or its restore_command); a stopped PostgreSQL is started so."""


@dataclass(frozen=True)
class Reclone:
    """Remove the data directory and clone it again from ``leader`` (only when configured)."""

    leader: str


@dataclass(frozen=True)
class Reinitialize:
    """Empty the stopped data directory of this replica, on an operator's request (``hactl
    reinit``); the next cycle clones it again from the leader and starts it as a standby."""


@dataclass(frozen=True)
class Promote:
    """Promote the running standby to primary (only ever after AcquireLeader succeeded).

    ``strict``: synchronous_mode_strict is on, so the new primary starts with
    synchronous_standby_names ``*`` (no commit acknowledged until some standby has it)."""

    strict: bool = False


@dataclass(frozen=True)
class Detach:
    """Make the running standby stop receiving WAL (primary_conninfo emptied, reload), so its
    position is final; in synchronous mode every standby does so before a failover race. The
    loop decides again at once afterwards. ``for_switchover``: a standby cluster's standby
    leader handing its key over (standbyswitch.py); the loop records the instant, as
    :attr:`LocalState.switchover_stopped_at`."""

    for_switchover: bool = False


@dataclass(frozen=True)
class SetSyncState:
    """Compare-and-swap the store's synchronous-standby record (None deletes it), only while
    its mod revision is still ``expected_revision``."""

    state: SyncState | None
    expected_revision: int


@dataclass(frozen=True)
class SetStandbyNames:
    """Set the primary's synchronous_standby_names to ``names`` and note the WAL flush position
    read once it is in force (LocalState.sync_barrier)."""

    names: str


@dataclass(frozen=True)
class RecordPosition:
    """Write how far this primary got into the store (the ``position`` key)."""

    position: PrimaryPosition


@dataclass(frozen=True)
class Demote:
    """Stop the primary. ``immediate``: at once, no checkpoint (fencing). ``fast``: with a
    shutdown checkpoint, for a switchover (``for_switchover``: the loop records the instant it
    stopped, :attr:`LocalState.switchover_stopped_at`). PostgreSQL stays stopped; a later cycle
    starts it as a replica of whoever holds the key."""

    mode: StopMode
    for_switchover: bool = False


@dataclass(frozen=True)
class StopPostgres:
    """Stop a PostgreSQL that is not (or must not stay) part of the cluster, or before a rewind."""

    mode: StopMode = "fast"


@dataclass(frozen=True)
class StartPostgres:
    """Start PostgreSQL as primary (no standby.signal); only the key holder is told to."""


@dataclass(frozen=True)
class ProbePeers:
    """Ask every other member's REST API for its status; the loop calls decide() again at once
    with the answers (at most once per cycle)."""


@dataclass(frozen=True)
class ClearSwitchover:
    """Delete the switchover request if it still equals ``expected``."""

    expected: SwitchoverRequest


@dataclass(frozen=True)
class AppendHistory:
    """Record a promotion in the cluster's timeline history."""

    entry: TimelineEntry


@dataclass(frozen=True)
class TransferStoreLeadership:
    """Move the store's Raft leadership to member ``to``'s host, off the primary's."""

    to: str


@dataclass(frozen=True)
class ApplyParameters:
    """Rewrite the config file with these effective PostgreSQL parameters (name, value pairs)
    and reload a running server; a parameter that needs a restart then shows as pending."""

    parameters: tuple[tuple[str, ParameterValue], ...]

    def as_dict(self) -> dict[str, ParameterValue]:
        """The parameters as a mapping."""
        return dict(self.parameters)


Action = (
    TakeInitialize
    | SetInitialize
    | DropBootstrapClaim
    | Bootstrap
    | AbandonBootstrap
    | AcquireLeader
    | RenewLease
    | ReleaseLeader
    | CloneFrom
    | StartReplica
    | Follow
    | CloneRemote
    | FollowRemote
    | Rewind
    | Reclone
    | Reinitialize
    | Promote
    | Demote
    | StopPostgres
    | StartPostgres
    | ProbePeers
    | ClearSwitchover
    | AppendHistory
    | TransferStoreLeadership
    | Detach
    | SetSyncState
    | SetStandbyNames
    | RecordPosition
    | ApplyParameters
)

#: The actions that change the local PostgreSQL (none of them is taken while paused, except
#: the self-fencing Demote of a primary whose lease ran out).
POSTGRES_ACTIONS: tuple[type, ...] = (
    Bootstrap,
    AbandonBootstrap,
    CloneFrom,
    StartReplica,
    Follow,
    CloneRemote,
    FollowRemote,
    Rewind,
    Reclone,
    Reinitialize,
    Promote,
    Demote,
    StopPostgres,
    StartPostgres,
    Detach,
    SetStandbyNames,
)


@dataclass(frozen=True)
class Decision:
    """The actions to run, in order, and why: the reason is logged, published in the member's
    state and shown by the REST API, for an operator to learn why a failover did or did not
    happen."""

    actions: tuple[Action, ...]
    reason: str

    def kinds(self) -> tuple[str, ...]:
        """The actions' class names, for logs and tests."""
        return tuple(type(a).__name__ for a in self.actions)

    def __str__(self) -> str:
        return f"{', '.join(self.kinds()) or 'wait'}: {self.reason}"
