"""The page in a real browser (Debian's Chromium through Playwright) against the real service and the
demo's fake SMTP servers, all on loopback ports chosen by the OS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from diag.service.app import create_app
from diag.service.demo import DemoServers
from diag.service.serve import with_demo_ports
from tests.peer import Peer, never_greets
from tests.service.helpers import make_settings, uvicorn_in_thread

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with DemoServers() as demo:
        settings = with_demo_ports(make_settings(tmp_path_factory.mktemp("page"), allowed_ports=frozenset({587})),
                                   demo.ports)
        with uvicorn_in_thread(create_app(settings, presets=demo.presets)) as url:
            yield url


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, service_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=service_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A 4xx the page handles is logged by Chromium as "Failed to load resource": expected, not an error.
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    yield page
    context.close()
    assert errors == []  # no script errors, no CSP violations


def run_preset(page: Page, key: str) -> None:
    page.goto("/")
    page.click(f'[data-preset="{key}"]')
    page.click("text=Validate configuration")
    expect(page.locator("#verdict[data-verdict]")).to_be_visible()


def test_anonymous_server_is_valid_with_a_warning(page: Page) -> None:
    run_preset(page, "anonymous")
    expect(page.locator("#host")).to_have_value("127.0.0.1")
    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-verdict", "valid")
    expect(verdict).to_contain_text("Configuration is valid, with 1 warning")
    # Valid with warnings is amber, not the solid green of a clean pass, and the banner lists the warning.
    expect(verdict).to_have_class("verdict verdict-warning")
    expect(verdict.locator(".verdict-warnings li")).to_have_count(1)
    expect(verdict).to_contain_text("Anonymous SMTP")
    expect(page.locator("#stages > li")).to_have_count(9)
    expect(page.locator('[data-stage="mail_from"]')).to_have_attribute("data-status", "passed")
    ran = page.locator('#stages > li:not([data-status="skipped"])').count()
    expect(page.locator("#waterfall .wf-bar")).to_have_count(ran)  # skipped stages are folded away
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-anonymous.png"), full_page=True)


def test_anonymous_warning_shows_behind_another_config_warning(page: Page) -> None:
    """Anonymous SMTP plus Insecure Skip TLS Verify: the main finding is skip-verify, the anonymous one
    follows it in additional_findings, and the banner lists both warnings."""
    page.goto("/")
    page.click('[data-preset="anonymous"]')
    page.check("#insecure_skip_tls_verify")
    page.click("text=Validate configuration")
    expect(page.locator("#verdict[data-verdict]")).to_be_visible()
    codes = page.locator('[data-stage="config"] .finding-code')
    expect(codes).to_have_text(["config.insecure_skip_verify", "config.anonymous"])
    expect(page.locator("#verdict .verdict-warnings > li")).to_have_count(2)
    expect(page.locator("#verdict")).to_contain_text("Anonymous SMTP")


def test_failure_banner_holds_cause_and_fix_and_takes_focus(page: Page) -> None:
    run_preset(page, "wrong-password")
    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-verdict", "invalid")
    expect(verdict.locator(".verdict-title")).to_have_text("Failed at Authentication")
    finding = verdict.locator("> .verdict-finding")
    expect(finding).to_contain_text("Cause:")
    expect(finding).to_contain_text("Fix:")
    expect(finding.locator(".finding-code")).to_have_text("auth.bad_credentials")
    expect(verdict).to_be_focused()  # a screen reader announces the answer
    # Plaintext credentials get their own line in the banner too.
    expect(verdict.locator('.verdict-warnings > li[data-code="tls.plaintext_credentials"]')).to_be_visible()
    expect(verdict).to_contain_text("Password sent in plaintext")
    auth = page.locator('[data-stage="auth"]')
    expect(auth).to_have_attribute("data-status", "failed")
    # The failed stage is open; the passed ones are folded to their one line.
    assert auth.locator("details.stage-details").evaluate("d => d.open")
    assert not page.locator('[data-stage="connect"] details.stage-details').evaluate("d => d.open")
    expect(page.locator('[data-stage="connect"] .stage-summary')).to_be_hidden()
    expect(page.locator('[data-stage="connect"] .stage-brief')).to_be_visible()
    auth.locator("summary", has_text="Transcript").click()
    expect(auth.locator(".transcript")).to_be_visible()
    expect(auth.locator(".transcript")).not_to_contain_text("not-the-password")
    expect(auth.locator(".transcript .t-time").first).to_contain_text(" ms")  # times carry their unit
    page.screenshot(path=str(ARTIFACTS / "page-failure.png"), full_page=True)


def visible_count(page: Page, text: str) -> int:
    """How often `text` appears in what the page shows (innerText leaves out hidden and folded content)."""
    return int(page.evaluate("t => document.body.innerText.split(t).length - 1", text))


def test_the_same_warning_text_never_shows_twice(page: Page) -> None:
    """Anonymous SMTP and a failure: the anonymous warning once (in the banner), the cause once."""
    page.goto("/")
    page.click('[data-preset="anonymous"]')
    page.locator("#advanced").evaluate("el => el.open = true")
    page.select_option("#tls_mode", "starttls")
    page.click("text=Validate configuration")
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "invalid")
    expect(page.locator("#verdict")).to_contain_text("Anonymous SMTP")
    assert visible_count(page, "this is anonymous SMTP") == 1
    failed = page.locator('#stages > li[data-status="failed"]')
    cause = failed.evaluate("li => li.dataset.stage")
    main_cause = page.locator("#verdict > .verdict-finding p").first.inner_text().removeprefix("Cause: ")
    assert visible_count(page, main_cause) == 1, cause


def test_self_signed_with_ca_bundle_passes_tls(page: Page) -> None:
    run_preset(page, "starttls-ca")
    expect(page.locator("#advanced")).to_have_attribute("open", "")
    expect(page.locator('[data-stage="tls"]')).not_to_have_attribute("data-status", "failed")
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "valid")


def test_palette_profile_hides_what_its_form_lacks_and_shows_the_product_log(page: Page) -> None:
    """Palette is the default; its form has no TLS mode or CA bundle, and a failure carries Go's error text."""
    page.goto("/")
    expect(page.locator("#profile")).to_have_value("palette")
    page.click('[data-preset="starttls-ca"]')  # a demo preset: the generic profile, with a CA bundle
    expect(page.locator("#ca_bundle")).to_be_visible()
    page.select_option("#profile", "palette")
    expect(page.locator("#ca_bundle")).to_be_hidden()
    expect(page.locator("#tls_mode")).to_be_hidden()
    page.click("text=Validate configuration")
    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-verdict", "invalid")
    expect(verdict.locator(".verdict-product-log")).to_contain_text(
        "The product's logs would show something like: "
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )
    expect(verdict.locator(".verdict-finding").first).not_to_contain_text("CA bundle")


