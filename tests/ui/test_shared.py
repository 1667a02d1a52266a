"""What others share with a user, seen in a real browser: the sharer,
the container, the folder and the object, read-only, downloaded with the
token in a header; what is not shared stays out of sight."""

from __future__ import annotations

import hashlib

from tests.ui.case import BrowserCase

#: Fetch an object as the page does (token in X-Auth-Token); its size and SHA-256.
DIGEST = """
const [path, done] = arguments;
const token = JSON.parse(sessionStorage.getItem("snfd.session")).token;
fetch(path, {headers: {"X-Auth-Token": token}})
  .then(r => r.arrayBuffer())
  .then(b => crypto.subtle.digest("SHA-256", b).then(d => done([b.byteLength,
    Array.from(new Uint8Array(d)).map(x => x.toString(16).padStart(2, "0")).join("")])))
  .catch(e => done(String(e)));
"""


class SharedTests(BrowserCase):
    def test_a_sharee_sees_and_reads_what_is_shared(self):
        def steps() -> None:
            owner = self.node.add_user("owner@example.org")
            friend = self.node.add_user("friend@example.org")
            base = f"/object-store/v1/{owner.uuid}"
            data = b"the report, shared\n" * 1000
            for method, path, body, headers in (
                    ("PUT", f"{base}/docs", b"", {}),
                    ("PUT", f"{base}/docs/2026/report.txt", data, {}),
                    ("PUT", f"{base}/docs/private.txt", b"mine only", {}),
                    ("POST", f"{base}/docs/2026/report.txt?update", b"",
                     {"X-Object-Sharing": f"read={friend.uuid}"})):
                code, _, answer = self.node.request(method, path, owner.token, body, headers)
                self.assertLess(code, 300, answer)
            b = self.browser
            self.log_in(friend)
            b.click("#nav a[data-page=shared]")
            b.wait_text("main", "owner@example.org")
            b.shot("shared")
            b.click("a.sharer")
            b.click("main table a")
            b.wait_text("main table", "2026/")
            self.assertNotIn("private.txt", b.text("main table"))
            b.click("main table a")
            b.wait_text("main table", "report.txt")
            b.shot("shared-folder")
            got = b.driver.execute_async_script(DIGEST, f"{base}/docs/2026/report.txt")
            self.assertEqual(got, [len(data), hashlib.sha256(data).hexdigest()])
            b.click("button[data-download='2026/report.txt']")
            self.assertEqual(b.console_errors(), [])
        return self.drive(steps)
