"""The agent: one database host's HA agent, as one process (`hamgr agent`).

`process` wires the parts together (the store member, the HA loop over the store, the fencer,
the REST API) from what `setup` builds out of the configuration (`hooksetup`: the operator's
commands); `storemember` is the embedded Raft store member (also run alone as `hamgr store`),
with `storeadmin`, `storemembers` and `storeview` for `hactl members` and ``GET /store``; `api`
builds the REST API from `apiread` (health checks, read-only views) and `apiactions` (operator
actions), with `apierrors`, `apiaccess`, `apibodies`, `apirestart`, `patroniview`, `openapi` and
its ``openapi.yaml``, and the status page in `ui`; `telemetry` feeds `metrics`, `events`,
`sdnotify` and `sdwatchdog` (systemd); `gcpolicy` tunes the garbage collector of the long-running
processes.

May import: hamgr.raft, hamgr.config, hamgr.dcs, hamgr.postgres, hamgr.ha, hamgr.fencer and the
shared top-level modules (clock, lsn, tls, apiview). Never hamgr.cli.
"""
