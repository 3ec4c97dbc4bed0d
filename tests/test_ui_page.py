"""The status page in a real headless browser (Debian's chromium), against the REST API served
from a plain AgentView (tests/apifake.py): what it shows, that data never becomes markup, that
it refreshes by itself, and that it says so when the store does not answer. The same page on a
real cluster, during a switchover: tests/ha/test_ui_e2e.py."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from hamgr.agent.api import build_app
from hamgr.agent.events import EventLog
from hamgr.agent.storeview import etcd_json, store_json
from hamgr.dcs import SwitchoverRequest
from tests.apifake import FakeAgent, FakeStore, cluster3, status
from tests.tools.browser import Page, chromium_binary, running_browser

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        chromium_binary() is None,
        reason="chromium is not installed (deploy/dev.sh setup installs it: apt-get install "
        "chromium)",
    ),
]

URLS = {n: f"http://127.0.0.1:{p}" for n, p in (("a", 8008), ("b", 8009), ("c", 8010))}
EVIL = '<img src=x onerror="window.__pwned=1">'
STATUS = {
    "id": 2,
    "state": "running",
    "term": 4,
    "leader": 3,
    "role": "follower",
    "commit": 120,
    "applied": 120,
    "voters": [1, 2, 3],
    "learners": [],
    "peers_connected": [1, 3],
}


@dataclasses.dataclass
class Site:
    url: str
    store: FakeStore
    events: EventLog
    page: Page


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    view = cluster3(URLS)
    a = msgspec.structs.replace(view.members[0], reason=f"I am the leader {EVIL}")
    store = FakeStore(dataclasses.replace(view, members=(a, *view.members[1:])))
    agent = FakeAgent("b", store, status(store.view.members[1]))
    events = EventLog("b")
    names = {1: "a", 2: "b", 3: "c"}
    app = build_app(agent, None, events=events, store_status=lambda: store_json(STATUS, names, {}))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        async with running_browser(tmp_path) as page:
            yield Site(f"http://{host}:{port}", store, events, page)
    finally:
        await runner.cleanup()


ROWS = """[...document.querySelectorAll('#members tbody tr')].map(tr => [
    tr.dataset.member, tr.querySelector('[data-field=role]').textContent,
    tr.querySelector('[data-field=reason]').textContent])"""


async def test_the_page_shows_the_cluster_as_text(site: Site) -> None:
    page = site.page
    site.events.add("leader", "a", f"a took the leader key {EVIL}")
    await page.navigate(site.url + "/ui")
    await page.wait(f"{ROWS}.length === 3", 20, "three member rows")
    assert await page.evaluate(ROWS) == [
        ["a", "leader", f"I am the leader {EVIL}"],
        ["b", "replica", "following a"],
        ["c", "replica", "\N{EN DASH}"],
    ]
    assert await page.evaluate("document.getElementById('raft-leader').textContent") == "c"
    assert await page.evaluate("document.getElementById('leader').textContent") == "a"
    events = "[...document.querySelectorAll('#events li')].map(li => li.textContent)"
    shown = await page.wait(f"{events}.length && {events}", 10, "the event strip")
    assert len(shown) == 1 and shown[0].endswith(f"leadera took the leader key {EVIL}")
    # What came from the API stayed text: no element was made of it, no handler ran.
    assert await page.evaluate("document.querySelectorAll('main img').length") == 0
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    store_rows = "[...document.querySelectorAll('#store tbody tr')].map(tr => tr.textContent)"
    assert len(await page.evaluate(store_rows)) == 3


async def test_the_page_refreshes_by_itself_and_tells_when_the_store_fails(site: Site) -> None:
    page = site.page
    await page.navigate(site.url + "/ui")
    await page.wait(f"{ROWS}.length === 3", 20, "three member rows")
    await page.evaluate("window.__loaded = true")
    # The fake store moves the leader key to b at once.
    site.store.store_request(SwitchoverRequest("switchover", "a", "b"))
    site.events.add("switchover", "b", "timeline 3: b promoted")
    await page.wait(
        "document.getElementById('leader').textContent === 'b'", 10, "the new leader shown"
    )
    kinds = "[...document.querySelectorAll('#events li')].map(li => li.dataset.kind)"
    await page.wait(f"{kinds}.includes('switchover')", 10, "the switchover event")
    site.store.broken = True
    said = "document.getElementById('status')"
    await page.wait(f"{said}.dataset.state === 'error'", 10, "the error shown")
    assert "coordination store" in await page.evaluate(f"{said}.textContent")
    assert await page.evaluate("window.__loaded") is True  # never reloaded


async def test_on_etcd_the_page_names_the_store(tmp_path: Path) -> None:
    store = FakeStore(cluster3(URLS))
    agent = FakeAgent("a", store, status(store.view.members[0]))
    app = build_app(agent, None, store_status=lambda: etcd_json(["127.0.0.84:2379"]))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        async with running_browser(tmp_path) as page:
            await page.navigate(f"http://{host}:{port}/ui")
            summary = "document.getElementById('store-summary').textContent"
            await page.wait(f"{summary} === 'etcd at 127.0.0.84:2379'", 20, "the etcd store")
            raft_leader = "document.getElementById('raft-leader').textContent"
            assert await page.evaluate(raft_leader) == "etcd"
            # Without an event ring (404) the rest of the page still shows, and says what failed.
            await page.wait(f"{ROWS}.length === 3", 10, "three member rows")
            said = await page.evaluate("document.getElementById('status').textContent")
            assert "events are not kept on this agent" in said
    finally:
        await runner.cleanup()
