"""Headless Chromium for the browser tests: the system's chromium and chromedriver, driven
by Selenium from a thread (the servers run on Trio), and screenshots of failed tests.

Import it at the top of a browser test module: it skips the module when the browser is
missing (and fails it on CI, which installs it: see .ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    if os.environ.get("CI"):
        # CI installs chromium and chromium-driver (.ci/run): a skip there would hide it.
        raise RuntimeError("chromium or chromedriver is not on PATH")
    pytest.skip("headless Chromium is not installed (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

# Failed browser tests leave a screenshot and the page's HTML here.
ARTIFACTS_DIR = Path(os.environ.get("ARTIFACTS_DIR") or "test-artifacts")


def start_browser(width: int = 1280, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM or ""
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    if width < 500:
        # A headless window is at least 500 px wide: a phone's width is emulated.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    return driver


def wait_for(driver: Any, script: str, *args: Any, timeout: float = 20) -> Any:
    """Selenium's bounded wait until ``script`` returns something truthy; returns it."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script, *args))


class Browser:
    """A driver used from Trio: each call runs Selenium in a thread."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(function, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(lambda: self.driver.execute_script(script, *args))

    async def wait(self, script: str, *args: Any, timeout: float = 20) -> Any:
        return await self.run(lambda: wait_for(self.driver, script, *args, timeout=timeout))

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def console_errors(self) -> list[str]:
        """The console's errors since the last call (a CSP refusal, a script error, a
        failed load): reading them empties the log."""
        entries = await self.run(self.driver.get_log, "browser")
        # The browser asks for /favicon.ico by itself on pages without an icon (such as a
        # hook's 401): the app's business, not the page's.
        return [e["message"] for e in entries
                if e["level"] == "SEVERE" and "/favicon.ico " not in e["message"]]

    def save_artifacts(self, name: str) -> list[Path]:
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        saved = [ARTIFACTS_DIR / f"{stem}{suffix}" for suffix in (".png", ".html",
                                                                  ".console.txt")]
        self.driver.save_screenshot(str(saved[0]))
        saved[1].write_text(self.driver.page_source)
        try:
            lines = [f"{e['level']} {e['message']}" for e in self.driver.get_log("browser")]
        except Exception as exc:  # a log is a bonus: never hide the test's own failure
            lines = [f"(no console log: {exc})"]
        saved[2].write_text("\n".join(lines) + "\n")
        return saved


def failed(request: pytest.FixtureRequest) -> bool:
    """Did the test's call phase fail (as recorded by conftest's report hook)?"""
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def browser_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Browser]]:
    """Start browsers (``browser_factory(width=375)``); each is quit after the test, and
    on a failure first photographed into ``ARTIFACTS_DIR``."""
    started: list[Browser] = []

    def start(**size: int) -> Browser:
        browser = Browser(start_browser(**size))
        started.append(browser)
        return browser

    yield start
    for i, browser in enumerate(started):
        try:
            if failed(request):
                name = request.node.nodeid + (f"-{i}" if i else "")
                for path in browser.save_artifacts(name):
                    print(f"saved {path}")
        finally:
            browser.driver.quit()
