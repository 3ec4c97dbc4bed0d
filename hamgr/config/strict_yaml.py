"""YAML parsing that says where each mistake is: line and column, and duplicate keys.

PyYAML's safe loader silently keeps the last of two equal keys; here each duplicate is a problem.
Used for the configuration file and for the HAMGR_* values that are parsed as YAML.
"""

from __future__ import annotations

from typing import Any

import yaml


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that notes duplicate keys instead of silently keeping the last one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []
        self._checked: set[int] = set()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if id(node) not in self._checked:
            self._checked.add(id(node))
            first: dict[tuple[str, str], int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                line = key_node.start_mark.line + 1
                key = (key_node.tag, key_node.value)
                if key in first:
                    self.duplicates.append(
                        f"line {line}: duplicate key {key_node.value!r} (first at line "
                        f"{first[key]}); remove one of them"
                    )
                first.setdefault(key, line)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str) -> tuple[Any, list[str]]:
    """Parse YAML text; problems name ``source`` and the line and column of each mistake."""
    try:
        loader = _StrictLoader(text)  # checks the characters already
    except yaml.YAMLError as e:
        return None, [f"{source}: {e}"]
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = ", ".join(str(p) for p in (e.context, e.problem) if p)
        if mark is None:
            return None, [f"{source}: {what}"]
        return None, [f"{source}, line {mark.line + 1}, column {mark.column + 1}: {what}"]
    except yaml.YAMLError as e:  # reader errors (bad characters) and the like
        return None, [f"{source}: {e}"]
    finally:
        loader.dispose()
    return data, [f"{source}, {d}" for d in loader.duplicates]
