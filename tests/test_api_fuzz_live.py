"""schemathesis against a live agent: every operation of hamgr/agent/openapi.yaml, valid and
invalid.

One real agent (embedded store, real PostgreSQL, a cluster of one on 127.0.0.173) is fuzzed
through its REST API with the credentials (so requests reach the handlers, not only the auth
check): no answer may be a 500 or take longer than the timeout, and every 4xx must be a JSON
``{"error": ...}`` naming the problem (`tests.apifuzz`). POST /restart restarts PostgreSQL on
each valid request, so it is fuzzed without credentials (the 401 path) and a few times with
them. The request counts are printed (``-s``). Run it under the integration-test lock.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apifuzz import fuzz_api
from tests.ha.agentcluster import API_AUTH, AgentCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

HOST = "127.0.0.173"
BOOT = 90.0
RESTART = frozenset({("POST", "/restart")})


@pytest.fixture
def agent(pg_bindir: Path) -> Iterator[AgentCluster]:
    root = Path(tempfile.mkdtemp(prefix="hamgr-it-apifuzz-", dir="/tmp"))
    os.chmod(root, 0o755)
    c = AgentCluster(root, [HOST], scope="apifuzz")
    try:
        c.start_all()
        c.wait_primary(BOOT)
        yield c
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


def test_schemathesis_finds_no_500_and_no_unexplained_4xx(agent: AgentCluster) -> None:
    url = agent.members["m1"].api
    runs, failures = fuzz_api(url, API_AUTH, max_examples=25, skip=RESTART)
    more, failed = fuzz_api(url, None, max_examples=25, only=RESTART)
    runs.update(more)
    failures += failed
    more, failed = fuzz_api(url, API_AUTH, max_examples=3, only=RESTART)
    runs.update({f"{k} authenticated": v for k, v in more.items()})
    failures += failed
    print(f"\nschemathesis requests: {sum(runs.values())} over {len(runs)} operation/modes")
    for name, n in sorted(runs.items()):
        print(f"  {name}: {n}")
    assert not failures, "\n".join(failures)
    assert agent.http("m1", "/liveness")[0] == 200  # and the agent still serves
