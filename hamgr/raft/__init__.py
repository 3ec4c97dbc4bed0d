"""hamgr's consensus package: a Raft core, its simulator, storage, transport and KV store.

This package imports nothing from the rest of hamgr, so it could ship on its own.
"""
