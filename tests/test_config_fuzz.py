"""Every configuration key fuzzed with wrong types and out-of-range values.

For each key path of the schema (`schema_paths`, list items as the first item of a list the
example file has), hypothesis sets a wrong-typed or out-of-range value into the example
configuration. The only acceptable outcomes: the value is valid (then the effective config
dumps), or `ConfigError` whose problems each read ``<key path>: <what>`` and one of which names
the key fuzzed (or, for a rule across keys, the key's name) -- never another exception. The
tests print how many inputs they ran (``-s``).
"""

from __future__ import annotations

import collections
import copy
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamgr.config import Config, ConfigError, dump_effective, parse_config, schema_paths

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
BASE = yaml.safe_load(EXAMPLE.read_text())
RUNS: collections.Counter[str] = collections.Counter()

wrong_values = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, -1, -(2**63), 2**63, 2**64 + 1, 10**30, 65536, 0.0, -0.5, 1e-9, 1e300])
    | st.sampled_from([math.inf, -math.inf, math.nan])
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["", " ", "x" * 5000, "0", "-1", "1e400", "nan", "a:b:c", "[::1", "/"])
    | st.lists(st.integers() | st.text(max_size=3), max_size=3)
    | st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=3), max_size=3)
)


def _concrete(path: str) -> str:
    """A schema path with ``[]`` made into ``[0]``, the list's first item."""
    return path.replace("[]", "[0]")


PATHS = [_concrete(p) for p in schema_paths()]
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    parts: list[str | int] = [name if name else int(index) for name, index in _PART.findall(path)]
    node: Any = data
    for part, after in itertools.pairwise(parts):
        nxt = node[part] if _has(node, part) else None
        if not isinstance(nxt, dict | list) or (
            isinstance(after, int) and not isinstance(nxt, list)
        ):
            nxt = [{}] if isinstance(after, int) else {}
            node[part] = nxt
        if isinstance(after, int) and len(nxt) <= after:
            nxt.append({})
        node = nxt
    node[parts[-1]] = value
    return data


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, list):
        return isinstance(part, int) and part < len(node)
    return part in node


@pytest.fixture(autouse=True, scope="module")
def _print_counts() -> Iterator[None]:
    yield
    print(f"\nfuzz runs: config keys: {sum(RUNS.values())} inputs over {len(RUNS)} key paths")


def _names_the_key(problem: str, path: str) -> bool:
    """The problem names `path`, a key below it, its name (a rule across keys), or a key of
    its section (setting a key can create a section that then lacks a required key)."""
    named = problem.removeprefix("unknown key ").split(":")[0].split(" ")[0]
    leaf = re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[-1]
    section = path.rsplit(".", 1)[0] if "." in path else path
    return named.startswith(section) or leaf in problem or path.startswith(named)


def _well_formed(problem: str) -> bool:
    """``<key path>: <what>``, or ``unknown key <key path> ...``; an odd key in the path is
    quoted as a JSON string and may hold spaces or escaped quotes
    (``postgresql.replica_methods." ": ...``, ``..."\\"": ...``, both found by the fuzzer)."""
    path = r'(?:[^\s"]|"(?:[^"\\]|\\.)*")+'
    return problem.startswith("unknown key ") or bool(re.match(path + r": \S", problem))


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.sampled_from(PATHS), wrong_values)
def test_a_wrong_value_at_any_key_is_a_config_error_naming_it(path: str, value: Any) -> None:
    RUNS[path] += 1
    data = _set(copy.deepcopy(BASE), path, value)
    try:
        config = parse_config(data, {})
    except ConfigError as exc:
        assert exc.problems and all(_well_formed(p) for p in exc.problems), exc.problems
        assert any(_names_the_key(p, path) for p in exc.problems), (path, value, exc.problems)
        assert "Traceback" not in str(exc)
    else:
        assert isinstance(config, Config)
        dump_effective(config)


@pytest.mark.parametrize(
    ("key", "shown"),
    [("", 'log.""'), ("a.b", 'log."a.b"'), ("x y", 'log."x y"'), ("ok_1", "log.ok_1")],
)
def test_an_odd_unknown_key_is_quoted_in_its_path(key: str, shown: str) -> None:
    """Found by the fuzzer: ``log: {"": 0}`` was reported as ``unknown key log.``."""
    with pytest.raises(ConfigError) as info:
        parse_config(_set(copy.deepcopy(BASE), "log", {key: 0}), {})
    assert info.value.problems == [f"unknown key {shown}"]
