"""The inbox page in a real browser (Debian's Chromium through Playwright) against a real FakeSMTP: the
list, one message's text, HTML (sandboxed, no remote content), headers and source, all as text."""

from __future__ import annotations

import http.server
import smtplib
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from fake_smtp import FakeSMTP

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE_SUBJECT = '<img src=x onerror="document.title=\'pwned\'">'

pytestmark = pytest.mark.browser


class RemoteContent:
    """A loopback HTTP server standing in for the internet: it counts every request a message's HTML
    would make if remote content were loaded."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.hits = hits
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RemoteContent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def remote() -> Iterator[RemoteContent]:
    with RemoteContent() as server:
        yield server


def send_html(srv: FakeSMTP, remote_url: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.test", "b@example.test", HOSTILE_SUBJECT
    message["X-Probe"] = "<b>not bold</b>"
    message.set_content("plain body <script>alert(1)</script>")
    message.add_alternative(
        f'<html><head><link rel="stylesheet" href="{remote_url}/style.css"></head><body>'
        f'<p id="hello" style="color: red">Hello <b>HTML</b></p><img src="{remote_url}/pixel.png">'
        f'<script>parent.document.title = "pwned"; fetch("{remote_url}/script")</script>'
        f'<a href="{remote_url}/link" id="link">a link</a></body></html>',
        subtype="html",
    )
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
        smtp.send_message(message)


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    return page, errors


def test_list_message_tabs_and_a_safe_html_view(browser: Browser, remote: RemoteContent) -> None:
    with FakeSMTP(http_port=0) as srv:
        send_html(srv, remote.url)
        page, errors = open_page(browser, f"{srv.http_url}/")
        rows = page.locator("#messages tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first.locator("td").nth(3)).to_have_text(HOSTILE_SUBJECT)  # as text, not markup
        assert page.locator("#messages img").count() == 0
        # The image is refused by the policy before any request; Chromium says so on the console.
        with page.expect_console_message(lambda m: "pixel.png" in m.text):
            rows.first.click()
        expect(page.locator("#subject")).to_have_text(HOSTILE_SUBJECT)
        expect(page.locator("#tab-text")).to_contain_text("plain body <script>alert(1)</script>")
        page.click('[data-tab="headers"]')
        expect(page.locator("#tab-headers")).to_contain_text("<b>not bold</b>")
        page.click('[data-tab="raw"]')
        expect(page.locator("#tab-raw")).to_contain_text("Content-Type: multipart/alternative")
        page.click('[data-tab="html"]')
        frame = page.frame_locator("#html-frame")
        expect(frame.locator("#hello")).to_have_text("Hello HTML")
        with page.expect_console_message(lambda m: m.text.startswith(f"Framing '{remote.url}/'")):
            frame.locator("#link").click()  # the frame may not load anything from elsewhere
        assert page.title() == "fake-smtp inbox"  # the message's script never ran
        page.context.close()
    assert remote.hits == []  # no stylesheet, image, fetch or link was requested
    # Chromium reports what it blocked; anything else would be a script error or an unexpected violation.
    expected = ("Blocked script execution in 'about:srcdoc'", "Applying inline style violates")
    unexpected = [e for e in errors if remote.url not in e and not e.startswith(expected)]
    assert unexpected == [], errors


def test_page_headers_and_the_token(browser: Browser) -> None:
    with FakeSMTP(http_port=0, inbox_token="tok-page-123") as srv:
        answer = httpx.get(f"{srv.http_url}/", headers={"Authorization": "Bearer tok-page-123"}, timeout=5)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert httpx.get(f"{srv.http_url}/static/../server.py", timeout=5).status_code in (401, 404)
        with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
            smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: behind a token\r\n\r\nhi\r\n")
        # The page itself is behind the token too; a browser that has it (e.g. via a proxy) still needs it
        # for the API calls, which the page asks for.
        context = browser.new_context(extra_http_headers={"Authorization": "Bearer tok-page-123"})
        page = context.new_page()
        page.goto(f"{srv.http_url}/")
        expect(page.locator("#messages tbody tr")).to_have_count(1)
        context.close()
        bare = browser.new_context()
        page = bare.new_page()
        page.goto(f"{srv.http_url}/")
        assert page.locator("#messages").count() == 0  # 401 JSON, no page
        bare.close()
