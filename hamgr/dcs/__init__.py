"""What the HA logic needs from a coordination store: the cluster model and one small contract.

``model`` holds the values (MemberState, LeaderKey, SwitchoverRequest, TimelineEntry,
ClusterView) with their JSON forms; ``strict`` decodes them (ModelError names the bad field);
``settings`` the cluster's dynamic settings (DynamicSettings); ``base`` the :class:`Dcs`
protocol that the backends (the embedded Raft KV, etcd) implement, and the key layout. All are
pure.
"""

from __future__ import annotations

from hamgr.dcs.base import Dcs, DcsError, KeepaliveResult, ScopeKeys, scope_keys
from hamgr.dcs.model import (
    STATES,
    ClusterView,
    LeaderKey,
    MemberState,
    MemberTags,
    RequestKind,
    Role,
    SwitchoverRequest,
    TimelineEntry,
)
from hamgr.dcs.settings import DynamicSettings
from hamgr.dcs.strict import ModelError

__all__ = [
    "STATES",
    "ClusterView",
    "Dcs",
    "DcsError",
    "DynamicSettings",
    "KeepaliveResult",
    "LeaderKey",
    "MemberState",
    "MemberTags",
    "ModelError",
    "RequestKind",
    "Role",
    "ScopeKeys",
    "SwitchoverRequest",
    "TimelineEntry",
    "scope_keys",
]
