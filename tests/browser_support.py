"""Helpers for the Chromium tests: launch the browser, drive the demo page, run
in-process servers in a thread (so a sync Playwright test can read their state).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sanic import Request as SanicRequest
from sanic import Sanic
from sanic.response import HTTPResponse, html
from sanic.response import json as json_response

from ._support import Served, run_demo, serve
from .conftest import skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, Response, WebSocket

__all__ = [
    "API_KEY",
    "ARTIFACTS",
    "CHROMIUM",
    "DemoPage",
    "ServerThread",
    "chromium",
    "client_test_app",
    "demo_process",
]

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots go here (gitignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
API_KEY = "browser-test-key"
TOKEN_PATH = "/authenticate/token"
CLIENT_MODULE = Path(__file__).resolve().parent.parent / "sanic_wsauth" / "static" / "wsauth.js"


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Launch Debian's Chromium headless (skip locally, fail in CI when missing)."""
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Playwright for Python is missing (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def demo_process(log_dir: Path, env: dict[str, str], *, port: int | None = None) -> Iterator[int]:
    """``run_demo`` with its output in ``log_dir``, quoted when it fails to start."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"demo-{len(list(log_dir.glob('demo-*.log')))}.log"
    try:
        manager = run_demo(env=env, port=port, log_path=str(log_path))
        _, bound = manager.__enter__()
    except RuntimeError as exc:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{exc}; demo output:\n{tail}") from None
    try:
        yield bound
    finally:
        manager.__exit__(None, None, None)


@dataclass
class DemoPage:
    """The demo page in a fresh browser context, with its traffic recorded."""

    page: Page
    base: str
    token_requests: list[Request] = field(default_factory=list)
    token_failures: list[Request] = field(default_factory=list)
    token_responses: list[Response] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)
    frames_sent: list[str | bytes] = field(default_factory=list)
    frames_received: list[str | bytes] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Browser, base: str, path: str = "/") -> DemoPage:
        page = browser.new_context().new_page()
        demo = cls(page, base)
        page.on("request", demo._on_request)
        page.on("requestfailed", demo._on_request_failed)
        page.on("response", demo._on_response)
        page.on("websocket", demo._on_websocket)
        page.goto(base + path)
        return demo

    def close(self) -> None:
        self.page.context.close()

    # -- recording -----------------------------------------------------------

    @staticmethod
    def _is_token(url: str) -> bool:
        return urlsplit(url).path == TOKEN_PATH

    def _on_request(self, request: Request) -> None:
        if self._is_token(request.url) and request.method == "POST":
            self.token_requests.append(request)

    def _on_request_failed(self, request: Request) -> None:
        if self._is_token(request.url):
            self.token_failures.append(request)

    def _on_response(self, response: Response) -> None:
        if self._is_token(response.url):
            self.token_responses.append(response)

    def _on_websocket(self, ws: WebSocket) -> None:
        self.sockets.append(ws)
        # Playwright tags handlers with an attribute: plain functions only.
        ws.on("framesent", lambda payload: self.frames_sent.append(payload))
        ws.on("framereceived", lambda payload: self.frames_received.append(payload))

    def tokens(self) -> list[str]:
        """Every ticket the ticket endpoint handed to the page, in order."""
        out = []
        for response in self.token_responses:
            if response.status == 200:
                token = response.json()["token"]
                assert isinstance(token, str)
                out.append(token)
        return out

    def socket_tokens(self) -> list[str | None]:
        """The ``token`` query parameter of every socket the page opened."""
        out: list[str | None] = []
        for ws in self.sockets:
            values = parse_qs(urlsplit(ws.url).query).get("token")
            out.append(values[0] if values else None)
        return out

    # -- driving the page ----------------------------------------------------

    def connect(
        self, api_key: str = API_KEY, *, transport: str = "query", offer: bool = False
    ) -> None:
        page = self.page
        page.fill("#api-key", api_key)
        page.select_option("#transport", transport)
        if offer:
            page.check("#offer-protocol")
        page.click("#connect")

    def expect_state(self, state: str, timeout: float = 15) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator("#state")).to_have_text(state, timeout=timeout * 1000)

    def echo(self, text: str, timeout: float = 15) -> None:
        """Send ``text`` and wait for the demo's echo ``demo: <text>``."""
        from playwright.sync_api import expect

        self.page.fill("#message", text)
        self.page.click("#send")
        reply = self.page.locator("#log li.in", has_text=f"demo: {text}")
        expect(reply).to_have_count(1, timeout=timeout * 1000)

    def log(self) -> list[str]:
        return self.page.locator("#log li").all_text_contents()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def client_test_app(name: str) -> Sanic[Any, Any]:
    """A scripted stand-in server for the browser client alone (no tickets checked).

    - ``GET /``: an empty page; ``GET /static/wsauth.js``: the client module,
      read from disk on every request.
    - ``POST /authenticate/token``: ``{"token", "max_connection_age", "refresh"}``
      from the query: ``age`` (seconds, default 0), ``refresh=1``; ``status=N``
      answers ``{"error": "scripted"}`` with that status instead.
    - ``/ws`` (websocket): with ``close=<code>`` (and ``reason``, ``after``
      seconds) it closes with that code; otherwise it echoes, and answers a
      ``wsauth.refresh`` frame with ``{"type": "wsauth.refreshed", "expires_in":
      <age>}``, like a server with in-band refresh.
    """
    app: Sanic[Any, Any] = Sanic(name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    counter = iter(range(1, 1_000_000))

    @app.get("/")
    async def page(request: SanicRequest) -> HTTPResponse:
        return html("<!doctype html><title>wsauth client test</title><p>client test</p>")

    @app.get("/static/wsauth.js")
    async def module(request: SanicRequest) -> HTTPResponse:
        return HTTPResponse(
            CLIENT_MODULE.read_bytes(),
            content_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    @app.post(TOKEN_PATH)
    async def token(request: SanicRequest) -> HTTPResponse:
        status = int(request.args.get("status", "200"))
        if status != 200:
            return json_response({"error": "scripted"}, status=status)
        return json_response(
            {
                "token": f"scripted-{next(counter)}",
                "expires_in": 30,
                "max_connection_age": float(request.args.get("age", "0")),
                "refresh": request.args.get("refresh") == "1",
            },
            headers={"Cache-Control": "no-store"},
        )

    @app.websocket("/ws")  # type: ignore[untyped-decorator]  # Sanic is untyped here
    async def socket(request: SanicRequest, ws: Any) -> None:
        if "close" in request.args:
            await asyncio.sleep(float(request.args.get("after", "0")))
            await ws.close(int(request.args.get("close", "1000")), request.args.get("reason", ""))
            return
        async for message in ws:
            try:
                frame = json.loads(message)
            except ValueError:
                frame = None
            if isinstance(frame, dict) and frame.get("type") == "wsauth.refresh":
                age = float(request.args.get("age", "0"))
                await ws.send(json.dumps({"type": "wsauth.refreshed", "expires_in": age}))
            else:
                await ws.send(f"echo: {message}")

    return app


class ServerThread:
    """Serve a Sanic app in a background thread with its own event loop.

    The sync Playwright API must not run inside a running event loop, so the
    browser tests are plain functions and in-process servers live here; the
    test reads the app's state (``app.ctx.wsauth.counters``) directly.
    """

    def __init__(self, app: Sanic[Any, Any]) -> None:
        self.app = app
        self.served: Served | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sanic-test-server", daemon=True)

    @property
    def http(self) -> str:
        assert self.served is not None
        return self.served.http

    @property
    def ws(self) -> str:
        assert self.served is not None
        return self.served.ws

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self.app) as served:
            self.served = served
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise TimeoutError("the server thread did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise TimeoutError("the server thread did not stop")
        if self._error is not None:
            raise self._error
