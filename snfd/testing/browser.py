"""Headless Chromium from Debian's packages (``chromium``,
``chromium-driver``), driven through chromedriver with selenium, for the
web UI's end-to-end tests against a real node.

Nothing is downloaded: the browser and the driver are the system's
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``) and selenium's own
manager is kept offline.  ``browser_unavailable()`` says why a test must
skip (a package or selenium missing).

``Browser(artifacts)`` starts one browser with a profile of its own in a
temporary directory; ``shot(name)`` saves a screenshot as
``<artifacts>/<name>.png`` (test artifacts, never committed).  Every wait
has a timeout and raises ``AssertionError`` naming what was awaited and
the page's text, so a failing test says what the person would have seen.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

__all__ = ["Browser", "browser_unavailable"]


def browser_unavailable() -> str | None:
    """None when the browser tests can run here, else why not."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian package {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


class Browser:
    """One headless Chromium; see the module docstring."""

    def __init__(self, artifacts: Path, width: int = 1280, height: int = 900):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_OFFLINE", "true")
        self.artifacts = artifacts
        artifacts.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="snfd-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--no-first-run", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync",
                    "--metrics-recording-only", "--no-default-browser-check",
                    f"--window-size={width},{height}", f"--user-data-dir={self._profile}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)

    # -- navigation and reading ------------------------------------------------
    def open(self, url: str) -> None:
        self.driver.get(url)

    def run(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments[i]``) in the page."""
        return self.driver.execute_script(script, *args)

    def text(self, css: str = "body") -> str:
        found = self.driver.find_elements("css selector", css)
        return "\n".join(e.text for e in found)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        """``probe()``'s first true answer within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                got = probe()
                if got:
                    return got
            except Exception as e:  # a page being redrawn
                last = e
            time.sleep(0.1)
        raise AssertionError(f"waited {timeout:.0f} s for {what}; the page says:\n"
                             f"{self.text()[:2000]}" + (f"\n(last error: {last})" if last else ""))

    def element(self, css: str, timeout: float = 30.0) -> Any:
        """The first visible element matching ``css``."""
        def probe() -> Any:
            for e in self.driver.find_elements("css selector", css):
                if e.is_displayed():
                    return e
            return None
        return self.wait(f"an element {css!r}", probe, timeout)

    def wait_text(self, css: str, text: str, timeout: float = 30.0) -> str:
        """Wait until an element ``css`` holds ``text``; its whole text."""
        return str(self.wait(f"{text!r} in {css!r}",
                             lambda: next((e.text for e in self.driver.find_elements(
                                 "css selector", css) if text in e.text), None), timeout))

    # -- acting ----------------------------------------------------------------
    def type(self, css: str, text: str, clear: bool = True) -> None:
        e = self.element(css)
        if clear:
            e.clear()
        e.send_keys(text)

    def click(self, css: str) -> None:
        self.element(css).click()

    def accept_dialogs(self) -> None:
        """Answer every ``confirm()`` of the page with OK from now on."""
        self.run("window.confirm = () => true;")

    def fill_form(self, form_css: str, values: dict[str, str]) -> None:
        for name, value in values.items():
            self.type(f"{form_css} [name={name!r}]", value)

    def submit(self, form_css: str) -> None:
        self.click(f"{form_css} button[type=submit]")

    # -- evidence --------------------------------------------------------------
    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        """The page's console messages at level SEVERE so far."""
        return [m["message"] for m in self.driver.get_log("browser")
                if m.get("level") == "SEVERE"]

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)
