"""decide()'s part for PostgreSQL parameters: every member runs with the cluster's (pure).

The effective parameters are the cluster-wide ``parameters`` of the dynamic settings with the
member's own ``postgresql.parameters`` on top, as Patroni merges them
(hamgr/postgres/params.py). When they differ from what the config file holds
(``LocalState.applied_parameters``), the decision ends with ``ApplyParameters``: the file is
rewritten and a running server reloaded, on every member, the primary and standbys alike, and
while paused too (a reload is no failover decision; Patroni reloads in pause as well). A
parameter that needs a restart shows up in pg_settings as ``pending_restart`` afterwards,
which the agent publishes; the restart itself is the operator's (``hactl restart``). Parameters
that were refused (``LocalState.refused_parameters``: a name or value PostgreSQL rejects) are
not tried again until they change; the reason says so every cycle.
"""

from __future__ import annotations

from hamgr.dcs.model import ClusterView
from hamgr.ha.actions import (
    ApplyParameters,
    Bootstrap,
    CloneFrom,
    Decision,
    Reclone,
    Reinitialize,
    Rewind,
)
from hamgr.ha.inputs import LocalState
from hamgr.postgres.params import effective_parameters

REPLACES_DATA_DIR = (Bootstrap, CloneFrom, Rewind, Reclone, Reinitialize)
"""Actions that (re)create the data directory's files: the parameters wait for the next cycle."""


def with_parameters(decision: Decision, view: ClusterView, local: LocalState) -> Decision:
    """``decision``, followed by ApplyParameters when this member's effective parameters
    differ from those its config file holds (last: a failure there must not hold up the HA
    actions, and a fencing stop comes first)."""
    applied = local.applied_parameters
    if applied is None or not local.pg.initialized:
        return decision
    if any(isinstance(x, REPLACES_DATA_DIR) for x in decision.actions):
        return decision
    wanted = effective_parameters(view.settings.parameters, local.local_parameters)
    if wanted == dict(applied):
        return decision
    changed = ", ".join(
        sorted({k for k in wanted.keys() | applied.keys() if wanted.get(k) != applied.get(k)})
    )
    if local.refused_parameters is not None and wanted == dict(local.refused_parameters):
        note = (
            f"the changed PostgreSQL parameters ({changed}) were refused (see the agent's log); "
            "keeping those in force"
        )
        return Decision(decision.actions, f"{decision.reason}; {note}")
    note = f"applying changed PostgreSQL parameters ({changed})"
    return Decision(
        (*decision.actions, ApplyParameters(tuple(wanted.items()))),
        f"{decision.reason}; {note}" if decision.reason else note,
    )
