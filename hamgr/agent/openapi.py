"""The OpenAPI description of the agent's REST API, shipped in the package as ``openapi.yaml``.

The file is the reference for API clients and for the fuzz test (schemathesis) that checks the
API keeps to it; GET /openapi.json serves it. tests/test_openapi.py checks that it describes
every route ``hamgr.agent.api.build_app`` registers, and nothing else.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml


@functools.cache
def description() -> dict[str, Any]:
    """The OpenAPI document (read from the package once)."""
    text = resources.files("hamgr.agent").joinpath("openapi.yaml").read_text(encoding="utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc
