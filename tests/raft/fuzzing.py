"""Helpers for the wire fuzzers: byte mutations of valid encodings, and run counts.

The fuzz tests feed decoders arbitrary bytes and valid encodings damaged by a few random edits
(byte flips, insertions, deletions, truncation, duplicated spans): the edits reach the corners a
purely random input rarely does (a valid header with a bad length, a valid array with a field
cut short). Each test counts the inputs it ran through `RUNS`, and the fuzz modules print the
counts at the end so a run reports how much fuzzing it did.
"""

from __future__ import annotations

import collections
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hypothesis import strategies as st

RUNS: collections.Counter[str] = collections.Counter()
"""Inputs run per fuzz target in this process."""


@st.composite
def mutated(draw: st.DrawFn, valid: bytes, max_edits: int = 4) -> bytes:
    """`valid` with 1..max_edits random edits."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_edits))):
        edit = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, len(data))) if data else 0
        if edit == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set" and pos < len(data):
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCF, 0xDD, 0xFF]))
        elif edit == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=9))
        elif edit == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif edit == "truncate":
            del data[pos:]
        elif edit == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


def valid_or_mutated(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, or one of `valid` mutated."""
    return st.binary(max_size=256) | st.sampled_from(valid).flatmap(mutated)


@contextmanager
def bounded_allocation(input_size: int, limit: int = 4 * 1024 * 1024) -> Iterator[None]:
    """Fail if the block allocates more than `limit` + 64 x the input at its peak."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= limit + 64 * input_size, f"peak allocation {peak} bytes for {input_size}"


def counted(name: str, call: Callable[[], object]) -> object:
    """Run `call` once, counting the run under `name`."""
    RUNS[name] += 1
    return call()


def report() -> str:
    """The run counts, one line per target."""
    return "\n".join(f"fuzz runs: {name}: {n}" for name, n in sorted(RUNS.items()))