def test_field_errors_appear_next_to_the_field(page: Page) -> None:
    page.goto("/")
    page.fill("#host", "127.0.0.1")
    page.fill("#port", "70000")
    page.click("text=Validate configuration")
    error = page.locator("#port-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("65535")
    expect(page.locator("#port")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#from_email-error")).to_contain_text("required")


def test_denied_port_is_explained_on_the_port_field(page: Page) -> None:
    page.goto("/")
    page.fill("#host", "127.0.0.1")
    page.fill("#port", "2525")
    page.fill("#from_email", "app@demo.example")
    page.click("text=Validate configuration")
    error = page.locator("#port-error")
    expect(error).to_contain_text("not in the allowed ports (587")
    expect(error).to_contain_text("DIAG_ALLOWED_PORTS")
    # The message fits its box: nothing sticks out of the form card.
    card = page.locator(".form-card").bounding_box()
    box = error.bounding_box()
    assert card is not None and box is not None and box["x"] + box["width"] <= card["x"] + card["width"]
    assert error.evaluate("e => e.scrollWidth <= e.clientWidth")


def test_every_bad_input_shows_at_once_under_its_field_and_nothing_runs(page: Page) -> None:
    page.goto("/")
    page.fill("#host", "smtp://mail.example.com")
    page.fill("#port", "70000")
    page.fill("#from_email", "not-an-email")
    page.click("text=Validate configuration")
    for field in ("host", "port", "from_email"):
        expect(page.locator(f"#{field}-error")).to_be_visible()
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#host-error")).to_contain_text("scheme")
    expect(page.locator("#verdict")).to_be_hidden()  # no failed run in the results column
    expect(page.locator("#stages > li")).to_have_count(0)


def test_share_link_markdown_and_keyboard(page: Page) -> None:
    run_preset(page, "authenticated")
    link = page.locator("#share-link")
    href = link.get_attribute("href")
    assert href is not None and href.startswith("/diagnostics/")
    page.click("text=Copy as Markdown")
    expect(page.locator("#action-status")).to_have_text("Markdown copied to the clipboard.")
    markdown = page.evaluate("navigator.clipboard.readText()")
    assert "127.0.0.1" in markdown and "demo-password" not in markdown
    page.goto(href)
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "valid")
    expect(page.locator("#username")).to_have_value("demo")
    expect(page.locator("#password")).to_have_value("")
    # Keyboard only: Tab from the From Email field to the button, and Enter runs it.
    page.goto("/")
    page.click('[data-preset="anonymous"]')
    page.focus("#from_email")
    page.keyboard.press("Enter")
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "valid")


