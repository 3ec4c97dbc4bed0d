"""Member addresses as replicated data: how they travel through the log and through snapshots.

Node ids, not addresses, identify members (docs/architecture.md), but a member must learn where
the others listen. A new member's address rides in the context of its ADD_NODE conf change; since
compaction drops those entries, the node's snapshot data carries every known address next to the
KV store's snapshot. Pure encoding and decoding; `RaftNode` (`hamgr.raft.server.node`) decides what
to do with them.
"""

from __future__ import annotations

import msgpack

__all__ = [
    "SNAPSHOT_FORMAT",
    "Address",
    "decode_address",
    "decode_snapshot",
    "encode_address",
    "encode_snapshot",
]

Address = tuple[str, int]

SNAPSHOT_FORMAT = 1
"""First element of the node's snapshot data: [format, kv snapshot, [[id, host, port], ...]]."""


def encode_address(address: Address) -> bytes:
    """The ConfChange context of an ADD_NODE: the new member's address."""
    return msgpack.packb([address[0], int(address[1])], use_bin_type=True)


def decode_address(data: bytes) -> Address:
    """Inverse of `encode_address`; raises ValueError on anything else."""
    try:
        host, port = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise ValueError(f"malformed member address in conf change: {data!r:.60}") from exc
    if not isinstance(host, str) or type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"malformed member address in conf change: {host!r}:{port!r}")
    return host, port


def encode_snapshot(kv_data: bytes, addresses: dict[int, Address]) -> bytes:
    """The node's snapshot data: the KV snapshot plus every member address it knows."""
    addrs = [[i, h, p] for i, (h, p) in sorted(addresses.items())]
    return msgpack.packb([SNAPSHOT_FORMAT, kv_data, addrs], use_bin_type=True)


def decode_snapshot(data: bytes) -> tuple[bytes, dict[int, Address]]:
    """Inverse of `encode_snapshot`; raises ValueError naming what is wrong."""
    try:
        version, kv_data, addrs = msgpack.unpackb(data, raw=False)
        addresses = {int(i): (str(h), int(p)) for i, h, p in addrs}
    except Exception as exc:
        raise ValueError(f"malformed node snapshot ({len(data)} bytes): {exc}") from exc
    if version != SNAPSHOT_FORMAT or not isinstance(kv_data, bytes):
        raise ValueError(f"unsupported node snapshot format {version!r}")
    return kv_data, addresses
