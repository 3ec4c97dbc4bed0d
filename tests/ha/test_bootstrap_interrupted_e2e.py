"""A member killed in the middle of bootstrapping the cluster rejoins it later (real agents).

m1 wins the bootstrap race (m3 is tagged nofailover, m2 not started yet) and is killed, agent
and PostgreSQL, as by a host crash, while its post_bootstrap script runs. m2 then finds the
claim without a leader, drops it after ttl and bootstraps the cluster itself. Started again,
m1 finds the marker of its unfinished bootstrap: it abandons what that bootstrap made (a data
directory of another system than the cluster's, which it would otherwise refuse to join with
for good), clones from m2 and streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ha.agentcluster import AgentCluster, cluster_of_test
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HOSTS = ["127.0.14.1", "127.0.14.2", "127.0.14.3"]
POST = """#!/bin/sh
# post_bootstrap of the test: m1's hangs until the test releases it (at most 120 s), the
# others' succeed at once. A killed agent leaves it running: the test releases it at the end.
touch "{rec}/post-$1"
i=0
while [ "$1" = m1 ] && [ ! -e "{rec}/release" ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done
exit 0
"""


def _configure(c: AgentCluster) -> Path:
    rec = c.root / "rec"
    rec.mkdir()
    rec.chmod(0o777)  # the script runs as the postgres user
    script = c.root / "post.sh"
    script.write_text(POST.format(rec=rec))
    script.chmod(0o755)
    for name, m in c.members.items():
        config: dict[str, Any] = yaml.safe_load(m.config.read_text())
        config["bootstrap"]["post_bootstrap"] = f"{script} {name}"
        if name == "m3":
            config.setdefault("tags", {})["nofailover"] = True
        m.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return rec


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "bootkill", HOSTS, scope="bootkill") as c:
        yield c


def test_a_member_killed_while_bootstrapping_abandons_it_and_rejoins(
    cluster: AgentCluster,
) -> None:
    c = cluster
    rec = _configure(c)
    try:
        c.start("m1")
        c.start("m3")
        wait_for(lambda: (rec / "post-m1").exists(), 90, "m1 bootstrapping (post_bootstrap)")
        c.kill9_agent("m1")
        c.kill9_postgres("m1")
        c.start("m2")  # with m3, a store majority again
        assert c.wait_primary(90) == "m2"
        c.start("m1")
        c.wait_streaming(["m1", "m3"], 90, upstream="m2")
    finally:
        (rec / "release").touch()
    log = c.members["m1"].log.read_text(errors="replace")
    assert "abandoning what an unfinished bootstrap left" in log, log[-3000:]
    assert "refusing to join" not in log, log[-3000:]
    assert not (c.root / "m1-data.run" / "bootstrap-unfinished").exists()
