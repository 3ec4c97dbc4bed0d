"""The store client: `client.StoreClient`, pipelined, follows the Raft leader.

`clientconn` is one authenticated connection to a member; `clienterrors` maps a member's error
answer to the `hamgr.raft.errors` class the client raises.

May import: `hamgr.raft.errors`, `hamgr.raft.net`, `hamgr.raft.kv` and this package only (not
the server or the core).
"""
