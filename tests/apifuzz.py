"""Drive schemathesis over the REST API's OpenAPI description (hamgr/agent/openapi.yaml).

`fuzz_api` generates requests for every operation (bounded examples each) from the shipped
description, both valid ones and ones schemathesis makes invalid on purpose (wrong types,
missing or unknown fields, bad query values), sends them to a running API over HTTP, and
checks each answer: never a 500, an answer within the timeout (no hang), and every 4xx a JSON
object whose ``error`` names the problem (an operation with nothing to make invalid gets no
invalid requests). It returns how many requests each operation got and the failures found,
so a test can report both.
"""

from __future__ import annotations

import base64
import collections
import itertools
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from hamgr.agent.openapi import description

TIMEOUT = 30.0
"""Seconds an answer may take (a switchover waits up to the API's outcome timeout)."""


def check_answer(method: str, path: str, status: int, body: bytes) -> str | None:
    """What is wrong with an answer, or None."""
    if status >= 500 and status != 503:
        return f"{method} {path}: {status} {body[:200]!r}"
    if 400 <= status < 500:
        try:
            data: Any = requests.models.complexjson.loads(body)
        except ValueError:
            return f"{method} {path}: {status} is not JSON: {body[:200]!r}"
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("error"), str)
            or not data["error"]
        ):
            return f"{method} {path}: {status} has no error message: {body[:200]!r}"
    return None


def fuzz_api(
    base_url: str,
    auth: tuple[str, str] | None,
    *,
    max_examples: int = 30,
    skip: frozenset[tuple[str, str]] = frozenset(),
    only: frozenset[tuple[str, str]] | None = None,
) -> tuple[collections.Counter[str], list[str]]:
    """Fuzz every operation ((METHOD, path)) in `only` (default: all) and not in `skip`;
    returns (requests per operation, failures)."""
    schema = schemathesis.openapi.from_dict(description())
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    runs: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    for op, mode in itertools.product(operations, list(GenerationMode)):
        key = (op.method.upper(), op.path)
        if key in skip or (only is not None and key not in only):
            continue

        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(op.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            name = f"{case.method.upper()} {case.path} ({case.meta.generation.mode.value})"
            runs[name] += 1
            resp = case.call(base_url=base_url, session=session, headers=headers, timeout=TIMEOUT)
            problem = check_answer(case.method, case.formatted_path, resp.status_code, resp.content)
            if problem is not None and len(failures) < 50:
                failures.append(f"{problem} (query {case.query}, body {case.body!r:.200})")

        try:
            run()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
    return runs, failures
