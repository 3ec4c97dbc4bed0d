"""deploy/grafana/hamgr.json, the Grafana dashboard of the hamgr_* metrics: a well-formed
dashboard (unique panel ids, panels inside the 24-column grid, every query on the
``$datasource`` variable, only defined variables, balanced brackets), and every hamgr_* name
its PromQL queries is one that hamgr/agent/metrics.py exports. tests/ha/test_ui_e2e.py checks the
same names against the /metrics of a live cluster's agents."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hamgr.agent.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "hamgr.json"
NAME = re.compile(r"\bhamgr_[a-z0-9_]+")
VARIABLE = re.compile(r"\$\{?(\w+)")
BUILTIN = {"__rate_interval", "__range", "__interval"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets, annotations, template variables."""
    out = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    out += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for v in dashboard["templating"]["list"]:
        query = v.get("query")
        if isinstance(query, dict):
            out.append(query["query"])
    return out


def queried_metrics(dashboard: dict[str, Any]) -> set[str]:
    """The hamgr_* sample names the dashboard's queries read."""
    return {name for expr in queries(dashboard) for name in NAME.findall(expr)}


def exported_names() -> set[str]:
    """Every sample name hamgr/agent/metrics.py can export (a family's name with its type's
    suffixes), whether or not it has a value yet."""
    out = set()
    for family in Metrics().registry.collect():
        out |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return out


def test_every_queried_metric_is_exported() -> None:
    used = queried_metrics(load())
    assert used - exported_names() == set()
    # What the dashboard is for (issue 14): roles, lag, keepalive latency, the fence margin,
    # the store's fsync and commit latency, elections.
    assert {
        "hamgr_postgres_role",
        "hamgr_replication_lag_bytes",
        "hamgr_lease_keepalive_duration_seconds_bucket",
        "hamgr_fence_remaining_seconds",
        "hamgr_store_fsync_duration_seconds_bucket",
        "hamgr_store_commit_duration_seconds_bucket",
        "hamgr_store_term",
        "hamgr_failovers_total",
    } <= used


def test_the_dashboard_is_well_formed() -> None:
    d = load()
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    defined = {v["name"] for v in d["templating"]["list"]}
    for p in panels(d):
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), p["title"]
    for expr in queries(d):
        assert set(VARIABLE.findall(expr)) <= defined | BUILTIN, expr
        for opening, closing in ("()", "[]", "{}"):
            assert expr.count(opening) == expr.count(closing), expr
    assert d["uid"] and d["title"] == "hamgr"
