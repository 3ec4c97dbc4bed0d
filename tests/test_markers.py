"""`-m "not integration"` leaves out every test that starts real PostgreSQL servers or agents.

README's test section tells how to run or exclude the integration tests by their marker; that
holds only while every module that builds a real cluster carries it. Pure: reads the sources.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
STARTS_REAL_CLUSTERS = (
    "AgentCluster(",
    "cluster_of_test(",
    "chaos_cluster(",
    "pg_bindir",
    '"hamgr.cli.demo"',
)
"""What a test module names when it starts PostgreSQL or agents (tests/ha/agentcluster.py,
tests/chaos/harness.py, the pg_bindir fixture, the demo)."""


def test_every_module_that_starts_a_real_cluster_is_marked_integration() -> None:
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        text = path.read_text()
        if any(sign in text for sign in STARTS_REAL_CLUSTERS) and (
            "pytest.mark.integration" not in text
        ):
            unmarked.append(str(path.relative_to(TESTS.parent)))
    assert not unmarked, f"start real clusters without pytest.mark.integration: {unmarked}"
