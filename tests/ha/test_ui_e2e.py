"""The status page (GET /ui) of a real 3-agent cluster with real PostgreSQL, in a real headless
browser (Debian's chromium): it shows the three members with their roles and the store's
Raft leader; after ``hactl switchover`` it shows, without a reload, the new primary, the new
timeline in the history and the switchover in its event strip. On the same cluster: every
hamgr_* metric the Grafana dashboard (deploy/grafana/hamgr.json) queries is served by the
agents' GET /metrics.

With IT_UI_SCREENSHOT=PATH the page after the switchover is also saved there (that is how
docs/ui.png is made); a screenshot is taken in every run, into the cluster's directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import hactl, store_leader
from tests.ha.test_cluster import BOOT, boot, fresh_cluster
from tests.test_grafana import load, queried_metrics
from tests.tools.browser import Page, chromium_binary, running_browser
from tests.tools.poll import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        chromium_binary() is None,
        reason="chromium is not installed (deploy/dev.sh setup installs it: apt-get install "
        "chromium)",
    ),
]

ROLES = """Object.fromEntries([...document.querySelectorAll('#members tbody tr')].map(tr =>
    [tr.dataset.member, tr.querySelector('[data-field=role]').textContent]))"""
EVENTS = """[...document.querySelectorAll('#events li')].map(li =>
    [li.dataset.kind, li.lastChild.textContent])"""
HISTORY = """[...document.querySelectorAll('#history tbody tr')].map(tr =>
    [tr.querySelector('[data-field=new_leader]').textContent,
     tr.querySelector('[data-field=reason]').textContent])"""
STORE = """[...document.querySelectorAll('#store tbody tr')].map(tr =>
    [tr.querySelector('[data-field=name]').textContent,
     tr.querySelector('[data-field=suffrage]').textContent])"""


def text_of(element_id: str) -> str:
    return f"document.getElementById('{element_id}').textContent"


@pytest.fixture(scope="module")
def booted(
    pg_bindir: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[AgentCluster, str, list[str]]]:
    """One booted cluster for this module: (cluster, primary, replicas)."""
    with fresh_cluster(request) as c:
        primary, replicas = boot(c)
        yield c, primary, replicas


def served_metrics(c: AgentCluster) -> set[str]:
    """The sample names the agents' GET /metrics serve now, all agents together."""
    names: set[str] = set()
    for m in c.members.values():
        with urllib.request.urlopen(m.api + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        names |= {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    return names


def test_the_dashboard_queries_only_metrics_the_agents_serve(
    booted: tuple[AgentCluster, str, list[str]],
) -> None:
    c, _, _ = booted
    wanted = queried_metrics(load())
    # Lags and the fence margin appear once the agents have seen positions and a keepalive.
    missing: set[str] = set()

    def all_served() -> bool:
        missing.clear()
        missing.update(wanted - served_metrics(c))
        return not missing

    try:
        wait_for(all_served, 30, "every metric the dashboard queries served")
    except AssertionError:
        raise AssertionError(
            f"no agent serves {sorted(missing)} (the dashboard queries them)"
        ) from None


async def _shows_raft_leader(c: AgentCluster, page: Page, via: str, timeout: float) -> str:
    """The Raft leader the page shows, once it agrees with `hamgr store-ctl status`."""
    deadline = time.monotonic() + timeout
    seen: tuple[object, object] = (None, None)
    while time.monotonic() < deadline:
        shown = await page.evaluate(text_of("raft-leader"))
        actual = await asyncio.to_thread(store_leader, c, via)
        if shown == actual and actual in c.members:
            return actual
        seen = (shown, actual)
        await asyncio.sleep(0.3)
    raise AssertionError(f"page and store-ctl never agreed on the Raft leader: {seen}")


async def test_the_page_shows_the_cluster_and_a_switchover(
    booted: tuple[AgentCluster, str, list[str]],
) -> None:
    c, primary, replicas = booted
    candidate = replicas[0]
    async with running_browser(c.root) as page:
        await page.navigate(c.members[primary].api + "/ui")
        want = {primary: "leader", **{r: "replica" for r in replicas}}
        await page.wait(
            f"JSON.stringify({ROLES}) === {_js(want)}", BOOT, f"the roles {want} on the page"
        )
        assert await page.evaluate(text_of("leader")) == primary
        leader = await _shows_raft_leader(c, page, primary, 30)
        assert leader in c.members
        assert sorted(await page.evaluate(STORE)) == [[n, "voter"] for n in sorted(c.members)]
        timeline = int(await page.evaluate(text_of("timeline")))

        await page.evaluate("window.__notReloaded = true")
        done = await asyncio.to_thread(
            hactl, c, primary, "switchover", "--candidate", candidate, "--force"
        )
        assert done.returncode == 0, done.stdout + done.stderr

        after = {candidate: "leader", **{n: "replica" for n in c.members if n != candidate}}
        await page.wait(
            f"JSON.stringify({ROLES}) === {_js(after)}", 60, f"the roles {after} on the page"
        )
        assert await page.evaluate(text_of("leader")) == candidate
        events = await page.wait(
            f"{EVENTS}.some(([kind, text]) => kind === 'switchover' && "
            f"text.includes('{candidate} promoted')) && {EVENTS}",
            15,
            "the switchover in the event strip",
        )
        history = await page.wait(f"{HISTORY}.length && {HISTORY}", 15, "the timeline history")
        assert history[0][0] == candidate
        why = f"switchover from {primary} to {candidate}, requested by the operator"
        assert history[0][1] == why
        assert int(await page.evaluate(text_of("timeline"))) == timeline + 1
        took = f"{candidate} took the leader key"
        assert any(kind == "leader" and text.startswith(took) for kind, text in events), events
        assert await page.evaluate("window.__notReloaded") is True

        shot = c.root / "ui.png"
        assert await page.screenshot(shot) > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        wanted = os.environ.get("IT_UI_SCREENSHOT")
        if wanted:
            Path(wanted).write_bytes(shot.read_bytes())


def _js(value: dict[str, str]) -> str:
    """A JavaScript string literal of `value` as JSON with sorted keys, as JSON.stringify of
    the page's object (its rows are sorted by member name) writes it."""
    return json.dumps(json.dumps(dict(sorted(value.items())), separators=(",", ":")))
