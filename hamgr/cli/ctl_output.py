"""hactl's output: patronictl-style tables, or the same rows as JSON or YAML (``-f``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import yaml


def add_format(p: argparse.ArgumentParser) -> None:
    """``-f/--format pretty|json|yaml`` (default pretty) on a command's parser."""
    p.add_argument("-f", "--format", choices=("pretty", "json", "yaml"), default="pretty")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A patronictl-style table; ``title`` sits in the top border."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    top = border
    if title and len(title) + 4 <= len(border):
        top = f"+ {title} " + border[len(title) + 3 :]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [top] if top != border else [title, border]
    out += [line(list(headers)), border, *(line(r) for r in cells), border]
    return "\n".join(out)


def render(rows: list[dict[str, Any]], fmt: str, title: str = "") -> str:
    """``rows`` as a table (``pretty``, with ``title``), JSON or YAML."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(rows, sort_keys=False, default_flow_style=False).rstrip()
    headers = list(rows[0]) if rows else []
    return table(headers, [list(r.values()) for r in rows], title) if rows else "(none)"
