"""The configuration's JSON Schema: shipped as generated, and it accepts the files we ship.

The schema is made from the config model by msgspec (hamgr/config/jsonschema.py); editors read
the shipped copy. These tests keep the copy in step with the model, and check with the
``jsonschema`` library that the example, the demo's member configs and ``dump`` output pass it
while a few plain mistakes do not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hamgr.cli.demo import write_configs
from hamgr.config import dump_effective, parse_config
from hamgr.config.jsonschema import config_schema, schema_text, shipped_schema_text

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"
REGENERATE = "python -m hamgr.config.jsonschema > hamgr/config/config.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, data: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert shipped_schema_text() == schema_text(), f"regenerate it: {REGENERATE}"


def test_the_example_names_the_schema_for_editors() -> None:
    first = EXAMPLE.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./hamgr/config/config.schema.json"
    assert (EXAMPLE.parent / first.split("=", 1)[1]).is_file()


def test_the_example_passes_the_schema(validator: jsonschema.Draft202012Validator) -> None:
    text = EXAMPLE.read_text()
    assert errors(validator, yaml.safe_load(text)) == []
    # And with its commented-out keys switched on ("# key: value" -> "key: value").
    lines = [re.sub(r"^(\s*)# (\s*[a-z_]+:(\s.*)?)$", r"\1\2", line) for line in text.splitlines()]
    assert errors(validator, yaml.safe_load("\n".join(lines))) == []


@pytest.mark.parametrize("tls", [True, False])
def test_the_demo_member_configs_pass_the_schema(
    validator: jsonschema.Draft202012Validator, tls: bool, tmp_path: Path
) -> None:
    paths = write_configs(tmp_path, tls=tls)
    assert len(paths) == 3
    for path in paths:
        assert errors(validator, yaml.safe_load(path.read_text())) == []


def test_dump_output_passes_the_schema(validator: jsonschema.Draft202012Validator) -> None:
    config = parse_config(yaml.safe_load(EXAMPLE.read_text()))
    assert errors(validator, dump_effective(config, redact=False)) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("scpoe", "x"),
        ("postgresql.paramters", {}),
        ("store.raft.node_id", 0),
        ("store.raft.secret", "short"),
        ("scope", ""),
        ("name", "bad name"),
        ("bootstrap.dcs.ttl", -1),
        ("bootstrap.dcs.synchronous_mode", "yes"),
        ("postgresql.create_replica_methods", []),
        ("watchdog.mode", False),
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(
    validator: jsonschema.Draft202012Validator, path: str, value: Any
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    assert errors(validator, data)
