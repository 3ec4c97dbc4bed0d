"""The HA agent: the pure decision (``decide``) and, later, the loop that observes and acts.

``inputs`` (what the agent observed: LocalState, LocalPostgres, PeerProbe), ``actions`` (what
it may do, and the Decision), ``race`` (the failover race without a leader), ``switchover``
(the leader's side of a switchover; ``standbyswitch`` a standby leader's) and ``decide``
(the order of precedence) are all pure.
"""

from __future__ import annotations

from hamgr.ha.actions import (
    POSTGRES_ACTIONS,
    AbandonBootstrap,
    AcquireLeader,
    Action,
    AppendHistory,
    ApplyParameters,
    Bootstrap,
    ClearSwitchover,
    CloneFrom,
    Decision,
    Demote,
    Detach,
    DropBootstrapClaim,
    Follow,
    ProbePeers,
    Promote,
    Reclone,
    RecordPosition,
    Reinitialize,
    ReleaseLeader,
    RenewLease,
    Rewind,
    SetInitialize,
    SetStandbyNames,
    SetSyncState,
    StartPostgres,
    StartReplica,
    StopPostgres,
    TakeInitialize,
    TransferStoreLeadership,
)
from hamgr.ha.decide import decide
from hamgr.ha.inputs import LocalPostgres, LocalState, PeerProbe

__all__ = [
    "POSTGRES_ACTIONS",
    "AbandonBootstrap",
    "AcquireLeader",
    "Action",
    "AppendHistory",
    "ApplyParameters",
    "Bootstrap",
    "ClearSwitchover",
    "CloneFrom",
    "Decision",
    "Demote",
    "Detach",
    "DropBootstrapClaim",
    "Follow",
    "LocalPostgres",
    "LocalState",
    "PeerProbe",
    "ProbePeers",
    "Promote",
    "Reclone",
    "RecordPosition",
    "Reinitialize",
    "ReleaseLeader",
    "RenewLease",
    "Rewind",
    "SetInitialize",
    "SetStandbyNames",
    "SetSyncState",
    "StartPostgres",
    "StartReplica",
    "StopPostgres",
    "TakeInitialize",
    "TransferStoreLeadership",
    "decide",
]
