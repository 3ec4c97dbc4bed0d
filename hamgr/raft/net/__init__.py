"""The network: framed, versioned, authenticated connections between members and with clients.

`framing` cuts a stream into frames, `handshake` proves the cluster secret (optionally over TLS),
`transport` keeps the peer connections that carry Raft messages (`codec`), and `rpcbase`, `rpc`
and `rpcresults` are the client protocol's requests, answers and error codes; `wire` is the base
of their msgspec Structs and their strict decoding;
`repeatlog` logs a refused peer once per host and reason.

May import: `hamgr.raft.errors`, `hamgr.raft.core` (the message types), `hamgr.raft.kv` (the
command and result types the RPCs carry) and this package only.
"""
