"""The status page's HTTP side, without a browser: ``GET /ui`` and its files (headers, nothing
else served), ``GET /events`` and ``GET /store`` (hamgr/agent/storeview.py), and the page's files
checked for what would make it unsafe (markup from data, unsafe methods, inline script,
anything loaded from elsewhere). tests/test_ui_page.py and tests/ha/test_ui_e2e.py load it in
a real browser."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import hamgr.agent.ui
from hamgr.agent.api import build_app
from hamgr.agent.events import EventLog
from hamgr.agent.storeview import etcd_json, names_by_store_id, store_json
from hamgr.agent.ui import ASSETS, CSP, asset
from tests.apifake import FakeAgent, FakeStore, cluster3, status

URLS = {n: f"http://127.0.0.1:{p}" for n, p in (("a", 8008), ("b", 8009), ("c", 8010))}
STATUS = {
    "id": 2,
    "state": "running",
    "term": 4,
    "leader": 3,
    "role": "follower",
    "commit": 120,
    "applied": 118,
    "voters": [1, 2, 3],
    "learners": [4],
    "peers_connected": [3, 4],
}


class Served:
    def __init__(self, url: str, session: aiohttp.ClientSession, events: EventLog) -> None:
        self.url, self.session, self.events = url, session, events

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        async with self.session.get(self.url + path, allow_redirects=False) as resp:
            return resp.status, dict(resp.headers), await resp.read()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    store = FakeStore(cluster3(URLS))
    agent = FakeAgent("b", store, status(store.view.members[1]))
    events = EventLog("b")
    names = {1: "a", 2: "b", 3: "c"}
    app = build_app(
        agent,
        None,
        events=events,
        store_status=lambda: store_json(STATUS, names, {2: ("127.0.0.2", 7000)}),
    )
    runner, url = await _serve(app)
    async with aiohttp.ClientSession() as session:
        yield Served(url, session, events)
    await runner.cleanup()


async def test_the_page_and_its_files_are_served_with_a_strict_policy(served: Served) -> None:
    code, headers, body = await served.get("/ui")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="ui/app.js"' in body and body == asset("index.html")
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    for name in ("app.js", "app.css"):
        code, headers, body = await served.get(f"/ui/{name}")
        assert code == 200 and body == asset(name)
        assert headers["Content-Type"] == ASSETS[name]
    code, headers, _ = await served.get("/ui/")
    assert code == 302 and headers["Location"] == "../ui"
    for path in ("/ui/index.html", "/ui/secret.txt", "/ui/..%2f__init__.py"):
        code, _, body = await served.get(path)
        assert code == 404, path
        assert b"no such path" in body


async def test_the_page_is_read_only(served: Served) -> None:
    async with served.session.post(served.url + "/ui") as resp:
        assert resp.status == 403  # unsafe methods are refused on this agent (no auth set)


async def test_events_since_a_number(served: Served) -> None:
    served.events.add("leader", "a", "a took the leader key (fencing token 7)")
    served.events.add("switchover", "b", "timeline 3: b promoted")
    code, _, raw = await served.get("/events")
    body: dict[str, Any] = json.loads(raw)
    assert code == 200 and body["last"] == 2 and body["capacity"] == 200
    assert [e["kind"] for e in body["events"]] == ["leader", "switchover"]
    assert body["events"][1]["source"] == "b" and body["events"][1]["member"] == "b"
    code, _, raw = await served.get("/events?since=1")
    assert [e["seq"] for e in json.loads(raw)["events"]] == [2]
    for bad in ("-1", "x", "1.5", "%C2%B2"):  # the last: a superscript two
        code, _, raw = await served.get(f"/events?since={bad}")
        assert code == 400
        assert json.loads(raw)["error"].startswith("since: expected an event number >= 0")


async def test_store_answers_from_its_hook(served: Served) -> None:
    code, _, raw = await served.get("/store")
    assert code == 200 and json.loads(raw) == store_json(
        STATUS, {1: "a", 2: "b", 3: "c"}, {2: ("127.0.0.2", 7000)}
    )


async def test_without_hooks_events_and_store_are_404() -> None:
    store = FakeStore(cluster3(URLS))
    agent = FakeAgent("a", store, status(store.view.members[0]))
    runner, url = await _serve(build_app(agent, None))
    try:
        async with aiohttp.ClientSession() as session:
            for path, said in (("/events", "events are not kept"), ("/store", "no store status")):
                async with session.get(url + path) as resp:
                    assert resp.status == 404
                    assert said in (await resp.json())["error"]
    finally:
        await runner.cleanup()


def test_store_json() -> None:
    out = store_json(STATUS, {1: "a", 2: "b", 3: "c"}, {2: ("127.0.0.2", 7000), 3: ("::1", 7)})
    assert {k: out[k] for k in ("backend", "id", "name", "role", "term", "leader")} == {
        "backend": "raft",
        "id": 2,
        "name": "b",
        "role": "follower",
        "term": 4,
        "leader": 3,
    }
    assert out["leader_name"] == "c" and (out["commit"], out["applied"]) == (120, 118)
    assert out["members"] == [
        {"id": 1, "name": "a", "suffrage": "voter", "address": None, "leader": False,
         "connected": False},
        {"id": 2, "name": "b", "suffrage": "voter", "address": "127.0.0.2:7000",
         "leader": False, "connected": None},
        {"id": 3, "name": "c", "suffrage": "voter", "address": "[::1]:7", "leader": True,
         "connected": True},
        {"id": 4, "name": None, "suffrage": "learner", "address": None, "leader": False,
         "connected": True},
    ]  # fmt: skip
    leaderless = store_json({**STATUS, "leader": 0}, {}, {})
    assert leaderless["leader"] is None and leaderless["leader_name"] is None
    assert etcd_json(["127.0.0.84:2379"]) == {
        "backend": "etcd",
        "endpoints": ["127.0.0.84:2379"],
        "leader": None,
        "members": [],
    }
    view = cluster3(URLS)
    assert names_by_store_id(view) == {} and names_by_store_id(None) == {}


# -- the page's files, read as text -------------------------------------------------------------

UNSAFE_JS = (
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    'setTimeout("',
    "javascript:",
)


def test_the_script_writes_text_only_and_reads_only() -> None:
    js = asset("app.js").decode()
    for word in UNSAFE_JS:
        assert word not in js, f"app.js uses {word}"
    methods = set(re.findall(r"method:\s*\"([A-Z]+)\"", js))
    assert methods == {"GET"}
    assert js.count("fetch(") == 1  # every request goes through get()


def test_nothing_is_inline_or_loaded_from_elsewhere() -> None:
    html = asset("index.html").decode()
    assert re.findall(r"<script[^>]*>", html) == ['<script src="ui/app.js" defer>']
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "style=" not in html
    for name in ASSETS:
        text = asset(name).decode()
        assert "http://" not in text and "https://" not in text, name
        assert not re.search(r"(src|href)=\"(//|[a-z]+:)", text), name
        assert "@import" not in text and "url(" not in text, name


def test_the_ui_package_imports_nothing_from_hamgr() -> None:
    source = Path(hamgr.agent.ui.__file__).read_text()
    imported = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    ]
    assert not [m for m in imported if m and m.startswith("hamgr")]
