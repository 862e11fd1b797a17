"""End to end in Debian's Chromium: the demo page, the browser client, the server.

Plain ``def`` tests: Playwright's sync API must not run inside a running event
loop (asyncio_mode=auto). Servers are the demo in a subprocess
(``browser_support.demo_process``) or, where the test reads the server's counters, an in-process
app in a thread (``ServerThread``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sanic import Sanic
from sanic.response import html

from ._support import free_port, new_secret, post_token
from .browser_support import (
    API_KEY,
    DemoPage,
    ServerThread,
    chromium,
    client_test_app,
    demo_process,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

#: Long enough for several retries of a storm (the first retry ceilings are
#: 0.5 s, 1 s, 2 s): a window in which a retrying client would show up.
QUIET_WINDOW = 2.5


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


@pytest.fixture
def demo_env() -> dict[str, str]:
    return {"WSAUTH_DEMO_API_KEY": API_KEY, "WSAUTH_SECRET": new_secret()}


@pytest.fixture
def demo_server(demo_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with demo_process(tmp_path, demo_env) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def demo(browser: Browser, demo_server: str) -> Iterator[DemoPage]:
    page = DemoPage.open(browser, demo_server)
    yield page
    page.close()


def wait_until(page: Page, condition: Any, timeout: float = 30, what: str = "condition") -> None:
    """Poll ``condition`` (a liveness bound against a hang, not a speed check).

    Waits with ``page.wait_for_timeout``, not ``time.sleep``: the sync API
    dispatches the page's events (requests, sockets, frames) only while a
    Playwright call runs.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(50)


def quiet_window(page: Page) -> None:
    """Let the page run for QUIET_WINDOW seconds, recording its traffic."""
    page.wait_for_timeout(QUIET_WINDOW * 1000)


@pytest.mark.parametrize(
    ("transport", "offer", "path", "protocol"),
    [
        ("query", False, "/ws", "none"),
        ("query", True, "/ws/sub", "wsauth.demo"),
        ("subprotocol", True, "/ws/sub", "wsauth.demo"),
    ],
    ids=["query", "query+subprotocol", "subprotocol"],
)
def test_page_connects_and_echoes(
    demo: DemoPage, transport: str, offer: bool, path: str, protocol: str
) -> None:
    demo.connect(transport=transport, offer=offer)
    demo.expect_state("open")
    demo.echo(f"hello over {transport}")
    assert demo.page.locator("#protocol").text_content() == protocol

    # One ticket request, carrying the key from the headers callback.
    assert len(demo.token_requests) == 1
    assert demo.token_requests[0].all_headers()["authorization"] == f"Bearer {API_KEY}"
    [token] = demo.tokens()
    [ws] = demo.sockets
    assert ws.url.split("?")[0].endswith(path)
    if transport == "query":
        assert demo.socket_tokens() == [token]
    else:
        assert token not in ws.url and demo.socket_tokens() == [None]
    if transport == "query" and not offer:
        demo.screenshot("demo-page.png")

    # Closed for good: no new ticket, no new socket.
    demo.page.click("#disconnect")
    demo.expect_state("closed")
    assert demo.page.locator("#error").is_hidden()
    quiet_window(demo.page)
    assert len(demo.token_requests) == 1 and len(demo.sockets) == 1


def test_wrong_api_key_ends_in_error_state_without_retries(demo: DemoPage) -> None:
    demo.connect("not-the-key")
    demo.expect_state("closed")
    error = demo.page.locator("#error")
    assert error.get_attribute("data-kind") == "auth"
    assert "401" in (error.text_content() or "")
    demo.screenshot("demo-page-auth-error.png")
    quiet_window(demo.page)
    assert len(demo.token_requests) == 1
    assert [r.status for r in demo.token_responses] == [401]
    assert demo.sockets == []


