"""What the browser tests share: a node of their own on a fresh database,
a headless Chromium, screenshots as artifacts, and steps that log in.

A test's body runs in a thread (selenium and ``CloudNode`` block): write
``def scenario(self) -> None`` steps and call them with ``self.drive``.
Screenshots go to ``$SNFD_UI_ARTIFACTS`` (default ``_trial_temp/ui``):
artifacts of the run, never committed.
"""

from __future__ import annotations

import email
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.browser import Browser, browser_unavailable
from snfd.testing.cloudnode import CloudNode, User
from snfd.testing.postgres import fresh_database

__all__ = ["BrowserCase"]


class BrowserCase(unittest.TestCase):
    """A node with ``plugins`` and ``config``, and a browser, per test."""

    timeout = 600
    plugins = "identity,pithos"
    config = "[identity]\nmoderation = no\n"
    env: dict[str, str] = {}
    ready_path = "/identity/v3"
    node: CloudNode
    browser: Browser

    async def setUp(self) -> None:
        why = browser_unavailable()
        if why is not None:
            raise unittest.SkipTest(why)
        dsn = fresh_database(self)
        self.root = Path(tempfile.mkdtemp(prefix="snfd-ui-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.node = CloudNode(dsn, self.root / "node", self.plugins, self.config, self.env)
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start, 120.0, self.ready_path)
        artifacts = Path(os.environ.get("SNFD_UI_ARTIFACTS", Path.cwd() / "ui"))
        self.browser = await threads.deferToThread(Browser, artifacts)
        self.addCleanup(lambda: threads.deferToThread(self.browser.quit))

    def drive(self, steps: Callable[[], Any]) -> Any:
        """Run the blocking ``steps`` in a thread (a test returns this)."""
        return threads.deferToThread(steps)

    @property
    def ui(self) -> str:
        return self.node.url + "/ui/"

    def log_in(self, user: User) -> None:
        """Open the UI and log in as ``user`` with its password."""
        b = self.browser
        b.open(self.ui + "#/login")
        b.fill_form("#login-form", {"name": user.email, "password": user.password})
        b.submit("#login-form")
        b.wait_text("#who", user.email)

    def last_mail_link(self) -> str:
        """The link at the end of the newest mail the node wrote."""
        mails = sorted((self.node.state_dir / "mail").rglob("*"),
                       key=lambda p: p.stat().st_mtime)
        mails = [m for m in mails if m.is_file()]
        if not mails:
            raise AssertionError("the node wrote no mail")
        message = email.message_from_bytes(mails[-1].read_bytes())
        part = message.get_payload(decode=True) if not message.is_multipart() \
            else message.get_payload(0).get_payload(decode=True)
        return str(part.decode().split()[-1])
