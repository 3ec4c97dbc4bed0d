"""The KV state machine: etcd v3 semantics over the applied Raft log.

`kv.KVStore` applies commands (`kvcommands`) to revisions and answers with results
(`kvresults`); `kvwatch` streams changes, `kvsnapshot` saves and restores the store, and `lease`
counts leases on the Raft leader only.

May import: `hamgr.raft.errors` and this package only (not the network, the server or the core:
tests/test_lint.py checks it).
"""
