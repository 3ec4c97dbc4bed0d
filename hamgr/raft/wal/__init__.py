"""The write-ahead log: the durable Raft log, hard state and snapshots of one member.

`storage.Storage` appends and fsyncs checksummed records (`walformat`), recovers by reading and
checking everything and changing nothing (`walrecovery`), and fails with `storageerrors`.

May import: `hamgr.raft.errors`, `hamgr.raft.core` (the entry and snapshot types) and this
package only.
"""
