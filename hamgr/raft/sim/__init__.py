"""The simulators: the Raft core, the KV store and the real `RaftNode` under one seed each.

`cores` runs N cores on a hostile virtual network and disks and checks safety after every event
(`python -m hamgr.raft.sim --seeds N`, by `__main__`); `kv` runs the KV store and lease clock
as the state machine (`python -m hamgr.raft.sim.kv`); `node` runs the real `RaftNode` on a
virtual-time loop (`python -m hamgr.raft.sim.node`); `breakers` and `nodebugs` plant one bug
each to show the checks catch it; `profiles` holds the core simulators' knobs and fault mixes,
`simcli` the command line all three share (seeds, summary).

May import: all of `hamgr.raft`. Nothing outside this package imports it (tests do).
"""
