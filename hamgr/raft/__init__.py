"""hamgr's consensus package: the Raft store, in subpackages that mirror its parts.

- `core`: the pure Raft state machine;
- `wal`: the durable log of one member;
- `net`: framing, handshake, peer transport and the client protocol;
- `kv`: the KV state machine with leases and watches;
- `server`: `RaftNode`, one member, and its client RPC server;
- `client`: `StoreClient`;
- `sim`: the simulators (only tests and `python -m` use them);
- `errors`: the store's exceptions, one class per meaning, shared by all of them.

This package imports nothing from the rest of hamgr, so it could ship on its own; which part may
import which is stated in each subpackage's docstring and checked by tests/test_lint.py. Names
are imported from the module that defines them: no package re-exports another's names.
"""
