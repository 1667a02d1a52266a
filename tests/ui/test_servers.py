"""Compute pages in a real browser over the simulated Ganeti cluster: a key
pair generated (its private key offered once), a server made with the
wizard (the quota room shown, the admin password once), its status
followed live in the list and on its page as it is stopped, started and
rebooted, its console's answer, its deletion; the images page and a
Pithos file registered as an image."""

from __future__ import annotations

import json
import os
import re
import time

from snfd.testing import demo
from tests.ui.case import BrowserCase


class ServerTests(BrowserCase):
    plugins = "identity,pithos,cyclades,ganeti-sim"
    config = ("[identity]\nmoderation = no\n"
              "[ganeti-sim]\nqueue_delay = 0.05\nexec_time = 0.2\n")
    ready_path = "/compute/v2.1/flavors"

    def goto(self, page: str, ready: str) -> None:
        """Click the menu's ``page`` until its page is drawn (a click
        landing while the page after logging in is still being drawn may
        be lost), then wait for ``ready`` on a settled page."""
        b = self.browser
        for _ in range(3):
            b.click(f"#nav a[data-page={page}]")
            try:
                b.wait(f"the {page} page", lambda: b.run(
                    "return !!document.querySelector('#nav a.current[data-page=' + arguments[0]"
                    " + ']') && !document.querySelector('main > p.loading');", page), 10)
                break
            except AssertionError:
                continue
        b.element(ready)
        time.sleep(0.5)  # a redraw already queued (two hash changes) ends
        b.element(ready)

    def status(self) -> str:
        return str(self.browser.run(
            "const e = document.querySelector('#server-status [data-status]');"
            " return e ? e.dataset.status + '|' + e.textContent : '';"))

    def wait_status(self, wanted: str, timeout: float = 60.0) -> None:
        """Wait until the server's page shows ``wanted`` with no task."""
        self.browser.wait(f"status {wanted}",
                          lambda: self.status() == f"{wanted}|{wanted}", timeout)

    def enabled(self, action: str) -> bool:
        return bool(self.browser.run(
            "return !document.getElementById(arguments[0]).disabled;", f"action-{action}"))

    def test_keypair_server_lifecycle_and_images(self):
        def steps() -> None:
            demo.wait_flavors(self.node)
            user = self.node.add_user("vm@example.org")
            b = self.browser
            self.log_in(user)

            # A key pair made by the cloud: the private key once, as a download.
            self.goto("keys", "#generate-key-form")
            b.fill_form("#generate-key-form", {"name": "ui-key"})
            b.submit("#generate-key-form")
            self.assertIn("PRIVATE KEY", b.wait_text("#private-key", "PRIVATE KEY"))
            href = b.element("#private-key-download").get_attribute("href")
            self.assertTrue(href.startswith("blob:"), href)
            b.wait_text("#keys-list", "ui-key")
            b.shot("keys")
            b.click("#private-key-forget")
            b.wait("the private key forgotten",
                   lambda: b.run("return !document.getElementById('private-key');"))
            b.wait_text("#keys-list", "ui-key")

            # The wizard: image, flavor by its parts, key, quota room; the password once.
            self.goto("servers", "#servers-list")
            b.wait_text("#servers-list", "No servers yet.")
            b.click("#new-server")
            b.element("#server-form select[name=key_name] option[value='ui-key']")
            b.run("const s = document.querySelector('#server-form select[name=key_name]');"
                  " s.value = 'ui-key'; s.dispatchEvent(new Event('change'));")
            b.wait_text("#chosen-flavor", "Flavor")
            room = b.wait_text("#quota-room", "Servers")
            self.assertIn("There is room", room)
            b.fill_form("#server-form", {"name": "ui-vm"})
            b.type("#server-form textarea[name=metadata]", "purpose=ui test")
            b.shot("server-create")
            b.submit("#server-form")
            password = b.wait_text("#admin-pass", "").strip()
            self.assertTrue(password and password != "(none given)", password)
            status, listed = self.node.api("GET", "/compute/v2.1/servers/detail", user.token)
            self.assertEqual(status, 200)
            [made] = listed["servers"]
            self.assertEqual((made["name"], made["key_name"], made["metadata"]),
                             ("ui-vm", "ui-key", {"purpose": "ui test"}))
            self.assertNotIn(password, json.dumps(listed))

            # The list follows the status live (changes-since polling).
            self.goto("servers", "#servers-list")
            b.wait_text(f"#servers-list tr[data-id='{made['id']}']", "ACTIVE", 60)
            self.assertNotIn(password, b.text())
            b.shot("servers")

            # The server's page: actions as the state allows.
            b.click(f"#servers-list tr[data-id='{made['id']}'] a.server-name")
            self.wait_status("ACTIVE")
            self.assertTrue(self.enabled("stop"))
            self.assertFalse(self.enabled("start"))
            self.assertFalse(self.enabled("resize"))
            b.wait_text("#server-facts", "ui-key")
            b.shot("server-detail")
            self.assertEqual(b.console_errors(), [])

            # The console: the simulator has none, and the API's message shows.
            b.click("#action-console")
            shown = b.wait_text("#action-error", "onsole")
            self.assertNotIn("Traceback", shown)
            errors = b.console_errors()
            self.assertTrue(all(re.search(r"/action - Failed to load resource.* 501", e)
                                for e in errors), errors)

            b.click("#action-stop")
            self.wait_status("SHUTOFF")
            self.assertTrue(self.enabled("start"))
            self.assertTrue(self.enabled("resize"))
            self.assertFalse(self.enabled("stop"))
            b.click("#action-start")
            self.wait_status("ACTIVE")
            b.click("#action-reboot")
            self.wait_status("ACTIVE")

            # Deleted: gone from the list.
            b.accept_dialogs()
            b.click("#action-delete")
            b.wait_text("#servers-list", "No servers yet.", 60)
            status, listed = self.node.api("GET", "/compute/v2.1/servers", user.token)
            self.assertEqual(listed["servers"], [])

            # Images: the public demo image; a Pithos file registered.
            for method, path, body in (("PUT", "images", b""),
                                       ("PUT", "images/disk.diskdump", os.urandom(1 << 20))):
                got = self.node.request(method, f"/object-store/v1/{user.uuid}/{path}",
                                        user.token, body)
                self.assertIn(got[0], (201, 202), got)
            self.goto("images", "#register-image-form")
            b.wait_text("#images-public", "Demo Linux")
            b.fill_form("#register-image-form", {"name": "My disk",
                                                 "location": "images/disk.diskdump"})
            b.type("#register-image-form textarea[name=properties]", "OS=linux\nOSFAMILY=linux")
            b.submit("#register-image-form")
            b.wait_text("#images-mine", "My disk")
            b.shot("images")
            self.assertEqual(b.console_errors(), [])
        return self.drive(steps)
