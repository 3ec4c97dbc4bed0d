"""hamgr: a PostgreSQL high-availability manager with an embedded Raft key-value store.

The parts, one package each (docs/architecture.md draws their arrows):

- `hamgr.raft`: the embedded Raft store (core, WAL, network, KV, server, client, simulators);
  imports nothing else of hamgr.
- `hamgr.config`: the configuration file and its checks.
- `hamgr.dcs`: the store contract the HA loop uses (over hamgr.raft or etcd).
- `hamgr.postgres`: the local PostgreSQL (files, process, SQL).
- `hamgr.ha`: the HA loop and its pure `decide()`.
- `hamgr.fencer`: the fencer process, its client and supervisor, /proc helpers, the watchdog.
- `hamgr.agent`: one host's agent process (wiring, REST API, UI, telemetry, metrics, systemd,
  the store member); may import every part above, never `hamgr.cli`.
- `hamgr.cli`: the commands (`hamgr`, `hactl`, `store-ctl`, certs, healthcheck, the demo).

The modules left at this level are the ones several parts share:

- `hamgr.clock`: the one clock of lease and fence deadlines (dcs, ha, fencer, agent);
- `hamgr.lsn`: the one LSN parser and spelling (postgres, ha, agent);
- `hamgr.tls`: TLS contexts from the configured files (agent and cli);
- `hamgr.apiview`: what the REST API needs from the running HA loop, `AgentView` (the agent's
  API reads through it, `hamgr.ha.agentview` implements it, hactl's edit-config merges with
  its `merge_patch`).

`python -m hamgr` runs `hamgr.cli.main`. tests/test_lint.py checks who may import whom.
"""

__version__ = "0.1.0"
