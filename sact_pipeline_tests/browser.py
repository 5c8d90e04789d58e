"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium (as `make test` installs it: no
browser download), launched by Playwright.

A helper module, not a test module: import from here, never from a test module.
"""

from __future__ import annotations

from contextlib import contextmanager

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's, as `make test` installs it: no browser download
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@contextmanager
def chromium():
    """A headless Chromium browser, closed afterwards."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def offline_page(url: str):
    """url opened in headless Chromium with the network cut off, as a reader offline opens it: yields the
    page, the URLs it requested and its console and page errors."""
    requests: list[str] = []
    errors: list[str] = []
    with chromium() as browser:
        context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url, wait_until="load")
        yield page, requests, errors
