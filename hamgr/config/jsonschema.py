"""The configuration file's JSON Schema, made from the schema's types by msgspec.

Editors validate and complete a hamgr YAML file with it (``# yaml-language-server:
$schema=...`` on the file's first line, see the README); hamgr ships it as
``hamgr/config/config.schema.json``. Regenerate the shipped file after changing the schema::

    python -m hamgr.config.jsonschema > hamgr/config/config.schema.json

(a test fails while the two differ). :func:`config_schema` is msgspec's schema of
:class:`~hamgr.config.Config` with what the loader adds to the types: every section refuses
unknown keys, a section may be left empty (null), and ``postgresql`` and ``bootstrap`` take a
method's section beside them under the method's own name (Patroni's layout). The cross-key rules
(timing, addresses in use twice...) are the loader's alone: a file the schema accepts may still
be refused by ``hamgr validate-config``.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from typing import Any

import msgspec

from hamgr.config.schema import Config

SCHEMA_FILE = "config.schema.json"
"""The shipped schema's file name, in this package."""

#: Sections that also take a method's section under the method's name (Patroni's layout).
_NAMED_SECTIONS = {"PostgresConfig": "ReplicaMethod", "BootstrapConfig": "BootstrapMethod"}
#: Keys whose loader also takes an integer for its text (a delay in milliseconds).
_TEXT_OR_INTEGER = {("StandbyCluster", "recovery_min_apply_delay")}


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the configuration file."""
    schema: dict[str, Any] = msgspec.json.schema(Config)
    for name, definition in schema["$defs"].items():
        if definition.get("type") != "object":
            continue
        method = _NAMED_SECTIONS.get(name)
        definition["additionalProperties"] = {"$ref": f"#/$defs/{method}"} if method else False
        properties = definition.get("properties", {})
        for key, prop in properties.items():
            if (name, key) in _TEXT_OR_INTEGER:
                prop["anyOf"].insert(0, {"type": "integer", "minimum": 0})
            if set(prop) == {"$ref"}:  # a section left empty (null) holds its defaults
                properties[key] = {"anyOf": [prop, {"type": "null"}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hamgr agent configuration",
        **schema,
    }


def schema_text() -> str:
    """:func:`config_schema` as the shipped file holds it."""
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"


def shipped_schema_text() -> str:
    """The schema file installed with hamgr."""
    return resources.files("hamgr.config").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def main() -> int:
    """Print the schema: ``python -m hamgr.config.jsonschema > hamgr/config/config.schema.json``."""
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
