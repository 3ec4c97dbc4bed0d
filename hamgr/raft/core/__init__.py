"""The Raft core: the pure consensus state machine and the pure pieces it is made of.

`core.RaftCore` (etcd-io/raft is the model) takes `step`, `tick`, `propose`, `read_index`,
`transfer_leadership` and membership changes, and hands out `Ready` batches; `log`, `progress`,
`quorum`, `readonly`, `replication` and `membership` are its parts, `types` its messages and
entries, `config` its settings. No I/O, no clock, no randomness of its own.

May import: `hamgr.raft.errors` and this package only (not the WAL, the network, the KV store,
the server, the client or the simulators; tests/test_lint.py checks it).
"""
