"""A real headless browser for tests: Debian's Chromium, driven over the DevTools protocol.

:func:`chromium_binary` finds it (``deploy/dev.sh setup`` installs it); :func:`running_browser`
starts it on a profile directory of its own with ``--remote-debugging-port=0`` (the port it
picked is read from the profile's ``DevToolsActivePort``, so nothing collides with the fixed
addresses the cluster tests use), attaches to its page over a websocket (aiohttp) and stops it
by PID (its process group) afterwards, whatever happened. Only what the tests need: navigate,
evaluate a JavaScript expression, wait until one is true, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str | None:
    """Debian's chromium (``apt-get install chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(Exception):
    """The browser did not start, did not answer, or a page script failed."""


class Page:
    """The browser's one page, over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, timeout: float) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.timeout = timeout

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer within {self.timeout:g} s")
            msg = await self._ws.receive(timeout=left)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"{method}: the DevTools connection ended ({msg.type!r})")
            data = json.loads(msg.data)
            if data.get("id") != msg_id:
                continue
            if "error" in data:
                raise BrowserError(f"{method}: {data['error']}")
            result: dict[str, Any] = data.get("result", {})
            return result

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            said = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:80]!r} failed in the page: {said}")
        return result.get("result", {}).get("value")

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` and wait until the document has loaded."""
        answer = await self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"cannot load {url}: {answer['errorText']}")
        await self.wait('document.readyState === "complete"', timeout, f"{url} loaded")

    async def wait(self, expression: str, timeout: float, what: str, interval: float = 0.2) -> Any:
        """The first truthy value of ``expression`` within ``timeout`` seconds; AssertionError
        naming ``what`` and the last value seen otherwise."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = await self.evaluate(expression)
            if last:
                return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s (last seen: {last!r})")
            await asyncio.sleep(interval)

    async def screenshot(self, path: Path, width: int = 1280) -> int:
        """A PNG of the whole page (as tall as its content) written to ``path``; its size."""
        metrics = await self.send("Page.getLayoutMetrics")
        height = int(metrics.get("cssContentSize", {}).get("height", 900))
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=max(300, min(height, 4000)),
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.send("Page.captureScreenshot", format="png")
        data = base64.b64decode(shot["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return len(data)


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BrowserError(f"chromium exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(active.read_text().splitlines()[0])
        time.sleep(0.1)
    raise BrowserError(f"chromium wrote no {active} within {timeout:g} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the browser's process group (it was started in a session of its own), then
    SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # renderers left behind by the main process


@contextlib.asynccontextmanager
async def running_browser(
    root: Path, *, width: int = 1280, height: int = 900, timeout: float = 30.0
) -> AsyncIterator[Page]:
    """A headless Chromium with its profile and log under ``root``; its page, at about:blank."""
    binary = chromium_binary()
    if binary is None:
        raise BrowserError("chromium is not installed (deploy/dev.sh setup installs it)")
    profile = root / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    log = root / "chromium.log"
    argv = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*argv, "about:blank"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        port = await asyncio.to_thread(_devtools_port, profile, proc, log, timeout)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/json/list") as resp:
                targets = await resp.json()
            pages = [t for t in targets if t.get("type") == "page"]
            if not pages:
                raise BrowserError(f"chromium shows no page target: {targets!r}")
            url = pages[0]["webSocketDebuggerUrl"]
            async with session.ws_connect(url, max_msg_size=64 << 20) as ws:
                yield Page(ws, timeout)
    finally:
        await asyncio.to_thread(_stop, proc)