def test_sending_is_off_and_the_page_says_how_an_operator_turns_it_on(page: Page) -> None:
    """The service is no mail relay by default: the checkbox cannot be ticked, and the page says why and how."""
    page.goto("/")
    page.locator("#advanced").evaluate("el => el.open = true")
    checkbox = page.locator("#send_test_message")
    expect(checkbox).to_be_disabled()
    hint = page.locator("#send_test_message-hint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("DIAG_ALLOW_SEND=1")
    expect(hint).to_contain_text("send mail through your SMTP servers")


@pytest.fixture
def phone(browser: Browser, service_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=service_url)
    page = context.new_page()
    yield page
    context.close()


def test_nothing_overflows_at_390_px_and_the_answer_is_in_view(phone: Page) -> None:
    """Facts opened on a failed stage once widened the page to 694 px and clipped the cause and fix."""
    run_preset(phone, "starttls-untrusted")
    verdict = phone.locator("#verdict")
    expect(verdict).to_have_attribute("data-verdict", "invalid")
    expect(verdict).to_be_in_viewport()  # focus brought the answer up, below the form on a phone
    failed = phone.locator('#stages > li[data-status="failed"]')
    for summary in failed.locator("details.more > summary").all():
        summary.click()
    expect(failed.locator(".facts")).to_be_visible()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    box = verdict.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "page-failure-390.png"), full_page=True)


AXE = Path(__file__).parent / "data" / "axe.min.js"  # axe-core from npm, for this test only; never served


