"""The status page, ``GET /ui`` on every agent: one read-only page of plain HTML, CSS and
JavaScript shipped in this package and served as they are (no build step, nothing loaded
from anywhere but the agent itself).

The page (``index.html``, ``app.js``, ``app.css``) reads the agent's JSON paths every second
(``/cluster``, ``/store``, ``/history``, ``/events``, ``/patroni``) with GET only and writes
what it shows as text nodes, never as markup. The answers carry a Content-Security-Policy that
allows scripts, styles and requests to this agent only, and no inline script at all.

Imports nothing from the rest of hamgr: ``hamgr.agent.api`` registers the routes with
:func:`add_ui_routes`.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
"""The page's files and their content types; nothing else under /ui is served."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def asset(name: str) -> bytes:
    """The bytes of one of the page's files (KeyError for a name not in :data:`ASSETS`)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__package__).joinpath(name).read_bytes()


def _answer(name: str) -> web.Response:
    return web.Response(body=asset(name), headers={**HEADERS, "Content-Type": ASSETS[name]})


async def _page(request: web.Request) -> web.Response:
    return _answer("index.html")


async def _slash(request: web.Request) -> web.Response:
    # The page names its files and the JSON paths relative to /ui (works behind a prefix).
    raise web.HTTPFound("../ui")


async def _file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS or name == "index.html":
        raise web.HTTPNotFound()
    return _answer(name)


def add_ui_routes(app: web.Application) -> None:
    """``GET /ui`` (the page), ``/ui/`` (redirected to it) and ``/ui/<file>`` (its files)."""
    app.router.add_get("/ui", _page)
    app.router.add_get("/ui/", _slash)
    app.router.add_get("/ui/{name}", _file)