@pytest.mark.slow
def test_reconnects_by_itself_after_a_server_restart(
    browser: Browser, demo_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    with demo_process(tmp_path, demo_env, port=port):
        demo = DemoPage.open(browser, f"http://127.0.0.1:{port}")
        demo.connect()
        demo.expect_state("open")
        demo.echo("before the restart")
    try:
        demo.expect_state("reconnecting")
        # The client retries while the server is down (its ticket requests
        # fail): wait for one such failure before the server comes back, or a
        # fast restart could beat the first retry.
        wait_until(demo.page, lambda: demo.token_failures, what="a failed ticket request")
        # Same port, same secret: a new process with an empty replay set.
        with demo_process(tmp_path, demo_env, port=port):
            demo.expect_state("open", timeout=60)
            demo.echo("after the restart")
        tokens = demo.tokens()
        socket_tokens = demo.socket_tokens()
        assert len(tokens) >= 2 and len(set(tokens)) == len(tokens), "a ticket was reused"
        assert len(socket_tokens) >= 2 and len(set(socket_tokens)) == len(socket_tokens)
        assert set(socket_tokens) <= set(tokens)
        assert socket_tokens[-1] == tokens[-1]
        # While the server was down, ticket requests failed and were retried.
        assert demo.token_failures
    finally:
        demo.close()


@pytest.mark.slow
def test_revoked_credentials_stop_reconnects(
    browser: Browser, demo_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    with demo_process(tmp_path, demo_env, port=port):
        demo = DemoPage.open(browser, f"http://127.0.0.1:{port}")
        demo.connect()
        demo.expect_state("open")
    try:
        # The server comes back with another API key: the handshake would fail
        # (1006) like a network error, but the ticket endpoint says 401.
        with demo_process(tmp_path, {**demo_env, "WSAUTH_DEMO_API_KEY": "rotated-key"}, port=port):
            demo.expect_state("closed", timeout=60)
            assert demo.page.locator("#error").get_attribute("data-kind") == "auth"
            requests = len(demo.token_requests)
            quiet_window(demo.page)
            assert len(demo.token_requests) == requests
        assert [r.status for r in demo.token_responses] == [200, 401]
        assert len(demo.sockets) == 1
    finally:
        demo.close()


CLIENT_RUN = """
async ([options]) => {
  const { connect } = await import("/static/wsauth.js");
  window.events = [];
  window.conn = connect({
    ...options,
    headers: () => ({ Authorization: "Bearer " + options.apiKey }),
    onStateChange: (state, info) =>
      window.events.push([state, info.error ? info.error.kind : null, info.attempt ?? null]),
  });
}
"""


def test_refused_handshakes_retry_with_fresh_tickets_then_give_up(demo: DemoPage) -> None:
    # The ticket endpoint is fine, the socket path is not (404 before the
    # upgrade): every retry fetches a new ticket, and the retries are capped.
    options = {
        "tokenUrl": "/authenticate/token",
        "url": "/no-such-socket",
        "apiKey": API_KEY,
        "reconnect": {"initialDelay": 50, "maxDelay": 200, "maxRetries": 3},
    }
    demo.page.evaluate(CLIENT_RUN, [options])
    demo.page.wait_for_function("() => window.conn.state === 'closed'", timeout=30_000)
    error = demo.page.evaluate("({kind: conn.error.kind, message: conn.error.message})")
    assert error["kind"] == "network" and "gave up after 4" in error["message"]
    events = demo.page.evaluate("window.events")
    assert [e[0] for e in events] == ["connecting", *["reconnecting"] * 3, "closed"]
    assert [e[2] for e in events[1:4]] == [1, 2, 3]
    tokens = demo.tokens()
    assert len(tokens) == 4 == len(set(tokens)) == len(demo.sockets)
    assert demo.socket_tokens() == tokens
    quiet_window(demo.page)
    assert len(demo.token_requests) == 4


def test_audience_is_requested_and_bound(demo: DemoPage) -> None:
    from sanic_wsauth.tokens import decode_unverified

    retries = {"initialDelay": 50, "maxDelay": 100, "maxRetries": 1}
    base = {"tokenUrl": "/authenticate/token", "url": "/ws", "apiKey": API_KEY}
    demo.page.evaluate(CLIENT_RUN, [{**base, "audience": "/ws", "reconnect": retries}])
    demo.page.wait_for_function("() => window.conn.state === 'open'", timeout=30_000)
    [request] = demo.token_requests
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.post_data or "") == {"audience": "/ws"}
    [token] = demo.socket_tokens()
    assert token is not None and decode_unverified(token)[0]["aud"] == "/ws"
    demo.page.evaluate("() => window.conn.close()")

    # A ticket for another audience is refused at the handshake (403 seen as
    # 1006): the client retries with fresh tickets, capped, then gives up.
    demo.page.evaluate(CLIENT_RUN, [{**base, "audience": "/elsewhere", "reconnect": retries}])
    demo.page.wait_for_function("() => window.conn.state === 'closed'", timeout=30_000)
    assert demo.page.evaluate("() => window.conn.error.kind") == "network"
    assert demo.page.evaluate("() => window.events.some((e) => e[0] === 'open')") is False
    assert len(demo.sockets) == 1 + 2
    assert len(set(demo.tokens())) == 3


def test_audience_param_matches_a_renamed_server_field(
    browser: Browser, tmp_path: Path, demo_env: dict[str, str]
) -> None:
    from sanic_wsauth.tokens import decode_unverified

    env = {**demo_env, "SANIC_WSAUTH_AUDIENCE_PARAM": "aud"}
    with demo_process(tmp_path, env) as port:
        demo = DemoPage.open(browser, f"http://127.0.0.1:{port}")
        try:
            options = {"tokenUrl": "/authenticate/token", "url": "/ws", "apiKey": API_KEY}
            run = {**options, "audience": "/ws", "audienceParam": "aud", "reconnect": False}
            demo.page.evaluate(CLIENT_RUN, [run])
            demo.page.wait_for_function("() => window.conn.state === 'open'", timeout=30_000)
            [request] = demo.token_requests
            assert json.loads(request.post_data or "") == {"aud": "/ws"}
            [token] = demo.socket_tokens()
            assert token is not None and decode_unverified(token)[0]["aud"] == "/ws"
            demo.page.evaluate("() => window.conn.close()")
        finally:
            demo.close()


FORM_POSTS = """
async ([apiKey]) => {
  const post = async (body) => {
    const response = await fetch("/authenticate/token", {
      method: "POST", headers: { Authorization: `Bearer ${apiKey}` }, body,
    });
    return [response.status, (await response.json()).token ?? null];
  };
  const form = new FormData();
  // A value and a file name that spell the audience's header are content.
  form.append("note", 'name="audience"\\r\\n\\r\\n/elsewhere');
  form.append("upload", new Blob(["\\u00ff"]), 'x"; name="audience".bin');
  form.append("audience", "/ws");
  const noAudience = new FormData();
  noAudience.append("note", 'name="audience"');
  const asFile = new FormData();
  asFile.append("audience", new Blob(["/ws"]), "a.txt");
  return {
    form: await post(form),
    noAudience: await post(noAudience),
    asFile: await post(asFile),
    urlencoded: await post(new URLSearchParams({ audience: "/ws/sub" })),
  };
}
"""


def test_form_bodies_from_the_browser_bind_their_audience(demo: DemoPage) -> None:
    # Chromium's own FormData and URLSearchParams encoders, read by the endpoint.
    from sanic_wsauth.tokens import decode_unverified

    results = demo.page.evaluate(FORM_POSTS, [API_KEY])
    audiences = {
        case: (status, token and decode_unverified(token)[0].get("aud"))
        for case, (status, token) in results.items()
    }
    assert audiences == {
        "form": (200, "/ws"),
        "noAudience": (200, None),
        "asFile": (400, None),
        "urlencoded": (200, "/ws/sub"),
    }
    assert [r.headers["content-type"].split(";")[0] for r in demo.token_requests] == [
        "multipart/form-data",
        "multipart/form-data",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ]


def test_close_in_on_state_change_open_skips_on_open(demo: DemoPage) -> None:
    log, state = demo.page.evaluate(
        """async (key) => {
          const { connect } = await import("/static/wsauth.js");
          const log = [];
          const conn = connect({
            tokenUrl: "/authenticate/token", url: "/ws", reconnect: false,
            headers: { Authorization: `Bearer ${key}` },
            onStateChange: (state) => { log.push(state); if (state === "open") conn.close(); },
            onOpen: () => log.push("onOpen"),
          });
          // Until closed (a liveness bound, not a speed check), then a moment
          // more for a late onOpen.
          for (let i = 0; i < 600 && !log.includes("closed"); i++) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          await new Promise((resolve) => setTimeout(resolve, 200));
          return [log, conn.state];
        }""",
        API_KEY,
    )
    assert (log, state) == (["connecting", "open", "closed"], "closed")


def test_connect_validates_its_options(demo: DemoPage) -> None:
    errors = demo.page.evaluate(
        """async () => {
          const { connect } = await import("/static/wsauth.js");
          const ok = { tokenUrl: "/authenticate/token", url: "/ws", reconnect: false };
          const attempt = (options) => {
            try { connect(options).close(); return null; }
            catch (error) { return `${error.name}: ${error.message}`; }
          };
          return {
            none: attempt(undefined),
            noTokenUrl: attempt({ ...ok, tokenUrl: "" }),
            noUrl: attempt({ ...ok, url: undefined }),
            badScheme: attempt({ ...ok, url: "ftp://127.0.0.1/ws" }),
            badTransport: attempt({ ...ok, transport: "header" }),
            subprotocolAlone: attempt({ ...ok, transport: "subprotocol" }),
            ticketAsProtocol: attempt({ ...ok, protocols: ["wsauth.ticket.x"] }),
            audienceParam: attempt({ ...ok, audienceParam: "" }),
            refreshAt: attempt({ ...ok, refreshAt: 1.5 }),
            ticketTimeoutNaN: attempt({ ...ok, ticketTimeout: NaN }),
            ticketTimeoutZero: attempt({ ...ok, ticketTimeout: 0 }),
            openTimeoutText: attempt({ ...ok, openTimeout: "5000" }),
            openTimeoutInfinite: attempt({ ...ok, openTimeout: Infinity }),
            valid: attempt(ok),
            sendBeforeOpen: (() => { const c = connect(ok); const sent = c.send("x");
                                     c.close(); return [sent, c.state]; })(),
          };
        }"""
    )
    for key in (
        "none",
        "noTokenUrl",
        "noUrl",
        "badScheme",
        "badTransport",
        "subprotocolAlone",
        "ticketAsProtocol",
        "audienceParam",
        "refreshAt",
        "ticketTimeoutNaN",
        "ticketTimeoutZero",
        "openTimeoutText",
        "openTimeoutInfinite",
    ):
        assert errors[key] is not None and errors[key].startswith("TypeError: wsauth:"), key
    assert "protocols" in errors["subprotocolAlone"]
    assert errors["valid"] is None
    assert errors["sendBeforeOpen"] == [False, "closed"]
    quiet_window(demo.page)
    assert demo.token_requests == []  # closed before the first attempt started


def test_backoff_delay_is_full_jitter_under_a_capped_exponential(demo: DemoPage) -> None:
    delays = demo.page.evaluate(
        """async () => {
          const { backoffDelay } = await import("/static/wsauth.js");
          const top = () => 0.999999, bottom = () => 0;
          const attempts = [1, 2, 3, 4, 5, 6, 7, 8, 20];
          return {
            top: attempts.map((n) => backoffDelay(n, {}, top)),
            bottom: attempts.map((n) => backoffDelay(n, {}, bottom)),
            custom: backoffDelay(3, { initialDelay: 100, factor: 3, maxDelay: 500 }, top),
            random: Array.from({ length: 200 }, () => backoffDelay(3)),
          };
        }"""
    )
    ceilings = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    assert delays["top"] == [c - 1 for c in ceilings]
    assert delays["bottom"] == [0] * len(ceilings)
    assert delays["custom"] == 499
    assert all(0 <= d < 2000 for d in delays["random"])
    assert len(set(delays["random"])) > 50  # jittered, not a fixed schedule


def test_gives_up_when_the_server_stays_down(
    browser: Browser, demo_env: dict[str, str], tmp_path: Path
) -> None:
    with demo_process(tmp_path, demo_env) as port:
        demo = DemoPage.open(browser, f"http://127.0.0.1:{port}")
        demo.page.evaluate("import('/static/wsauth.js')")
    try:
        options = {
            "tokenUrl": "/authenticate/token",
            "url": "/ws",
            "apiKey": API_KEY,
            "reconnect": {"initialDelay": 50, "maxDelay": 200, "maxRetries": 2},
        }
        demo.page.evaluate(CLIENT_RUN, [options])
        demo.page.wait_for_function("() => window.conn.state === 'closed'", timeout=30_000)
        assert demo.page.evaluate("conn.error.kind") == "network"
        assert len(demo.token_requests) == 3 == len(demo.token_failures)
        assert demo.sockets == []
    finally:
        demo.close()


ATTACKER_PAGE = "<!doctype html><title>another origin</title><p>evil.example</p>"

OPEN_SOCKET = """
async ([url]) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  let opened = false;
  ws.onopen = () => { opened = true; ws.close(); };
  ws.onclose = (event) => resolve({ opened, code: event.code });
})
"""


def test_page_on_another_origin_cannot_open_a_socket(
    browser: Browser, monkeypatch: pytest.MonkeyPatch, app_name: str
) -> None:
    from sanic_wsauth.demo import create_app

    monkeypatch.setenv("WSAUTH_DEMO_API_KEY", API_KEY)
    monkeypatch.setenv("WSAUTH_SECRET", new_secret())
    attacker: Sanic[Any, Any] = Sanic(app_name)

    @attacker.get("/")
    async def page(request: Any) -> Any:
        return html(ATTACKER_PAGE)

    with ServerThread(create_app()) as target, ServerThread(attacker) as other:
        counters = target.app.ctx.wsauth.counters
        context = browser.new_context()
        try:
            foreign = context.new_page()
            foreign.goto(other.http + "/")
            # Even holding a valid ticket, the foreign page gets no socket.
            status, body, _ = post_token(target.http, api_key=API_KEY)
            assert status == 200
            result = foreign.evaluate(OPEN_SOCKET, [f"{target.ws}/ws?token={body['token']}"])
            assert result == {"opened": False, "code": 1006}
            assert counters["origin_forbidden"] == 1 and counters["accepted"] == 0

            # The same ticket kind from the server's own origin opens.
            own = context.new_page()
            own.goto(target.http + "/")
            _, body, _ = post_token(target.http, api_key=API_KEY)
            result = own.evaluate(OPEN_SOCKET, [f"{target.ws}/ws?token={body['token']}"])
            assert result == {"opened": True, "code": 1005}
            assert counters["accepted"] == 1 and counters["origin_forbidden"] == 1
        finally:
            context.close()


def test_ticket_never_appears_in_page_url_history_or_storage(demo: DemoPage) -> None:
    page = demo.page
    url_before = page.url
    history_before = page.evaluate("history.length")
    demo.connect()  # the query transport: the ticket is in the socket's URL only
    demo.expect_state("open")
    demo.echo("where is my ticket")
    page.click("#disconnect")
    demo.expect_state("closed")
    demo.connect(transport="subprotocol")
    demo.expect_state("open")
    tokens = demo.tokens()
    assert len(tokens) == 2
    assert demo.socket_tokens()[0] == tokens[0]  # it did travel, in the socket URL

    seen = page.evaluate(
        """() => ({
          href: location.href,
          documentUrl: document.URL,
          history: history.length,
          historyState: JSON.stringify(history.state),
          referrer: document.referrer,
          html: document.documentElement.outerHTML,
          text: document.body.innerText,
          resources: performance.getEntries().map((entry) => entry.name),
          storage: JSON.stringify([{ ...localStorage }, { ...sessionStorage }]),
          cookie: document.cookie,
          title: document.title,
          name: window.name,
        })"""
    )
    assert seen["href"] == seen["documentUrl"] == page.url == url_before
    assert seen["history"] == history_before
    for token in tokens:
        for key, value in seen.items():
            assert token not in json.dumps(value), f"ticket found in {key}"
        assert token not in page.url


@pytest.mark.slow
def test_connection_age_close_reconnects_at_once_with_a_new_ticket(
    browser: Browser, tmp_path: Path, demo_env: dict[str, str]
) -> None:
    env = {**demo_env, "SANIC_WSAUTH_MAX_CONNECTION_AGE": "2"}
    with demo_process(tmp_path, env) as port:
        demo = DemoPage.open(browser, f"http://127.0.0.1:{port}")
        try:
            demo.connect()
            demo.expect_state("open")
            assert demo.token_responses[0].json()["max_connection_age"] == 2
            wait_until(demo.page, lambda: len(demo.sockets) >= 2, what="a second socket")
            demo.expect_state("open")
            demo.echo("after the age cap")
            log = demo.log()
            assert "closed 4001 connection_age" in log
            # The normal age close costs no backoff and is no failure.
            assert any(e.startswith("reconnecting in 0.0 s (attempt 0)") for e in log)
            tokens = demo.tokens()
            socket_tokens = demo.socket_tokens()
            assert len(set(tokens)) == len(tokens) >= 2
            assert socket_tokens == tokens[: len(socket_tokens)]

            # reconnect: false is about failures; the age close still reconnects.
            demo.page.click("#disconnect")
            demo.expect_state("closed")
            before = len(demo.sockets)
            options = {"tokenUrl": "/authenticate/token", "url": "/ws", "apiKey": API_KEY}
            demo.page.evaluate(CLIENT_RUN, [{**options, "reconnect": False}])
            wait_until(demo.page, lambda: len(demo.sockets) >= before + 2, what="an age reconnect")
            assert demo.page.evaluate("() => window.conn.state") in ("open", "reconnecting")
            demo.page.evaluate("() => window.conn.close()")
        finally:
            demo.close()


@pytest.mark.slow
def test_in_band_refresh_keeps_one_socket_past_the_cap(browser: Browser, tmp_path: Path) -> None:
    age = 5  # refresh at 4 s: a 1 s margin before the cap, even on a busy machine
    env = {
        "WSAUTH_DEMO_API_KEY": API_KEY,
        "WSAUTH_SECRET": new_secret(),
        "SANIC_WSAUTH_MAX_CONNECTION_AGE": str(age),
        "SANIC_WSAUTH_REFRESH": "true",
    }
    with demo_process(tmp_path, env) as port:
        demo = DemoPage.open(browser, f"http://127.0.0.1:{port}")
        try:
            demo.connect(transport="subprotocol")
            demo.expect_state("open")
            first = demo.token_responses[0].json()
            assert (first["max_connection_age"], first["refresh"]) == (age, True)

            def refreshed() -> int:
                return sum(e.startswith("refreshed in-band") for e in demo.log())

            # Two refreshes: the socket lives past two caps (liveness bound only).
            wait_until(demo.page, lambda: refreshed() >= 2, timeout=8 * age, what="two refreshes")
            demo.echo("still the first socket")
            assert len(demo.sockets) == 1
            assert not any(e.startswith("closed") for e in demo.log())

            tokens = demo.tokens()
            refresh_frames = [
                json.loads(f) for f in demo.frames_sent if isinstance(f, str) and "wsauth" in f
            ]
            assert len(refresh_frames) >= 2
            for frame in refresh_frames:
                assert list(frame) == ["type", "token"] and frame["type"] == "wsauth.refresh"
            # Each refresh carries a new ticket from the endpoint, never the first.
            assert [f["token"] for f in refresh_frames] == tokens[1 : len(refresh_frames) + 1]
            answers = [f for f in demo.frames_received if "wsauth.refreshed" in str(f)]
            assert len(answers) >= 2
            assert json.loads(answers[0]) == {"type": "wsauth.refreshed", "expires_in": age}
            # The server's answers are not passed to the app's onMessage.
            assert not any(
                "wsauth" in e for e in demo.page.locator("#log li.in").all_text_contents()
            )
        finally:
            demo.close()


HEADERS_CASES = """
async ([apiKey]) => {
  const { connect, WSAuthError } = await import("/static/wsauth.js");
  const thrown = new TypeError("no session");
  const cases = {
    throws: () => { throw thrown; },
    rejects: async () => { throw thrown; },
    badName: () => [["bad header name with spaces", "x"]],
    newlineInName: () => ({ "a\\nb": "c" }),
    badValue: () => ({ Authorization: "Bearer " + apiKey + "\\n" + "X-Injected: 1" }),
    number: () => 42,
    asyncBadName: async () => [["bad header name with spaces", "x"]],
    staticBadName: [["bad header name with spaces", "x"]],
    staticNumber: 42,
  };
  const out = {};
  for (const [name, headers] of Object.entries(cases)) {
    const events = [], errors = [];
    const conn = connect({
      tokenUrl: "/authenticate/token",
      url: "/ws",
      headers,
      reconnect: { initialDelay: 50, maxDelay: 100, maxRetries: 3 },
      onStateChange: (state, info) => events.push([state, info.error ? info.error.kind : null]),
      onError: (error) => errors.push(error),
    });
    const deadline = Date.now() + 10_000;
    while (conn.state !== "closed" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const error = conn.error;
    out[name] = {
      state: conn.state,
      events,
      isWSAuthError: error instanceof WSAuthError,
      name: error && error.name,
      kind: error && error.kind,
      message: error && error.message,
      retryable: error && error.retryable,
      status: error && error.status,
      reason: error && error.reason,
      code: error && error.code,
      causeIsTypeError: !!error && error.cause instanceof TypeError,
      causeIsThrown: !!error && error.cause === thrown,
      onErrorCalls: errors.length,
      onErrorGotConnError: errors[0] === error,
    };
  }
  return out;
}
"""


def test_invalid_headers_value_is_an_auth_error_like_a_throwing_callback(demo: DemoPage) -> None:
    # README: a failing headers callback ends the connection with an "auth"
    # WSAuthError, no retry. A callback (or a static option) giving headers
    # that `new Headers()` rejects must end the same way, with the browser's
    # TypeError as the cause, not with that bare TypeError as `conn.error`.
    results = demo.page.evaluate(HEADERS_CASES, [API_KEY])
    expected = {
        "state": "closed",
        "events": [["connecting", None], ["closed", "auth"]],
        "isWSAuthError": True,
        "name": "WSAuthError",
        "kind": "auth",
        "retryable": False,
        "status": None,
        "reason": None,
        "code": None,
        "causeIsTypeError": True,
        "onErrorCalls": 1,
        "onErrorGotConnError": True,
    }
    assert set(results) == {
        "throws",
        "rejects",
        "badName",
        "newlineInName",
        "badValue",
        "number",
        "asyncBadName",
        "staticBadName",
        "staticNumber",
    }
    for case, result in results.items():
        message = result.pop("message")
        assert isinstance(message, str) and message.startswith("the headers"), case
        assert result.pop("causeIsThrown") is (case in ("throws", "rejects")), case
        assert result == expected, case
    # Never retried, and nothing left the page: no ticket request, no socket.
    quiet_window(demo.page)
    assert demo.token_requests == [] and demo.sockets == []


CLOSE_ARGUMENTS = """
async ([apiKey, earlyClose]) => {
  const { connect } = await import("/static/wsauth.js");
  const messages = [], closes = [], states = [];
  const conn = connect({
    tokenUrl: "/authenticate/token",
    url: "/ws",
    headers: () => ({ Authorization: "Bearer " + apiKey }),
    onMessage: (data) => messages.push(data),
    onClose: (info) => closes.push(info),
    onStateChange: (state) => states.push(state),
  });
  const until = async (condition) => {
    const deadline = Date.now() + 15_000;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error("timed out in state " + conn.state);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const attempt = (...args) => {
    try { conn.close(...args); return null; }
    catch (error) { return error.name; }
  };
  const echo = async (text) => {
    const sent = conn.send(text);
    await until(() => messages.includes("demo: " + text));
    return sent;
  };

  if (earlyClose) {
    // Before the socket exists: the arguments are still checked, nothing stops.
    const early = [attempt(1001), attempt(1000, "x".repeat(124)), conn.state];
    await until(() => conn.state === "open");
    return { early, echoed: await echo("opened anyway"), states };
  }
  await until(() => conn.state === "open");

  const calls = {
    goingAway: [1001],
    below: [999],
    reserved: [1005],
    belowApp: [2999],
    above: [5000],
    fraction: [4000.5],
    nan: [NaN],
    string: ["4xyz"],
    numericString: ["4000"],
    nullCode: [null],
    longReason: [4000, "x".repeat(124)],
    longUtf8Reason: [4000, "\\u00e9".repeat(62)],
    longSurrogateReason: [4000, "\\ud800".repeat(42)],
    reasonNotString: [4000, 42],
  };
  const invalid = {};
  for (const [name, args] of Object.entries(calls)) {
    const error = attempt(...args);
    invalid[name] = [error, conn.state, conn.send("ping " + name)];
  }
  const echoed = await echo("still usable");

  // A valid close with the longest reason allowed (123 UTF-8 bytes).
  const reason = "\\u00e9".repeat(61) + "x";
  const valid = attempt(4000, reason);
  const stateAfterClose = conn.state;
  await until(() => closes.length === 1);
  return {
    invalid,
    echoed,
    valid,
    stateAfterClose,
    close: closes[0],
    again: [attempt(), attempt(1001), conn.state],
    sendAfterClose: conn.send("x"),
    states,
    reasonMatches: closes[0].reason === reason,
    error: conn.error,
  };
}
"""


def test_invalid_close_arguments_throw_and_keep_the_connection_open(demo: DemoPage) -> None:
    # Browsers allow close code 1000 or 3000-4999 and a reason of at most 123
    # UTF-8 bytes. close() checks its arguments before it changes anything:
    # a bad call throws and leaves the connection open and usable.
    result = demo.page.evaluate(CLOSE_ARGUMENTS, [API_KEY, False])
    range_errors = {"goingAway", "below", "reserved", "belowApp", "above"}
    range_errors |= {"longReason", "longUtf8Reason", "longSurrogateReason"}
    for name, (error, state, sent) in result["invalid"].items():
        assert error == ("RangeError" if name in range_errors else "TypeError"), name
        assert (state, sent) == ("open", True), name
    assert len(result["invalid"]) == 14
    assert result["echoed"] is True

    # Then a valid close works: closed for good, the socket closed cleanly.
    assert result["valid"] is None and result["stateAfterClose"] == "closed"
    close = result["close"]
    assert close["code"] == 4000 and result["reasonMatches"]
    assert close["wasClean"] is True and close["willReconnect"] is False
    # A second close() is a no-op; invalid arguments still throw.
    assert result["again"] == [None, "RangeError", "closed"]
    assert result["sendAfterClose"] is False and result["error"] is None
    assert result["states"] == ["connecting", "open", "closed"]
    quiet_window(demo.page)
    assert len(demo.token_requests) == 1 and len(demo.sockets) == 1


def test_invalid_close_before_open_throws_and_the_connection_still_opens(demo: DemoPage) -> None:
    # The arguments are checked in every state, also before a socket exists
    # (where the browser would never see them): nothing is stopped.
    result = demo.page.evaluate(CLOSE_ARGUMENTS, [API_KEY, True])
    assert result["early"] == ["RangeError", "RangeError", "connecting"]
    assert result["echoed"] is True
    assert result["states"] == ["connecting", "open"]
    assert len(demo.token_requests) == 1 and len(demo.sockets) == 1


# --- the client against a scripted stand-in server ----------------------------


@pytest.fixture
def scripted(browser: Browser, app_name: str) -> Iterator[DemoPage]:
    """A page on ``client_test_app``: scripted ticket answers and socket closes."""
    with ServerThread(client_test_app(app_name)) as server:
        page = DemoPage.open(browser, server.http)
        try:
            yield page
        finally:
            page.close()


RUN_CASES = """
async ([cases, deadline]) => {
  const { connect } = await import("/static/wsauth.js");
  const run = (spec) => new Promise((resolve) => {
    const states = [], closes = [], onErrors = [];
    let headersCalls = 0, conn = null;
    let reconnect = spec.reconnect;
    if (spec.undefinedFields) {
      // JSON has no undefined: set these reconnect fields to it here.
      reconnect = { ...reconnect };
      for (const name of spec.undefinedFields) reconnect[name] = undefined;
    }
    const options = {
      tokenUrl: spec.tokenUrl ?? "/authenticate/token",
      url: spec.url ?? "/ws",
      reconnect,
      onStateChange: (state, info) => states.push([
        state, info.previous, info.error ? info.error.kind : null, info.attempt ?? null,
        info.delay === undefined ? "none" : info.delay,
      ]),
      onClose: (info) => {
        closes.push([info.code, info.reason, info.willReconnect]);
        if (spec.closeInOnClose) conn.close();
      },
      onError: (error) => onErrors.push(error.kind),
    };
    if (spec.ticketTimeout !== undefined) options.ticketTimeout = spec.ticketTimeout;
    if (spec.hangingHeaders) {
      options.headers = () => { headersCalls += 1; return new Promise(() => {}); };
    }
    conn = connect(options);
    const started = Date.now();
    let closedAt = null;
    const poll = setInterval(() => {
      if (conn.state === "closed" && closedAt === null) closedAt = Date.now();
      // Once closed, watch a little longer: nothing may follow.
      const settled = closedAt !== null && Date.now() - closedAt > 500;
      if (!settled && Date.now() - started < deadline) return;
      clearInterval(poll);
      const error = conn.error;
      const result = {
        state: conn.state,
        states: [...states],
        closes: [...closes],
        onErrors: [...onErrors],
        headersCalls,
        sent: conn.send("x"),
        error: error && {
          kind: error.kind, message: error.message, code: error.code,
          reason: error.reason, retryable: error.retryable,
        },
      };
      conn.close(); // a client still retrying at the deadline stops here
      resolve(result);
    }, 20);
  });
  const names = Object.keys(cases);
  const results = await Promise.all(names.map((name) => run(cases[name])));
  return Object.fromEntries(names.map((name, i) => [name, results[i]]));
}
"""

#: In-page bound of RUN_CASES (ms): a liveness bound, not a speed check.
CASE_DEADLINE = 8_000


def run_cases(page: DemoPage, cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    results: dict[str, Any] = page.page.evaluate(RUN_CASES, [cases, CASE_DEADLINE])
    return results


def test_close_in_on_close_keeps_the_connection_closed(scripted: DemoPage) -> None:
    # The app may call conn.close() inside onClose, whatever the branch that
    # called it: an age close (which reconnects even with reconnect: false), a
    # server error close (retried), or reconnect: false (not retried). The
    # state must stay "closed": no "reconnecting", no retry, no error.
    age = "/ws?close=4001&reason=connection_age&after=2"  # a normal age close
    error = "/ws?close=1011&reason=scripted"
    results = run_cases(
        scripted,
        {
            "age": {"url": age, "closeInOnClose": True},
            "ageNoReconnect": {"url": age, "reconnect": False, "closeInOnClose": True},
            "error": {"url": error, "closeInOnClose": True},
            "errorNoReconnect": {"url": error, "reconnect": False, "closeInOnClose": True},
        },
    )
    will_reconnect = {"age": True, "ageNoReconnect": True, "error": True}
    seen, expected = {}, {}
    for case, result in results.items():
        seen[case] = {
            "closes": result["closes"],
            "states": [s[:3] for s in result["states"]],
            "final": [result["state"], result["error"], result["onErrors"], result["sent"]],
        }
        code, reason = (4001, "connection_age") if case.startswith("age") else (1011, "scripted")
        expected[case] = {
            "closes": [[code, reason, will_reconnect.get(case, False)]],
            "states": [
                ["connecting", None, None],
                ["open", "connecting", None],
                ["closed", "open", None],
            ],
            "final": ["closed", None, [], False],
        }
    assert seen == expected
    quiet_window(scripted.page)
    assert len(scripted.token_requests) == 4 and len(scripted.sockets) == 4


def test_invalid_reconnect_options_throw_and_missing_fields_take_the_defaults(
    scripted: DemoPage,
) -> None:
    checked = scripted.page.evaluate(
        """async () => {
          const { connect, backoffDelay } = await import("/static/wsauth.js");
          const attempt = (reconnect) => {
            const options = { tokenUrl: "/authenticate/token", url: "/ws", reconnect };
            try { connect(options).close(); return null; }
            catch (error) { return `${error.name}: ${error.message}`; }
          };
          const bad = {
            initialDelay: [-1, NaN, Infinity, "500"],
            maxDelay: [-1, NaN, Infinity, "1000"],
            factor: [0, 0.5, NaN, Infinity, "2"],
            maxRetries: [-1, 1.5, NaN, -Infinity, "3"],
            stableAfter: [-1, NaN, Infinity, "5000"],
          };
          const invalid = {};
          for (const [name, values] of Object.entries(bad)) {
            invalid[name] = values.map((value) => attempt({ [name]: value }));
          }
          const unset = { initialDelay: undefined, maxDelay: undefined, factor: undefined,
                          maxRetries: undefined, stableAfter: undefined };
          const top = () => 0.999999;
          return {
            invalid,
            valid: [
              attempt({}), attempt(unset), attempt({ initialDelay: null, maxRetries: null }),
              attempt({ maxRetries: Infinity }), attempt({ maxRetries: 0 }),
              attempt({ initialDelay: 0, factor: 1, stableAfter: 0 }),
              attempt({ maxDelay: 100 }),  // a cap below the default initial delay: allowed
            ],
            backoff: [1, 2, 7, 20].map((n) => backoffDelay(n, unset, top)),
          };
        }"""
    )
    for name, errors in checked["invalid"].items():
        for error in errors:
            assert error is not None and error.startswith(f"TypeError: wsauth: reconnect.{name} ")
    assert checked["valid"] == [None] * 7
    assert checked["backoff"] == [499, 999, 29999, 29999]  # the defaults, not NaN
    quiet_window(scripted.page)
    assert scripted.token_requests == []  # each closed before its first attempt


def test_undefined_reconnect_fields_take_the_defaults(scripted: DemoPage) -> None:
    # Undefined fields must not override the defaults: not a NaN delay (a
    # timer of 0), and not an unbounded maxRetries (an endless retry storm).
    failing = "/authenticate/token?status=503"  # retried with backoff
    results = run_cases(
        scripted,
        {
            "undefinedDelays": {
                "tokenUrl": failing,
                "reconnect": {"maxRetries": 1},
                "undefinedFields": ["initialDelay", "maxDelay", "factor", "stableAfter"],
            },
            "undefinedMaxRetries": {
                "tokenUrl": failing,
                "reconnect": {"initialDelay": 1, "maxDelay": 1},
                "undefinedFields": ["maxRetries"],
            },
        },
    )
    delays = [s[4] for s in results["undefinedDelays"]["states"] if s[0] == "reconnecting"]
    short = results["undefinedDelays"]["error"] or {}
    storm = results["undefinedMaxRetries"]
    checks = {
        "one retry, its delay under the default initialDelay": len(delays) == 1
        and isinstance(delays[0], int)
        and 0 <= delays[0] < 500,
        "maxRetries 1 still applies": str(short.get("message")).startswith("gave up after 2 "),
        "default maxRetries (10) applies": storm["state"] == "closed"
        and str((storm["error"] or {}).get("message")).startswith("gave up after 11 failed"),
        "attempts 1 to 10": [s[3] for s in storm["states"] if s[0] == "reconnecting"]
        == list(range(1, 11)),
    }
    assert checks == dict.fromkeys(checks, True)
    quiet_window(scripted.page)
    assert len(scripted.token_requests) == 2 + 11


def test_a_connection_age_beyond_the_timer_range_does_not_refresh_at_once(
    scripted: DemoPage,
) -> None:
    # setTimeout cannot wait more than 2**31 - 1 ms (about 24.8 days): a
    # longer delay fires at once. Sixty days at refreshAt 0.8 is 4147200000 ms.
    # Unclamped, the refresh fired at once, and each answer (expires_in: the
    # same age) rescheduled at once again: a storm of ticket requests.
    age = 60 * 86400
    page = scripted.page
    page.evaluate(
        """() => {
          window.timerDelays = [];
          const original = window.setTimeout;
          window.setTimeout = (callback, delay, ...args) => {
            window.timerDelays.push(delay);
            return original(callback, delay, ...args);
          };
        }"""
    )
    options = {
        "tokenUrl": f"/authenticate/token?age={age}&refresh=1",
        "url": f"/ws?age={age}",
        "apiKey": API_KEY,
    }
    page.evaluate(CLIENT_RUN, [options])
    page.wait_for_function("() => window.conn.state === 'open'", timeout=30_000)
    quiet_window(page)
    assert page.evaluate("() => window.conn.state") == "open"
    assert len(scripted.token_requests) == 1 and len(scripted.sockets) == 1
    assert not any("wsauth.refresh" in str(frame) for frame in scripted.frames_sent)
    # The refresh timer was set, clamped to the longest delay a timer can wait.
    delays = page.evaluate("() => window.timerDelays")
    assert 2**31 - 1 in delays and max(delays) == 2**31 - 1
    page.evaluate("() => window.conn.close()")


def test_an_age_close_right_after_opening_is_a_failure_with_backoff(scripted: DemoPage) -> None:
    # README: a server that accepts and drops at once cannot cause a storm.
    # A 4001 age close counts as the normal end of a socket (reconnect at
    # once, no failure) only after the socket lived 1 s; sooner, it is a
    # failure: backoff, counted toward maxRetries, and not retried with
    # reconnect: false.
    at_once = "/ws?close=4001&reason=connection_age"
    results = run_cases(
        scripted,
        {
            "retried": {
                "url": at_once,
                "reconnect": {"initialDelay": 50, "maxDelay": 100, "maxRetries": 2},
            },
            "noReconnect": {"url": at_once, "reconnect": False},
        },
    )
    retried = results["retried"]
    assert [s[:4] for s in retried["states"]] == [
        ["connecting", None, None, None],
        ["open", "connecting", None, None],
        ["reconnecting", "open", "closed", 1],
        ["open", "reconnecting", None, None],
        ["reconnecting", "open", "closed", 2],
        ["open", "reconnecting", None, None],
        ["closed", "open", "network", None],
    ]
    assert all(s[4] < 100 for s in retried["states"] if s[0] == "reconnecting")
    assert retried["closes"] == [
        [4001, "connection_age", True],
        [4001, "connection_age", True],
        [4001, "connection_age", False],
    ]
    assert retried["error"]["message"].startswith("gave up after 3 failed attempts")
    assert (retried["error"]["code"], retried["error"]["reason"]) == (4001, "connection_age")
    assert retried["onErrors"] == ["network"]

    no_reconnect = results["noReconnect"]
    assert [s[:3] for s in no_reconnect["states"]] == [
        ["connecting", None, None],
        ["open", "connecting", None],
        ["closed", "open", "closed"],
    ]
    assert no_reconnect["closes"] == [[4001, "connection_age", False]]
    assert no_reconnect["error"] == {
        "kind": "closed",
        "message": "the socket closed (4001 connection_age)",
        "code": 4001,
        "reason": "connection_age",
        "retryable": False,
    }
    quiet_window(scripted.page)
    assert len(scripted.token_requests) == 3 + 1 == len(scripted.sockets)


def test_close_before_the_first_attempt_reports_connecting_first(scripted: DemoPage) -> None:
    # The first report is always "connecting" (previous null), exactly once,
    # even when close() comes before the microtask that starts the first
    # attempt, and even when onStateChange closes it again re-entrantly.
    results = scripted.page.evaluate(
        """async () => {
          const { connect } = await import("/static/wsauth.js");
          const open = (reentrant) => {
            const events = [];
            let conn = null;
            conn = connect({
              tokenUrl: "/authenticate/token",
              url: "/ws",
              onStateChange: (state, info) => {
                events.push([state, info.previous, info.error ?? null]);
                if (reentrant && state === "connecting") conn.close();
              },
            });
            conn.close();
            const after = [conn.state, conn.send("x")];
            return { conn, events, after };
          };
          const runs = { plain: open(false), reentrant: open(true) };
          await new Promise((resolve) => setTimeout(resolve, 300));
          const out = {};
          for (const [name, run] of Object.entries(runs)) {
            out[name] = { events: run.events, after: run.after, state: run.conn.state };
          }
          return out;
        }"""
    )
    for case, result in results.items():
        assert result["events"] == [["connecting", None, None], ["closed", "connecting", None]], (
            case
        )
        assert result["after"] == ["closed", False] and result["state"] == "closed", case
    quiet_window(scripted.page)
    assert scripted.token_requests == [] and scripted.sockets == []


def test_a_headers_callback_that_never_settles_times_out_like_a_ticket_request(
    scripted: DemoPage,
) -> None:
    # ticketTimeout bounds the headers callback too: one that never settles
    # is a timed-out ticket request (network, retried), not a connection
    # stuck in "connecting" forever.
    timed_out = "the ticket request timed out (the headers callback did not settle)"
    results = run_cases(
        scripted,
        {
            "retried": {
                "hangingHeaders": True,
                "ticketTimeout": 200,
                "reconnect": {"initialDelay": 50, "maxDelay": 100, "maxRetries": 2},
            },
            "noReconnect": {"hangingHeaders": True, "ticketTimeout": 200, "reconnect": False},
        },
    )
    retried = results["retried"]
    assert [s[:4] for s in retried["states"]] == [
        ["connecting", None, None, None],
        ["reconnecting", "connecting", "network", 1],
        ["reconnecting", "reconnecting", "network", 2],
        ["closed", "reconnecting", "network", None],
    ]
    assert retried["headersCalls"] == 3 and retried["onErrors"] == ["network"]
    assert retried["error"]["message"] == f"gave up after 3 failed attempts: {timed_out}"

    no_reconnect = results["noReconnect"]
    assert [s[:3] for s in no_reconnect["states"]] == [
        ["connecting", None, None],
        ["closed", "connecting", "network"],
    ]
    assert no_reconnect["headersCalls"] == 1 and no_reconnect["onErrors"] == ["network"]
    assert no_reconnect["error"] == {
        "kind": "network",
        "message": timed_out,
        "code": None,
        "reason": None,
        "retryable": False,
    }
    quiet_window(scripted.page)
    assert scripted.token_requests == [] and scripted.sockets == []


CLOSE_WHILE_RECONNECTING = """
async () => {
  const { connect } = await import("/static/wsauth.js");
  // Count the page's pending timers: a timer armed after close() would keep
  // the connection alive, and fire, for up to maxDelay.
  const pending = new Set();
  const realSet = window.setTimeout, realClear = window.clearTimeout;
  window.setTimeout = (callback, ms, ...args) => {
    const id = realSet(() => { pending.delete(id); callback(...args); }, ms);
    pending.add(id);
    return id;
  };
  window.clearTimeout = (id) => { pending.delete(id); realClear(id); };
  const states = [];
  try {
    await new Promise((resolve) => {
      const conn = connect({
        tokenUrl: "/authenticate/token?status=503",  // retryable: "reconnecting" next
        url: "/ws",
        reconnect: { initialDelay: 20_000, maxDelay: 20_000 },
        onStateChange: (state) => {
          states.push(state);
          if (state === "reconnecting") conn.close();
          if (state === "closed") resolve();
        },
      });
    });
    await new Promise((resolve) => realSet(resolve, 300));
    return { states, pending: pending.size };
  } finally {
    window.setTimeout = realSet;
    window.clearTimeout = realClear;
  }
}
"""


def test_close_in_on_state_change_reconnecting_leaves_no_timer(scripted: DemoPage) -> None:
    result = scripted.page.evaluate(CLOSE_WHILE_RECONNECTING)
    assert result == {"states": ["connecting", "reconnecting", "closed"], "pending": 0}
    assert len(scripted.token_requests) == 1


def test_more_options_are_checked_at_connect(scripted: DemoPage) -> None:
    """Mistakes that used to surface later, as network failures or silently."""
    errors = scripted.page.evaluate(
        """async () => {
          const { connect } = await import("/static/wsauth.js");
          const ok = { tokenUrl: "/authenticate/token", url: "/ws", reconnect: false };
          const attempt = (options) => {
            try { connect({ ...ok, ...options }).close(); return null; }
            catch (error) { return `${error.name}: ${error.message}`; }
          };
          return {
            credentials: attempt({ credentials: "bogus" }),
            tokenUrlUnparsable: attempt({ tokenUrl: "http://[" }),
            tokenUrlScheme: attempt({ tokenUrl: "ftp://127.0.0.1/token" }),
            reconnectZero: attempt({ reconnect: 0 }),
            reconnectText: attempt({ reconnect: "false" }),
            reconnectTrue: attempt({ reconnect: true }),
            protocolsNumber: attempt({ protocols: 5 }),
            refreshText: attempt({ refresh: "no" }),
            binaryType: attempt({ binaryType: "text" }),
            refreshAtText: attempt({ refreshAt: "0.5" }),
            queryParam: attempt({ queryParam: "" }),
            protocolPrefix: attempt({ protocolPrefix: 7 }),
            // Accepted: as the WebSocket constructor, one subprotocol name alone.
            protocolString: attempt({ protocols: "chat.v1" }),
            absoluteTokenUrl: attempt({ tokenUrl: `${location.origin}/authenticate/token` }),
            reconnectNull: attempt({ reconnect: null }),
          };
        }"""
    )
    accepted = {"protocolString", "absoluteTokenUrl", "reconnectNull"}
    for key, error in errors.items():
        if key in accepted:
            assert error is None, (key, error)
        else:
            assert error is not None and error.startswith("TypeError: wsauth:"), (key, error)
    quiet_window(scripted.page)
    assert scripted.token_requests == []


def test_a_single_protocol_name_is_offered_as_itself(scripted: DemoPage) -> None:
    offered = scripted.page.evaluate(
        """async () => {
          const { connect } = await import("/static/wsauth.js");
          const Real = window.WebSocket, offered = [];
          window.WebSocket = class extends Real {
            constructor(url, protocols) { offered.push(protocols); super(url, protocols); }
          };
          try {
            await new Promise((resolve) => {
              const conn = connect({
                tokenUrl: "/authenticate/token", url: "/ws", protocols: "chat.v1",
                reconnect: false, onStateChange: (state) => { if (state === "closed") resolve(); },
              });
            });
          } finally {
            window.WebSocket = Real;
          }
          return offered;
        }"""
    )
    # One name, as the WebSocket constructor takes it; not split into characters.
    assert offered == [["chat.v1"]]


def test_backoff_delay_with_no_initial_delay_stays_zero(scripted: DemoPage) -> None:
    delays = scripted.page.evaluate(
        """async () => {
          const { backoffDelay } = await import("/static/wsauth.js");
          return [1, 1024, 1026, 5000].map((n) => backoffDelay(n, { initialDelay: 0 }, () => 0.5));
        }"""
    )
    assert delays == [0, 0, 0, 0]  # factor ** n overflows: 0 * Infinity was NaN


def test_the_query_transport_keeps_the_apps_query_as_written(scripted: DemoPage) -> None:
    query = "room=a%20b&flag&path=/x/y&sig=AbC~1*&token=stale&close=1000"
    results = run_cases(scripted, {"q": {"url": f"/ws?{query}", "reconnect": False}})
    assert [s[0] for s in results["q"]["states"]] == ["connecting", "open", "closed"], results
    [socket] = scripted.sockets
    # Every parameter as written; the earlier ticket parameter replaced, last.
    kept, ticket = socket.url.split("?", 1)[1].rsplit("&", 1)
    assert kept == "room=a%20b&flag&path=/x/y&sig=AbC~1*&close=1000"
    assert ticket.startswith("token=") and "stale" not in socket.url