def test_axe_finds_no_serious_violation(browser: Browser, service_url: str) -> None:
    """axe-core runs in the page after a failure (banner, folded stages, open facts and transcript). The
    context bypasses the CSP only so the test can inject axe; the product's CSP is checked elsewhere."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=service_url, bypass_csp=True)
    page = context.new_page()
    try:
        run_preset(page, "wrong-password")
        for summary in page.locator('[data-stage="auth"] details.more > summary').all():
            summary.click()
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
        assert violations == []
        page.goto("/history")
        expect(page.locator("#history-rows tr").first).to_be_visible()
        page.add_script_tag(path=str(AXE))
        assert page.evaluate("async () => (await axe.run()).violations.filter(v => v.impact === 'serious'"
                             " || v.impact === 'critical').map(v => v.id)") == []
    finally:
        context.close()


def test_history_lists_past_runs_with_links(page: Page) -> None:
    run_preset(page, "wrong-password")
    report_path = page.locator("#share-link").get_attribute("href")
    page.goto("/history")
    row = page.locator("#history-rows tr", has=page.locator(f'a[href="{report_path}"]'))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("invalid")
    expect(row).to_contain_text("auth")
    expect(row).to_contain_text("127.0.0.1:")
    row.locator("a").click()
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "invalid")


def test_address_bar_and_share_link_are_one_and_a_shared_report_says_where_it_ran(page: Page) -> None:
    run_preset(page, "anonymous")
    first = page.locator("#share-link").get_attribute("href")
    page.click('[data-preset="wrong-password"]')
    page.click("text=Validate configuration")
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "invalid")
    second = page.locator("#share-link").get_attribute("href")
    assert second != first
    assert page.evaluate("location.pathname") == second
    page.goto(str(second))
    meta = page.locator("#verdict .verdict-meta")
    expect(meta).to_contain_text(" UTC")
    expect(meta).to_contain_text("smtp-diag ")
    expect(meta).to_contain_text("ran on ")
    expect(meta).to_contain_text("from 127.0.0.1")
    note = page.locator("#shared-note")
    expect(note).to_contain_text("password is not kept")
    # Validate without the password: the page asks for it and runs (and stores) nothing.
    page.click("text=Validate configuration")
    expect(page.locator("#password-error")).to_contain_text("shared report does not keep it")
    assert page.evaluate("location.pathname") == second
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "invalid")


def test_without_javascript_nothing_goes_into_a_url(browser: Browser, service_url: str) -> None:
    """The form posts: with scripts off, submitting it puts nothing (the password least of all) in the URL,
    and the page explains why it needs JavaScript. (Playwright's scripts-off mode keeps <noscript> content as
    raw text, so the message is checked in the HTML the server sent.)"""
    context = browser.new_context(base_url=service_url, java_script_enabled=False)
    page = context.new_page()
    try:
        response = page.goto("/")
        assert response is not None
        html = response.text()
        assert "<noscript>" in html and "This page needs JavaScript to run a check" in html
        page.fill("#host", "127.0.0.1")
        page.fill("#password", "typed-secret")
        with page.expect_navigation():
            page.click("text=Validate configuration")
        assert "typed-secret" not in page.url and "?" not in page.url
    finally:
        context.close()


def test_a_shared_link_without_javascript_shows_the_stored_report(page: Page) -> None:
    """The stored report is rendered on the server inside <noscript> (checked in the HTML, see above)."""
    run_preset(page, "wrong-password")
    path = str(page.locator("#share-link").get_attribute("href"))
    html = page.request.get(path).text()
    start = html.index('<div class="verdict verdict-')
    noscript = html[start:html.index("</noscript>", start)]
    assert 'data-verdict="invalid"' in noscript and "Failed at auth" in noscript
    assert "Cause: </span>" in noscript and "Fix: </span>" in noscript
    assert "not-the-password" not in noscript  # (the demo's presets carry it in the page: public by design)


def test_cancel_stops_a_waiting_run_and_frees_its_slot(browser: Browser, tmp_path: Path) -> None:
    """A server that accepts and never greets: the page shows the wait against the step timeout, Cancel
    aborts the request, the service closes the SMTP connection, and (one run per client) the next run is
    admitted at once instead of a 429."""
    with Peer(never_greets) as peer, DemoServers() as demo:
        settings = with_demo_ports(make_settings(tmp_path, allowed_ports=frozenset({peer.port}),
                                                 max_runs_per_client=1), demo.ports)
        with uvicorn_in_thread(create_app(settings, presets=demo.presets)) as url:
            context = browser.new_context(base_url=url)
            page = context.new_page()
            try:
                page.goto("/")
                page.fill("#host", "127.0.0.1")
                page.fill("#port", str(peer.port))
                page.fill("#from_email", "app@demo.example")
                page.select_option("#profile", "generic")  # the TLS mode is a generic setting
                page.locator("#advanced").evaluate("el => el.open = true")
                page.select_option("#tls_mode", "none")
                page.fill("#timeout_s", "60")
                page.click("text=Validate configuration")
                connect = page.locator('[data-stage="connect"][data-status="running"]')
                expect(connect.locator(".stage-elapsed")).to_contain_text("of this step's 60 s timeout")
                assert peer.call(peer.wait_connections(1, 10))
                page.click("#cancel")
                expect(page.locator("#verdict")).to_have_attribute("data-verdict", "cancelled")
                expect(page.locator("#cancel")).to_be_hidden()
                assert peer.call(peer.wait_all_closed(10))  # the service hung up on the SMTP server
                page.click('[data-preset="anonymous"]')
                page.click("text=Validate configuration")
                expect(page.locator("#verdict")).to_have_attribute("data-verdict", "valid")
                expect(page.locator("#form-error")).to_be_hidden()
            finally:
                context.close()


def test_pasted_log_lines_are_explained_and_one_click_prefills_the_check(page: Page) -> None:
    """The paste box: each line explained with textContent (markup in a line stays text), the password in a
    line masked, an unknown line said to be unknown, and "Check this configuration" fills the form."""
    page.goto("/")
    page.fill("#explain-text", "\n".join([
        '2026-12-04T10:00:00Z level=error msg="validate" password=pw-e2e-Planted '
        'error="dial tcp 10.0.0.5:587: i/o timeout"',
        "<img src=x onerror=alert(1)> all fine",
    ]))
    page.click("#explain-submit")
    items = page.locator("#explain-results > li")
    expect(items).to_have_count(2)
    first = items.nth(0)
    expect(first).to_have_attribute("data-code", "connect.timeout")
    expect(first).to_contain_text("connect.timeout")
    expect(first).to_contain_text("smtp-diag check --host 10.0.0.5 --port 587")
    expect(first).not_to_contain_text("pw-e2e-Planted")
    second = items.nth(1)
    expect(second).to_have_attribute("data-code", "unknown")
    expect(second).to_contain_text("does not recognise this line")
    expect(second.locator("img")).to_have_count(0)
    first.locator(".explain-check").click()
    expect(page.locator("#host")).to_have_value("10.0.0.5")
    expect(page.locator("#port")).to_have_value("587")
    expect(page.locator("#from_email")).to_be_focused()


def test_an_empty_paste_says_what_is_missing(page: Page) -> None:
    page.goto("/")
    page.click("#explain-submit")
    expect(page.locator("#explain-error")).to_contain_text("contains no log line")
