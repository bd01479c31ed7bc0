"""The page's screenshots in docs/screenshots/: a failure, a warning-only pass and a valid run, 1280 and 390
pixels wide, against the demo servers on loopback. Run: `.venv/bin/python -m tests.e2e.screenshots`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from diag.service.app import create_app
from diag.service.demo import DemoServers
from diag.service.serve import with_demo_ports
from tests.e2e.test_page import ARGS, CHROMIUM
from tests.service.helpers import make_settings, uvicorn_in_thread

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SHOTS = {"failure": "starttls-untrusted", "warning": "anonymous", "valid": "starttls-ca"}
WIDTHS = {1280: 900, 390: 844}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, DemoServers() as demo:
        settings = with_demo_ports(make_settings(Path(tmp)), demo.ports)
        with uvicorn_in_thread(create_app(settings, presets=demo.presets)) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for width, height in WIDTHS.items():
                context = browser.new_context(viewport={"width": width, "height": height}, base_url=url)
                page = context.new_page()
                for name, preset in SHOTS.items():
                    page.goto("/")
                    page.click(f'[data-preset="{preset}"]')
                    page.click("text=Validate configuration")
                    expect(page.locator("#verdict[data-verdict]")).to_be_visible()
                    page.evaluate("document.activeElement.blur()")  # no focus ring in the picture
                    # The first screen, as a person sees it once the run ends (the page scrolled to the answer).
                    page.screenshot(path=str(OUT / f"{name}-{width}.png"))
                context.close()
            browser.close()


if __name__ == "__main__":
    main()
