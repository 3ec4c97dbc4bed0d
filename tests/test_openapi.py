"""The shipped OpenAPI description (hamgr/agent/openapi.yaml) describes every route of the REST API,
and only those, and is served at GET /openapi.json."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hamgr.agent.api import build_app
from hamgr.agent.openapi import description

_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _app_routes() -> set[tuple[str, str]]:
    app = build_app(None, None)  # type: ignore[arg-type]  # only its routes are read
    return {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }


def _described() -> set[tuple[str, str]]:
    paths: dict[str, Any] = description()["paths"]
    return {(m, p) for p, ops in paths.items() for m in ops if m in _METHODS}


def test_every_route_is_described_and_nothing_else() -> None:
    routes, described = _app_routes(), _described()
    assert routes - described == set(), "routes missing from hamgr/agent/openapi.yaml"
    assert described - routes == set(), "hamgr/agent/openapi.yaml describes routes the app lacks"


def test_every_operation_documents_its_answers() -> None:
    doc = description()
    assert doc["openapi"].startswith("3.")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") and op.get("operationId"), (method, path)
            assert op.get("responses"), (method, path)
            if method in ("post", "patch"):
                assert op.get("security") == [{"basic": []}], (method, path)
                assert {"400", "401", "403"} <= set(op["responses"]), (method, path)


@pytest.mark.parametrize("path", ["/openapi.json"])
async def test_the_description_is_served(path: str) -> None:
    async with TestClient(TestServer(build_app(None, None))) as client:  # type: ignore[arg-type]
        resp = await client.get(path)
        assert resp.status == 200
        assert await resp.json() == description()
