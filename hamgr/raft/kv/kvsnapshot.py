"""The KV store's snapshot format: encoding a frozen view of the state a slice at a time, and
parsing snapshot bytes back with every field checked.

The bytes are one msgpack array ``[SNAPSHOT_VERSION, applied_index, revision, kvs, leases]``
with ``kvs`` sorted by key (``[key, value, create, mod, version, lease]`` each) and ``leases``
sorted by id (``[id, ttl]`` each), so equal states give equal bytes on every member.

A store of tens of thousands of keys takes tens of milliseconds to encode. `SnapshotEncoder`
freezes the state in about a millisecond (the key list and the dict are copied; the values are
immutable) and then encodes it in steps of a bounded number of keys, so a driver can interleave
the encoding with its event loop instead of stalling every request behind it.
"""

from __future__ import annotations

from typing import Any

import msgpack

from hamgr.raft.kv.kvcommands import (
    INT64_MAX,
    InvalidCommandError,
    need_bytes,
    need_fields,
    need_int,
    need_key,
    need_ttl,
)
from hamgr.raft.kv.kvresults import INITIAL_REVISION, KeyValue

__all__ = [
    "SNAPSHOT_VERSION",
    "LeaseRecord",
    "ParsedSnapshot",
    "SnapshotEncoder",
    "SnapshotError",
    "parse_snapshot",
]

SNAPSHOT_VERSION = 1
"""First element of every snapshot."""


class SnapshotError(ValueError):
    """Snapshot bytes are malformed or inconsistent; the store was left unchanged."""


class LeaseRecord:
    """A granted lease as the store keeps it: its TTL and the keys attached to it."""

    __slots__ = ("keys", "ttl")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.keys: set[bytes] = set()


ParsedSnapshot = tuple[int, int, dict[bytes, KeyValue], list[bytes], dict[int, LeaseRecord]]
"""applied index, revision, key -> KeyValue, the sorted keys, lease id -> LeaseRecord."""


class SnapshotEncoder:
    """Encodes the state given at construction, whatever the store does afterwards.

    The caller hands over copies it will not change (`keys` sorted); `KeyValue`s are immutable,
    so sharing them is safe. Call `step` until it returns True, then take `result()`.
    """

    def __init__(
        self,
        applied_index: int,
        revision: int,
        kvs: dict[bytes, KeyValue],
        keys: list[bytes],
        leases: list[tuple[int, float]],
    ) -> None:
        self.applied_index = applied_index
        self._kvs = kvs
        self._keys = keys
        self._leases = sorted(leases)
        self._packer = msgpack.Packer(use_bin_type=True)
        pack = self._packer.pack
        self._parts: list[bytes] = [
            self._packer.pack_array_header(5),
            pack(SNAPSHOT_VERSION),
            pack(applied_index),
            pack(revision),
            self._packer.pack_array_header(len(keys)),
        ]
        self._next = 0
        self._result: bytes | None = None

    def step(self, max_keys: int) -> bool:
        """Encode up to `max_keys` more keys (the leases with the last step); True when done."""
        if self._result is not None:
            return True
        pack = self._packer.pack
        kvs, parts = self._kvs, self._parts
        end = min(len(self._keys), self._next + max(1, max_keys))
        for key in self._keys[self._next : end]:
            kv = kvs[key]
            parts.append(
                pack((kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease))
            )
        self._next = end
        if end < len(self._keys):
            return False
        parts.append(pack(self._leases))
        self._result = b"".join(parts)
        self._parts = []
        return True

    def result(self) -> bytes:
        """The snapshot bytes, once `step` returned True."""
        if self._result is None:
            raise RuntimeError("the snapshot is not encoded yet: call step() until it is done")
        return self._result


def parse_snapshot(data: bytes) -> ParsedSnapshot:
    """Check and unpack snapshot bytes; SnapshotError names the first thing that is wrong."""
    try:
        wire: Any = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:
        raise SnapshotError(
            f"KV snapshot is not valid msgpack: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(wire, list) or len(wire) != 5:
        raise SnapshotError("KV snapshot must be a list of 5 fields")
    version, applied_index, revision, kvs_w, leases_w = wire
    if type(version) is not int or version != SNAPSHOT_VERSION:
        raise SnapshotError(f"unsupported KV snapshot format {version!r:.20}")
    try:
        applied_index = need_int("snapshot applied index", applied_index, 0, INT64_MAX)
        revision = need_int("snapshot revision", revision, INITIAL_REVISION, INT64_MAX)
        if not isinstance(kvs_w, list) or not isinstance(leases_w, list):
            raise InvalidCommandError("snapshot kvs and leases must be lists")
        leases: dict[int, LeaseRecord] = {}
        previous_id = 0
        for item in leases_w:
            lease_id, ttl = need_fields("snapshot lease", item, 2)
            lease_id = need_int("snapshot lease id", lease_id, 1, INT64_MAX)
            if lease_id <= previous_id:
                raise InvalidCommandError(f"snapshot lease {lease_id} is out of order or repeated")
            previous_id = lease_id
            leases[lease_id] = LeaseRecord(need_ttl(f"snapshot lease {lease_id} ttl", ttl))
        kvs: dict[bytes, KeyValue] = {}
        keys: list[bytes] = []
        for item in kvs_w:
            key, value, create, mod, ver, lease = need_fields("snapshot kv", item, 6)
            key = need_key("snapshot key", key, prefix=False)
            if keys and key <= keys[-1]:
                raise InvalidCommandError(f"snapshot key {key!r} is out of order or repeated")
            value = need_bytes(f"snapshot value of {key!r}", value)
            create = need_int(f"create revision of {key!r}", create, 2, revision)
            mod = need_int(f"mod revision of {key!r}", mod, create, revision)
            ver = need_int(f"version of {key!r}", ver, 1, mod - create + 1)
            lease = need_int(f"lease of {key!r}", lease, 0, INT64_MAX)
            if lease:
                if lease not in leases:
                    raise InvalidCommandError(f"key {key!r} names lease {lease}, not in snapshot")
                leases[lease].keys.add(key)
            keys.append(key)
            kvs[key] = KeyValue(key, value, create, mod, ver, lease)
    except InvalidCommandError as exc:
        raise SnapshotError(f"bad KV snapshot: {exc}") from None
    return applied_index, revision, kvs, keys, leases
