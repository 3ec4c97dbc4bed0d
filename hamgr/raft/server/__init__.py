"""The store server: one member that drives the Raft core with real time, storage and network.

`node.RaftNode` runs the core's Ready loop over the WAL and the transport (or injected ones,
`nodeports`), applies the log to the KV store and answers its callers (`nodeapi`, `pending`);
`memberaddrs` carries member addresses through the log and snapshots; `rpcserver` serves the
client protocol on the member's client port.

May import: `hamgr.raft.errors`, `hamgr.raft.core`, `hamgr.raft.wal`, `hamgr.raft.net`,
`hamgr.raft.kv` and this package only (not the client or the simulators).
"""
